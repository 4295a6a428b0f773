"""Debian's headless Chromium, driven by Playwright, for the tests that lay out pages.

A test module calls :func:`require` at import (it skips the module when Playwright,
``/usr/bin/chromium`` or another named package is missing, unless
``CREDRECOVERY_REQUIRE_SERVICES=1``) and takes the :func:`browser` fixture in
with ``browser = chromium.browser`` after ``from helpers import browser as chromium``.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]
REQUIRED = os.environ.get("CREDRECOVERY_REQUIRE_SERVICES") == "1"


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


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One Chromium per test module.

    Not per session: Playwright's synchronous API keeps an event loop
    running on the calling thread for as long as it is started, and every
    later ``asyncio.run`` in the same process would fail.
    """
    reason = unavailable()
    if reason:
        pytest.fail(f"CREDRECOVERY_REQUIRE_SERVICES=1 but {reason}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()
