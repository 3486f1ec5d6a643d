"""Every section of every chapter can be re-run on its own, in any order, without changing what the
chapter's checked cells print: each chapter runs once top to bottom, then its numbered sections are
re-run one at a time from the last to the first, and then every `# NBVAL_CHECK_OUTPUT` cell runs
again and must print what it printed the first time.

A section is the cells from one "## k." heading to the next heading. Chapter 5 runs with its `tiny`
preset here (nbval runs it in full); the exercises are left out (they print "not answered yet").
"""
import re
import shutil
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted(p.name for p in (ROOT / "book").glob("[0-9][0-9]_*.ipynb"))
CHECK = "# NBVAL_CHECK_OUTPUT"


def sections(nb) -> list[list[int]]:
    """Code-cell indices of each numbered section ("## 1. ...", "## 2. ...")."""
    out, current = [], None
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "markdown" and cell.source.startswith("## "):
            current = [] if re.match(r"## \d+\.", cell.source) else None
            if current is not None:
                out.append(current)
        elif cell.cell_type == "code" and current is not None:
            current.append(i)
    return [s for s in out if s]


def printed(cell) -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")


@pytest.fixture(scope="module")
def book_copy(tmp_path_factory):
    root = tmp_path_factory.mktemp("rerun")
    shutil.copytree(ROOT / "book", root / "book", ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
    shutil.copytree(ROOT / "experiments", root / "experiments", ignore=shutil.ignore_patterns("__pycache__"))
    return root / "book"


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_sections_rerun_alone_keep_the_checked_outputs(chapter, book_copy, monkeypatch):
    if chapter.startswith("07"):
        pytest.importorskip("trl")  # chapter 7 needs the optional extra (CI installs it)
    monkeypatch.setenv("MINIVBON_PRESET", "tiny")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(book_copy / chapter, as_version=4)
    client = NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(book_copy)}})
    checked = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and c.source.startswith(CHECK)]
    assert checked, f"{chapter} has no checked cell"
    with client.setup_kernel():
        for i, cell in enumerate(nb.cells):
            if cell.cell_type == "code":
                client.execute_cell(cell, i)
        first = {i: printed(nb.cells[i]) for i in checked}
        parts = sections(nb)
        assert len(parts) >= 2, f"{chapter}: fewer than two numbered sections"
        for part in reversed(parts):
            for i in part:
                client.execute_cell(nb.cells[i], i)
        for i in checked:
            client.execute_cell(nb.cells[i], i)
            assert printed(nb.cells[i]) == first[i], (
                f"{chapter}, cell {i}: re-running the sections changed its checked output\n"
                f"first run:\n{first[i]}\nafter re-running every section alone:\n{printed(nb.cells[i])}")
