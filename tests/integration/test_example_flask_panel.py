"""The Flask panel example, driven end to end in a real headless Chromium.

A real SMTP server on loopback receives the mail, a real SQLite file holds the
client, and the app is served by a real Werkzeug server thread. With
``CREDRECOVERY_SCREENSHOTS=1``, screenshots of each screen go to
``tests/artifacts/flask_panel`` (or ``$CREDRECOVERY_ARTIFACTS/flask_panel``).
Skips when Playwright or ``/usr/bin/chromium`` is missing, unless
``CREDRECOVERY_REQUIRE_SERVICES=1``.
"""

from __future__ import annotations

import http.cookiejar
import re
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import pytest

from credrecovery import RateLimits, RecoveryService, cheap_context
from credrecovery.smtp import SMTPMailer
from credrecovery.sqlite import SQLiteDirectory
from helpers import OLD_KEY, ROOT, SECRET, FakeClock, code_from, key_from
from helpers import browser as chromium
from helpers.smtp_server import RunningSMTPServer, running_smtp_server

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page, Response

ARTIFACTS = chromium.screenshots("flask_panel")

NUMBER = "9000"
DOMAIN = "ejemploxmundo.com.ar"
EMAIL = "ejemplo@ejemploxmundo.com.ar"
SENDER = "Client Panel <panel@example.com>"
IDENTIFIERS = {"domain": DOMAIN, "client_number": NUMBER, "email": EMAIL}
LINK = re.compile(r"https?://\S+/recover/[A-Za-z0-9_.-]+")


UNAVAILABLE = chromium.require("flask", "flask-wtf")
browser = chromium.browser
pytestmark = pytest.mark.slow

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # the example is imported as ``examples.flask_panel``


@dataclass
class LivePanel:
    """The example served on loopback, with the SMTP server that receives its mail."""

    url: str
    smtp: RunningSMTPServer
    app: Any

    def flush(self) -> None:
        assert self.app.extensions["credrecovery_panel"].flush(10), "mail still queued"

    def next_mail(self, seen: int) -> EmailMessage:
        """The first mail after the ``seen`` first ones, waiting for it up to 10 s."""
        self.flush()
        deadline = time.monotonic() + 10
        while len(self.smtp.received) <= seen:
            assert time.monotonic() < deadline, "no mail arrived"
            time.sleep(0.05)
        return self.smtp.received[seen].message


def _read_at_once(file: IO[bytes], block_size: int = 8192) -> list[bytes]:
    """A ``wsgi.file_wrapper`` that reads a file whole and closes it at once.

    Werkzeug's server never closes a file response whose client went away,
    as Chromium does when it stops wanting a favicon, and the file's
    ResourceWarning then fails whichever test is running.
    """
    with file:
        return [file.read()]


@contextmanager
def _serve(tmp_path: Path, **config: Any) -> Iterator[LivePanel]:
    """The example on a free loopback port, with its client and SMTP server; ``config`` on top.

    The app delivers as deployed, through its delivery processes, unless
    ``config`` sets ``PANEL_DELIVERY``.
    """
    if UNAVAILABLE:
        pytest.fail(f"CREDRECOVERY_REQUIRE_SERVICES=1 but {UNAVAILABLE}")
    from examples.flask_panel import create_app
    from werkzeug.serving import make_server

    db = tmp_path / "clients.sqlite3"
    with SQLiteDirectory(db, crypt_context=cheap_context()) as directory:
        directory.add_client(NUMBER, EMAIL, key=OLD_KEY, domains=[DOMAIN], name="Ana Example")
    apps: list[Any] = []

    def wsgi(environ: dict[str, Any], start_response: Any) -> Any:
        environ["wsgi.file_wrapper"] = _read_at_once
        return apps[0](environ, start_response)

    with running_smtp_server() as smtp:
        # The port is known once bound, and the app needs it for its links.
        server = make_server("127.0.0.1", 0, wsgi, threaded=True)
        url = f"http://127.0.0.1:{server.server_port}"
        app = create_app(
            {
                "CREDRECOVERY_SECRET_KEY": SECRET,
                "PANEL_DB": str(db),
                "PANEL_SMTP_HOST": smtp.host,
                "PANEL_SMTP_PORT": smtp.port,
                "PANEL_BASE_URL": url,
                "PANEL_SENDER": SENDER,
                "PANEL_CRYPT_CONTEXT": cheap_context(),
                **config,
            }
        )
        apps.append(app)
        # Shutting down waits for the loop to look up: by default, half a second.
        thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        thread.start()
        try:
            yield LivePanel(url, smtp, app)
        finally:
            server.shutdown()
            thread.join(10)
            server.server_close()
            app.extensions["credrecovery_panel"].close()


