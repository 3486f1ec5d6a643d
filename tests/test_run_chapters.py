"""tools/run_chapters.py, which CI runs in a student's environment: it must fail where a student's Run All
would, and recognise a chapter that stops at once to say what to install."""
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _chapter(tmp_path, *cells: str) -> Path:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    path = tmp_path / "99_chapter.ipynb"
    nbformat.write(nb, path)
    return path


def _run(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "tools" / "run_chapters.py"), *map(str, args)],
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def chapters(tmp_path_factory):
    return {
        "runs": _chapter(tmp_path_factory.mktemp("runs"), "x = 1", "print(x + 1)"),
        "fails_late": _chapter(tmp_path_factory.mktemp("fails"), "x = 1", "1 / 0"),
        "explains": _chapter(tmp_path_factory.mktemp("explains"),
                             "raise ModuleNotFoundError('run: pip install -e \".[trl]\"')", "x = 1"),
    }


def test_a_chapter_that_runs_passes_and_one_that_fails_names_its_cell(chapters):
    ok = _run(chapters["runs"])
    assert ok.returncode == 0 and "ran top to bottom" in ok.stdout
    bad = _run(chapters["fails_late"])
    assert bad.returncode == 1 and "FAILED in code cell 1" in bad.stdout and "ZeroDivisionError" in bad.stdout


def test_stops_with_needs_a_stop_in_the_first_cell_with_the_message(chapters):
    ok = _run("--stops-with", 'pip install -e ".[trl]"', chapters["explains"])
    assert ok.returncode == 0, ok.stdout
    assert _run("--stops-with", "something else", chapters["explains"]).returncode == 1
    ran = _run("--stops-with", 'pip install -e ".[trl]"', chapters["runs"])
    assert ran.returncode == 1 and "ran to the end" in ran.stdout


def test_arguments_are_checked_before_any_kernel_starts(tmp_path):
    out = _run(tmp_path / "missing.ipynb")
    assert out.returncode == 2 and "not a notebook" in out.stderr
