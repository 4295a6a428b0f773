"""What only the asyncio adapters must show; their shared contract lives in the contract tests.

A SQLite lock held by another process must not stall the event loop; the
asyncio SQLite directory shares the synchronous one's file format; the asyncio
SQLAlchemy directory keeps a refused row out of its errors on both drivers;
and AsyncSMTPMailer turns every server reply into the very DeliveryFailed that
SMTPMailer makes of it, which the SMTP tests here check on both mailers alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sqlite3
import ssl
import stat
import time
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from credrecovery import DeliveryFailed, DirectoryError, IdentifierKind, cheap_context
from credrecovery.async_smtp import AsyncSMTPMailer
from credrecovery.async_sqlalchemy import AsyncSQLAlchemyDirectory
from credrecovery.async_sqlite import AsyncSQLiteDirectory
from credrecovery.smtp import SMTPMailer
from credrecovery.sqlite import SQLiteDirectory
from helpers import pg
from helpers.smtp_server import (
    LocalCertificate,
    RunningSMTPServer,
    make_certificate,
    running_smtp_server,
)

CONTEXT = cheap_context()
OLD_HASH = CONTEXT.hash("Old-Access-Key-2024")
NEW_HASH = CONTEXT.hash("New-Access-Key-2025")
PASSWORD = "s3cret-Smtp-Passw0rd"
TO = "client@example.com"
NUMBER = IdentifierKind.CLIENT_NUMBER


# --- SQLite -----------------------------------------------------------------------------------


def test_a_held_sqlite_lock_leaves_the_event_loop_running(tmp_path: Path) -> None:
    """While a write waits for another connection's lock, other tasks keep running."""
    path = tmp_path / "clients.sqlite3"
    with SQLiteDirectory(path, crypt_context=CONTEXT) as sync_directory:
        sync_directory.add_client("1001", "alice@example.com", key_hash=OLD_HASH)

    async def scenario() -> tuple[int, float]:
        ticks = 0

        async def heartbeat() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        async with AsyncSQLiteDirectory(path, timeout=0.5) as directory:
            # A first call, before the lock, opens and prepares the file.
            assert await directory.find(NUMBER, "1001") is not None
            beat = asyncio.create_task(heartbeat())
            started = time.monotonic()
            with pytest.raises(DirectoryError) as caught:
                await directory.replace_key_hash("1001", OLD_HASH, NEW_HASH)
            waited = time.monotonic() - started
            beat.cancel()
            assert str(caught.value) == "the client directory failed to replace a key hash"
            assert isinstance(caught.value.__cause__, sqlite3.OperationalError)
            assert OLD_HASH not in str(caught.value) and NEW_HASH not in str(caught.value)
        return ticks, waited

    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as locker:
        locker.execute("BEGIN IMMEDIATE")
        ticks, waited = asyncio.run(scenario())
        locker.execute("ROLLBACK")
    assert waited >= 0.4
    # About 50 in 0.5 s on a quiet machine, under 20 on a busy one; a blocked
    # loop would manage none until the wait was over.
    assert ticks >= 10


def test_sqlite_file_is_private_and_shared_with_the_sync_directory(tmp_path: Path) -> None:
    """The file it creates is mode 0600, and either directory reads what the other wrote."""
    path = tmp_path / "clients.sqlite3"

    async def write_and_read() -> None:
        async with AsyncSQLiteDirectory(path, crypt_context=CONTEXT) as directory:
            assert not path.exists()  # nothing is opened before the first call
            await directory.add_client(
                "1001", "Alice@Example.com", key_hash=OLD_HASH, domains=["alice.example"]
            )
        assert stat.S_IMODE(path.stat().st_mode) == 0o600

    asyncio.run(write_and_read())
    with SQLiteDirectory(path) as sync_directory:
        found = sync_directory.find(IdentifierKind.DOMAIN, "alice.example")
        assert found is not None and found.email == "alice@example.com"
        assert sync_directory.replace_key_hash("1001", OLD_HASH, NEW_HASH)

    async def read_back() -> str | None:
        async with AsyncSQLiteDirectory(path) as directory:
            client = await directory.find(NUMBER, "1001")
            return None if client is None else client.key_hash

    assert asyncio.run(read_back()) == NEW_HASH


