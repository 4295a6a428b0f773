"""examples/fastapi_app: the asyncio flow over HTTP, mail read from a real SMTP server.

Most tests drive the app in process through ``httpx.ASGITransport``, its
lifespan entered as a server would; one serves it with uvicorn on 127.0.0.1
and talks to it over real HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")
# httpx is no dependency of FastAPI's: the examples extra brings it.
pytest.importorskip("httpx")

import httpx
import uvicorn
from fastapi import FastAPI

from credrecovery import RateLimits, cheap_context
from credrecovery.async_sqlite import AsyncSQLiteDirectory
from helpers import CONFIRM_URL, OLD_KEY, ROOT, SECRET, SENDER, FakeClock, key_from, token_from
from helpers import browser as chromium
from helpers.docs_quotes import quoted_excerpts
from helpers.smtp_server import RunningSMTPServer, running_smtp_server

EXAMPLE = ROOT / "examples" / "fastapi_app"
if str(EXAMPLE) not in sys.path:
    sys.path.insert(0, str(EXAMPLE))

import fastapi_recovery  # noqa: E402 - found on the path added above

pytestmark = pytest.mark.slow
CONTEXT = cheap_context()
ANA = "ana@ejemploxmundo.com.ar"
# The README's: a site on plain http, whose form cookie cannot be Secure.
README_CONFIRM_URL = "http://127.0.0.1:8000/recover/{token}"
FORM_TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')
#: What a browser adds to a form POST from another site's page.
CROSS_SITE = {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}
#: What Chromium adds to a form POST from the app's own page: under
#: Referrer-Policy: no-referrer its Origin is "null".
SAME_ORIGIN = {"Origin": "null", "Sec-Fetch-Site": "same-origin"}


def form_token(page: httpx.Response) -> str:
    """The hidden form token of an HTML page."""
    match = FORM_TOKEN.search(page.text)
    assert match, "no form token in the page"
    return match.group(1)


@pytest.fixture
def database(tmp_path: Path) -> Path:
    """A SQLite file holding client 9000, with two domains and the old key."""
    path = tmp_path / "clients.sqlite3"

    async def seed() -> None:
        async with AsyncSQLiteDirectory(path, crypt_context=CONTEXT) as directory:
            await directory.add_client(
                "9000",
                ANA,
                key=OLD_KEY,
                name="Ana Example",
                domains=["ejemploxmundo.com.ar", "otro-ejemplo.com"],
            )

    asyncio.run(seed())
    return path


@pytest.fixture
def smtp() -> Iterator[RunningSMTPServer]:
    with running_smtp_server() as server:
        yield server


def make_app(
    database: Path,
    smtp: RunningSMTPServer,
    *,
    confirm_url: str = CONFIRM_URL,
    trusted_proxies: tuple[str, ...] = (),
    **options: Any,
) -> FastAPI:
    """The example's app; an https ``confirm_url`` makes its form cookie Secure."""
    settings = fastapi_recovery.Settings(
        secret_key=SECRET,
        confirm_url=confirm_url,
        sender=SENDER,
        database=str(database),
        smtp_host=smtp.host,
        smtp_port=smtp.port,
        trusted_proxies=trusted_proxies,
        service_options={"crypt_context": CONTEXT, **options},
    )
    return fastapi_recovery.create_app(settings)


def run_with(app: FastAPI, scenario: Callable[[httpx.AsyncClient], Awaitable[None]]) -> None:
    """Start ``app`` as a server would (its lifespan), run ``scenario`` against it, stop it.

    The client speaks to it as on https, as behind a TLS proxy: the links are
    https (``CONFIRM_URL``), so the form cookie is ``Secure``.
    """

    async def main() -> None:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(
                transport=transport, base_url="https://testserver"
            ) as client:
                await scenario(client)

    asyncio.run(main())


async def stored_hash(database: Path) -> str:
    async with AsyncSQLiteDirectory(database) as directory:
        client = await directory.find("client_number", "9000")  # type: ignore[arg-type]
    assert client is not None
    return client.key_hash


async def delivered(app: FastAPI, smtp: RunningSMTPServer, count: int) -> list[Any]:
    """The messages the SMTP server received, once queued confirmation mails have left."""
    assert await app.state.recovery.flush(20)
    assert len(smtp.received) == count
    return [received.message for received in smtp.received]