@pytest.fixture
def panel(tmp_path: Path) -> Iterator[LivePanel]:
    """The panel as deployed: mail leaves through its delivery processes."""
    with _serve(tmp_path) as live:
        yield live


@pytest.fixture
def inline_panel(tmp_path: Path) -> Iterator[LivePanel]:
    """The panel sending each mail before its page answers (``PANEL_DELIVERY="sync"``).

    For the tests that are not about delivery: no delivery process to start
    and stop, and a mail sent by mistake is there at once.
    """
    with _serve(tmp_path, PANEL_DELIVERY="sync") as live:
        yield live


@pytest.fixture(scope="module")
def sessions(browser: Browser) -> Iterator[tuple[BrowserContext, BrowserContext]]:
    """Two English browser sessions, each with one page, for the whole module.

    A new page costs about a quarter of a second; tests get these back with
    their cookies cleared (:func:`page`, :func:`other_page`).
    """
    made: list[BrowserContext] = []
    try:
        for _ in range(2):
            made.append(browser.new_context(locale="en-US"))
            made[-1].new_page()
        yield made[0], made[1]
    finally:
        for context in made:
            context.close()


def _fresh(context: BrowserContext) -> Page:
    # Every test serves the panel on a port of its own, and the HTML pages are
    # no-store, so the cookies are all an earlier test leaves behind.
    context.clear_cookies()
    return context.pages[0]


@pytest.fixture
def page(sessions: tuple[BrowserContext, BrowserContext]) -> Page:
    """A page of an English browser session that holds no cookie yet."""
    return _fresh(sessions[0])


@pytest.fixture
def other_page(sessions: tuple[BrowserContext, BrowserContext]) -> Page:
    """A page of a second English browser session (another device), holding no cookie yet."""
    return _fresh(sessions[1])


@dataclass
class Watched:
    """A page, and every response and console error it saw."""

    page: Page
    responses: list[Response]
    console_errors: list[str]


@contextmanager
def watch(page: Page) -> Iterator[Watched]:
    """Record what ``page`` sees inside the ``with`` block."""
    watched = Watched(page, [], [])

    def on_console(message: Any) -> None:
        # Pages answered on purpose with 401 or 409 are logged as "Failed to load resource".
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            watched.console_errors.append(message.text)

    def on_response(response: Response) -> None:
        watched.responses.append(response)

    page.on("response", on_response)
    page.on("console", on_console)
    try:
        yield watched
    finally:
        page.remove_listener("response", on_response)
        page.remove_listener("console", on_console)


def shot(page: Page, name: str) -> None:
    if ARTIFACTS is not None:
        page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def posting(page: Page, path: str) -> Callable[[Response], bool]:
    return lambda response: (
        response.request.method == "POST" and urllib.parse.urlsplit(response.url).path == path
    )


def sign_in(page: Page, url: str, number: str, key: str) -> Response:
    """Fill in and send the login form; the response to its POST."""
    page.goto(url + "/login")
    page.fill("#number", number)
    page.fill("#key", key)
    with page.expect_response(posting(page, "/login")) as sent:
        page.click("button[type=submit]")
    page.wait_for_load_state()
    return sent.value


