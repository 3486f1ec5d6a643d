"""What every experiment and benchmark script shares: arguments checked before any work, results paths and
configs, an atomic writer, a resume that refuses foreign files, and the mean with its standard error.

A script puts ``experiments/`` on ``sys.path`` once and imports from here (see experiments/README.md):

- arguments: :func:`add_run_arguments` (``--seeds``, ``--out``) and :func:`parse_arguments`, which checks
  them and the script's own (:func:`check_count`, :func:`check_positive`, :func:`check_writable`,
  :func:`check_device`), turning every problem into ``parser.error`` naming the flag;
- paths: :func:`results_path` (``experiments/results/<name>.json``), :func:`load_config`
  (``experiments/configs/<name>.json``, read by the book's chapters too);
- results: :func:`write_atomic`; :func:`read_results` returns a file to resume, or refuses one that is not
  JSON, not a results file, made with other settings or with another provenance
  (``minivbon.provenance``), naming what differs;
- statistics: :func:`mean_se` over independent values (seeds), by ``minivbon.distance.mean_se``.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Callable, Sequence

import torch

from minivbon.distance import mean_se as _mean_se
from minivbon.provenance import check_same_provenance

EXPERIMENTS = Path(__file__).resolve().parent
RESULTS = EXPERIMENTS / "results"
CONFIGS = EXPERIMENTS / "configs"


def results_path(name: str) -> Path:
    """The default results file of an experiment: ``experiments/results/<name>.json``."""
    return RESULTS / f"{name}.json"


def load_config(name: str) -> dict:
    """The settings in ``experiments/configs/<name>.json`` (a script and its chapter read the same file)."""
    path = CONFIGS / f"{name}.json"
    try:
        config = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise SystemExit(f"config {path} cannot be read ({type(e).__name__}: {e})") from None
    if not isinstance(config, dict):
        raise SystemExit(f"config {path} must hold a JSON object, got a {type(config).__name__}")
    return config


def write_atomic(path: Path, data) -> None:
    """Write ``data`` as JSON to ``path`` all at once (its folder made if needed): a temporary file of this
    process, flushed, then renamed over ``path``; on any failure ``path`` keeps what it held."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w") as f:
            f.write(json.dumps(data, indent=1, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def mean_se(values: Sequence[float]) -> dict:
    """{"mean", "se"} of independent values (one per seed); ``se`` is NaN for a single value."""
    mean, se = _mean_se(torch.as_tensor(values, dtype=torch.float64))
    return {"mean": mean, "se": se}


# ---- arguments: every check raises ValueError naming its flag; parse_arguments turns it into parser.error ----

def parse_seeds(text: str, flag: str = "--seeds") -> list[int]:
    """'0,1,2' -> [0, 1, 2]: comma-separated whole numbers >= 0, each given once."""
    try:
        seeds = [int(s) for s in text.split(",")]
    except ValueError:
        raise ValueError(f"{flag} must be comma-separated whole numbers >= 0, got {text!r}") from None
    if any(s < 0 for s in seeds):
        raise ValueError(f"{flag} must be whole numbers >= 0, got {text!r}")
    if len(set(seeds)) < len(seeds):
        raise ValueError(f"{flag} names a seed more than once: {text!r}")
    return seeds


def check_count(value: int, flag: str, minimum: int = 1) -> None:
    """Refuse a count below ``minimum``."""
    if value < minimum:
        raise ValueError(f"{flag} must be at least {minimum}, got {value}")


def check_positive(value: float, flag: str) -> None:
    """Refuse a number that is not finite and > 0 (a learning rate)."""
    if not 0 < value < float("inf"):
        raise ValueError(f"{flag} must be a finite number > 0, got {value}")


def check_writable(path: Path, flag: str = "--out") -> None:
    """Refuse a results path that cannot be written (a folder, a parent that is a file, no permission)."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{flag} {path} is a folder; give a file name")
    parent = next((p for p in [path.parent, *path.parent.parents] if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise ValueError(f"{flag} {path} cannot be written: {parent} is a file, not a folder")
    if parent is not None and not os.access(parent, os.W_OK):
        raise ValueError(f"{flag} {path} cannot be written: no permission to write in {parent}")


def check_device(name: str, flag: str = "--device") -> str:
    """A device torch knows, and CUDA only where it is available."""
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"{flag} {name!r} is not a torch device (e.g. cpu, cuda, cuda:1)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"{flag} {name}: this torch has no CUDA device available (torch {torch.__version__}); "
                         f"use {flag} cpu")
    return name


def add_run_arguments(parser: argparse.ArgumentParser, *, seeds: str | None = None, out: Path | None = None) -> None:
    """``--seeds`` (when ``seeds``, its default, is given) and ``--out`` (default ``out``; ``None`` lets the
    script choose one in its check)."""
    if seeds is not None:
        parser.add_argument("--seeds", default=seeds, help=f"comma-separated training seeds (default {seeds})")
    parser.add_argument("--out", type=Path, default=out,
                        help="results file" + (f" (default: {_shown(out)})" if out is not None else ""))


def parse_arguments(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None,
                    check: Callable[[argparse.Namespace], None] | None = None,
                    files: Sequence[str] = ("--out",)) -> argparse.Namespace:
    """Parse ``argv`` and check every argument before any work: ``--seeds`` becomes a list, then the script's
    own ``check(args)`` runs (it may fill in defaults), then every output file in ``files`` that is set must be
    writable. A ValueError from any of them is reported by ``parser.error`` (exit status 2), naming the flag."""
    args = parser.parse_args(argv)
    try:
        if isinstance(getattr(args, "seeds", None), str):
            args.seeds = parse_seeds(args.seeds)
        if check is not None:
            check(args)
        for flag in files:
            path = getattr(args, flag.lstrip("-").replace("-", "_"))
            if path is not None:
                check_writable(path, flag)
    except ValueError as e:
        parser.error(str(e))
    return args


def _shown(path: Path) -> str:
    try:
        return str(Path(path).relative_to(EXPERIMENTS.parent))
    except ValueError:
        return str(path)


# ---- resume ----

def settings_differences(recorded, current, where: str = "") -> list[str]:
    """Every setting that differs, as 'name: recorded -> current' (nested dicts named by dotted paths)."""
    if isinstance(recorded, dict) and isinstance(current, dict):
        return [line for k in sorted(set(recorded) | set(current), key=str)
                for line in settings_differences(recorded.get(k), current.get(k), f"{where}{k}.")]
    return [] if recorded == current else [f"{where.rstrip('.')}: {recorded!r} -> {current!r}"]


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


def read_results(path: Path, settings: dict, current: dict | None = None, *, parts: dict[str, type] | None = None,
                 fields: Sequence[str] = ()) -> dict:
    """The results file at ``path`` to resume ({} if there is none), checked before any training.

    Refused (SystemExit, naming what is wrong): a file that is not JSON or not a JSON object; one whose
    ``settings`` differ from ``settings`` (every differing setting named); one whose ``parts`` (name -> dict
    of run records by key, or list of run records; default ``{"runs": dict}``) are not records holding
    ``fields``; and, when ``current`` is given, one made with another provenance (:func:`check_resume`; a
    script that only knows its provenance later calls that itself)."""
    path = Path(path)
    if not path.exists():
        return {}
    try:
        results = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SystemExit(f"{path} is not a readable JSON results file ({type(e).__name__}: {e}); delete it or use "
                         "--out for a new file") from None
    if not isinstance(results, dict):
        raise SystemExit(f"{path} holds a JSON {type(results).__name__}, not a results file (an object with "
                         "settings and runs); delete it or use --out")
    if "settings" not in results:
        raise SystemExit(f"{path} records no settings, so it is not a results file of this script; delete it or "
                         "use --out for a new file")
    differ = settings_differences(results["settings"], settings)
    if differ:
        raise SystemExit(f"{path} was made with other settings (recorded -> now: {'; '.join(differ)}); use --out "
                         "for a new file or delete it")
    for part, kind in (parts or {"runs": dict}).items():
        runs = results.get(part, kind())
        records = runs.values() if isinstance(runs, dict) else runs
        if not isinstance(runs, kind) or not all(isinstance(r, dict) and set(fields) <= set(r) for r in records):
            shape = "map run keys to run records" if kind is dict else "be a list of run records"
            raise SystemExit(f"{path}: '{part}' must {shape} (with {', '.join(fields)}); the file is corrupt")
    if current is not None:
        check_resume(results, current, path)
    return results
