"""State on disk: written atomically, read back without running code.

A write goes to a temporary file in the target's folder, is flushed to disk, is read back with the
safe loader, and only then replaces the target with ``os.replace`` (atomic on POSIX and Windows).
A crash, a kill or a full disk therefore leaves the previous file intact, and a concurrent reader
sees the old file or the new one, never half of one. Reading uses ``torch.load(weights_only=True)``:
tensors, numbers, strings, lists, tuples and dicts only, so a planted pickle cannot run code.
"""
from __future__ import annotations

import glob
import os
import pickle
import uuid
from pathlib import Path

import torch


def load_safe(path):
    """Load a file written by :func:`save_atomic` (or any torch file of plain data) onto the CPU.

    A file that is cut short, not a torch file, or holds anything but plain data raises
    ``pickle.UnpicklingError`` naming the file; nothing in it is run."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or a path, got {type(path).__name__}")
    try:
        return torch.load(path, weights_only=True, map_location="cpu")
    except (pickle.UnpicklingError, RuntimeError, EOFError, KeyError, ValueError) as e:
        why = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
        raise pickle.UnpicklingError(f"{path} cannot be loaded safely: it is cut short, not a torch file, or holds "
                                     f"objects other than plain data ({why})") from None


def remove_stale_temporaries(path: Path) -> list[Path]:
    """Remove the temporary files that a killed save to ``path`` left behind: those of a process that no longer
    runs (the writer's pid is in the name), and those of older versions, whose names carry no pid."""
    removed = []
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        tag = tmp.name[len(path.name) + 2:-len(".tmp")]
        pid = tag.split("-", 1)[0] if "-" in tag else None
        if pid is not None and pid.isdigit() and _running(int(pid)):
            continue  # a save in progress, in this process or another
        try:
            tmp.unlink()
            removed.append(tmp)
        except OSError:
            pass
    return removed


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def save_atomic(obj, path) -> None:
    """Write ``obj`` (tensors, numbers, strings, lists, tuples, dicts) to ``path`` all at once or not at all."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or a path, got {type(path).__name__}")
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"path {path} is a folder; give a file name inside it")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise NotADirectoryError(f"cannot save to {path}: a part of its folder {path.parent} is a file") from None
    remove_stale_temporaries(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "wb") as f:
            try:
                torch.save(obj, f)
            except (pickle.PicklingError, AttributeError) as e:  # a lambda, a local class: not plain data
                raise TypeError(f"cannot save to {path}: obj holds an object that is not plain data (only tensors, "
                                f"numbers, strings, lists, tuples and dicts): {e}") from None
            f.flush()
            os.fsync(f.fileno())
        try:
            load_safe(tmp)
        except Exception as e:  # noqa: BLE001 (the safe loader's refusal, whatever its type)
            raise TypeError(f"cannot save to {path}: the data holds an object that cannot be loaded back safely "
                            f"(only tensors, numbers, strings, lists, tuples and dicts): {e}") from None
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
