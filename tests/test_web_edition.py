"""The web edition (docs/build.py): built from the committed notebooks, then read in headless Chromium.

Every chapter page loads, its maths is typeset by MathJax, its figures are there and decode, no widget
shows as raw text, and every internal link answers. Skipped, with the reason, without Sphinx/myst-nb
(``pip install -e ".[docs]"``), npm (for the local MathJax copy), Playwright or Chromium.
"""
from __future__ import annotations

import functools
import http.server
import json
import os
import subprocess
import sys
import threading
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

import browser_support

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted(p.stem for p in (ROOT / "book").glob("[0-9][0-9]_*.ipynb"))

try:
    import myst_nb  # noqa: F401
except ImportError:
    browser_support.unavailable('the web edition needs the docs extra (pip install -e ".[docs]")')
playwright_api = browser_support.playwright(needs_npm=True)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """Build the web edition and serve it on 127.0.0.1; yields the base URL."""
    out = tmp_path_factory.mktemp("web")
    subprocess.run([sys.executable, str(ROOT / "docs" / "build.py"), "--out", str(out)], check=True,
                   stdout=subprocess.DEVNULL)
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=str(out))
    class Server(http.server.ThreadingHTTPServer):
        def handle_error(self, request, client_address):  # a browser that drops a connection is not a failure
            pass

    server = Server(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture(scope="module")
def page():
    with playwright_api.sync_playwright() as pw:
        browser = browser_support.launch(pw)
        p = browser.new_page(viewport={"width": 1280, "height": 900})
        p.set_default_timeout(30_000)
        yield p
        browser.close()


def test_index_links_every_chapter_and_the_api(page, site):
    page.goto(f"{site}/index.html")
    hrefs = page.eval_on_selector_all("a", "els => els.map(a => a.getAttribute('href'))")
    for name in CHAPTERS + ["api"]:
        assert f"{name}.html" in hrefs, f"the index does not link {name}"


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_chapter_page(page, site, chapter):
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{site}/{chapter}.html")
    # maths: MathJax replaced every \( ... \) with a rendered container, and left no raw TeX delimiters
    page.wait_for_function("() => window.MathJax && MathJax.startup && MathJax.startup.promise", timeout=30_000)
    page.evaluate("() => MathJax.startup.promise")
    assert page.locator("mjx-container").count() >= 5, "maths is not typeset"
    body = page.locator("article").inner_text()
    assert "\\(" not in body and "$$" not in body, "raw TeX is left on the page"
    # figures: every image decoded
    sizes = page.eval_on_selector_all("article img", "imgs => imgs.map(i => i.complete ? i.naturalWidth : 0)")
    figures_expected = 0 if chapter.startswith("00") else 1  # chapter 0 (set-up and notation) has no figure
    assert len(sizes) >= figures_expected and all(w > 0 for w in sizes), f"figures missing or broken: {sizes}"
    # widgets: a sentence, never the raw VBox(...) text (in the outputs; the code cells do build sliders)
    outputs = "\n".join(page.locator(".cell_output").all_inner_texts())
    assert "VBox(" not in outputs and "IntSlider(" not in outputs and "Output()" not in outputs
    if "interactive_figure(" in body:
        assert "an interactive widget" in outputs
    assert not errors, errors
    # internal links answer
    here = f"{site}/{chapter}.html"
    hrefs = page.eval_on_selector_all("a[href]", "els => els.map(a => a.getAttribute('href'))")
    for href in {h.split("#")[0] for h in hrefs if not h.startswith(("http:", "https:", "mailto:", "#"))}:
        if href:
            url = urllib.parse.urljoin(here, href)
            assert urllib.request.urlopen(url, timeout=10).status == 200, url


def _double_bars(tex: str) -> int:
    return tex.count("\\|") + tex.count("Vert")  # \| and \Vert (\lVert, \rVert)


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_figures_and_double_bars_read_as_written(page, site, chapter):
    """Figures are shown at their own size (a shrunk figure shrinks its lettering), and every double bar of
    the chapter's maths reaches MathJax as a double bar (in a MyST table, \\| would become a single |)."""
    page.goto(f"{site}/{chapter}.html")
    page.wait_for_function("() => window.MathJax && MathJax.startup && MathJax.startup.promise", timeout=30_000)
    page.evaluate("() => MathJax.startup.promise")
    shown = page.eval_on_selector_all("article img", "imgs => imgs.map(i => [i.naturalWidth, "
                                      "i.getBoundingClientRect().width])")
    for natural, width in shown:
        assert width >= 0.97 * natural, f"a {natural} px figure is shown {width:.0f} px wide"
    tex = page.evaluate("() => MathJax.startup.document.getMathItemsWithin(document.querySelector('article')).map(m => m.math)")
    cells = json.loads((ROOT / "book" / f"{chapter}.ipynb").read_text())["cells"]
    written = sum(_double_bars("".join(c["source"])) for c in cells if c["cell_type"] == "markdown")
    assert sum(map(_double_bars, tex)) == written, "a double bar of the chapter's maths lost a bar"


def test_api_page_has_the_docstrings(page, site):
    page.goto(f"{site}/api.html")
    text = page.locator("article").inner_text()
    for name in ["bon_probs", "EmpiricalCDF", "TrainConfig", "load_task", "make_world"]:
        assert name in text, f"{name} is missing from the API page"
