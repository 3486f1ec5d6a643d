"""Results files of the experiments: written atomically, checked before any work, never mixed across data or versions."""
from __future__ import annotations

import json
import os
from pathlib import Path

from minivbon.provenance import check_same_provenance


def write_atomic(path: Path, data: dict) -> None:
    """Write ``data`` as JSON to ``path`` all at once: a temporary file of this process, flushed, then renamed."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w") as f:
            f.write(json.dumps(data, indent=1, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def check_writable(path: Path, flag: str = "--out") -> None:
    """Refuse, before any work, a results path that cannot be written (a folder, or a parent that is a file)."""
    path = Path(path)
    if path.is_dir():
        raise SystemExit(f"{flag} {path} is a folder; give a file name")
    parent = next((p for p in [path.parent, *path.parent.parents] if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise SystemExit(f"{flag} {path} cannot be written: {parent} is a file, not a folder")
    if parent is not None and not os.access(parent, os.W_OK):
        raise SystemExit(f"{flag} {path} cannot be written: no permission to write in {parent}")


def check_resume(results: dict, current: dict, path: Path) -> None:
    """Refuse to resume ``results`` made with another provenance, or with none recorded (a file written before
    provenance was: nothing shows it was made on this data)."""
    if not results:
        return
    if "provenance" not in results:
        raise SystemExit(f"{path} records no provenance (it predates data fingerprints), so nothing shows it was made "
                         "on this data and its runs cannot be mixed with new ones: use --out for a new file")
    try:
        check_same_provenance(results["provenance"], current, path)
    except ValueError as e:
        raise SystemExit(str(e)) from None
