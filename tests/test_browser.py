"""The book as a student uses it: JupyterLab in headless Chromium, driven by Playwright.

A JupyterLab server is started on 127.0.0.1 with a token, on a copy of ``book/`` (autosave must never
touch the tracked notebooks), with settings and workspaces in a temporary folder. Every chapter is
run with Run All; every widget is moved with the keyboard or the mouse and its picture must change;
chapter 5's control panel is used with clicks. Chapter 5 runs with ``MINIVBON_PRESET=tiny``.

Needs Chromium (Debian's ``chromium`` package) and the ``playwright`` package; without them the tests are
skipped with the reason. Screenshots go to ``$MINIVBON_SCREENSHOTS`` when it is set.
"""
from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

import browser_support

BOOK = Path(__file__).resolve().parents[1] / "book"
CHAPTERS = sorted(p.name for p in BOOK.glob("[0-9][0-9]_*.ipynb"))

playwright_api = browser_support.playwright()
expect = playwright_api.expect
expect.set_options(timeout=30_000)

# JavaScript run in the page. window.jupyterapp exists because the server runs with expose_app_in_browser.
NOTEBOOK = "window.jupyterapp.shell.currentWidget"
STATE = f"""() => {{
  const nb = {NOTEBOOK};
  const cells = nb.content.model.cells;
  let pending = 0; const problems = [];
  for (let i = 0; i < cells.length; i++) {{
    const c = cells.get(i);
    if (c.type !== 'code') continue;
    if (c.executionCount === null || c.executionState === 'running') pending++;
    for (const o of c.outputs.toJSON()) {{
      if (o.output_type === 'error') problems.push(`cell ${{i}}: ${{o.ename}}: ${{o.evalue}}`);
      if (o.output_type === 'stream' && o.name === 'stderr') problems.push(`cell ${{i}} stderr: ${{o.text}}`);
    }}
  }}
  const kernel = nb.sessionContext.session && nb.sessionContext.session.kernel;
  return {{pending, problems, status: kernel ? kernel.status : 'none', dirty: nb.context.model.dirty}};
}}"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A JupyterLab server on a copy of the book; yields its base URL with the token."""
    tmp = tmp_path_factory.mktemp("lab")
    root = tmp / "book"
    shutil.copytree(BOOK, root, ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
    shutil.copytree(BOOK.parent / "experiments", tmp / "experiments",  # chapters 5-7 read results and configs
                    ignore=shutil.ignore_patterns("__pycache__"))
    port, token = free_port(), secrets.token_hex(16)
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}  # the kernel must use the inline backend
    env.update(MINIVBON_PRESET="tiny", HF_HUB_OFFLINE="1", JUPYTERLAB_SETTINGS_DIR=str(tmp / "settings"),
               JUPYTERLAB_WORKSPACES_DIR=str(tmp / "workspaces"), JUPYTER_RUNTIME_DIR=str(tmp / "runtime"))
    news = tmp / "settings" / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    news.parent.mkdir(parents=True)
    news.write_text('{"fetchNews": "false"}')  # no "get notified about Jupyter news?" pop-up over the cells
    log = open(tmp / "jupyterlab.log", "w")
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
           f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}", "--LabApp.expose_app_in_browser=True"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=root)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):  # up to a minute for the server to answer
        try:
            urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=1)
            break
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"JupyterLab exited: {(tmp / 'jupyterlab.log').read_text()[-2000:]}")
            time.sleep(0.1)
    yield {"url": url, "token": token, "root": root}
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as pw:
        b = browser_support.launch(pw)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    p = context.new_page()
    p.set_default_timeout(60_000)
    yield p
    context.close()


def shot(page, name: str) -> None:
    folder = os.environ.get("MINIVBON_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"))


def open_notebook(page, lab, name: str) -> None:
    page.goto(f"{lab['url']}/lab/tree/{name}?token={lab['token']}&reset")
    page.wait_for_function(f"() => window.jupyterapp && {NOTEBOOK} && {NOTEBOOK}.context && {NOTEBOOK}.context.isReady"
                           f" && {NOTEBOOK}.sessionContext.session && {NOTEBOOK}.sessionContext.session.kernel"
                           f" && {NOTEBOOK}.sessionContext.session.kernel.status === 'idle'", timeout=120_000)


