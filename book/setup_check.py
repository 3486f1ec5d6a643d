"""The book's set-up check (a book helper: chapter 0 calls ``check_setup()``).

It reads the import statements of every chapter's code cells, tries each import in this kernel, and
says, chapter by chapter, what is missing and the one command that installs it. Nothing is listed by
hand, so a chapter that starts importing something new is covered the day it does.

``require_extra("trl")`` is the first line of a chapter that needs an optional extra: when the extra is
missing it stops the chapter with a short sentence saying what to install, not a traceback.
"""
from __future__ import annotations

import ast
import importlib
import json
import sys
from pathlib import Path

BOOK = Path(__file__).resolve().parent
INSTALL = 'python -m pip install -e .'  # the README's first command, run in the repository's root folder
# modules that only an optional extra of pyproject.toml installs: module -> extra
EXTRAS = {"trl": "trl", "accelerate": "trl"}


def install_command(module: str) -> str:
    """The pip command (run in the repository's root folder) that installs ``module``."""
    extra = EXTRAS.get(module)
    return f'python -m pip install -e ".[{extra}]"' if extra else INSTALL


def imported_modules(source: str) -> list[str]:
    """The modules a cell imports, in order: ``import a.b`` gives ``a.b``; ``from a import b`` gives ``a``
    and ``a.b`` (which may be a submodule or just a name; ``missing_module`` tells them apart).

    IPython lines (``%magic``, ``!shell``) are skipped; relative imports are ignored.
    """
    code = "\n".join(line for line in source.splitlines() if not line.lstrip().startswith(("%", "!")))
    names = []
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names += [node.module] + [f"{node.module}.{alias.name}" for alias in node.names if alias.name != "*"]
    return list(dict.fromkeys(names))


def chapter_imports(path: Path) -> list[str]:
    """Every module a chapter's code cells import, in order of first use."""
    cells = json.loads(Path(path).read_text())["cells"]
    names = [m for c in cells if c["cell_type"] == "code" for m in imported_modules("".join(c["source"]))]
    return list(dict.fromkeys(names))


def missing_module(name: str) -> str | None:
    """None when ``import name`` works here (or ``name`` is a plain attribute, as in ``from a import b``),
    else the top-level name of the module that failed to import: ``name``'s own package or a dependency."""
    if str(BOOK) not in sys.path:
        sys.path.insert(0, str(BOOK))  # the book's helpers (checkers, panel, ...) sit next to the chapters
    try:
        importlib.import_module(name)
    except ImportError as error:
        failed = getattr(error, "name", None) or name
        if failed == name and "." in name and missing_module(name.rsplit(".", 1)[0]) is None:
            return None  # ``from a import b`` with b a function or class of a, not a module
        return failed.split(".")[0]
    return None


def check_setup(book: Path = BOOK) -> dict[str, list[str]]:
    """Print, per chapter, whether everything it imports can be imported; return {chapter: missing modules}."""
    report = {}
    for path in sorted(Path(book).glob("[0-9][0-9]_*.ipynb")):
        missing = [m for m in dict.fromkeys(missing_module(n) for n in chapter_imports(path)) if m]
        report[path.stem] = missing
        if not missing:
            print(f"{path.stem}: ready")
            continue
        commands = sorted({install_command(m) for m in missing})
        print(f"{path.stem}: missing {', '.join(missing)}; install with {' and '.join(commands)}")
    if any(report.values()):
        print("Run the command(s) above in a terminal, in the repository's root folder, "
              "then restart the kernel (Kernel > Restart Kernel) and run this cell again.")
    else:
        print("Every chapter has what it imports.")
    return report


class MissingExtra(ModuleNotFoundError):
    """A chapter's optional extra is not installed; Jupyter shows only the message, not a traceback."""

    def _render_traceback_(self) -> list[str]:  # IPython's hook for how an exception is displayed
        return [str(self)]


def require_extra(module: str) -> None:
    """Stop the chapter with a plain sentence if ``module`` (from an optional extra) cannot be imported."""
    missing = missing_module(module)
    if missing:
        raise MissingExtra(f"This chapter needs '{missing}', which is not installed. In a terminal, in the "
                           f"repository's root folder, run\n    {install_command(missing)}\nthen restart the "
                           "kernel (Kernel > Restart Kernel) and run the chapter again.")