def test_sqlite_refuses_memory_and_calls_after_close(tmp_path: Path) -> None:
    """ ":memory:" is refused at construction; a closed directory raises DirectoryError."""
    with pytest.raises(ValueError, match="database file"):
        AsyncSQLiteDirectory(":memory:")

    async def after_close() -> None:
        directory = AsyncSQLiteDirectory(tmp_path / "clients.sqlite3")
        await directory.find(NUMBER, "1001")
        await directory.close()
        with pytest.raises(DirectoryError, match="closed"):
            await directory.find(NUMBER, "1001")

    asyncio.run(after_close())


def test_sqlite_file_of_a_later_version_is_refused(tmp_path: Path) -> None:
    """A file a later version wrote fails the first call, as the sync directory refuses it."""
    path = tmp_path / "clients.sqlite3"
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("PRAGMA user_version = 99")

    async def first_call() -> None:
        async with AsyncSQLiteDirectory(path) as directory:
            await directory.find(NUMBER, "1001")

    with pytest.raises(DirectoryError, match="schema version 99"):
        asyncio.run(first_call())


# --- SQLAlchemy on PostgreSQL ------------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.parametrize("driver", ["asyncpg", "psycopg"])
def test_refused_row_keeps_codes_and_drops_the_row(driver: str) -> None:
    """A constraint's refusal keeps SQLSTATE and constraint name, and nothing of the row."""
    with pg.fresh_schema() as schema:
        url = sa.make_url(schema.url).set(drivername=f"postgresql+{driver}")
        connect_args: dict[str, Any] = (
            {"server_settings": {"search_path": schema.name}}
            if driver == "asyncpg"
            else {"options": f"-csearch_path={schema.name}"}
        )
        engine = create_async_engine(url, hide_parameters=True, connect_args=connect_args)

        async def scenario() -> ValueError:
            async with AsyncSQLAlchemyDirectory(engine, crypt_context=CONTEXT) as directory:
                await directory.create_schema()
                async with engine.begin() as connection:
                    await connection.exec_driver_sql(
                        "ALTER TABLE credrecovery_clients"
                        " ADD CONSTRAINT name_is_short CHECK (length(name) < 5)"
                    )
                with pytest.raises(ValueError) as caught:
                    await directory.add_client(
                        "1001", "alice@example.com", key_hash=OLD_HASH, name="Alice Martin"
                    )
                assert await directory.find(NUMBER, "1001") is None
            # Leaving the block closed the directory, not the engine, which is the test's.
            await engine.dispose()
            return caught.value

        error = asyncio.run(scenario())
    assert getattr(error, "sqlstate", None) == "23514"
    assert getattr(error, "constraint", None) == "name_is_short"
    assert error.__cause__ is None and error.__context__ is None
    assert "Alice" not in str(error) and OLD_HASH not in str(error)


@pytest.mark.postgres
def test_sqlalchemy_repr_hides_the_password() -> None:
    """repr names the URL without its password, and the tables."""
    directory = AsyncSQLAlchemyDirectory("postgresql+asyncpg://panel:Pg-Passw0rd@db.example/app")
    assert "Pg-Passw0rd" not in repr(directory)
    assert "credrecovery_clients" in repr(directory)
    asyncio.run(directory.dispose())


# --- SMTP: the same reply, the same DeliveryFailed ---------------------------------------------


def _sync(mailer: SMTPMailer) -> Callable[[EmailMessage], None]:
    return mailer.send


def _async(mailer: AsyncSMTPMailer) -> Callable[[EmailMessage], None]:
    def send(message: EmailMessage) -> None:
        asyncio.run(mailer.send(message))

    return send


#: Each mailer class with a way to call its send from a test body.
MAILERS = [
    pytest.param(lambda *a, **kw: _sync(SMTPMailer(*a, **kw)), id="smtplib"),
    pytest.param(lambda *a, **kw: _async(AsyncSMTPMailer(*a, **kw)), id="aiosmtplib"),
]