@pytest.mark.parametrize(
    ("kind", "typed"),
    [
        ("domain", "Otro-Ejemplo.COM"),
        ("client_number", " 9000 "),
        ("email", "Ana@EjemploXMundo.com.ar"),
    ],
)
def test_whole_flow_by_each_identifier(
    database: Path, smtp: RunningSMTPServer, kind: str, typed: str
) -> None:
    """Request, Confirm page, confirmation and login: both mails arrive over SMTP."""
    app = make_app(database, smtp)

    async def scenario(client: httpx.AsyncClient) -> None:
        asked = await client.post("/forgot", json={"kind": kind, "value": typed})
        assert asked.status_code == 200
        assert asked.json() == {"detail": fastapi_recovery.SENT}
        [confirmation_mail] = await delivered(app, smtp, 1)
        assert smtp.received[0].rcpt_tos == (ANA,)
        assert confirmation_mail["From"] == SENDER
        token = token_from(confirmation_mail)

        page = await client.get(f"/recover/{token}")
        assert page.status_code == 200
        assert "<button>Confirm</button>" in page.text
        assert page.headers["Referrer-Policy"] == "no-referrer"
        assert page.headers["Cache-Control"] == "no-store"
        assert len(smtp.received) == 1, "opening the link must not confirm"

        button = {"csrf_token": form_token(page)}
        done = await client.post(f"/recover/{token}", data=button, headers=SAME_ORIGIN)
        assert done.status_code == 200
        assert "on their way" in done.text
        credentials = (await delivered(app, smtp, 2))[1]
        assert smtp.received[1].rcpt_tos == (ANA,)
        key = key_from(credentials)
        stored = await stored_hash(database)
        assert CONTEXT.verify(key, stored) and not CONTEXT.verify(OLD_KEY, stored)

        login = await client.post("/login", json={"number": "9000", "key": key})
        assert (login.status_code, login.json()) == (200, {"number": "9000"})
        old = await client.post("/login", json={"number": "9000", "key": OLD_KEY})
        assert old.status_code == 401

        again = await client.post(f"/recover/{token}", data=button, headers=SAME_ORIGIN)
        assert again.status_code == 409
        assert "already used" in again.text
        assert again.headers["Referrer-Policy"] == "no-referrer"

    run_with(app, scenario)


def test_form_posts_get_pages(database: Path, smtp: RunningSMTPServer) -> None:
    """An urlencoded form gets HTML: the same page for a miss as for a hit."""
    app = make_app(database, smtp)

    async def scenario(client: httpx.AsyncClient) -> None:
        form = await client.get("/forgot")
        assert form.status_code == 200 and 'name="kind"' in form.text
        token = form_token(form)
        hit = await client.post(
            "/forgot", data={"kind": "email", "value": ANA, "csrf_token": token}
        )
        miss = await client.post(
            "/forgot", data={"kind": "email", "value": "no@example.com", "csrf_token": token}
        )
        assert hit.headers["content-type"].startswith("text/html")
        assert (
            (hit.status_code, hit.text)
            == (miss.status_code, miss.text)
            == (200, fastapi_recovery.page(fastapi_recovery.SENT))
        )
        await delivered(app, smtp, 1)

    run_with(app, scenario)


def test_malformed_identifier_answers_400(database: Path, smtp: RunningSMTPServer) -> None:
    """InvalidIdentifier answers 400, with the message in JSON or on the form again."""
    app = make_app(database, smtp)

    async def scenario(client: httpx.AsyncClient) -> None:
        as_json = await client.post("/forgot", json={"kind": "domain", "value": "not a domain"})
        assert as_json.status_code == 400 and as_json.json()["detail"]
        token = form_token(await client.get("/forgot"))
        as_form = await client.post(
            "/forgot", data={"kind": "planet", "value": "earth", "csrf_token": token}
        )
        assert as_form.status_code == 400
        assert 'role="alert"' in as_form.text and 'value="earth"' in as_form.text
        assert FORM_TOKEN.search(as_form.text), "the form shown again lost its token"
        unreadable = await client.post(
            "/forgot", content=b"[1, 2]", headers={"content-type": "application/json"}
        )
        assert unreadable.status_code == 400
        await delivered(app, smtp, 0)

    run_with(app, scenario)


