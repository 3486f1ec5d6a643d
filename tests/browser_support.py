"""What the browser tests share: finding Chromium and Playwright, and launching the browser.

Without them the tests skip with the reason, so a reader's plain ``pytest`` still works. CI sets
``MINIVBON_REQUIRE_BROWSER=1``, which turns that skip into a failure: there they must run.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("MINIVBON_CHROMIUM", "/usr/bin/chromium")
# as root in a container Chromium needs --no-sandbox; the rest keep it from calling out to a closed network
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]


def unavailable(reason: str) -> None:
    if os.environ.get("MINIVBON_REQUIRE_BROWSER"):
        raise RuntimeError(f"MINIVBON_REQUIRE_BROWSER is set but {reason}")
    pytest.skip(reason, allow_module_level=True)


def playwright(needs_npm: bool = False):
    """The ``playwright.sync_api`` module, after checking that Chromium (and npm if asked) exist."""
    try:
        import playwright.sync_api as api
    except ImportError:
        unavailable('playwright is not installed (pip install -e ".[test]")')
    if not Path(CHROMIUM).exists():
        unavailable(f"Chromium was not found at {CHROMIUM} (apt-get install chromium, or set MINIVBON_CHROMIUM)")
    if needs_npm and shutil.which("npm") is None:
        unavailable("npm is needed to fetch the web edition's local MathJax copy (apt-get install npm)")
    return api


def launch(pw):
    return pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
