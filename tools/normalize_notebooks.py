"""Normalise the committed notebooks: what a reader of a fresh clone sees, and no noise in diffs.

- kernelspec: the name and display name of the kernel ipykernel installs, so JupyterLab does not
  mark a notebook as modified the moment it opens;
- widget outputs keep only their plain-text form (the sentence ``notebook_widgets.Interactive``
  writes): a saved widget view points at a kernel-side model that no longer exists;
- progress bars are dropped: a tqdm bar's saved text is its first state ("0%| 0/30"), since the kernel
  moves the bar through the widget, so a reader would see a run that never started;
- no saved widget state, no per-cell execution timestamps.

Run after executing the chapters: ``python tools/normalize_notebooks.py book/*.ipynb``.
``tests/test_notebooks.py`` checks that the committed notebooks are normalised.
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
PROGRESS_BAR = re.compile(r"\d+%\|.*\|\s*\d+/\d+ \[")  # tqdm's "desc:  40%|####  | 12/30 [00:03<..."


def is_progress_bar(out: dict) -> bool:
    data = out.get("data", {})
    return out.get("output_type") == "display_data" and set(data) <= {"text/plain", WIDGET_VIEW} \
        and bool(PROGRESS_BAR.search("".join(data.get("text/plain", ""))))


def normalize(nb: dict) -> dict:
    nb["metadata"]["kernelspec"] = dict(KERNELSPEC)
    nb["metadata"].pop("widgets", None)
    for cell in nb["cells"]:
        cell.get("metadata", {}).pop("execution", None)
        if "outputs" in cell:
            cell["outputs"] = [out for out in cell["outputs"] if not is_progress_bar(out)]
        for out in cell.get("outputs", []):
            out.get("data", {}).pop(WIDGET_VIEW, None)
    return nb


def main(paths: list[str]) -> None:
    for path in map(Path, paths):
        text = path.read_text()
        new = json.dumps(normalize(json.loads(text)), indent=1, ensure_ascii=False) + "\n"
        if new != text:
            tmp = path.with_suffix(".ipynb.tmp")
            tmp.write_text(new)
            tmp.replace(path)  # atomic: a reader never sees half a notebook
            print(f"normalised {path}")


if __name__ == "__main__":
    main(sys.argv[1:] or sorted(map(str, Path(__file__).resolve().parents[1].glob("book/*.ipynb"))))
