"""examples/fastapi_app: the asyncio flow over HTTP, mail read from a real SMTP server.

Most tests drive the app in process through ``httpx.ASGITransport``, its
lifespan entered as a server would; one serves it with uvicorn on 127.0.0.1
and talks to it over real HTTP.
"""

from __future__ import annotations

import asyncio
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
from helpers.smtp_server import RunningSMTPServer, running_smtp_server

EXAMPLE = ROOT / "examples" / "fastapi_app"
if str(EXAMPLE) not in sys.path:
    sys.path.insert(0, str(EXAMPLE))

import fastapi_recovery  # noqa: E402 - found on the path added above

CONTEXT = cheap_context()
ANA = "ana@ejemploxmundo.com.ar"


@pytest.fixture
def database(tmp_path: Path) -> Path:
    """A SQLite file holding client 9000, with two domains and the old key."""
    path = tmp_path / "clients.sqlite3"

    async def seed() -> None:
        async with AsyncSQLiteDirectory(path, crypt_context=CONTEXT) as directory:
            await directory.add_client("9000", ANA, key=OLD_KEY, name="Ana Example",
                                       domains=["ejemploxmundo.com.ar", "otro-ejemplo.com"])

    asyncio.run(seed())
    return path


@pytest.fixture
def smtp() -> Iterator[RunningSMTPServer]:
    with running_smtp_server() as server:
        yield server


def make_app(database: Path, smtp: RunningSMTPServer, **options: Any) -> FastAPI:
    settings = fastapi_recovery.Settings(
        secret_key=SECRET, confirm_url=CONFIRM_URL, sender=SENDER, database=str(database),
        smtp_host=smtp.host, smtp_port=smtp.port,
        service_options={"crypt_context": CONTEXT, **options},
    )
    return fastapi_recovery.create_app(settings)


def run_with(app: FastAPI, scenario: Callable[[httpx.AsyncClient], Awaitable[None]]) -> None:
    """Start ``app`` as a server would (its lifespan), run ``scenario`` against it, stop it."""
    async def main() -> None:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport,
                                         base_url="http://testserver") as client:
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


@pytest.mark.parametrize(("kind", "typed"), [
    ("domain", "Otro-Ejemplo.COM"),
    ("client_number", " 9000 "),
    ("email", "Ana@EjemploXMundo.com.ar"),
])
def test_whole_flow_by_each_identifier(database: Path, smtp: RunningSMTPServer,
                                       kind: str, typed: str) -> None:
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

        done = await client.post(f"/recover/{token}")
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

        again = await client.post(f"/recover/{token}")
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
        hit = await client.post("/forgot", data={"kind": "email", "value": ANA})
        miss = await client.post("/forgot", data={"kind": "email", "value": "no@example.com"})
        assert hit.headers["content-type"].startswith("text/html")
        assert (hit.status_code, hit.text) == (miss.status_code, miss.text) == (
            200, fastapi_recovery.page(fastapi_recovery.SENT))
        await delivered(app, smtp, 1)

    run_with(app, scenario)


def test_malformed_identifier_answers_400(database: Path, smtp: RunningSMTPServer) -> None:
    """InvalidIdentifier answers 400, with the message in JSON or on the form again."""
    app = make_app(database, smtp)

    async def scenario(client: httpx.AsyncClient) -> None:
        as_json = await client.post("/forgot", json={"kind": "domain", "value": "not a domain"})
        assert as_json.status_code == 400 and as_json.json()["detail"]
        as_form = await client.post("/forgot", data={"kind": "planet", "value": "earth"})
        assert as_form.status_code == 400
        assert 'role="alert"' in as_form.text and 'value="earth"' in as_form.text
        unreadable = await client.post("/forgot", content=b"[1, 2]",
                                       headers={"content-type": "application/json"})
        assert unreadable.status_code == 400
        await delivered(app, smtp, 0)

    run_with(app, scenario)


def test_rate_limited_request_answers_429(database: Path, smtp: RunningSMTPServer) -> None:
    """Past the per-requester limit POST /forgot answers 429 with Retry-After."""
    app = make_app(database, smtp, rate_limits=RateLimits(per_requester="2/minute"))

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
        for answer in (await client.get(f"/recover/{token}"),
                       await client.post(f"/recover/{token}")):
            assert answer.status_code == 410
            assert "expired" in answer.text
            assert answer.headers["Cache-Control"] == "no-store"
        forged = await client.get("/recover/forged.token.value")
        assert forged.status_code == 400 and "not valid" in forged.text
        assert "forged.token.value" not in forged.text
        assert CONTEXT.verify(OLD_KEY, await stored_hash(database))

    run_with(app, scenario)


@pytest.fixture
def served(database: Path, smtp: RunningSMTPServer) -> Iterator[tuple[str, FastAPI]]:
    """The app served by uvicorn on 127.0.0.1 in a thread; its base URL."""
    app = make_app(database, smtp)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, lifespan="on", log_level="warning",
                                           http="h11", ws="none"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}", app
    finally:
        server.should_exit = True
        thread.join(30)
        listener.close()
        assert not thread.is_alive()


