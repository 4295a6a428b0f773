"""Debian's headless Chromium, driven by Playwright, for the tests that lay out pages.

A test module calls :func:`require` at import (it skips the module when Playwright,
``/usr/bin/chromium`` or another named package is missing, unless
``CREDRECOVERY_REQUIRE_SERVICES=1``) and takes the :func:`browser` fixture in
with ``browser = chromium.browser`` after ``from helpers import browser as chromium``.

Each process starts one Chromium, the first time a test asks for it, and
closes it when the session ends. Playwright's synchronous API marks its event
loop as the thread's running one for as long as it is started, which makes
every later ``asyncio.run`` in the process fail; so ``conftest.py`` calls
:func:`attached` around each phase of every test: the loop is the running one
while a test of a module that takes the browser in sets up, runs or tears
down, and no loop is the running one otherwise.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Playwright

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
REQUIRED = os.environ.get("CREDRECOVERY_REQUIRE_SERVICES") == "1"
ARTIFACTS = os.environ.get("CREDRECOVERY_ARTIFACTS")
SCREENSHOTS = os.environ.get("CREDRECOVERY_SCREENSHOTS") == "1" or bool(ARTIFACTS)


def screenshots(name: str) -> Path | None:
    """The folder for the screenshots of test module ``name``, or ``None`` when none are asked for.

    Screenshots are for a person reviewing a layout, and taking them costs
    more than the checks themselves, so they are taken only with
    ``CREDRECOVERY_SCREENSHOTS=1`` (into ``tests/artifacts/<name>``) or
    ``CREDRECOVERY_ARTIFACTS`` set (into ``$CREDRECOVERY_ARTIFACTS/<name>``).
    """
    if not SCREENSHOTS:
        return None
    root = Path(ARTIFACTS) if ARTIFACTS else Path(__file__).resolve().parents[1] / "artifacts"
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def unavailable(*packages: str) -> str | None:
    """Why the browser tests cannot run here, or ``None``.

    ``packages`` are pip names the caller needs besides Playwright, each
    imported under its name with ``-`` as ``_``.
    """
    for package in (*packages, "playwright"):
        if importlib.util.find_spec(package.replace("-", "_")) is None:
            return f"{package.replace('-', '_')} is not installed (pip install {package})"
    if not os.access(CHROMIUM, os.X_OK):
        return f"{CHROMIUM} is missing (apt-get install chromium)"
    return None


def require(*packages: str) -> str | None:
    """Skip the importing module if :func:`unavailable`, unless services are required.

    Returns the reason when they are required, for the fixtures to fail with.
    """
    reason = unavailable(*packages)
    if reason and not REQUIRED:
        pytest.skip(reason, allow_module_level=True)
    return reason


@dataclass
class _Started:
    """The process's Playwright, its Chromium and the event loop Playwright runs on."""

    playwright: Playwright
    browser: Browser
    loop: asyncio.AbstractEventLoop


_started: _Started | None = None


def uses_browser(item: pytest.Item) -> bool:
    """Whether ``item``'s module takes the :func:`browser` fixture in.

    The module, not the test: its last test tears down the module's fixtures
    that hold pages, whether that test itself uses the browser or not.
    """
    return getattr(getattr(item, "module", None), "browser", None) is browser


@contextmanager
def attached(active: bool) -> Iterator[None]:
    """Within, Playwright's loop is the running one when ``active``; after, no loop is."""
    if _started is not None and active:
        asyncio._set_running_loop(_started.loop)
    try:
        yield
    finally:
        if _started is not None:
            asyncio._set_running_loop(None)


def stop() -> None:
    """Close the process's Chromium and Playwright, if they were started."""
    global _started
    if _started is None:
        return
    started, _started = _started, None
    asyncio._set_running_loop(started.loop)
    try:
        if started.browser.is_connected():
            started.browser.close()
    finally:
        started.playwright.stop()


@pytest.fixture(scope="module")
def browser() -> Browser:
    """The process's one Chromium, started by the first test that asks for it."""
    global _started
    reason = unavailable()
    if reason:
        pytest.fail(f"CREDRECOVERY_REQUIRE_SERVICES=1 but {reason}")
    if _started is None:
        from playwright.sync_api import sync_playwright

        playwright = sync_playwright().start()
        try:
            launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        except BaseException:
            playwright.stop()
            raise
        _started = _Started(playwright, launched, asyncio.get_running_loop())
    return _started.browser