def ask_for_link(page: Page, panel: LivePanel, kind: str, value: str, name: str) -> str:
    """From the login page, follow the forgot link and request a link; the mailed link."""
    seen = len(panel.smtp.received)
    page.goto(panel.url + "/login")
    shot(page, f"{name}-1-login")
    page.get_by_role("link", name="Forgot your client number or key?").click()
    page.wait_for_url("**/forgot")
    page.select_option("select[name=kind]", kind)
    page.fill("input[name=value]", value)
    shot(page, f"{name}-2-forgot")
    page.click("button[type=submit]")
    page.wait_for_load_state()
    assert page.locator("h1").inner_text() == "Check your mail"
    shot(page, f"{name}-3-sent")
    mail = panel.next_mail(seen)
    assert mail["To"].addresses[0].addr_spec == EMAIL
    match = LINK.search(mail.get_body(("plain",)).get_content())
    assert match, "no confirmation link in the mail"
    return match.group(0)


# The journey runs by domain; the other identifiers lead to the same mailed link.
JOURNEY_KIND = "domain"


@pytest.mark.parametrize("kind", [kind for kind in IDENTIFIERS if kind != JOURNEY_KIND])
def test_each_other_identifier_gets_the_link_in_the_browser(
    panel: LivePanel, page: Page, kind: str
) -> None:
    """Login → forgot → mail to the primary address → the link opens its Confirm page.

    After the link, a recovery is the same whichever identifier started it:
    :func:`test_recovery_in_the_browser` follows it to the end.
    """
    with watch(page) as watched:
        link = ask_for_link(page, panel, kind, IDENTIFIERS[kind], kind)
        assert link.startswith(panel.url + "/recover/")
        opened = page.goto(link)
        assert opened is not None and opened.status == 200
        assert page.get_by_role("button", name="Confirm").is_visible()
    assert watched.console_errors == [], "the browser refused something (CSP?)"


