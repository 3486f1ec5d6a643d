"""The committed chapters as a reader of a fresh clone sees them (tools/normalize_notebooks.py)."""
import base64
import json
import re
import struct
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
    ids = [cell.get("id") for cell in nb["cells"]]  # nbformat 4.5: every cell has a unique id
    assert None not in ids and len(set(ids)) == len(ids), f"{path.name}: a cell has no id, or two share one"


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


# ---- what a reader sees: figures, printed tables and maths that read well in JupyterLab and the web edition

WEB_COLUMN_PX = 736  # the web edition's content column: a wider figure is shrunk, and its lettering with it
MIN_FONT_PT = 9
PRINT_WIDTH = 100  # characters: wider printed lines wrap in JupyterLab beside the file browser


def _png_size(b64: str) -> tuple[int, int]:
    head = base64.b64decode(b64[:64])  # the IHDR chunk: width and height at bytes 16-24
    assert head[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return struct.unpack(">II", head[16:24])


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_figures_fit_the_web_edition_column(path):
    for i, cell in enumerate(json.loads(path.read_text())["cells"]):
        for out in cell.get("outputs", []):
            if "image/png" in out.get("data", {}):
                width, height = _png_size(out["data"]["image/png"])
                assert width <= WEB_COLUMN_PX, f"cell {i}: a {width} px wide figure is shrunk to " \
                                               f"{WEB_COLUMN_PX} px in the web edition (make it narrower)"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_no_lettering_below_9_points(path):
    """Explicit font sizes in the chapters' code are at least 9 pt (matplotlib's "small" is 8.3 pt)."""
    for i, cell in enumerate(json.loads(path.read_text())["cells"]):
        if cell["cell_type"] != "code":
            continue
        source = "".join(cell["source"])
        for size in re.findall(r"\b(?:fontsize|labelsize|size)\s*[=:]\s*['\"]?([\w.-]+)", source):
            if re.fullmatch(r"[\d.]+", size):
                assert float(size) >= MIN_FONT_PT, f"cell {i}: font size {size} pt"
            else:
                assert size not in ("small", "x-small", "xx-small", "smaller"), f"cell {i}: font size {size!r}"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_printed_lines_fit_100_characters(path):
    for i, cell in enumerate(json.loads(path.read_text())["cells"]):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream" and out.get("name") == "stdout":
                text = "".join(out["text"])
            elif out.get("output_type") in ("execute_result", "display_data") and "image/png" not in out["data"]:
                text = "".join(out["data"].get("text/plain", ""))
            else:
                continue
            for line in text.splitlines():
                assert len(line) <= PRINT_WIDTH, f"cell {i} prints a {len(line)}-character line: {line[:60]}..."


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_double_bars_in_markdown_tables_survive_the_web_edition(path):
    """MyST reads ``\\|`` in a table row as an escaped column bar, so KL(q || p) would print as KL(q | p):
    tables write the double bar as ``\\Vert``."""
    for i, cell in enumerate(json.loads(path.read_text())["cells"]):
        if cell["cell_type"] == "markdown":
            for line in "".join(cell["source"]).splitlines():
                assert not (line.lstrip().startswith("|") and "\\|" in line), f"cell {i}: {line[:80]}"


def test_normalising_drops_progress_bars_and_keeps_widget_sentences():
    bar = {"output_type": "display_data", "metadata": {},
           "data": {"text/plain": "vbon-l:   0%|          | 0/30 [00:00<?, ?it/s]", normalize_notebooks.WIDGET_VIEW: {}}}
    note = {"output_type": "display_data", "metadata": {},
            "data": {"text/plain": "[N slider: an interactive widget.]", normalize_notebooks.WIDGET_VIEW: {}}}
    printed = {"output_type": "stream", "name": "stdout", "text": "100%|####| 30/30 [00:01<00:00]\n"}
    nb = {"metadata": {}, "cells": [{"cell_type": "code", "metadata": {}, "source": "", "outputs": [bar, note, printed]}]}
    outputs = normalize_notebooks.normalize(nb)["cells"][0]["outputs"]
    assert outputs == [{"output_type": "display_data", "metadata": {}, "data": {"text/plain": note["data"]["text/plain"]}},
                       printed]
