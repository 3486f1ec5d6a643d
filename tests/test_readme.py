"""The README as a reader meets it: its example runs and prints what it shows, its chapter table covers the
book, its links and commands lead somewhere, and CI runs the test command it gives."""
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
CHAPTERS = sorted(p.name for p in (ROOT / "book").glob("[0-9][0-9]_*.ipynb"))
_spec = importlib.util.spec_from_file_location("root_conftest", ROOT / "conftest.py")  # tiers, stated runtimes
root_conftest = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(root_conftest)

KL_LINE = re.compile(r"KL\(q \|\| pi_bon\): ([\d.]+) -> ([\d.]+)")


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README, re.S)


def test_the_example_trains_vbon_and_prints_the_line_it_shows(tmp_path):
    (block,) = _python_blocks()
    out = subprocess.run([sys.executable, "-c", block], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    printed = KL_LINE.search(out.stdout)
    assert printed, f"the example printed no 'KL(q || pi_bon): a -> b' line: {out.stdout!r}"
    before, after = map(float, printed.groups())
    assert after < 0.25 * before, f"the KL to BoN fell from {before} to {after} only"
    shown = KL_LINE.search(block.splitlines()[-1])
    assert shown and shown.group(0) == printed.group(0), \
        f"the README shows {shown and shown.group(0)!r} but the example prints {printed.group(0)!r}"


def test_the_chapter_table_has_one_short_row_per_chapter():
    rows = [line for line in README.splitlines() if re.match(r"\|\s*\[\d\d ", line)]
    linked = [re.search(r"\]\(book/([^)]+)\)", row).group(1) for row in rows]
    assert linked == CHAPTERS, f"the README's chapter table links {linked}, the book has {CHAPTERS}"
    for row in rows:
        assert len(row) <= 160, f"a chapter row of {len(row)} characters (the details belong in the chapter): {row}"


def test_every_local_link_resolves():
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", README):
        if not target.startswith(("http:", "https:")):
            assert (ROOT / target).exists(), f"the README links {target}, which does not exist"


def test_every_docs_page_is_in_the_web_edition():
    index = (ROOT / "docs" / "index.md").read_text()
    toctree = {line.strip() for block in re.findall(r"```\{toctree\}(.*?)```", index, re.S)
               for line in block.splitlines() if line.strip() and not line.startswith(":")}
    for page in sorted((ROOT / "docs").glob("*.md")):
        if page.stem != "index":
            assert page.stem in toctree, f"docs/{page.name} is not in docs/index.md's toctree"


def test_the_library_page_lists_every_module():
    listed = set(re.findall(r"^\| `(\w+)\.py` \|", (ROOT / "docs" / "library.md").read_text(), re.M))
    modules = {p.stem for p in (ROOT / "minivbon").glob("*.py") if p.stem != "__init__"}
    assert listed == modules, f"not in docs/library.md: {modules - listed}; no such module: {listed - modules}"


def test_every_chapter_has_a_stated_runtime():
    stated = root_conftest.stated_runtimes(root_conftest.TIMES.read_text())
    assert sorted(Path(p).name for p in stated) == CHAPTERS
    assert all(0 < s < 3600 for s in stated.values()), stated


def test_ci_runs_the_readmes_commands():
    """.ci/run reads the first command and the full-tier test command from the README: each must be there,
    exactly once, in the form it looks for."""
    ci = (ROOT / ".ci" / "run").read_text()
    assert README.splitlines().count("python -m pip install -e . && jupyter lab book/") == 1
    pattern = re.search(r"full=\$\(grep -m1 -E '([^']+)' README\.md\)", ci)
    assert pattern, ".ci/run no longer reads the full-tier command from the README"
    full = [line for line in README.splitlines() if re.search(pattern.group(1), line)]
    assert len(full) == 1 and full[0].endswith("&& pytest --full"), full
    assert "--full" in ci and 'eval "${full##* && }"' in ci
    extras = re.search(r'-e "\.\[([a-z,]+)\]"', full[0]).group(1).split(",")
    assert {"test", "docs", "trl"} <= set(extras), "the full tier needs the test, docs and trl extras"


def test_the_readme_test_command_is_the_fast_tier():
    lines = README.splitlines()
    assert 'python -m pip install -e ".[test,trl]" && pytest' in lines


@pytest.mark.parametrize("path", sorted(root_conftest.FULL_FILES) + sorted(t.split("::")[0] for t in
                                                                           root_conftest.FULL_TESTS))
def test_the_full_tier_names_files_that_exist(path):
    assert (ROOT / path).exists(), f"conftest.py puts {path} in the full tier, but there is no such file"


def test_the_full_tier_names_tests_that_exist():
    for node in root_conftest.FULL_TESTS:
        path, name = node.split("[")[0].split("::")
        assert re.search(rf"^def {name}\(", (ROOT / path).read_text(), re.M), f"no test {node}"
