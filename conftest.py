"""Shared pytest setup.

- Never wait on the Hugging Face hub (a failed lookup hangs about 25 s).
- Chapter 7 needs the optional ``trl`` extra: without it, it is left out of the run (never in CI).
- Two tiers. ``pytest`` runs the fast tier: the unit tests and every chapter under nbval. ``pytest --full``
  also runs the tests marked ``full``: whole files that run the book again in other ways (JupyterLab in
  Chromium, the web edition, each section re-run alone, ``tools/run_chapters.py``) and single tests that
  install the project or train to convergence (``FULL_TESTS``). Without ``--full`` they are skipped, and the
  reason says how to run them.
- Chapter runtimes are reported, never a reason to fail: whenever a chapter runs in full under nbval, its
  measured time is printed at the end beside the time stated in docs/instructors.md, with a note when it is
  more than twice that. A slow laptop or a busy machine is not a broken book.
"""
import os
import re
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

ROOT = Path(__file__).resolve().parent
TIMES = ROOT / "docs" / "instructors.md"  # its table of chapter runtimes under nbval

# The full tier: whole files ...
FULL_FILES = {
    "tests/test_browser.py": "every chapter run in JupyterLab in Chromium",
    "tests/test_web_edition.py": "the web edition built with Sphinx and read in Chromium",
    "tests/test_rerun.py": "every chapter run, then each of its sections re-run alone",
    "tests/test_run_chapters.py": "tools/run_chapters.py, CI's student path, on kernels of its own",
}
# ... and single tests: a node id without parameters puts every parameter of that test in the full tier
CONVERGES = "trains to convergence"
FULL_TESTS = {
    "tests/test_faults.py::test_non_editable_install_loads_the_local_backend": "installs the project as a wheel",
    "tests/test_distill.py::test_methods_that_target_bon_reach_it_on_the_whole_prefix_family": CONVERGES,
    "tests/test_distill.py::test_hard_rounds_move_the_anchor_log2_n_minus_1_times[8-1000]": CONVERGES,
    "tests/test_distill.py::test_bonbon_reaches_its_own_exact_fixed_point_which_is_not_bon": CONVERGES,
    "tests/test_loop.py::test_tie_aware_vbon_reaches_the_tie_aware_bon_law": CONVERGES,
    "tests/test_loop.py::test_vbon_reduces_exact_kl_to_bon_by_80_percent": CONVERGES,
    "tests/test_loop.py::test_kl_rl_and_bon_sft_move_the_right_way": CONVERGES,
    "tests/test_sentiment.py::test_short_vbon_l_run_raises_held_out_reward": "trains the local GPT-2",
    "tests/test_trl.py::test_the_seed_comparison_script_scores_trl_runs_beside_the_sweep": "trains with TRL",
    "tests/test_lm.py::test_bf16_autocast_moves_log_probs_a_little_and_the_vbon_reward_not_at_all":
        "runs the local GPT-2 in two precisions",
    "tests/test_bench.py::test_sweep_on_device_tiny_reproduces_the_sweeps_run": "re-trains a sweep run",
}
SKIP_REASON = "full tier ({why}): run it with pytest --full"


def pytest_addoption(parser):
    parser.addoption("--full", action="store_true", default=False,
                     help="also run the full tier: the browser, web-edition, section re-run and install tests, "
                          "and the slow convergence tests (tests marked 'full')")


def pytest_configure(config):
    config.addinivalue_line("markers", "full: in the full tier only (run with pytest --full)")


def _full_reason(item) -> str | None:
    path = item.nodeid.split("::")[0]
    if path in FULL_FILES:
        return FULL_FILES[path]
    return FULL_TESTS.get(item.nodeid) or FULL_TESTS.get(item.nodeid.split("[")[0])


def pytest_collection_modifyitems(config, items):
    full = config.getoption("--full")
    for item in items:
        why = _full_reason(item)
        if why is None and item.get_closest_marker("full") is None:
            continue
        item.add_marker(pytest.mark.full)
        if not full:
            item.add_marker(pytest.mark.skip(reason=SKIP_REASON.format(why=why or "marked full")))


def _trl_missing() -> bool:
    import importlib.util

    return importlib.util.find_spec("trl") is None and not os.environ.get("MINIVBON_REQUIRE_TRL")  # CI: never skip


# chapter 7 trains with TRL, an optional extra (pip install -e ".[trl]"); without it nbval leaves it out
collect_ignore = ["book/07_vbon_with_trl.ipynb"] if _trl_missing() else []
_seconds: dict[str, float] = {}  # notebook path -> seconds spent in its nbval items
_failed: set[str] = set()


def stated_runtimes(text: str) -> dict[str, float]:
    """{"book/0X_....ipynb": seconds} from a table whose rows start with the chapter's path in backquotes and
    whose next column is its time ("~40 s" or "~3 min")."""
    out = {}
    for line in text.splitlines():
        m = re.match(r"\|\s*`(book/\d\d_[\w.]+\.ipynb)`\s*\|\s*~?\s*([\d.]+)\s*(s|min)\s*\|", line)
        if m:
            out[m.group(1)] = float(m.group(2)) * (60 if m.group(3) == "min" else 1)
    return out


def pytest_runtest_logreport(report):
    path = report.nodeid.split("::")[0]
    if path.endswith(".ipynb"):
        _seconds[path] = _seconds.get(path, 0.0) + report.duration
        if report.failed or report.skipped:
            _failed.add(path)


def pytest_sessionfinish(session, exitstatus):
    stated = stated_runtimes(TIMES.read_text()) if TIMES.exists() else {}
    measured = {p: s for p, s in _seconds.items() if p not in _failed}
    session.config._runtime_report = (measured, stated)


def pytest_terminal_summary(terminalreporter):
    report = getattr(terminalreporter.config, "_runtime_report", None)
    if not report or not report[0]:
        return
    measured, stated = report
    terminalreporter.section("chapter runtimes under nbval")
    for p, s in sorted(measured.items()):
        claim = f"docs/instructors.md: {stated[p]:.0f} s" if p in stated else "docs/instructors.md: no time stated"
        terminalreporter.write_line(f"{p}: {s:.0f} s ({claim})")
    for p, s in sorted(measured.items()):
        if p in stated and s > 2 * stated[p]:
            terminalreporter.write_line(f"note: {p} took {s:.0f} s, more than twice the {stated[p]:.0f} s stated "
                                        f"in docs/instructors.md (a busy or slow machine?)", yellow=True)
