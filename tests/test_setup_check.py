"""book/setup_check.py: chapter 0's set-up check, and what the README's first command must install.

The set-up check is run in a fresh interpreter in which chosen modules cannot be imported, as in an
environment that lacks them; and every module a chapter imports is checked against pyproject.toml, so that
``python -m pip install -e .`` (no extras) installs what chapters 0-6 need.
"""
import json
import re
import subprocess
import sys
import textwrap
from importlib.metadata import PackageNotFoundError, packages_distributions, requires
from pathlib import Path

import pytest

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
sys.path.insert(0, str(BOOK))
import setup_check  # noqa: E402

CHAPTERS = sorted(BOOK.glob("[0-9][0-9]_*.ipynb"))
HELPERS = ["checkers", "notebook_widgets", "panel", "setup_check"]  # the book's own modules
CORE_CHAPTERS = [p for p in CHAPTERS if not p.name.startswith("07")]  # chapter 7 needs the trl extra


def _run_check_with_missing(*blocked: str) -> tuple[dict, str]:
    """check_setup() in a new interpreter where importing any of ``blocked`` fails, as if not installed."""
    script = textwrap.dedent(f"""
        import importlib.abc, json, sys
        BLOCKED = {list(blocked)!r}
        class Missing(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in BLOCKED:
                    raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        sys.meta_path.insert(0, Missing())
        sys.path.insert(0, {str(BOOK)!r})
        import setup_check
        report = setup_check.check_setup()
        print("REPORT", json.dumps(report))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=BOOK)
    assert out.returncode == 0, out.stderr
    printed, _, report = out.stdout.rpartition("REPORT ")
    return json.loads(report), printed


def test_imported_modules_reads_import_lines_and_skips_ipython_lines():
    cell = "import a.b as ab\nfrom c.d import e, f\n%matplotlib inline\n!pip list\nfrom . import g\nimport h"
    assert setup_check.imported_modules(cell) == ["a.b", "c.d", "c.d.e", "c.d.f", "h"]


def test_chapter_imports_come_from_the_notebooks():
    assert "trl" in setup_check.chapter_imports(BOOK / "07_vbon_with_trl.ipynb")
    assert "checkers" in setup_check.chapter_imports(BOOK / "01_best_of_n.ipynb")
    assert "datasets" in setup_check.chapter_imports(BOOK / "05_gpt2_sentiment.ipynb")


def test_everything_imports_here():
    assert setup_check.check_setup() == {p.stem: [] for p in CHAPTERS}


def test_a_missing_dependency_of_a_book_helper_is_named_with_the_first_command():
    """hypothesis is imported by book/checkers.py, not by the chapters themselves: it must still be found."""
    report, printed = _run_check_with_missing("hypothesis")
    assert all(report[p.stem] == ["hypothesis"] for p in CHAPTERS)  # every chapter imports the checker
    assert "missing hypothesis; install with python -m pip install -e .\n" in printed
    assert "restart the kernel" in printed


def test_a_missing_extra_is_named_with_its_extra_for_chapter_7_only():
    report, printed = _run_check_with_missing("trl")
    assert report["07_vbon_with_trl"] == ["trl"]
    assert all(report[p.stem] == [] for p in CORE_CHAPTERS)
    assert 'install with python -m pip install -e ".[trl]"' in printed


def test_require_extra_stops_with_a_sentence_not_a_traceback(monkeypatch):
    monkeypatch.setattr(setup_check, "missing_module", lambda name: name)
    with pytest.raises(setup_check.MissingExtra) as error:
        setup_check.require_extra("trl")
    assert 'python -m pip install -e ".[trl]"' in str(error.value)
    assert error.value._render_traceback_() == [str(error.value)]  # what IPython shows instead of a traceback
    monkeypatch.setattr(setup_check, "missing_module", lambda name: None)
    setup_check.require_extra("trl")  # installed: nothing happens


def _third_party(modules) -> set[str]:
    names = {m.split(".")[0] for m in modules} - set(HELPERS) - set(sys.stdlib_module_names) - {"minivbon"}
    return names


def _requirement_names(reqs) -> set[str]:
    return {re.split(r"[<>=!~;\[ (]", r, maxsplit=1)[0].strip().lower().replace("_", "-") for r in reqs or []
            if "extra ==" not in r}


def test_the_first_command_installs_every_module_chapters_0_to_6_import():
    """Each third-party module of chapters 0-6 and the book's helpers belongs to a core dependency of
    pyproject.toml, or to a package a core dependency requires (IPython comes with ipywidgets)."""
    modules = [m for p in CORE_CHAPTERS for m in setup_check.chapter_imports(p)]
    for helper in HELPERS:
        modules += setup_check.imported_modules((BOOK / f"{helper}.py").read_text())
    core = _requirement_names(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"])
    reachable = set(core)
    for name in core:
        try:
            reachable |= _requirement_names(requires(name))
        except PackageNotFoundError:
            pass
    dists = packages_distributions()
    for module in _third_party(modules):
        owners = {d.lower().replace("_", "-") for d in dists.get(module, [module])}
        assert owners & reachable, f"the chapters import {module} (from {owners}), which `pip install -e .` " \
                                   f"does not install: add it to pyproject's dependencies"


def test_chapter_7_says_what_to_install_in_its_first_cell():
    first = next(c for c in json.loads((BOOK / "07_vbon_with_trl.ipynb").read_text())["cells"]
                 if c["cell_type"] == "code")
    source = "".join(first["source"])
    assert source.index('require_extra("trl")') < source.index("import trl")