def run_all(page, limit_s: float = 300) -> dict:
    """Clear the outputs, Run All, wait until every code cell has run or one failed; return the state."""
    page.evaluate("() => window.jupyterapp.commands.execute('notebook:clear-all-cell-outputs')")
    page.evaluate("() => { void window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:  # a hang guard, not a timing assertion
        state = page.evaluate(STATE)
        if state["problems"] or (state["pending"] == 0 and state["status"] == "idle"):
            return state
        time.sleep(0.5)
    raise AssertionError(f"Run All did not finish within {limit_s} s: {page.evaluate(STATE)}")


def widget_cell(page, text: str):
    """The notebook cell whose source contains ``text``."""
    cell = page.locator(".jp-Notebook .jp-CodeCell", has=page.locator(".jp-InputArea", has_text=text)).first
    cell.scroll_into_view_if_needed()
    return cell


def image_of(cell) -> str:
    imgs = cell.locator(".jp-OutputArea img")
    return imgs.first.get_attribute("src") if imgs.count() else ""


def wait_until(condition, limit_s: float = 120, what: str = "condition"):
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:  # a hang guard, not a timing assertion
        value = condition()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_fresh_clone_reads_cleanly(page, lab):
    """Before anything runs: the notebook opens unmodified, and widgets show a sentence, not VBox(...) text."""
    open_notebook(page, lab, "01_best_of_n.ipynb")
    page.wait_for_timeout(1500)  # give JupyterLab the moment in which it would rewrite the metadata
    assert page.evaluate(STATE)["dirty"] is False, "the notebook is marked modified as soon as it opens"
    text = page.locator(".jp-Notebook").text_content()  # inner_text skips cells off screen
    assert "VBox(" not in text and "IntSlider(" not in text
    assert "an interactive widget." in text and "Run the notebook in JupyterLab to use it" in text
    shot(page, "01-fresh-clone")


def move_slider_and_check(page, cell, key: str, name: str) -> None:
    before = wait_until(lambda: image_of(cell), what="the widget's first picture")
    handle = cell.locator(".noUi-handle").first
    handle.focus()
    page.keyboard.press(key)
    after = wait_until(lambda: (image_of(cell) not in ("", before)) and image_of(cell), what=f"{name} to redraw")
    assert after != before
    assert cell.locator("[data-mime-type='application/vnd.jupyter.stderr']").count() == 0, f"{name} printed an error"


def drag_slider_and_check(page, cell, dx: float, name: str) -> None:
    before = wait_until(lambda: image_of(cell), what="the widget's picture")
    box = cell.locator(".noUi-handle").first.bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + dx, y, steps=8)
    page.mouse.up()
    wait_until(lambda: image_of(cell) not in ("", before), what=f"{name} to redraw after a drag")
    assert cell.locator("[data-mime-type='application/vnd.jupyter.stderr']").count() == 0, f"{name} printed an error"


@pytest.mark.parametrize("chapter", [c for c in CHAPTERS if not c.startswith("05")])
def test_chapter_runs_and_its_widgets_respond(page, lab, chapter):
    if chapter.startswith("07"):
        pytest.importorskip("trl")  # chapter 7 needs the optional extra (CI installs it)
    open_notebook(page, lab, chapter)
    state = run_all(page)
    shot(page, f"{chapter[:2]}-after-run-all")
    assert state["problems"] == [], f"{chapter}: {state['problems']}"
    sliders = page.locator(".jp-Notebook .jp-CodeCell:has(.noUi-handle)")
    for i in range(sliders.count()):
        cell = sliders.nth(i)
        cell.scroll_into_view_if_needed()
        name = f"{chapter} slider {i}"
        move_slider_and_check(page, cell, "ArrowRight", name)
        move_slider_and_check(page, cell, "End", name + " (to its maximum)")  # chapter 3: N = 64 must not fail
        drag_slider_and_check(page, cell, -120, name)
        shot(page, f"{chapter[:2]}-widget-{i}")


def test_chapter_5_and_its_control_panel(page, lab):
    open_notebook(page, lab, "05_gpt2_sentiment.ipynb")
    state = run_all(page)
    assert state["problems"] == [], state["problems"]
    panel = widget_cell(page, "control_panel(task")
    train = panel.get_by_role("button", name="Train")
    stop = panel.get_by_role("button", name="Stop")
    status = panel.locator(".widget-html").filter(has_text="ready").first
    expect(status).to_be_visible()
    expect(stop).to_be_disabled()

    # a short run: a double-click starts exactly one run, the controls lock, the live plot appears and changes
    steps = panel.locator(".widget-text input").first
    steps.fill("12")
    steps.press("Enter")
    train.dblclick()
    expect(train).to_be_disabled()  # the kernel answers the click by locking the controls
    expect(stop).to_be_enabled()
    expect(panel.locator(".widget-dropdown select")).to_be_disabled()
    expect(panel.locator(".widget-text input").first).to_be_disabled()
    expect(panel.locator(".widget-slider .noUi-target[disabled]")).to_have_count(2)  # N and beta
    pictures = set()

    def picture_or_done():
        src = image_of(panel)
        if src:
            pictures.add(src)
        return "done:" in panel.inner_text()

    wait_until(picture_or_done, limit_s=240, what="the panel's run to finish")
    shot(page, "05-panel-after-run")
    text = panel.inner_text()
    assert "(run 1)" in text and "(run 2)" not in text, "a double-click started two runs"
    assert len(pictures) >= 3, f"the live plot did not change while training ({len(pictures)} distinct pictures)"
    assert "win rate" in text and "BoN(4)" in text and "KL" in text
    expect(train).to_be_enabled()
    expect(stop).to_be_disabled()

    # a long run stopped early: Stop ends it, keeps the history, re-enables Train
    steps.fill("500")
    steps.press("Enter")
    train.click()
    wait_until(lambda: "training:" in panel.inner_text(), what="the second run to start")
    page.wait_for_timeout(1500)
    stop.click()
    wait_until(lambda: "stopped:" in panel.inner_text(), limit_s=240, what="Stop to end the run")
    assert "(run 2)" in panel.inner_text()
    expect(train).to_be_enabled()
    assert panel.locator("[data-mime-type='application/vnd.jupyter.stderr']").count() == 0

    # a small window with the file browser open: the sliders keep a usable width
    page.set_viewport_size({"width": 1024, "height": 768})
    page.evaluate("() => window.jupyterapp.commands.execute('filebrowser:activate')")
    page.wait_for_timeout(500)
    panel.scroll_into_view_if_needed()
    track = panel.locator(".widget-slider .noUi-target").first.bounding_box()
    shot(page, "05-panel-1024x768")
    assert track["width"] >= 120, f"the N slider is {track['width']:.0f} px wide at 1024x768"
