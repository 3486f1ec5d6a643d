"""Shared pytest setup.

- Never wait on the Hugging Face hub (a failed lookup hangs about 25 s).
- Chapter 7 needs the optional ``trl`` extra: without it, it is left out of the run (never in CI).
- The README states how long each chapter takes under nbval. Whenever a chapter is run here in full, its
  measured time is printed at the end beside that claim, with a note when it is more than twice the claim.
  A time is never a reason to fail: a slow laptop or a busy machine is not a broken book. A chapter with no
  runtime in the README's table does fail the session (the table must cover the book).
"""
import os
import re
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

README = Path(__file__).resolve().parent / "README.md"


def _trl_missing() -> bool:
    import importlib.util

    return importlib.util.find_spec("trl") is None and not os.environ.get("MINIVBON_REQUIRE_TRL")  # CI: never skip


# chapter 7 trains with TRL, an optional extra (pip install -e ".[trl]"); without it nbval leaves it out
collect_ignore = ["book/07_vbon_with_trl.ipynb"] if _trl_missing() else []
_seconds: dict[str, float] = {}  # notebook path -> seconds spent in its nbval items
_failed: set[str] = set()


def stated_runtimes(text: str) -> dict[str, float]:
    """{"book/0X_....ipynb": seconds} from the README's chapter table (last column "~40 s" or "~3 min")."""
    out = {}
    for line in text.splitlines():
        m = re.match(r"\|\s*\[[^\]]*\]\((book/\d\d_[\w.]+\.ipynb)\).*\|\s*~?\s*([\d.]+)\s*(s|min)\s*\|\s*$", line)
        if m:
            out[m.group(1)] = float(m.group(2)) * (60 if m.group(3) == "min" else 1)
    return out


def pytest_runtest_logreport(report):
    path = report.nodeid.split("::")[0]
    if path.endswith(".ipynb"):
        _seconds[path] = _seconds.get(path, 0.0) + report.duration
        if report.failed or report.skipped:
            _failed.add(path)


def _complete() -> dict[str, float]:
    return {p: s for p, s in _seconds.items() if p not in _failed}


def pytest_sessionfinish(session, exitstatus):
    stated = stated_runtimes(README.read_text())
    measured = _complete()
    slow = [f"{p}: {measured[p]:.0f} s measured, README says {stated[p]:.0f} s" for p in measured
            if p in stated and measured[p] > 2 * stated[p]]
    missing = [p for p in measured if p.startswith("book/") and p not in stated]
    session.config._runtime_report = (measured, stated, slow, missing)
    if missing and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter):
    report = getattr(terminalreporter.config, "_runtime_report", None)
    if not report or not report[0]:
        return
    measured, stated, slow, missing = report
    terminalreporter.section("chapter runtimes under nbval")
    for p, s in sorted(measured.items()):
        claim = f"README: {stated[p]:.0f} s" if p in stated else "README: no claim"
        terminalreporter.write_line(f"{p}: {s:.0f} s ({claim})")
    for line in slow:
        terminalreporter.write_line(f"note: more than twice the README's runtime (a busy or slow machine?): {line}",
                                    yellow=True)
    for p in missing:
        terminalreporter.write_line(f"FAILED: {p} has no runtime in the README's chapter table", red=True)
