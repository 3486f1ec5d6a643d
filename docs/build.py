"""Build the web edition of the book into ``build/web`` (open ``build/web/index.html``).

    python docs/build.py [--out DIR] [--mathjax local|cdn]

The chapters are rendered from their committed outputs; nothing is executed. ``--mathjax local``
(the default) typesets maths with a copy of MathJax 3 fetched once from the npm registry with
``npm pack`` and cached in ``~/.cache/minivbon``, so the pages work offline; ``cdn`` uses Sphinx's
default MathJax address instead and needs no npm.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MATHJAX_VERSION = "3.2.2"


def local_mathjax(cache: Path) -> Path:
    """The es5 folder of MathJax (tex-chtml.js and its fonts), fetched with npm on first use."""
    target = cache / f"mathjax-{MATHJAX_VERSION}"
    if (target / "tex-chtml.js").exists():
        return target
    if shutil.which("npm") is None:
        raise SystemExit("--mathjax local needs npm (to fetch MathJax once); install Node.js or use --mathjax cdn")
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["npm", "pack", f"mathjax@{MATHJAX_VERSION}", "--silent"], cwd=tmp, check=True,
                       stdout=subprocess.DEVNULL)
        (tarball,) = Path(tmp).glob("mathjax-*.tgz")
        with tarfile.open(tarball) as tar:
            members = [m for m in tar.getmembers() if m.name in ("package/es5/tex-chtml.js",)
                       or m.name.startswith("package/es5/output/chtml/fonts/woff-v2/")]
            tar.extractall(tmp, members=members, filter="data")
        partial = Path(tempfile.mkdtemp(dir=cache.parent if cache.parent.exists() else None))
        shutil.copytree(Path(tmp) / "package" / "es5", partial / "es5")
        cache.mkdir(parents=True, exist_ok=True)
        os.replace(partial / "es5", target)  # atomic: a half-fetched copy is never used
        shutil.rmtree(partial, ignore_errors=True)
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "web")
    parser.add_argument("--mathjax", choices=["local", "cdn"], default="local")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "src"
        shutil.copytree(ROOT / "docs", src, ignore=shutil.ignore_patterns("build.py", "__pycache__"))
        for notebook in sorted((ROOT / "book").glob("[0-9][0-9]_*.ipynb")):
            shutil.copy(notebook, src / notebook.name)
        env = dict(os.environ)
        if args.mathjax == "local":
            (src / "_static").mkdir(exist_ok=True)
            shutil.copytree(local_mathjax(Path.home() / ".cache" / "minivbon"), src / "_static" / "mathjax")
            env["MINIVBON_MATHJAX_LOCAL"] = "1"
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        cmd = [sys.executable, "-m", "sphinx", "-b", "html", "-q", "-W", "--keep-going", "-d", str(Path(tmp) / "doctrees"),
               str(src), str(args.out)]
        subprocess.run(cmd, check=True, env=env)
    print(f"web edition written to {args.out / 'index.html'}")


if __name__ == "__main__":
    main()
