"""Run chapters top to bottom, as a student's *Run All* does, in the environment that runs this script.

    python tools/run_chapters.py book/0[0-6]_*.ipynb
    python tools/run_chapters.py --stops-with 'pip install -e ".[trl]"' book/07_vbon_with_trl.ipynb

Each chapter runs in a new kernel of this Python, with the book folder as its working directory; nothing
is written back. Without ``--stops-with`` every cell must run without an error. With it, the chapter must
stop in its first code cell with an error message that contains the given text (a chapter that needs a
missing extra says what to install). ``.ci/run`` uses both in an environment made with only the README's
first command. Exit status 1 names the chapter, the cell and the error.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import nbformat
from jupyter_client.kernelspec import KernelSpecManager
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError


def this_python_kernel() -> str:
    """The name of the kernel that runs this very interpreter (a stray user kernel would test another)."""
    spec = KernelSpecManager().get_kernel_spec("python3")
    exe = shutil.which(spec.argv[0]) or spec.argv[0]
    if Path(exe).absolute().parent != Path(sys.executable).absolute().parent:  # same bin/ folder: same environment
        raise SystemExit(f"the 'python3' kernel runs {exe}, not this Python ({sys.executable})")
    return "python3"


def run(path: Path, kernel: str, timeout: int) -> tuple[nbformat.NotebookNode, str | None]:
    """Execute the notebook at ``path``; return it and the error text of the failing cell (None if none)."""
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name=kernel,
                            resources={"metadata": {"path": str(path.parent)}})
    try:
        client.execute()
    except CellExecutionError as error:
        return nb, str(error)
    return nb, None


def failing_cell(nb) -> int | None:
    """Index among the code cells of the first cell with an error output."""
    code = [c for c in nb.cells if c.cell_type == "code"]
    return next((i for i, c in enumerate(code) if any(o.output_type == "error" for o in c.get("outputs", []))),
                None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("chapters", nargs="+", type=Path)
    parser.add_argument("--stops-with", metavar="TEXT", help="the chapter must stop in its first code cell "
                        "with an error containing TEXT")
    parser.add_argument("--timeout", type=int, default=1200, help="seconds one cell may run (default 1200)")
    args = parser.parse_args(argv)
    for path in args.chapters:
        if not path.is_file() or path.suffix != ".ipynb":
            parser.error(f"not a notebook: {path}")
    kernel = this_python_kernel()
    failures = 0
    for path in args.chapters:
        start = time.time()
        nb, error = run(path.resolve(), kernel, args.timeout)
        seconds = time.time() - start
        if args.stops_with is None:
            ok = error is None
            verdict = "ran top to bottom" if ok else f"FAILED in code cell {failing_cell(nb)}:\n{error}"
        else:
            cell = failing_cell(nb)
            ok = cell == 0 and error is not None and args.stops_with in error
            where = "ran to the end" if cell is None else f"stopped in code cell {cell}:\n{error}"
            verdict = (f"stopped in its first code cell, saying {args.stops_with!r}" if ok else
                       f"FAILED: expected a stop in code cell 0 naming {args.stops_with!r}; it {where}")
        print(f"{path.name}: {verdict} ({seconds:.0f} s)", flush=True)
        failures += not ok
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