def test_rate_limited_request_answers_429(database: Path, smtp: RunningSMTPServer) -> None:
    """Past the per-requester limit POST /forgot answers 429 with Retry-After."""
    # A clock that stands still keeps the three requests inside one limiter window.
    app = make_app(
        database, smtp, rate_limits=RateLimits(per_requester="2/minute"), clock=FakeClock()
    )

    async def scenario(client: httpx.AsyncClient) -> None:
        for _ in range(2):
            ok = await client.post("/forgot", json={"kind": "email", "value": "no@example.com"})
            assert ok.status_code == 200
        limited = await client.post("/forgot", json={"kind": "email", "value": ANA})
        assert limited.status_code == 429
        assert 0 < int(limited.headers["Retry-After"]) <= 60
        await delivered(app, smtp, 0)

    run_with(app, scenario)


def test_expired_and_forged_links(database: Path, smtp: RunningSMTPServer) -> None:
    """An expired link answers 410 and a forged one 400, with the link headers; the key stays."""
    clock = FakeClock()
    app = make_app(database, smtp, clock=clock)

    async def scenario(client: httpx.AsyncClient) -> None:
        await client.post("/forgot", json={"kind": "client_number", "value": "9000"})
        token = token_from((await delivered(app, smtp, 1))[0])
        clock.advance(2 * 3600)
        for answer in (
            await client.get(f"/recover/{token}"),
            await client.post(f"/recover/{token}", json={}),
        ):
            assert answer.status_code == 410
            assert "expired" in answer.text
            assert answer.headers["Cache-Control"] == "no-store"
        forged = await client.get("/recover/forged.token.value")
        assert forged.status_code == 400 and "not valid" in forged.text
        assert "forged.token.value" not in forged.text
        assert CONTEXT.verify(OLD_KEY, await stored_hash(database))

    run_with(app, scenario)


@contextlib.contextmanager
def serving(app: FastAPI) -> Iterator[str]:
    """``app`` served by uvicorn on 127.0.0.1 in a thread, as the README runs it; its base URL.

    As with ``--no-proxy-headers``: the app's own setting alone decides whom
    to believe about the client's address.
    """
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(
            app, lifespan="on", log_level="warning", http="h11", ws="none", proxy_headers=False
        )
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)
        listener.close()
        assert not thread.is_alive()


@pytest.fixture
def served(database: Path, smtp: RunningSMTPServer) -> Iterator[tuple[str, FastAPI]]:
    """The app served by uvicorn on 127.0.0.1, plain http; its base URL."""
    app = make_app(database, smtp, confirm_url=README_CONFIRM_URL)
    with serving(app) as base_url:
        yield base_url, app


def wait_for_mail(smtp: RunningSMTPServer, count: int) -> None:
    deadline = time.monotonic() + 20
    while len(smtp.received) < count:  # confirmation mails leave in the background
        assert time.monotonic() < deadline, "no confirmation mail"
        time.sleep(0.05)


def test_served_by_uvicorn_over_real_http(
    served: tuple[str, FastAPI], database: Path, smtp: RunningSMTPServer
) -> None:
    """Over real HTTP to uvicorn: request, confirm, then login with the mailed key."""
    base_url, _app = served
    with httpx.Client(base_url=base_url, timeout=30) as client:
        form = form_token(client.get("/forgot"))
        asked = client.post(
            "/forgot",
            headers=SAME_ORIGIN,
            data={"kind": "domain", "value": "ejemploxmundo.com.ar", "csrf_token": form},
        )
        assert asked.status_code == 200
        wait_for_mail(smtp, 1)
        token = token_from(smtp.received[0].message)
        page = client.get(f"/recover/{token}")
        assert page.status_code == 200
        assert page.headers["referrer-policy"] == "no-referrer"
        done = client.post(
            f"/recover/{token}", headers=SAME_ORIGIN, data={"csrf_token": form_token(page)}
        )
        assert done.status_code == 200
        assert len(smtp.received) == 2
        key = key_from(smtp.received[1].message)
        login = client.post("/login", data={"number": "9000", "key": key, "csrf_token": form})
        assert login.status_code == 200 and "Signed in as client 9000" in login.text
        assert client.post("/login", json={"number": "9000", "key": OLD_KEY}).status_code == 401


