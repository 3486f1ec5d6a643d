"""State on disk: written atomically, read back without running code.

A write goes to a temporary file in the target's folder, is flushed to disk, is read back with the
safe loader, and only then replaces the target with ``os.replace`` (atomic on POSIX and Windows).
A crash, a kill or a full disk therefore leaves the previous file intact, and a concurrent reader
sees the old file or the new one, never half of one. Reading uses ``torch.load(weights_only=True)``:
tensors, numbers, strings, lists, tuples and dicts only, so a planted pickle cannot run code.
"""
from __future__ import annotations

import os
import pickle
import uuid
from pathlib import Path

import torch


def load_safe(path):
    """Load a file written by :func:`save_atomic` (or any torch file of plain data) onto the CPU.

    A file that is cut short, not a torch file, or holds anything but plain data raises
    ``pickle.UnpicklingError`` naming the file; nothing in it is run."""
    try:
        return torch.load(path, weights_only=True, map_location="cpu")
    except (pickle.UnpicklingError, RuntimeError, EOFError, KeyError, ValueError) as e:
        why = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
        raise pickle.UnpicklingError(f"{path} cannot be loaded safely: it is cut short, not a torch file, or holds "
                                     f"objects other than plain data ({why})") from None


def save_atomic(obj, path) -> None:
    """Write ``obj`` (tensors, numbers, strings, lists, tuples, dicts) to ``path`` all at once or not at all."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        try:
            load_safe(tmp)
        except Exception as e:
            raise TypeError(f"cannot save to {path}: the data holds an object that cannot be loaded back safely "
                            f"(only tensors, numbers, strings, lists, tuples and dicts): {e}") from None
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
