"""The API reference fits its column in a real headless Chromium at a 1,280 px wide window.

The site is built once for the whole test run (``mkdocs build --strict``,
offline; the first xdist worker to need it builds it for the others) and served
on loopback. Skips when Playwright, the documentation packages or
``/usr/bin/chromium`` are missing, unless ``CREDRECOVERY_REQUIRE_SERVICES=1``.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from helpers import ROOT
from helpers import browser as chromium
from helpers.once import shared_tree

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = pytest.mark.slow

VIEWPORT = {"width": 1280, "height": 800}
REQUIRED = os.environ.get("CREDRECOVERY_REQUIRE_SERVICES") == "1"

# What in the main column scrolls sideways inside itself or reaches past the
# column's right edge, one line each. (Material's table wrapper reaches 0.8rem
# past the column on purpose, padding its table back in: only its scrolling counts.)
OVERFLOWING = """() => {
    const column = document.querySelector('.md-content__inner');
    const edge = column.getBoundingClientRect().right;
    const name = (el) => `${el.tagName.toLowerCase()}.${el.className} `
        + JSON.stringify(el.textContent.replace(/\\s+/g, ' ').trim().slice(0, 50));
    const found = [];
    for (const el of column.querySelectorAll('pre, pre > code, .md-typeset__scrollwrap')) {
        if (el.scrollWidth > el.clientWidth + 1) {
            found.push(`${name(el)} scrolls: ${el.scrollWidth} > ${el.clientWidth}`);
        }
    }
    for (const el of column.querySelectorAll('.doc-signature, table, code')) {
        const right = el.getBoundingClientRect().right;
        if (right > edge + 1) {
            found.push(`${name(el)} ends past the column: ${right} > ${edge}`);
        }
    }
    return found;
}"""


def _unavailable() -> str | None:
    for module, package in [
        ("playwright", "playwright"),
        ("mkdocs", "mkdocs"),
        ("material", "mkdocs-material"),
        ("mkdocstrings", "mkdocstrings"),
    ]:
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed (pip install {package})"
    return chromium.unavailable()


UNAVAILABLE = _unavailable()
if UNAVAILABLE and not REQUIRED:
    pytest.skip(UNAVAILABLE, allow_module_level=True)


class _QuietHandler(SimpleHTTPRequestHandler):
    """Serves the built site without a log line per request."""

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _build(folder: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(folder)],
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    assert result.returncode == 0, result.stderr


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The base URL of the strictly built site, served from a temporary directory."""
    if UNAVAILABLE:
        pytest.fail(f"CREDRECOVERY_REQUIRE_SERVICES=1 but {UNAVAILABLE}")
    built = shared_tree(tmp_path_factory, "site", _build)
    server = ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(built))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


browser = chromium.browser


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    opened = browser.new_page(viewport=VIEWPORT)  # type: ignore[arg-type]
    try:
        yield opened
    finally:
        opened.close()


def first_reference_page() -> tuple[str, str]:
    """The nav title and source path of the first page under "API reference" in mkdocs.yml."""
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    [section] = [
        item["API reference"]
        for item in config["nav"]
        if isinstance(item, dict) and "API reference" in item
    ]
    first = section[0]
    assert isinstance(first, dict), f"{first} is listed without a title of its own"
    [(title, path)] = first.items()
    return title, path


def url_of(path: str) -> str:
    """The site address of a docs/ page, as mkdocs's directory URLs make it."""
    page = Path(path).with_suffix("")
    return f"{(page.parent if page.name == 'index' else page).as_posix()}/"


def test_service_reference_fits_at_1280_px(site: str, page: Page) -> None:
    """RecoveryService's signature and parameters neither scroll sideways nor are cut off."""
    page.goto(f"{site}/reference/service/")
    signature = page.locator(".doc-signature").first
    assert "RecoveryService(" in signature.inner_text()
    assert page.get_by_text("timedelta(hours=1)").count() >= 2  # signature and parameters
    assert page.evaluate(OVERFLOWING) == []


def test_first_reference_page_has_its_own_title(site: str, page: Page) -> None:
    """The reference's first page is titled in the nav, and its page has an h1."""
    title, path = first_reference_page()
    assert title != "API reference"
    page.goto(f"{site}/{url_of(path)}")
    assert page.locator(".md-content h1").count() == 1
    assert page.locator(".md-content h1").inner_text().removesuffix("¶").strip() == "API reference"
    active = page.locator(".md-nav--primary a.md-nav__link--active")
    assert active.first.inner_text().strip() == title
    assert page.evaluate(OVERFLOWING) == []
