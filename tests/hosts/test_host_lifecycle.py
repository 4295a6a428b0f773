"""flush, close, aclose and the ``with`` forms keep their documented meaning.

docs/operations.md ("Background delivery"), docs/embedding.md ("Shutdown"),
docs/scaling.md and the adapters' reference pages say what each one does; each
test below checks one of those sentences with the host's own mailer.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from credrecovery import (
    AsyncRecoveryService,
    BackgroundMailer,
    DirectoryError,
    RecoveryService,
    cheap_context,
)
from credrecovery.async_sqlite import AsyncSQLiteDirectory
from credrecovery.sqlalchemy import SQLAlchemyDirectory
from credrecovery.sqlite import SQLiteDirectory
from hosts.host_app import (
    CONFIRM_URL,
    EMAIL,
    REQUESTER,
    SECRET,
    SENDER,
    AsyncOutboxMailer,
    CustomersDirectory,
    OutboxMailer,
    old_key_hash,
)

SETTINGS = {"secret_key": SECRET, "confirm_url": CONFIRM_URL, "sender": SENDER}


def test_close_delivers_queued_mail_first(panel_db: str) -> None:
    """close() sends what request() queued before it stops delivery, with no flush() first."""
    mailer = OutboxMailer()
    service = RecoveryService(CustomersDirectory(panel_db), mailer, **SETTINGS)
    service.request("email", EMAIL, requester=REQUESTER)
    service.close()
    assert len(mailer.outbox) == 1


def test_with_block_closes_after_delivering(panel_db: str) -> None:
    """``with RecoveryService(...) as service`` yields the service and delivers on exit."""
    mailer = OutboxMailer()
    built = RecoveryService(CustomersDirectory(panel_db), mailer, **SETTINGS)
    with built as service:
        assert service is built
        service.request("domain", "ejemploxmundo.com.ar", requester=REQUESTER)
    assert len(mailer.outbox) == 1


def test_request_after_close_answers_and_mails_nothing(
    panel_db: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """After close(), request() still returns None, mails nothing and logs mail_dropped."""
    mailer = OutboxMailer()
    service = RecoveryService(CustomersDirectory(panel_db), mailer, **SETTINGS)
    service.close()
    with caplog.at_level(logging.INFO, logger="credrecovery"):
        assert service.request("email", EMAIL, requester=REQUESTER) is None
    assert service.flush(timeout=5)
    assert mailer.outbox == []
    assert any(getattr(r, "event", None) == "mail_dropped" for r in caplog.records)


def test_own_background_mailer_around_the_hosts_mailer(panel_db: str) -> None:
    """``delivery=BackgroundMailer(mailer, ...)`` as docs/operations.md shows: flush delivers."""
    mailer = OutboxMailer()
    with RecoveryService(
        CustomersDirectory(panel_db),
        mailer,
        delivery=BackgroundMailer(mailer, max_queue=5000, max_attempts=8, backoff=2.0),
        **SETTINGS,
    ) as service:
        service.request("client_number", "9000", requester=REQUESTER)
        assert service.flush(timeout=30) is True
        assert len(mailer.outbox) == 1


@pytest.mark.parametrize("closing", ["async with", "aclose"])
def test_async_service_closes_after_delivering(closing: str, tmp_path: Path) -> None:
    """``async with`` and ``await aclose()`` deliver queued mail before they return."""
    mailer = AsyncOutboxMailer()

    async def run() -> None:
        directory = AsyncSQLiteDirectory(str(tmp_path / "clients.sqlite3"))
        await directory.add_client("9000", EMAIL, key_hash=old_key_hash())
        service = AsyncRecoveryService(directory, mailer, **SETTINGS)
        if closing == "async with":
            async with directory, service:  # closed in reverse: queued mail first
                await service.request("email", EMAIL, requester=REQUESTER)
        else:
            await service.request("email", EMAIL, requester=REQUESTER)
            await service.aclose()
            await directory.close()

    asyncio.run(run())
    assert len(mailer.outbox) == 1


def test_async_flush_waits_for_the_queue(tmp_path: Path) -> None:
    """``await service.flush()`` returns True once the queued mail has left."""
    mailer = AsyncOutboxMailer()

    async def run() -> None:
        async with AsyncSQLiteDirectory(str(tmp_path / "c.sqlite3")) as directory:
            await directory.add_client("9000", EMAIL, key_hash=old_key_hash())
            async with AsyncRecoveryService(directory, mailer, **SETTINGS) as service:
                await service.request("email", EMAIL, requester=REQUESTER)
                assert await service.flush() is True
                assert len(mailer.outbox) == 1

    asyncio.run(run())


def test_closed_sqlite_directory_refuses_calls(tmp_path: Path) -> None:
    """After ``with SQLiteDirectory(...)`` or close(), every call raises DirectoryError."""
    path = str(tmp_path / "clients.sqlite3")
    with SQLiteDirectory(path) as directory:
        directory.add_client("9000", EMAIL, key_hash=old_key_hash())
        assert directory.find("email", EMAIL) is not None
    with pytest.raises(DirectoryError):
        directory.find("email", EMAIL)
    with pytest.raises(DirectoryError):
        directory.replace_key_hash("9000", old_key_hash(), "x")

    again = SQLiteDirectory(path)
    again.close()
    with pytest.raises(DirectoryError):
        again.add_client("9001", "bob@example.com", key_hash=old_key_hash())
    with (
        RecoveryService(again, OutboxMailer(), **SETTINGS) as service,
        pytest.raises(DirectoryError),
    ):
        service.request("email", EMAIL)


def test_closed_async_sqlite_directory_refuses_calls(tmp_path: Path) -> None:
    """After ``async with AsyncSQLiteDirectory(...)``, calls raise DirectoryError; close twice."""

    async def run() -> None:
        async with AsyncSQLiteDirectory(str(tmp_path / "clients.sqlite3")) as directory:
            await directory.add_client("9000", EMAIL, key_hash=old_key_hash())
            assert await directory.find("client_number", "9000") is not None
        with pytest.raises(DirectoryError):
            await directory.find("client_number", "9000")
        await directory.close()

    asyncio.run(run())


def test_disposed_sqlalchemy_directory_stays_usable(tmp_path: Path) -> None:
    """dispose(), close() and the ``with`` form close the pool; the directory stays usable."""
    url = f"sqlite:///{tmp_path / 'clients.sqlite3'}"
    directory = SQLAlchemyDirectory(url, create_schema=True, crypt_context=cheap_context())
    directory.add_client("9000", EMAIL, key_hash=old_key_hash())
    directory.dispose()
    assert directory.find("email", EMAIL) is not None
    directory.close()
    with directory:
        assert directory.find("client_number", "9000") is not None
    assert directory.find("client_number", "9000") is not None