def test_served_by_uvicorn_over_real_http(served: tuple[str, FastAPI],
                                          database: Path, smtp: RunningSMTPServer) -> None:
    """Over real HTTP to uvicorn: request, confirm, then login with the mailed key."""
    base_url, _app = served
    with httpx.Client(base_url=base_url, timeout=30) as client:
        asked = client.post("/forgot", data={"kind": "domain", "value": "ejemploxmundo.com.ar"})
        assert asked.status_code == 200
        deadline = time.monotonic() + 20
        while not smtp.received:  # the confirmation mail leaves in the background
            assert time.monotonic() < deadline, "no confirmation mail"
            time.sleep(0.05)
        token = token_from(smtp.received[0].message)
        page = client.get(f"/recover/{token}")
        assert page.status_code == 200
        assert page.headers["referrer-policy"] == "no-referrer"
        done = client.post(f"/recover/{token}", headers={"Origin": "null"})
        assert done.status_code == 200
        assert len(smtp.received) == 2
        key = key_from(smtp.received[1].message)
        login = client.post("/login", data={"number": "9000", "key": key})
        assert login.status_code == 200 and "Signed in as client 9000" in login.text
        assert client.post("/login", data={"number": "9000", "key": OLD_KEY}).status_code == 401


def test_settings_come_from_the_environment() -> None:
    """Settings.from_env reads the documented variables and keeps secrets out of its repr."""
    settings = fastapi_recovery.Settings.from_env({
        "CREDRECOVERY_SECRET_KEY": SECRET, "CREDRECOVERY_CONFIRM_URL": CONFIRM_URL,
        "SMTP_HOST": "mail.example.com", "SMTP_PORT": "587", "SMTP_SECURITY": "starttls",
        "SMTP_USERNAME": "panel", "SMTP_PASSWORD": "smtp-password-value",
    })
    assert (settings.smtp_host, settings.smtp_port, settings.smtp_security) == (
        "mail.example.com", 587, "starttls")
    assert SECRET not in repr(settings) and "smtp-password-value" not in repr(settings)
    with pytest.raises(ValueError, match="SMTP_SECURITY"):
        fastapi_recovery.Settings.from_env({
            "CREDRECOVERY_SECRET_KEY": SECRET, "CREDRECOVERY_CONFIRM_URL": CONFIRM_URL,
            "SMTP_SECURITY": "ssl"})


def quoted_excerpts(section: str) -> list[tuple[str, str]]:
    """The fenced blocks of docs/embedding.md's ``## section``: (file named on line 1, rest)."""
    text = (ROOT / "docs" / "embedding.md").read_text(encoding="utf-8")
    match = re.search(rf"^## {re.escape(section)}\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert match, f"docs/embedding.md has no '## {section}' section"
    excerpts = []
    for block in re.findall(r"^```\w*\n(.*?)^```", match.group(1), re.M | re.S):
        first, _, rest = block.partition("\n")
        named = re.fullmatch(r"#\s*(examples/\S+)", first.strip())
        if named:
            excerpts.append((named.group(1), rest))
    return excerpts


def test_embedding_doc_quotes_the_example_verbatim() -> None:
    """Each excerpt the FastAPI section of docs/embedding.md quotes is in the named file as is."""
    excerpts = quoted_excerpts("FastAPI")
    assert len(excerpts) >= 2
    for path, excerpt in excerpts:
        assert path.startswith("examples/fastapi_app/"), path
        source = (ROOT / path).read_text(encoding="utf-8")
        assert excerpt.strip() and excerpt in source, f"{path} no longer contains:\n{excerpt}"


def _without_settings(**settings: str) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items()
           if not name.startswith(("CREDRECOVERY_", "SMTP_"))}
    return {**env, **settings}


@pytest.mark.parametrize(("settings", "missing"), [
    ({}, "CREDRECOVERY_SECRET_KEY"),
    ({"CREDRECOVERY_SECRET_KEY": SECRET}, "CREDRECOVERY_CONFIRM_URL"),
    ({"CREDRECOVERY_SECRET_KEY": SECRET, "CREDRECOVERY_CONFIRM_URL": CONFIRM_URL,
      "SMTP_PORT": "smtp"}, "SMTP_PORT"),
])
def test_uvicorn_names_a_missing_setting_and_exits_2(settings: dict[str, str],
                                                     missing: str) -> None:
    """The README's uvicorn command, without a setting, names it and exits 2: no traceback."""
    result = subprocess.run(
        [sys.executable, "-m", "uvicorn", "--app-dir", str(EXAMPLE), "fastapi_recovery:app",
         "--port", "0"],
        env=_without_settings(**settings), capture_output=True, text=True, timeout=60,
        cwd=ROOT, check=False)
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