def assert_security_headers(response: httpx.Response) -> None:
    headers = response.headers
    where = f"{response.request.method} {response.request.url.path} ({response.status_code})"
    assert headers["x-frame-options"] == "DENY", where
    csp = headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp and "default-src 'none'" in csp, where
    assert "form-action 'self'" in csp, where
    assert headers["referrer-policy"] == "no-referrer", where
    assert headers["cache-control"] == "no-store", where
    assert headers["x-content-type-options"] == "nosniff", where


def test_cross_site_posts_are_refused_over_real_http(
    served: tuple[str, FastAPI], database: Path, smtp: RunningSMTPServer
) -> None:
    """Another site's form gets 403 and mails nothing; the app's own form works."""
    base_url, _app = served
    ask = {"kind": "client_number", "value": "9000"}
    with (
        httpx.Client(base_url=base_url, timeout=30) as victim,
        httpx.Client(base_url=base_url, timeout=30) as attacker,
    ):
        form = victim.get("/forgot")
        cookie = form.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and "path=/" in cookie
        token = form_token(form)
        # A page on https://evil.example posting to the app through the victim's browser.
        answers = [
            victim.post("/forgot", headers=CROSS_SITE, data=ask),
            # Fetch Metadata alone refuses it, even holding the victim's token and cookie.
            victim.post("/forgot", headers=CROSS_SITE, data={**ask, "csrf_token": token}),
            victim.post(
                "/forgot",
                headers={"Sec-Fetch-Site": "same-site"},
                data={**ask, "csrf_token": token},
            ),
            victim.post("/forgot", headers=CROSS_SITE, json=ask),
            victim.post("/login", headers=CROSS_SITE, data={"number": "9000", "key": OLD_KEY}),
            # A browser that sends no Fetch Metadata: the missing token refuses it.
            victim.post("/forgot", data=ask),
            victim.post(
                "/forgot",
                content=b'{"kind": "client_number", "value": "9000"}',
                headers={"content-type": "text/plain"},
            ),
            # The attacker's own valid token does not fit the victim's cookie.
            victim.post("/forgot", data={**ask, "csrf_token": form_token(attacker.get("/forgot"))}),
            victim.post("/forgot", data={**ask, "csrf_token": "forged"}),
        ]
        for refused in answers:
            assert refused.status_code == 403, refused.request.content
            assert "another site" in refused.text
            assert_security_headers(refused)
        assert not smtp.received

        # The app's own page, as Chromium posts it under no-referrer.
        sent = victim.post("/forgot", headers=SAME_ORIGIN, data={**ask, "csrf_token": token})
        assert sent.status_code == 200 and "we have mailed" in sent.text
        # Not from a browser at all: JSON needs no token.
        assert victim.post("/forgot", json=ask).status_code == 200
        wait_for_mail(smtp, 1)
        link = token_from(smtp.received[0].message)

        page = victim.get(f"/recover/{link}")
        assert page.status_code == 200
        confirm = victim.post(
            f"/recover/{link}", headers=CROSS_SITE, data={"csrf_token": form_token(page)}
        )
        assert confirm.status_code == 403
        assert CONTEXT.verify(OLD_KEY, asyncio.run(stored_hash(database))), (
            "a cross-site Confirm rotated the key"
        )
        seen = [
            form,
            page,
            sent,
            confirm,
            victim.get("/recover/forged.token"),
            victim.get("/no-such-page"),
            victim.post("/forgot", json=[]),
            victim.get("/docs"),
        ]
        for response in seen:
            assert_security_headers(response)
        assert [response.status_code for response in seen[-4:]] == [400, 404, 400, 404]


