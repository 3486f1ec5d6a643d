"""The committed chapters as a reader of a fresh clone sees them (tools/normalize_notebooks.py)."""
import json
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import normalize_notebooks  # noqa: E402

CHAPTERS = sorted((ROOT / "book").glob("[0-9][0-9]_*.ipynb"))


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_committed_notebook_is_normalised(path):
    text = path.read_text()
    nb = json.loads(text)
    assert json.dumps(normalize_notebooks.normalize(json.loads(text)), indent=1, ensure_ascii=False) + "\n" == text, \
        f"run: python tools/normalize_notebooks.py {path.relative_to(ROOT)}"
    assert "widgets" not in nb["metadata"]


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_widgets_read_as_a_sentence_without_a_kernel(path):
    for cell in json.loads(path.read_text())["cells"]:
        for out in cell.get("outputs", []):
            plain = "".join(out.get("data", {}).get("text/plain", ""))
            assert not plain.startswith(("VBox(", "HBox(", "interactive(", "IntSlider(", "Output(")), plain[:80]
            if "interactive_figure(" in "".join(cell["source"]) or "control_panel(" in "".join(cell["source"]):
                assert "an interactive widget" in plain


def test_kernelspec_is_the_one_ipykernel_installs():
    """Otherwise JupyterLab rewrites it on opening and every chapter opens as modified."""
    from ipykernel.kernelspec import get_kernel_dict

    assert normalize_notebooks.KERNELSPEC["display_name"] == get_kernel_dict()["display_name"]
    assert normalize_notebooks.KERNELSPEC["language"] == get_kernel_dict()["language"]


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_every_widget_cell_is_followed_by_a_static_figure(path):
    cells = json.loads(path.read_text())["cells"]
    for i, cell in enumerate(cells):
        if cell["cell_type"] == "code" and "interactive_figure(" in "".join(cell["source"]):
            after = cells[i + 1]
            assert any("image/png" in o.get("data", {}) for o in after.get("outputs", [])), \
                f"cell {i} of {path.name} is a widget with no static figure after it"


@pytest.mark.parametrize("path", [p for p in CHAPTERS if not p.name.startswith("00")], ids=lambda p: p.name)
def test_every_chapter_ends_with_a_summary_things_to_try_and_three_checked_exercises(path):
    cells = json.loads(path.read_text())["cells"]
    headings = [line for c in cells if c["cell_type"] == "markdown" for line in "".join(c["source"]).splitlines()
                if line.startswith("## ")]
    for heading in ("## Summary", "## What to try", "## Exercises"):
        assert heading in headings, f"{path.name} has no '{heading}' section"
    sys.path.insert(0, str(ROOT / "book"))
    import checkers

    names = [m for c in cells if c["cell_type"] == "code"
             for m in re.findall(r'check\("(\w+)"', "".join(c["source"]))]
    assert len(names) >= 3, f"{path.name} has {len(names)} checked exercises"
    assert set(names) <= set(checkers.EXERCISES), set(names) - set(checkers.EXERCISES)