def test_recovery_in_the_browser(panel: LivePanel, page: Page, other_page: Page) -> None:
    """Login → forgot → mail → link → Confirm → new key signs in, old key and sessions end."""
    kind = JOURNEY_KIND
    earlier = other_page
    assert sign_in(earlier, panel.url, NUMBER, OLD_KEY).status == 302
    assert earlier.locator("#signed-in").inner_text() == "Signed in as client 9000."

    with watch(page) as watched:
        link = ask_for_link(page, panel, kind, IDENTIFIERS[kind], kind)
        assert link.startswith(panel.url + "/recover/")

        seen = len(panel.smtp.received)
        opened = page.goto(link)
        assert opened is not None and opened.status == 200
        assert opened.headers["referrer-policy"] == "no-referrer"
        assert opened.headers["cache-control"] == "no-store"
        confirm = page.get_by_role("button", name="Confirm")
        assert confirm.is_visible()
        assert panel.smtp.received[seen:] == [], "opening the link must not confirm it"
        shot(page, f"{kind}-4-confirm")
        confirm.click()
        page.wait_for_load_state()
        assert page.locator("h1").inner_text() == "Access details sent"
        shot(page, f"{kind}-5-done")

        credentials = panel.next_mail(seen)
        assert credentials["To"].addresses[0].addr_spec == EMAIL
        assert NUMBER in credentials.get_body(("plain",)).get_content()
        new_key = key_from(credentials)
        assert new_key != OLD_KEY

        page.get_by_role("link", name="Go to sign in").click()
        page.wait_for_url("**/login")
        assert sign_in(page, panel.url, NUMBER, new_key).status == 302
        # The mailed key is temporary: the panel asks for one of the client's own first.
        page.wait_for_url("**/change-key")
        assert page.locator("h1").inner_text() == "Choose your own access key"
        page.goto(panel.url + "/account")
        assert urllib.parse.urlsplit(page.url).path == "/change-key"
        page.fill("#current", new_key)
        page.fill("#new", "short")
        page.evaluate("document.querySelector('#new').removeAttribute('minlength')")
        with page.expect_response(posting(page, "/change-key")) as refused_key:
            page.click("button[type=submit]")
        assert refused_key.value.status == 422
        assert page.locator("#change-error").inner_text() == "The key is too short."
        shot(page, f"{kind}-6-change-key-refused")
        seen = len(panel.smtp.received)
        own_key = f"my own {kind} key for the panel"
        page.fill("#current", new_key)
        page.fill("#new", own_key)
        page.click("button[type=submit]")
        page.wait_for_url("**/account")
        assert page.locator("#signed-in").inner_text() == "Signed in as client 9000."
        shot(page, f"{kind}-6-signed-in")
        notice = panel.next_mail(seen)
        assert "was changed" in str(notice["Subject"])
        assert own_key not in notice.as_string()
        page.get_by_role("button", name="Sign out").click()
        page.wait_for_url("**/login")
        assert sign_in(page, panel.url, NUMBER, new_key).status == 401
        assert sign_in(page, panel.url, NUMBER, own_key).status == 302
        page.wait_for_url("**/account")  # a key of one's own asks for no change
        page.get_by_role("button", name="Sign out").click()
        page.wait_for_url("**/login")

        refused = sign_in(page, panel.url, NUMBER, OLD_KEY)
        assert refused.status == 401
        assert "do not match" in page.get_by_role("alert").inner_text()
        shot(page, f"{kind}-7-old-key-refused")

        earlier.goto(panel.url + "/account")
        assert urllib.parse.urlsplit(earlier.url).path == "/login", (
            "a session signed in with the old key outlived the recovery"
        )

        used = page.goto(link)
        assert used is not None and used.status == 409
        assert page.locator("h1").inner_text() == "This link was already used"
        shot(page, f"{kind}-8-used-link")

        for response in watched.responses:
            assert response.headers["x-content-type-options"] == "nosniff", response.url
            assert response.headers["x-frame-options"] == "DENY", response.url
            csp = response.headers["content-security-policy"]
            assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
            assert "'unsafe-inline'" not in csp
        assert watched.console_errors == [], "the browser refused something (CSP?)"


def test_recovery_by_code_in_the_browser(panel: LivePanel, page: Page) -> None:
    """Forgot → "send me a code" → type it (a typo first) → the same outcome as a link."""
    with watch(page) as watched:
        seen = len(panel.smtp.received)
        page.goto(panel.url + "/forgot")
        page.select_option("select[name=kind]", "domain")
        page.fill("input[name=value]", DOMAIN)
        page.get_by_role("button", name="Send me a code instead").click()
        page.wait_for_url("**/recover-code")
        assert page.locator("h1").inner_text() == "Type the code from the mail"
        shot(page, "code-1-type")
        mail = panel.next_mail(seen)
        assert mail["To"].addresses[0].addr_spec == EMAIL
        assert not LINK.search(mail.get_body(("plain",)).get_content())
        code = code_from(mail)

        letters = code.replace("-", "")
        typo = ("C" if letters[0] != "C" else "D") + letters[1:]
        page.fill("#code", typo)
        with page.expect_response(posting(page, "/recover-code")) as refused:
            page.click("button[type=submit]")
        assert refused.value.status == 400
        assert "not right" in page.get_by_role("alert").inner_text()
        shot(page, "code-2-wrong")

        seen = len(panel.smtp.received)
        page.fill("#code", f" {letters[:4].lower()} {letters[4:].lower()} ")
        page.click("button[type=submit]")
        page.wait_for_load_state()
        assert page.locator("h1").inner_text() == "Access details sent"
        shot(page, "code-3-done")
        new_key = key_from(panel.next_mail(seen))
        # The ticket is gone from the session: the code page sends the visitor back.
        page.goto(panel.url + "/recover-code")
        assert urllib.parse.urlsplit(page.url).path == "/forgot"
        assert sign_in(page, panel.url, NUMBER, new_key).status == 302
        page.context.clear_cookies()
        assert sign_in(page, panel.url, NUMBER, OLD_KEY).status == 401

        # An unknown domain gets the same page, and any code the same refusal.
        page.goto(panel.url + "/forgot")
        page.fill("input[name=value]", "ejemploxmundo.com.uy")
        page.get_by_role("button", name="Send me a code instead").click()
        page.wait_for_url("**/recover-code")
        assert page.locator("h1").inner_text() == "Type the code from the mail"
        page.fill("#code", code)
        with page.expect_response(posting(page, "/recover-code")) as missed:
            page.click("button[type=submit]")
        assert missed.value.status == 400
        assert "not right" in page.get_by_role("alert").inner_text()

        for response in watched.responses:
            assert response.headers["x-content-type-options"] == "nosniff", response.url
            assert "'unsafe-inline'" not in response.headers["content-security-policy"]
        assert watched.console_errors == [], "the browser refused something (CSP?)"