def test_in_a_real_browser(served: tuple[str, FastAPI], smtp: RunningSMTPServer) -> None:
    """In Chromium the app's own form goes through; another site's page posting it gets 403.

    The other site is http://localhost:<port>, another site than 127.0.0.1 to
    the browser; Playwright answers for it with a page that submits a form to
    the app as it loads.
    """
    reason = chromium.unavailable()
    if reason:
        if chromium.REQUIRED:
            pytest.fail(f"CREDRECOVERY_REQUIRE_SERVICES=1 but {reason}")
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    base_url, _app = served
    evil = base_url.replace("127.0.0.1", "localhost") + "/prize"
    attack = (
        f'<form method="post" action="{base_url}/forgot">'
        '<input name="kind" value="client_number"><input name="value" value="9000">'
        "</form><script>document.forms[0].submit()</script>"
    )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium.CHROMIUM, args=chromium.CHROMIUM_ARGS
        )
        try:
            page = browser.new_page()
            page.goto(base_url + "/forgot")
            page.select_option("select[name=kind]", "client_number")
            page.fill("input[name=value]", "9000")
            with page.expect_response(lambda response: response.request.method == "POST") as own:
                page.click("button")
            assert own.value.status == 200, own.value.request.all_headers()
            assert own.value.request.all_headers()["origin"] == "null"

            page.route(evil, lambda route: route.fulfill(content_type="text/html", body=attack))
            with page.expect_response(lambda response: response.request.method == "POST") as other:
                page.goto(evil)
            assert other.value.status == 403
            assert "another site" in page.content()
        finally:
            browser.close()
    wait_for_mail(smtp, 1)
    assert len(smtp.received) == 1, "the other site's post sent mail"


@pytest.mark.parametrize("trusted", [(), ("127.0.0.1",)], ids=["no-proxy", "behind-proxy"])
def test_forwarded_for_counts_only_from_a_trusted_proxy(
    database: Path, smtp: RunningSMTPServer, trusted: tuple[str, ...]
) -> None:
    """X-Forwarded-For names the requester only when the peer is a trusted proxy.

    Seen through the per-requester limit, one request a minute: by default
    two forged addresses from one peer share its count; behind a trusted
    proxy each forwarded client has its own, and a forged left-hand entry
    does not change whose it is.
    """
    app = make_app(
        database,
        smtp,
        confirm_url=README_CONFIRM_URL,
        trusted_proxies=trusted,
        rate_limits=RateLimits(per_requester="1/minute"),
    )
    with serving(app) as base_url, httpx.Client(base_url=base_url, timeout=30) as client:

        def ask(forwarded_for: str, value: str) -> int:
            return client.post(
                "/forgot",
                headers={"X-Forwarded-For": forwarded_for},
                json={"kind": "email", "value": value},
            ).status_code

        statuses = [ask("203.0.113.7", "a@example.com"), ask("198.51.100.9", "b@example.com")]
        if not trusted:
            assert statuses == [200, 429], "a forged X-Forwarded-For escaped the limit"
        else:
            assert statuses == [200, 200], "the forwarded clients shared one count"
            assert ask("192.0.2.1, 203.0.113.7", "c@example.com") == 429


def test_signin_guessing_answers_429_and_spares_the_client(
    database: Path, smtp: RunningSMTPServer
) -> None:
    """Wrong keys from one address get 429 with Retry-After before the hundredth;
    the client's own sign-in from another address, behind the trusted proxy, works."""
    app = make_app(database, smtp, confirm_url=README_CONFIRM_URL, trusted_proxies=("127.0.0.1",))
    with serving(app) as base_url, httpx.Client(base_url=base_url, timeout=30) as client:

        def login(address: str, key: str) -> httpx.Response:
            return client.post(
                "/login", headers={"X-Forwarded-For": address}, json={"number": "9000", "key": key}
            )

        statuses = []
        for attempt in range(100):
            answer = login("203.0.113.7", f"Wrong-Key-Number-{attempt:03}")
            statuses.append(answer.status_code)
            if answer.status_code == 429:
                assert int(answer.headers["Retry-After"]) > 0
                break
        assert statuses[-1] == 429 and len(statuses) < 100
        assert set(statuses[:-1]) == {401}
        own = login("198.51.100.20", OLD_KEY)
        assert (own.status_code, own.json()) == (200, {"number": "9000"})


