"""The mails' HTML parts, laid out by a real headless Chromium at phone and desktop widths.

Each HTML part the service sends is opened at 375 and 800 CSS pixels: it must
not scroll sideways, must say its language, charset, title and viewport, must
show the confirmation link as a button before the raw link (which wraps inside
the screen), and the new access key inside ``<code>``. With
``CREDRECOVERY_SCREENSHOTS=1``, screenshots of every case go to
``tests/artifacts/mail`` (or ``$CREDRECOVERY_ARTIFACTS/mail``); with
``CREDRECOVERY_UPDATE_SCREENSHOTS=1`` the English ones of both mails are
written to ``docs/images``. Skips when Playwright or ``/usr/bin/chromium`` is
missing, unless ``CREDRECOVERY_REQUIRE_SERVICES=1``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest

from helpers import ROOT
from helpers import browser as chromium
from helpers.mail_cases import BRANDINGS, CUSTOM_BRANDING, KINDS, LANGUAGES, Case, Mail, mail_for

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page, Route

UPDATE_DOCS = os.environ.get("CREDRECOVERY_UPDATE_SCREENSHOTS") == "1"
ARTIFACTS = chromium.screenshots("mail")
DOCS_IMAGES = ROOT / "docs" / "images"
WIDTHS = (375, 800)
# Where each mail is served from: a reserved name, answered by the page's route.
MAIL_URL = "https://mail.invalid/"

chromium.require()
browser = chromium.browser
pytestmark = pytest.mark.slow

CASES = [
    Case(kind, language, branding, "plain")
    for branding in BRANDINGS
    for language in LANGUAGES
    for kind in KINDS
]
# Names that stretch a layout: one unbreakable word, right-to-left text, and
# a shared address with more clients than one mail lists.
CASES += [
    Case(kind, "en", branding, who)
    for who in ("long-word", "rtl")
    for kind in ("confirmation", "credentials", "key-changed")
    for branding in BRANDINGS
]
CASES += [Case("multi", language, "default", "truncated") for language in LANGUAGES]


def _draw_logo(page: Page) -> bytes:
    """A logo image for the custom branding's ``logo_url``, drawn by the browser itself."""
    page.set_viewport_size({"width": 400, "height": 120})
    page.set_content(
        '<div id="logo" style="width:320px;height:80px;display:flex;align-items:center;'
        "justify-content:center;background:#0b3d91;color:#fff;border-radius:8px;"
        'font:bold 30px sans-serif">XMundo Networks</div>'
    )
    return page.locator("#logo").screenshot()


@dataclass
class MailPage:
    """The page every case is laid out in, and what its current mail requested.

    Each mail is a new document, served at ``MAIL_URL`` as ``text/html`` with no
    charset, so the browser decodes it by the mail's own ``<meta charset>``. A
    document keeps the images it has loaded whatever the cache says, so one
    replaced in place would show the logo without requesting it again.
    """

    page: Page
    logo: bytes
    html: str = ""
    requested: list[str] = field(default_factory=list)

    def answer(self, route: Route) -> None:
        """Serve the mail and the logo; record every request but the mail's, abort the rest."""
        url = route.request.url
        if url == MAIL_URL:
            route.fulfill(status=200, content_type="text/html", body=self.html)
            return
        self.requested.append(url)
        if url == CUSTOM_BRANDING["logo_url"]:
            route.fulfill(status=200, content_type="image/png", body=self.logo)
        else:
            route.abort()

    def show(self, mail: Mail, width: int) -> None:
        """Lay ``mail``'s HTML part out at ``width``."""
        html = mail.message.get_body(("html",))
        assert html is not None
        self.html = str(html.get_content())
        self.requested.clear()
        self.page.set_viewport_size({"width": width, "height": 400})
        opened = self.page.goto(MAIL_URL)
        assert opened is not None and opened.ok