def test_expired_link_gets_its_own_page(inline_panel: LivePanel, page: Page) -> None:
    """A link older than its lifetime shows the expired page, with no Confirm button."""
    panel = inline_panel
    two_hours_ago: Callable[[], float] = lambda: time.time() - 7200  # noqa: E731
    with RecoveryService(
        SQLiteDirectory(panel.app.config["PANEL_DB"]),
        SMTPMailer(panel.smtp.host, panel.smtp.port),
        secret_key=SECRET,
        confirm_url=panel.url + "/recover/{token}",
        sender=SENDER,
        delivery="sync",
        clock=two_hours_ago,
        rate_limits=None,
    ) as old_service:
        old_service.request("client_number", NUMBER)
    link = LINK.search(panel.smtp.received[-1].message.get_body(("plain",)).get_content())
    assert link
    opened = page.goto(link.group(0))
    assert opened is not None and opened.status == 400
    assert page.locator("h1").inner_text() == "This link has expired"
    assert page.get_by_role("button", name="Confirm").count() == 0
    shot(page, "expired-link")


def test_forged_link_gets_the_generic_page(inline_panel: LivePanel, page: Page) -> None:
    """A link whose token is not genuine shows the generic invalid-link page."""
    opened = page.goto(inline_panel.url + "/recover/not-a-real-token")
    assert opened is not None and opened.status == 400
    assert page.locator("h1").inner_text() == "This link is not valid"
    shot(page, "invalid-link")


def test_spanish_ui_and_mail(panel: LivePanel, browser: Browser) -> None:
    """A Spanish browser gets the Spanish screens and Spanish mail; ?lang=en switches back."""
    spanish = browser.new_context(locale="es-AR")
    try:
        page = spanish.new_page()
        seen = len(panel.smtp.received)
        page.goto(panel.url + "/login")
        assert page.locator("html").get_attribute("lang") == "es"
        assert page.locator("h1").inner_text() == "Ingresar al Panel de Clientes"
        shot(page, "es-1-login")
        page.get_by_role("link", name="¿Olvidó su número de cliente o su clave?").click()
        page.wait_for_url("**/forgot")
        options = page.locator("select[name=kind] option").all_inner_texts()
        assert options == ["Nombre de dominio", "Número de cliente", "Dirección de correo primaria"]
        page.select_option("select[name=kind]", "domain")
        page.fill("input[name=value]", DOMAIN)
        shot(page, "es-2-forgot")
        page.click("button[type=submit]")
        page.wait_for_load_state()
        assert page.locator("h1").inner_text() == "Revise su correo"
        mail = panel.next_mail(seen)
        text = mail.get_body(("plain",)).get_content()
        link = LINK.search(text)
        assert link
        page.goto(link.group(0))
        shot(page, "es-3-confirm")
        page.get_by_role("button", name="Confirmar").click()
        page.wait_for_load_state()
        assert page.locator("h1").inner_text() == "Datos de acceso enviados"
        credentials = panel.next_mail(seen + 1).get_body(("plain",)).get_content()
        assert "Clave de acceso" in credentials, "the credentials mail is not in Spanish"

        page.goto(panel.url + "/login?lang=en")
        assert page.locator("h1").inner_text() == "Sign in to the Client Panel"
        page.goto(panel.url + "/forgot")
        assert page.locator("h1").inner_text() == "Recover your access details", (
            "the ?lang= choice was not remembered"
        )
    finally:
        spanish.close()