def test_settings_come_from_the_environment() -> None:
    """Settings.from_env reads the documented variables and keeps secrets out of its repr."""
    settings = fastapi_recovery.Settings.from_env(
        {
            "CREDRECOVERY_SECRET_KEY": SECRET,
            "CREDRECOVERY_CONFIRM_URL": CONFIRM_URL,
            "SMTP_HOST": "mail.example.com",
            "SMTP_PORT": "587",
            "SMTP_SECURITY": "starttls",
            "SMTP_USERNAME": "panel",
            "SMTP_PASSWORD": "smtp-password-value",
        }
    )
    assert (settings.smtp_host, settings.smtp_port, settings.smtp_security) == (
        "mail.example.com",
        587,
        "starttls",
    )
    assert SECRET not in repr(settings) and "smtp-password-value" not in repr(settings)
    assert settings.trusted_proxies == ()
    behind = fastapi_recovery.Settings.from_env(
        {
            "CREDRECOVERY_SECRET_KEY": SECRET,
            "CREDRECOVERY_CONFIRM_URL": CONFIRM_URL,
            "CREDRECOVERY_TRUSTED_PROXIES": "127.0.0.1, 10.0.0.0/8 ::1",
        }
    )
    assert behind.trusted_proxies == ("127.0.0.1", "10.0.0.0/8", "::1")
    with pytest.raises(ValueError, match="SMTP_SECURITY"):
        fastapi_recovery.Settings.from_env(
            {
                "CREDRECOVERY_SECRET_KEY": SECRET,
                "CREDRECOVERY_CONFIRM_URL": CONFIRM_URL,
                "SMTP_SECURITY": "ssl",
            }
        )


def test_embedding_doc_quotes_the_example_verbatim() -> None:
    """Each excerpt the FastAPI section of docs/embedding.md quotes is in the named file as is."""
    excerpts = quoted_excerpts("FastAPI")
    assert len(excerpts) >= 2
    for path, excerpt in excerpts:
        assert path.startswith("examples/fastapi_app/"), path
        source = (ROOT / path).read_text(encoding="utf-8")
        assert excerpt.strip() and excerpt in source, f"{path} no longer contains:\n{excerpt}"


def test_proxy_section_quotes_the_example_verbatim() -> None:
    """The FastAPI excerpts of docs/embedding.md's proxy section are in the app as they are."""
    excerpts = [
        (path, excerpt)
        for path, excerpt in quoted_excerpts("Behind a reverse proxy")
        if path.startswith("examples/fastapi_app/")
    ]
    assert excerpts
    for path, excerpt in excerpts:
        source = (ROOT / path).read_text(encoding="utf-8")
        assert excerpt in source, f"{path} no longer contains:\n{excerpt}"


def _without_settings(**settings: str) -> dict[str, str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("CREDRECOVERY_", "SMTP_"))
    }
    return {**env, **settings}


@pytest.mark.parametrize(
    ("settings", "missing"),
    [
        ({}, "CREDRECOVERY_SECRET_KEY"),
        ({"CREDRECOVERY_SECRET_KEY": SECRET}, "CREDRECOVERY_CONFIRM_URL"),
        (
            {
                "CREDRECOVERY_SECRET_KEY": SECRET,
                "CREDRECOVERY_CONFIRM_URL": CONFIRM_URL,
                "SMTP_PORT": "smtp",
            },
            "SMTP_PORT",
        ),
        (
            {
                "CREDRECOVERY_SECRET_KEY": SECRET,
                "CREDRECOVERY_CONFIRM_URL": CONFIRM_URL,
                "CREDRECOVERY_TRUSTED_PROXIES": "1",
            },
            "CREDRECOVERY_TRUSTED_PROXIES",
        ),
    ],
)
def test_uvicorn_names_a_missing_setting_and_exits_2(
    settings: dict[str, str], missing: str
) -> None:
    """The README's uvicorn command, without a setting, names it and exits 2: no traceback."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--app-dir",
            str(EXAMPLE),
            "fastapi_recovery:app",
            "--port",
            "0",
        ],
        env=_without_settings(**settings),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert f"fastapi_recovery: {missing}" in result.stderr
    assert "Traceback" not in result.stderr and "KeyError" not in result.stderr
    assert SECRET not in result.stderr


def test_settings_error_names_the_variable() -> None:
    """Settings.from_env raises SettingsError, a ValueError, naming what is missing."""
    with pytest.raises(fastapi_recovery.SettingsError, match="CREDRECOVERY_SECRET_KEY"):
        fastapi_recovery.Settings.from_env({})
    with pytest.raises(ValueError, match="CREDRECOVERY_CONFIRM_URL is not set"):
        fastapi_recovery.Settings.from_env({"CREDRECOVERY_SECRET_KEY": SECRET})