@pytest.fixture(scope="module")
def mail_page(browser: Browser) -> Iterator[MailPage]:
    """One page for the module: a new one per case costs more than the case itself.

    No request leaves the machine.
    """
    context = browser.new_context()
    try:
        page = context.new_page()
        shown = MailPage(page, _draw_logo(page))
        page.route("**/*", shown.answer)
        yield shown
    finally:
        context.close()


LAYOUT = """() => ({
    scrollWidth: document.documentElement.scrollWidth,
    innerWidth: window.innerWidth,
    lang: document.documentElement.getAttribute("lang"),
    charset: document.querySelector("meta[charset]")?.getAttribute("charset") ?? null,
    characterSet: document.characterSet,
    title: document.title,
    viewport: document.querySelector('meta[name="viewport"]')?.getAttribute("content") ?? null,
    images: [...document.images].map(i => ({src: i.src, width: i.naturalWidth})),
})"""

# For one link: the first <a> to it that is not the raw link, and the text
# node that spells it out, with what the browser laid out for each.
LINK_LAYOUT = """(link) => {
    const transparent = c => c === "transparent" || /rgba\\(.*,\\s*0\\)$/.test(c);
    const box = el => { const r = el.getBoundingClientRect();
        return {left: r.left, right: r.right, top: r.top, bottom: r.bottom,
                width: r.width, height: r.height}; };
    const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
    let raw = null;
    while (walker.nextNode()) {
        if (walker.currentNode.data.includes(link)) { raw = walker.currentNode; break; }
    }
    const button = [...document.querySelectorAll("a")].find(
        a => a.getAttribute("href") === link && !a.textContent.includes(link));
    const result = {button: null, raw: null};
    if (button) {
        const style = getComputedStyle(button);
        // The box the button paints: its own background, or the cell that is its size.
        let painted = button;
        while (painted && transparent(getComputedStyle(painted).backgroundColor)) {
            painted = painted.parentElement;
        }
        let behind = painted && painted.parentElement;
        while (behind && transparent(getComputedStyle(behind).backgroundColor)) {
            behind = behind.parentElement;
        }
        result.button = {
            text: button.textContent.trim(),
            padding: ["Top", "Right", "Bottom", "Left"].map(
                side => parseFloat(style["padding" + side])),
            box: box(button),
            background: painted ? getComputedStyle(painted).backgroundColor : null,
            paintedBox: painted ? box(painted) : null,
            behind: behind ? getComputedStyle(behind).backgroundColor : null,
            color: style.color,
            beforeRaw: raw !== null && Boolean(
                button.compareDocumentPosition(raw) & Node.DOCUMENT_POSITION_FOLLOWING),
        };
    }
    if (raw) {
        const range = document.createRange();
        range.selectNodeContents(raw);
        const r = range.getBoundingClientRect();
        const style = getComputedStyle(raw.parentElement);
        result.raw = {
            left: r.left, right: r.right, width: r.width, height: r.height,
            lines: new Set([...range.getClientRects()].map(l => Math.round(l.top))).size,
            visibility: style.visibility, display: style.display,
            opacity: parseFloat(style.opacity), fontSize: parseFloat(style.fontSize),
        };
    }
    return result;
}"""

# Whether the text node holding ``needle`` sits in an inline box that isolates
# its direction (<bdi>, dir=auto), so a right-to-left name cannot reorder the
# words around it.
ISOLATED = """(needle) => {
    const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
    while (walker.nextNode()) {
        if (!walker.currentNode.data.includes(needle)) continue;
        for (let el = walker.currentNode.parentElement; el; el = el.parentElement) {
            const style = getComputedStyle(el);
            if (["isolate", "isolate-override", "plaintext"].includes(style.unicodeBidi)) {
                return true;
            }
            if (style.display !== "inline") return false;
        }
    }
    return false;
}"""

KEY_LAYOUT = """(key) => [...document.querySelectorAll("code")]
    .filter(c => c.textContent.trim() === key)
    .map(c => { const r = c.getBoundingClientRect();
                return {left: r.left, right: r.right, width: r.width, height: r.height}; })"""