def test_invalid_identifier_is_shown_next_to_the_field(inline_panel: LivePanel, page: Page) -> None:
    """A malformed value re-shows the form with the library's message beside the field."""
    panel = inline_panel
    page.goto(panel.url + "/forgot")
    page.select_option("select[name=kind]", "domain")
    page.fill("input[name=value]", "not a domain!")
    with page.expect_response(posting(page, "/forgot")) as sent:
        page.click("button[type=submit]")
    assert sent.value.status == 400
    note = page.locator("#value-note[role=alert]")
    assert note.inner_text() == "This is not a valid domain name."
    assert page.input_value("input[name=value]") == "not a domain!"
    assert page.locator("select[name=kind]").input_value() == "domain"
    assert panel.smtp.received == []
    shot(page, "invalid-identifier")


def test_too_many_requests_get_429_with_retry_after(tmp_path: Path, page: Page) -> None:
    """Past the per-requester limit the recovery form answers 429 with Retry-After."""
    # A clock that stands still keeps the three requests inside one limiter window.
    with _serve(
        tmp_path,
        PANEL_RATE_LIMITS=RateLimits(per_requester="2/hour"),
        PANEL_DELIVERY="sync",
        PANEL_CLOCK=FakeClock(),
    ) as live:
        statuses: list[Response] = []
        for _ in range(3):
            page.goto(live.url + "/forgot")
            page.select_option("select[name=kind]", "client_number")
            page.fill("input[name=value]", "12345")
            with page.expect_response(posting(page, "/forgot")) as sent:
                page.click("button[type=submit]")
            statuses.append(sent.value)
        assert [response.status for response in statuses] == [200, 200, 429]
        assert 0 < int(statuses[-1].headers["retry-after"]) <= 3600
        assert page.locator("h1").inner_text() == "Too many attempts"
        shot(page, "rate-limited")


def _post(url: str, fields: dict[str, str]) -> int:
    """POST ``fields`` to ``url`` with no session and no CSRF token; the status."""
    body = urllib.parse.urlencode(fields).encode()
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=body), timeout=10) as reply:
            return int(reply.status)
    except urllib.error.HTTPError as exc:
        exc.close()
        return int(exc.code)


def test_forms_refuse_a_post_without_the_csrf_token(inline_panel: LivePanel, page: Page) -> None:
    """Login, recovery and confirm POSTs without the CSRF token get 400 and change nothing."""
    panel = inline_panel
    link = ask_for_link(page, panel, "client_number", NUMBER, "csrf")
    mails = len(panel.smtp.received)
    assert _post(panel.url + "/login", {"number": NUMBER, "key": OLD_KEY}) == 400
    assert _post(panel.url + "/forgot", {"kind": "client_number", "value": NUMBER}) == 400
    assert _post(link, {}) == 400
    # In the browser too: a form whose token was tampered with is refused.
    page.goto(link)
    page.locator("input[name=csrf_token]").evaluate("(field) => { field.value = 'forged'; }")
    with page.expect_response(posting(page, urllib.parse.urlsplit(link).path)) as sent:
        page.get_by_role("button", name="Confirm").click()
    assert sent.value.status == 400
    assert page.locator("h1").inner_text() == "The form expired"
    shot(page, "csrf-refused")
    panel.flush()
    assert len(panel.smtp.received) == mails, "a refused POST sent mail"
    assert sign_in(page, panel.url, NUMBER, OLD_KEY).status == 302, "the key was rotated"