def make_message(*to: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = "Panel <panel@hosting.example>"
    message["To"] = ", ".join(to or (TO,))
    message["Cc"] = "cc@example.org"
    message["Subject"] = "Your new access key"
    message.set_content("Client number: 10042\n")
    return message


def failure(
    send: Callable[[EmailMessage], None],
    message: EmailMessage | None = None,
) -> DeliveryFailed:
    with pytest.raises(DeliveryFailed) as caught:
        send(message if message is not None else make_message())
    assert caught.value.__cause__ is not None
    assert PASSWORD not in str(caught.value)
    return caught.value


@pytest.fixture
def server() -> Iterator[RunningSMTPServer]:
    with running_smtp_server() as server:
        yield server


@pytest.fixture
def certificate(tmp_path: Path) -> LocalCertificate:
    return make_certificate(tmp_path)


@pytest.mark.parametrize("make", MAILERS)
@pytest.mark.parametrize(
    ("command", "reply", "expected"),
    [
        (
            "MAIL",
            "421 4.3.2 Service shutting down",
            ("SMTP server refused the sender (421 4.3.2)", True, 421, "4.3.2"),
        ),
        (
            "MAIL",
            "553 5.1.8 Sender domain example.org does not exist",
            ("SMTP server refused the sender (553 5.1.8)", False, 553, "5.1.8"),
        ),
        (
            "RCPT",
            "451 4.3.0 Try again later",
            ("SMTP server refused the recipient (451 4.3.0)", True, 451, "4.3.0"),
        ),
        (
            "RCPT",
            "550 5.1.1 No such user",
            ("SMTP server refused the recipient (550 5.1.1)", False, 550, "5.1.1"),
        ),
        (
            "RCPT",
            "450 Mailbox busy, try later",
            ("SMTP server refused the recipient (450)", True, 450, None),
        ),
        (
            "DATA",
            "554 5.7.1 Message rejected",
            (
                "SMTP server refused the message (554 5.7.1); the server may require a login:"
                " set username and password",
                False,
                554,
                "5.7.1",
            ),
        ),
        (
            "DATA",
            "550 5.7.26 Unauthenticated mail from example.org is not accepted",
            ("SMTP server refused the message (550 5.7.26)", False, 550, "5.7.26"),
        ),
        (
            "RCPT",
            "530 5.7.0 Must issue a STARTTLS command first",
            (
                "SMTP server refused the recipient (530 5.7.0); the server may require STARTTLS:"
                " use security='starttls'",
                False,
                530,
                "5.7.0",
            ),
        ),
    ],
)
def test_reply_maps_to_the_same_failure(
    server: RunningSMTPServer, make: Any, command: str, reply: str, expected: tuple[Any, ...]
) -> None:
    """Both mailers make one DeliveryFailed of a reply: message, temporary flag and codes."""
    server.handler.answer(command, reply)
    exc = failure(make(server.host, server.port))
    assert (str(exc), exc.temporary, exc.smtp_code, exc.enhanced_code) == expected
    assert reply.split(maxsplit=2)[2] not in str(exc)
    assert server.received == []


@pytest.mark.parametrize("make", MAILERS)
def test_mixed_refusals_report_the_permanent_code(server: RunningSMTPServer, make: Any) -> None:
    """One recipient deferred and one refused: the send fails, permanently, with the 5xx."""
    server.handler.refuse(TO, "451 4.2.1 Mailbox busy")
    server.handler.refuse("second@example.net", "550 5.1.1 No such user")
    exc = failure(make(server.host, server.port), make_message(TO, "second@example.net"))
    assert (str(exc), exc.temporary) == ("SMTP server refused the recipient (550 5.1.1)", False)


@pytest.mark.parametrize("make", MAILERS)
def test_connection_refused_is_temporary(make: Any) -> None:
    """No server listening: the same temporary failure, worded as the socket module words it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        exc = failure(make("127.0.0.1", sock.getsockname()[1], timeout=5))
    assert (str(exc), exc.temporary) == (
        "could not reach the SMTP server: Connection refused",
        True,
    )


@pytest.mark.parametrize("make", MAILERS)
def test_starttls_not_offered_is_permanent(server: RunningSMTPServer, make: Any) -> None:
    """security='starttls' with a server that does not offer it fails, naming STARTTLS."""
    exc = failure(make(server.host, server.port, security="starttls"))
    assert (str(exc), exc.temporary) == ("SMTP server does not offer STARTTLS", False)


@pytest.mark.parametrize("make", MAILERS)
def test_login_without_server_auth_is_permanent(server: RunningSMTPServer, make: Any) -> None:
    """A login the server offers no AUTH for fails permanently, naming AUTH."""
    exc = failure(
        make(server.host, server.port, username="panel", password=PASSWORD, allow_plain_login=True)
    )
    assert (str(exc), exc.temporary) == ("SMTP server does not offer AUTH", False)


@pytest.mark.parametrize("make", MAILERS)
def test_untrusted_certificate_is_permanent(certificate: LocalCertificate, make: Any) -> None:
    """A certificate the context does not trust is a permanent failure."""
    with running_smtp_server(implicit_tls=certificate.server_context()) as server:
        exc = failure(
            make("localhost", server.port, security="tls", ssl_context=ssl.create_default_context())
        )
    assert exc.temporary is False
    assert str(exc).startswith("SMTP server certificate rejected")


@pytest.mark.parametrize("make", MAILERS)
def test_tls_against_a_plain_port_is_permanent(server: RunningSMTPServer, make: Any) -> None:
    """security='tls' on a port that greets in clear text suggests STARTTLS."""
    exc = failure(
        make(
            server.host,
            server.port,
            security="tls",
            timeout=5,
            ssl_context=ssl.create_default_context(),
        )
    )
    assert exc.temporary is False
    assert str(exc) == (
        f"TLS handshake with port {server.port} failed: the server may expect"
        " STARTTLS; use security='starttls'"
    )


@pytest.mark.parametrize("make", MAILERS)
def test_plain_client_at_an_implicit_tls_server_times_out_before_greeting(
    certificate: LocalCertificate, make: Any
) -> None:
    """A plain client waiting for an implicit-TLS server's greeting times out, temporarily."""
    with running_smtp_server(implicit_tls=certificate.server_context()) as server:
        exc = failure(make(server.host, server.port, timeout=0.5))
    assert (str(exc), exc.temporary) == ("SMTP server timed out before its greeting", True)


@pytest.mark.parametrize("make", MAILERS)
def test_login_over_starttls_and_a_wrong_password(certificate: LocalCertificate, make: Any) -> None:
    """A login over STARTTLS delivers; a wrong password is a permanent failure with codes."""
    with running_smtp_server(
        starttls=certificate.server_context(), users={"panel": PASSWORD}
    ) as server:
        options = {
            "security": "starttls",
            "ssl_context": certificate.client_context(),
            "username": "panel",
        }
        make("localhost", server.port, password=PASSWORD, **options)(make_message())
        assert [mail.rcpt_tos for mail in server.received] == [(TO,)]
        exc = failure(make("localhost", server.port, password="wrong-" + PASSWORD, **options))
    assert exc.temporary is False
    assert str(exc).startswith("SMTP login failed (535")


@pytest.mark.parametrize("make", MAILERS)
def test_dsn_envelope_sender_and_to_only(make: Any) -> None:
    """With DSN offered: RET=HDRS, the envelope sender as MAIL FROM, and only To as RCPT."""
    with running_smtp_server(dsn=True) as server:
        make(server.host, server.port, envelope_sender="bounces@hosting.example")(make_message())
        [mail] = server.received
    assert "RET=HDRS" in mail.mail_options
    assert mail.mail_from == "bounces@hosting.example"
    assert mail.rcpt_tos == (TO,)
    assert mail.message["From"] == "Panel <panel@hosting.example>"


@pytest.mark.parametrize("make", MAILERS)
def test_internationalized_address_uses_smtputf8(make: Any) -> None:
    """An address with a non-ASCII local part goes with SMTPUTF8 when the server offers it."""
    with running_smtp_server(smtputf8=True) as server:
        make(server.host, server.port)(make_message("josé@example.com"))
        [mail] = server.received
    assert "SMTPUTF8" in mail.mail_options
    assert mail.rcpt_tos == ("josé@example.com",)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"security": "ssl"},
        {"username": "panel"},
        {"password": PASSWORD},
        {"username": "panel", "password": PASSWORD},
        {"port": 0},
        {"timeout": float("nan")},
        {"ssl_context": ssl.create_default_context()},
        {"envelope_sender": "two@example.com, addresses@example.com"},
    ],
)
def test_invalid_settings_are_refused_alike(kwargs: dict[str, Any]) -> None:
    """Both mailers refuse the same bad settings with the same ValueError."""
    messages = []
    for mailer_class in (SMTPMailer, AsyncSMTPMailer):
        with pytest.raises(ValueError) as caught:
            mailer_class("smtp.hosting.example", **kwargs)
        messages.append(str(caught.value))
    assert messages[0] == messages[1]
    assert PASSWORD not in messages[0]


def test_async_repr_shows_settings_but_no_password() -> None:
    """repr names host, port, security and whether login is on, never the password."""
    mailer = AsyncSMTPMailer(
        "smtp.hosting.example", 587, security="starttls", username="panel", password=PASSWORD
    )
    assert repr(mailer) == (
        "AsyncSMTPMailer(host='smtp.hosting.example', port=587, security='starttls', auth=True)"
    )
    assert PASSWORD not in repr(vars(mailer))