def _screenshot(page: Page, case: Case, width: int) -> None:
    for_docs = (
        UPDATE_DOCS
        and case.who == "plain"
        and case.language == "en"
        and case.kind in ("confirmation", "credentials")
    )
    if ARTIFACTS is None and not for_docs:
        return
    image = page.screenshot(full_page=True)
    if ARTIFACTS is not None:
        (ARTIFACTS / f"{case.id}-{width}.png").write_bytes(image)
    if for_docs:
        DOCS_IMAGES.mkdir(parents=True, exist_ok=True)
        (DOCS_IMAGES / f"mail-{case.kind}-{case.branding}-{width}.png").write_bytes(image)


def _check_link(page: Page, link: str, width: int, *, wraps: bool = True) -> None:
    found: dict[str, Any] = page.evaluate(LINK_LAYOUT, link)
    button, raw = found["button"], found["raw"]
    assert button is not None, f"no button links to {link}"
    assert raw is not None, "the raw link is not in the text"
    assert button["beforeRaw"], "the button comes after the raw link"
    assert button["text"]
    assert min(button["padding"]) > 0, button
    assert button["background"] is not None, "the button paints no background"
    assert button["background"] != button["behind"], button
    painted, own = button["paintedBox"], button["box"]
    assert all(
        abs(painted[side] - own[side]) <= 4 for side in ("left", "right", "top", "bottom")
    ), f"the background {painted} is not the button's box {own}"
    assert own["width"] > 0 and own["height"] > 0
    assert own["left"] >= 0 and own["right"] <= width
    assert raw["display"] != "none" and raw["visibility"] == "visible" and raw["opacity"] > 0
    assert raw["width"] > 0 and raw["height"] > 0 and raw["fontSize"] >= 10
    assert raw["left"] >= 0 and raw["right"] <= width, f"the raw link overflows: {raw}"
    if wraps and width < 600:
        # A confirmation link is wider than a phone: it has to break to fit.
        assert raw["lines"] > 1, "the raw link does not wrap"


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_html_part_lays_out_in_chromium(mail_page: MailPage, case: Case, width: int) -> None:
    """No sideways scroll; lang, charset, title, viewport; button before raw link; key in <code>."""
    mail = mail_for(case)
    mail_page.show(mail, width)
    page, requested = mail_page.page, mail_page.requested
    _screenshot(page, case, width)
    layout: dict[str, Any] = page.evaluate(LAYOUT)
    assert layout["scrollWidth"] <= layout["innerWidth"], (
        f"scrolls sideways: {layout['scrollWidth']} > {layout['innerWidth']}"
    )
    assert layout["lang"] == case.language
    language = mail.message.get("Content-Language")
    if language is not None:
        assert layout["lang"] == str(language)
    assert layout["charset"] is not None and layout["charset"].lower() == "utf-8"
    assert layout["characterSet"] == "UTF-8"
    assert layout["title"] == str(mail.message["Subject"])
    assert layout["viewport"] is not None and "width=device-width" in layout["viewport"]
    if case.branding == "custom":
        assert requested == [CUSTOM_BRANDING["logo_url"]]
        assert layout["images"] == [{"src": CUSTOM_BRANDING["logo_url"], "width": 320}]
    else:
        assert requested == [] and layout["images"] == []
    for link in mail.links:
        _check_link(page, link, width)
    if case.who == "rtl":
        assert page.evaluate(ISOLATED, "אבי"), "the right-to-left name is not isolated"
    if case.kind == "credentials":
        codes = page.evaluate(KEY_LAYOUT, mail.key)
        assert codes, "the access key is not inside <code>"
        assert all(c["left"] >= 0 and c["right"] <= width and c["width"] > 0 for c in codes), codes
    for code in mail.codes:
        boxes = page.evaluate(KEY_LAYOUT, code)
        assert boxes, "the recovery code is not inside <code>"
        assert all(c["left"] >= 0 and c["right"] <= width for c in boxes), boxes
    if case.kind in ("credentials", "key-changed") and case.branding == "custom":
        _check_link(page, CUSTOM_BRANDING["login_url"], width, wraps=False)