def _status(url: str, headers: dict[str, str]) -> int:
    """GET ``url`` with ``headers``; the status."""
    try:
        with urllib.request.urlopen(
            urllib.request.Request(url, headers=headers), timeout=10
        ) as reply:
            return int(reply.status)
    except urllib.error.HTTPError as exc:
        exc.close()
        return int(exc.code)


@pytest.mark.parametrize("hops", [None, 1], ids=["no-proxy", "behind-one-proxy"])
def test_forwarded_for_counts_only_behind_the_configured_proxies(
    tmp_path: Path, hops: int | None
) -> None:
    """X-Forwarded-For names the requester only with PANEL_PROXY_HOPS set.

    Seen over HTTP through the failed-confirmation limit, one a day per
    requester: by default two forged addresses from one peer share its
    count; behind a proxy each forwarded client has its own.
    """
    config: dict[str, Any] = {
        "PANEL_RATE_LIMITS": RateLimits(failed_confirmations="1/day"),
        "PANEL_DELIVERY": "sync",
    }
    if hops is not None:
        config["PANEL_PROXY_HOPS"] = hops
    with _serve(tmp_path, **config) as live:

        def forged_link(forwarded_for: str) -> int:
            return _status(
                live.url + "/recover/forged.token.value", {"X-Forwarded-For": forwarded_for}
            )

        statuses = [forged_link("203.0.113.7"), forged_link("198.51.100.9")]
        if hops is None:
            assert statuses == [400, 429], "a forged X-Forwarded-For escaped the limit"
        else:
            assert statuses == [400, 400], "the forwarded clients shared one count"
            assert forged_link("192.0.2.1, 203.0.113.7") == 429


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a redirect comes back as an HTTPError with its status


class Visitor:
    """One visitor over plain HTTP: its own cookies, behind the proxy that forwards
    ``address`` as the client's (``PANEL_PROXY_HOPS=1``)."""

    def __init__(self, url: str, address: str) -> None:
        self.url, self.address = url, address
        self._opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()), _NoRedirects
        )
        self._token = ""

    def _open(self, path: str, data: bytes | None = None) -> tuple[int, Any, str]:
        request = urllib.request.Request(
            self.url + path, data=data, headers={"X-Forwarded-For": self.address}
        )
        try:
            with self._opener.open(request, timeout=10) as reply:
                return int(reply.status), reply.headers, reply.read().decode()
        except urllib.error.HTTPError as exc:
            with exc:
                return int(exc.code), exc.headers, exc.read().decode()

    def sign_in(self, number: str, key: str) -> tuple[int, Any]:
        """POST the login form, with the form token of this visitor's session: the
        status (302 signed in, 401 refused, 429 throttled) and the headers."""
        if not self._token:
            _, _, body = self._open("/login")
            match = re.search(r'name="csrf_token" value="([^"]+)"', body)
            assert match, "no form token on the login page"
            self._token = match.group(1)
        fields = {"csrf_token": self._token, "number": number, "key": key}
        status, headers, _ = self._open("/login", urllib.parse.urlencode(fields).encode())
        return status, headers


def test_wrong_keys_get_429_and_the_client_still_signs_in(tmp_path: Path) -> None:
    """A hundred wrong keys from one address against client 9000: 429 with Retry-After
    long before the hundredth, the right key from that address included. Guessing from
    many addresses at once does not lock the client out: its own sign-in from its own
    address still works."""
    wrong = "Not-The-Key-2024"
    with _serve(tmp_path, PANEL_PROXY_HOPS=1, PANEL_DELIVERY="sync") as live:
        attacker = Visitor(live.url, "203.0.113.7")
        answers = [attacker.sign_in(NUMBER, wrong) for _ in range(100)]
        statuses = [status for status, _ in answers]
        first = statuses.index(429)
        assert first < 99, "the hundredth wrong key was still checked"
        assert statuses == [401] * first + [429] * (100 - first)
        assert 0 < int(answers[-1][1]["Retry-After"]) <= 900
        assert attacker.sign_in(NUMBER, OLD_KEY)[0] == 429
        # Forty-five more from nine other addresses: fifty failures against the
        # number, its limit, so that only addresses without a failure get through.
        for n in range(9):
            guesser = Visitor(live.url, f"10.0.0.{n}")
            assert {guesser.sign_in(NUMBER, wrong)[0] for _ in range(5)} == {401}
        assert Visitor(live.url, "10.0.0.1").sign_in(NUMBER, wrong)[0] == 429
        client = Visitor(live.url, "198.51.100.23")
        assert client.sign_in(NUMBER, OLD_KEY)[0] == 302


def test_refuses_a_malformed_proxy_count(tmp_path: Path) -> None:
    """PANEL_PROXY_HOPS that is no count of proxies stops the app, naming the setting."""
    from examples.flask_panel import PanelConfigError, create_app

    with pytest.raises(PanelConfigError, match="PANEL_PROXY_HOPS"):
        create_app(
            {
                "CREDRECOVERY_SECRET_KEY": SECRET,
                "PANEL_SENDER": SENDER,
                "PANEL_SMTP_HOST": "127.0.0.1",
                "PANEL_PROXY_HOPS": "10.0.0.1",
                "PANEL_DB": str(tmp_path / "clients.sqlite3"),
            }
        )


def test_session_cookie_is_httponly_and_samesite_lax(inline_panel: LivePanel, page: Page) -> None:
    """The session cookie set at sign-in is HttpOnly and SameSite=Lax."""
    assert sign_in(page, inline_panel.url, NUMBER, OLD_KEY).status == 302
    cookies = [cookie for cookie in page.context.cookies() if cookie["name"] == "session"]
    assert len(cookies) == 1
    assert cookies[0]["httpOnly"] is True
    assert cookies[0]["sameSite"] == "Lax"


def test_every_string_exists_in_both_languages() -> None:
    """The English and Spanish tables name the same strings, none left empty."""
    from examples.flask_panel.strings import STRINGS

    assert set(STRINGS["en"]) == set(STRINGS["es"])
    assert all(text.strip() for table in STRINGS.values() for text in table.values())


def test_refuses_to_start_without_an_smtp_host(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no PANEL_SMTP_HOST the app refuses to start and names the setting."""
    from examples.flask_panel import PanelConfigError, create_app

    monkeypatch.delenv("PANEL_SMTP_HOST", raising=False)
    with pytest.raises(PanelConfigError, match="PANEL_SMTP_HOST") as raised:
        create_app(
            {
                "CREDRECOVERY_SECRET_KEY": SECRET,
                "PANEL_SENDER": SENDER,
                "PANEL_DB": str(tmp_path / "clients.sqlite3"),
            }
        )
    assert SECRET not in str(raised.value)


def test_a_key_change_signs_out_the_clients_other_sessions(
    inline_panel: LivePanel, page: Page, other_page: Page
) -> None:
    """A change of key in one session ends the client's others, through the key_changed
    event; the session that made the change stays signed in."""
    assert sign_in(other_page, inline_panel.url, NUMBER, OLD_KEY).status == 302
    assert sign_in(page, inline_panel.url, NUMBER, OLD_KEY).status == 302
    page.goto(inline_panel.url + "/change-key")
    page.fill("#current", OLD_KEY)
    page.fill("#new", "a key of my own for every device")
    page.click("button[type=submit]")
    page.wait_for_url("**/account")
    inline_panel.flush()  # the event has reached the panel's hook
    other_page.goto(inline_panel.url + "/account")
    assert urllib.parse.urlsplit(other_page.url).path == "/login", (
        "another session outlived the change of key"
    )
    page.goto(inline_panel.url + "/account")
    assert page.locator("#signed-in").inner_text() == "Signed in as client 9000."
    assert (
        sign_in(other_page, inline_panel.url, NUMBER, "a key of my own for every device").status
        == 302
    )
    assert other_page.locator("#signed-in").inner_text() == "Signed in as client 9000."
