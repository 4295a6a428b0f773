"""Fault injection: failing mail servers, a failing directory, and a process killed mid-confirm.

Everything here runs against real SMTP servers on 127.0.0.1 and real SQLite files.
"""

from __future__ import annotations

import email
import email.policy
import logging
import os
import socket
import sqlite3
import subprocess
import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session
from passlib.context import CryptContext

import credrecovery
from credrecovery import BackgroundMailer, Confirmation, RecoveryService
from credrecovery.exceptions import DeliveryFailed, DirectoryError, TokenAlreadyUsed
from credrecovery.identifiers import IdentifierKind
from credrecovery.memory import MemoryMailer
from credrecovery.models import Client
from credrecovery.smtp import SMTPMailer
from credrecovery.sqlite import SQLiteDirectory
from helpers import CONFIRM_URL, OLD_KEY, SECRET, SENDER, FakeClock, key_from, token_from
from helpers.smtp_server import RecordingHandler, running_smtp_server

pytestmark = [pytest.mark.shells("sync", "async"), pytest.mark.slow]

ServiceFactory = Callable[..., RecoveryService]

NUMBER = "9000"
EMAIL = "ejemplo@ejemploxmundo.com.ar"
UNKNOWN_EMAIL = "nadie@otro-dominio.example"


# --- helpers ------------------------------------------------------------------------------


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "clients.sqlite3"


@pytest.fixture
def sqlite_directory(db_path: Path, ctx: CryptContext) -> Iterator[SQLiteDirectory]:
    """A SQLite file holding client 9000 with OLD_KEY."""
    with SQLiteDirectory(db_path, crypt_context=ctx) as directory:
        directory.add_client(
            NUMBER, EMAIL, key=OLD_KEY, domains=["ejemploxmundo.com.ar"], name="Ana Example"
        )
        yield directory


def stored_hash(directory: SQLiteDirectory | Path) -> str:
    """The key hash stored for client 9000, read through the directory or the raw file."""
    if isinstance(directory, Path):
        conn = sqlite3.connect(directory)
        try:
            row = conn.execute(
                "SELECT key_hash FROM clients WHERE number = ?", (NUMBER,)
            ).fetchone()
        finally:
            conn.close()
        assert row is not None
        return str(row[0])
    client = directory.find(IdentifierKind.CLIENT_NUMBER, NUMBER)
    assert client is not None
    return client.key_hash


def issue_token(make_service: ServiceFactory, directory: SQLiteDirectory) -> str:
    """Request recovery by email through a working, synchronous in-memory mailer."""
    outbox = MemoryMailer()
    assert make_service(directory=directory, mailer=outbox).request("email", EMAIL) is None
    [message] = outbox.outbox
    return token_from(message)


def events(caplog: pytest.LogCaptureFixture, name: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "event", None) == name]


@contextmanager
def closed_port() -> Iterator[int]:
    # A bound socket that never listens answers connects with a reset, reliably.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@contextmanager
def write_lock(db_path: Path) -> Iterator[sqlite3.Connection]:
    """Hold BEGIN EXCLUSIVE on the file from another connection for the block."""
    blocker = sqlite3.connect(db_path, isolation_level=None)
    try:
        blocker.execute("BEGIN EXCLUSIVE")
        yield blocker
    finally:
        if blocker.in_transaction:
            blocker.execute("ROLLBACK")
        blocker.close()


def assert_confirms(
    service: RecoveryService, token: str, directory: SQLiteDirectory, outbox: MemoryMailer
) -> str:
    """Confirm ``token``; the mailed key must verify against the new stored hash."""
    sent = len(outbox.outbox)
    assert service.confirm(token) == Confirmation(NUMBER, EMAIL)
    [message] = outbox.outbox[sent:]
    key = key_from(message)
    new_hash = stored_hash(directory)
    ctx = service.crypt_context
    assert ctx.verify(key, new_hash)
    assert not ctx.verify(OLD_KEY, new_hash)
    return key


def assert_new_recovery_works(make_service: ServiceFactory, directory: SQLiteDirectory) -> None:
    """The client asks again by email and gets a key that opens the account."""
    outbox = MemoryMailer()
    service = make_service(directory=directory, mailer=outbox)
    assert service.request("email", EMAIL) is None
    [confirmation] = outbox.outbox
    assert_confirms(service, token_from(confirmation), directory, outbox)


@dataclass
class FlakyRcptHandler(RecordingHandler):
    """Answers RCPT with ``reply`` for the first ``failures`` attempts, then accepts."""

    failures: int = 0
    reply: str = "451 4.3.0 Try again later"
    rcpt_attempts: int = 0

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        self.rcpt_attempts += 1
        if self.rcpt_attempts <= self.failures:
            return self.reply
        return await super().handle_RCPT(server, session, envelope, address, rcpt_options)


# --- request phase: the confirmation mail fails -------------------------------------------


def request_both(service: RecoveryService) -> None:
    """A known and an unknown identifier both return None and raise nothing."""
    assert service.request("email", EMAIL) is None
    assert service.request("email", UNKNOWN_EMAIL) is None


def test_request_retries_a_temporary_smtp_refusal_until_delivered(
    make_service: ServiceFactory,
    sqlite_directory: SQLiteDirectory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """451 at RCPT twice is retried in the background; the third attempt delivers once."""
    caplog.set_level(logging.INFO, logger="credrecovery")
    handler = FlakyRcptHandler(failures=2)
    with running_smtp_server(handler) as server:
        smtp = SMTPMailer(server.host, server.port, timeout=5)
        service = make_service(
            directory=sqlite_directory,
            mailer=smtp,
            delivery=BackgroundMailer(smtp, backoff=0.01, max_attempts=5),
        )
        request_both(service)
        assert service.flush(timeout=10)
        assert handler.rcpt_attempts == 3
        [mail] = server.received
    assert mail.rcpt_tos == (EMAIL,)
    assert token_from(mail.message)
    retries = events(caplog, "delivery_retry")
    assert [getattr(r, "attempt", None) for r in retries] == [1, 2]
    assert all(r.levelno == logging.WARNING for r in retries)
    assert [getattr(r, "attempt", None) for r in events(caplog, "mail_sent")] == [3]
    assert events(caplog, "delivery_failed") == []


def test_request_gives_up_at_once_on_a_permanent_smtp_refusal(
    make_service: ServiceFactory,
    sqlite_directory: SQLiteDirectory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """550 at RCPT is tried exactly once, logged at ERROR, and never reaches the caller."""
    caplog.set_level(logging.INFO, logger="credrecovery")
    handler = FlakyRcptHandler(failures=1000, reply="550 5.1.1 No such user")
    with running_smtp_server(handler) as server:
        smtp = SMTPMailer(server.host, server.port, timeout=5)
        service = make_service(
            directory=sqlite_directory,
            mailer=smtp,
            delivery=BackgroundMailer(smtp, backoff=0.01, max_attempts=5),
        )
        request_both(service)
        assert service.flush(timeout=10)
        assert handler.rcpt_attempts == 1
        assert server.received == []
    assert events(caplog, "delivery_retry") == []
    [failed] = events(caplog, "delivery_failed")
    assert failed.levelno == logging.ERROR
    assert getattr(failed, "attempt", None) == 1
    assert getattr(failed, "error", None) == "DeliveryFailed"


def test_request_gives_up_after_max_attempts_when_the_server_is_down(
    make_service: ServiceFactory,
    sqlite_directory: SQLiteDirectory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """With no server listening, delivery is tried max_attempts times, then logged at ERROR."""
    caplog.set_level(logging.INFO, logger="credrecovery")
    with closed_port() as port:
        smtp = SMTPMailer("127.0.0.1", port, timeout=2)
        service = make_service(
            directory=sqlite_directory,
            mailer=smtp,
            delivery=BackgroundMailer(smtp, backoff=0.01, max_attempts=3),
        )
        request_both(service)
        assert service.flush(timeout=10)
    retries = events(caplog, "delivery_retry")
    assert [getattr(r, "attempt", None) for r in retries] == [1, 2]
    [failed] = events(caplog, "delivery_failed")
    assert failed.levelno == logging.ERROR
    assert getattr(failed, "attempt", None) == 3
    assert events(caplog, "mail_sent") == []


# --- confirm phase: the credentials mail fails --------------------------------------------


# fault -> (command to hook, reply or "stall", temporary?, text of the mailer's error)
CONFIRM_FAULTS = {
    "connection-refused": (None, None, True, "could not reach"),
    "stall-past-timeout": ("DATA", "stall", True, "timed out"),
    "421-at-MAIL": ("MAIL", "421 4.3.2 Service shutting down", True, "421"),
    "421-at-RCPT": ("RCPT", "421 4.3.2 Service shutting down", True, "421"),
    "451-at-DATA": ("DATA", "451 4.3.0 Local error in processing", True, "451"),
    "550-at-RCPT": ("RCPT", "550 5.1.1 No such user", False, "550"),
}


@contextmanager
def failing_smtp(fault: str) -> Iterator[tuple[SMTPMailer, RecordingHandler | None]]:
    """An SMTPMailer (timeout 0.5 s) whose every delivery fails as ``fault`` says."""
    command, reply, _, _ = CONFIRM_FAULTS[fault]
    if command is None:
        with closed_port() as port:
            yield SMTPMailer("127.0.0.1", port, timeout=0.5), None
        return
    handler = RecordingHandler()
    if reply == "stall":
        handler.stall(command, 2.0)
    else:
        assert reply is not None
        handler.answer(command, reply)
    with running_smtp_server(handler) as server:
        yield SMTPMailer(server.host, server.port, timeout=0.5), handler


@pytest.mark.parametrize("fault", list(CONFIRM_FAULTS))
def test_failed_credentials_mail_restores_the_key_and_the_token_still_works(
    make_service: ServiceFactory,
    sqlite_directory: SQLiteDirectory,
    ctx: CryptContext,
    caplog: pytest.LogCaptureFixture,
    fault: str,
) -> None:
    """A failed credentials mail raises DeliveryFailed, puts the old hash back, keeps the token."""
    caplog.set_level(logging.INFO, logger="credrecovery")
    token = issue_token(make_service, sqlite_directory)
    old_hash = stored_hash(sqlite_directory)

    with failing_smtp(fault) as (smtp, handler):
        service = make_service(directory=sqlite_directory, mailer=smtp)
        with pytest.raises(DeliveryFailed) as caught:
            service.confirm(token)
        if handler is not None:
            assert handler.received == []
    _, _, temporary, reason = CONFIRM_FAULTS[fault]
    assert caught.value.temporary is temporary
    assert isinstance(caught.value.__cause__, DeliveryFailed)
    assert reason in str(caught.value.__cause__)
    assert token not in str(caught.value)
    assert stored_hash(sqlite_directory) == old_hash
    assert ctx.verify(OLD_KEY, stored_hash(sqlite_directory))
    [failed] = events(caplog, "delivery_failed")
    assert failed.levelno == logging.ERROR
    assert events(caplog, "restore_failed") == []
    assert events(caplog, "confirmed") == []

    with running_smtp_server() as server:
        service = make_service(
            directory=sqlite_directory, mailer=SMTPMailer(server.host, server.port, timeout=5)
        )
        assert service.confirm(token) == Confirmation(NUMBER, EMAIL)
        [mail] = server.received
    assert mail.rcpt_tos == (EMAIL,)
    new_hash = stored_hash(sqlite_directory)
    assert ctx.verify(key_from(mail.message), new_hash)
    assert not ctx.verify(OLD_KEY, new_hash)
    with pytest.raises(TokenAlreadyUsed):
        service.confirm(token)


# --- the directory fails ------------------------------------------------------------------


def assert_no_secret(exc: BaseException, *secrets: str) -> None:
    text = "".join(traceback.format_exception(exc))
    for secret in (OLD_KEY, *secrets):
        assert secret not in str(exc)
        assert secret not in text


def test_locked_directory_fails_confirm_cleanly(
    make_service: ServiceFactory,
    sqlite_directory: SQLiteDirectory,
    db_path: Path,
    ctx: CryptContext,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A write lock past the timeout gives DirectoryError, sends nothing, changes nothing."""
    caplog.set_level(logging.INFO, logger="credrecovery")
    with SQLiteDirectory(db_path, crypt_context=ctx, timeout=0.1) as impatient:
        token = issue_token(make_service, impatient)
        old_hash = stored_hash(impatient)
        outbox = MemoryMailer()
        service = make_service(directory=impatient, mailer=outbox)

        with write_lock(db_path), pytest.raises(DirectoryError) as caught:
            service.confirm(token)

        assert isinstance(caught.value.__cause__, sqlite3.OperationalError)
        assert_no_secret(caught.value, token, old_hash)
        assert outbox.outbox == []
        assert events(caplog, "confirmed") == []
        assert stored_hash(impatient) == old_hash
        assert_confirms(service, token, impatient, outbox)


def test_request_reads_through_a_write_lock_in_wal_mode(
    make_service: ServiceFactory,
    sqlite_directory: SQLiteDirectory,
    db_path: Path,
    ctx: CryptContext,
) -> None:
    """WAL lets request() read the committed client while another connection holds the lock."""
    with SQLiteDirectory(db_path, crypt_context=ctx, timeout=0.1) as impatient:
        old_hash = stored_hash(impatient)
        outbox = MemoryMailer()
        service = make_service(directory=impatient, mailer=outbox)
        with write_lock(db_path) as blocker:
            blocker.execute(
                "UPDATE clients SET key_hash = 'uncommitted' WHERE number = ?", (NUMBER,)
            )
            assert service.request("email", EMAIL) is None
            assert service.request("email", UNKNOWN_EMAIL) is None
            assert stored_hash(impatient) == old_hash
            # Nor can the other side lock readers out: exclusive locking mode needs
            # every other connection to the WAL database closed.
            other = sqlite3.connect(db_path, isolation_level=None, timeout=0.1)
            try:
                other.execute("PRAGMA locking_mode = EXCLUSIVE")
                with pytest.raises(sqlite3.OperationalError, match="locked"):
                    other.execute("SELECT count(*) FROM clients").fetchall()
            finally:
                other.close()
        [message] = outbox.outbox
        assert stored_hash(impatient) == old_hash
        assert_confirms(service, token_from(message), impatient, outbox)


class HostDirectory:
    """A host-written directory over a SQLite file, with injectable failures."""

    def __init__(
        self,
        inner: SQLiteDirectory,
        *,
        find_error: Exception | None = None,
        swap_error: Exception | None = None,
    ) -> None:
        self.inner = inner
        self.find_error = find_error
        self.swap_error = swap_error
        self.swaps: list[tuple[str, str]] = []

    def find(self, kind: IdentifierKind, value: str) -> Client | None:
        if self.find_error is not None:
            raise self.find_error
        return self.inner.find(kind, value)

    def replace_key_hash(self, number: str, current: str, new: str) -> bool:
        self.swaps.append((current, new))
        if self.swap_error is not None:
            raise self.swap_error
        return self.inner.replace_key_hash(number, current, new)


def test_host_directory_swap_error_becomes_directory_error(
    make_service: ServiceFactory,
    sqlite_directory: SQLiteDirectory,
    ctx: CryptContext,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A host directory raising in replace_key_hash gives DirectoryError, and no mail."""
    caplog.set_level(logging.INFO, logger="credrecovery")
    token = issue_token(make_service, sqlite_directory)
    old_hash = stored_hash(sqlite_directory)
    host = HostDirectory(sqlite_directory)
    host.swap_error = RuntimeError("swap failed")
    outbox = MemoryMailer()
    service = make_service(directory=host, mailer=outbox)

    with pytest.raises(DirectoryError) as caught:
        service.confirm(token)

    assert isinstance(caught.value.__cause__, RuntimeError)
    [(current, new)] = host.swaps
    assert current == old_hash
    assert_no_secret(caught.value, token, old_hash, new)
    assert outbox.outbox == []
    assert [getattr(r, "error", None) for r in events(caplog, "directory_error")] == [
        "RuntimeError"
    ]
    assert stored_hash(sqlite_directory) == old_hash
    host.swap_error = None
    assert_confirms(service, token, sqlite_directory, outbox)


def test_host_directory_lookup_error_fails_request_for_everyone(
    make_service: ServiceFactory,
    sqlite_directory: SQLiteDirectory,
) -> None:
    """A failing lookup raises DirectoryError for known and unknown identifiers alike."""
    host = HostDirectory(sqlite_directory, find_error=OSError("connection reset"))
    outbox = MemoryMailer()
    service = make_service(directory=host, mailer=outbox)
    for value in (EMAIL, UNKNOWN_EMAIL):
        with pytest.raises(DirectoryError) as caught:
            service.request("email", value)
        assert isinstance(caught.value.__cause__, OSError)
        assert value not in str(caught.value)
    assert outbox.outbox == []


class LockingMailer:
    """Fails the send after another connection has taken the write lock."""

    def __init__(self, db_path: Path, inner: SMTPMailer) -> None:
        self.db_path = db_path
        self.inner = inner
        self.blocker: sqlite3.Connection | None = None

    def send(self, message: EmailMessage) -> None:
        self.blocker = sqlite3.connect(self.db_path, isolation_level=None, check_same_thread=False)
        self.blocker.execute("BEGIN EXCLUSIVE")
        self.inner.send(message)

    def release(self) -> None:
        if self.blocker is not None:
            self.blocker.execute("ROLLBACK")
            self.blocker.close()


def test_failed_restore_is_logged_and_a_new_request_recovers(
    make_service: ServiceFactory,
    sqlite_directory: SQLiteDirectory,
    db_path: Path,
    ctx: CryptContext,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An old hash that cannot be put back is logged CRITICAL; a new request still recovers."""
    caplog.set_level(logging.INFO, logger="credrecovery")
    with SQLiteDirectory(db_path, crypt_context=ctx, timeout=0.1) as impatient:
        token = issue_token(make_service, impatient)
        old_hash = stored_hash(impatient)
        with closed_port() as port:
            mailer = LockingMailer(db_path, SMTPMailer("127.0.0.1", port, timeout=0.5))
            service = make_service(directory=impatient, mailer=mailer)
            try:
                with pytest.raises(DeliveryFailed):
                    service.confirm(token)
            finally:
                mailer.release()
        [lost] = events(caplog, "restore_failed")
        assert lost.levelno == logging.CRITICAL
        assert stored_hash(impatient) != old_hash
        with pytest.raises(TokenAlreadyUsed):
            service.confirm(token)
        assert_new_recovery_works(make_service, impatient)


# --- the process dies in the middle of confirm() ------------------------------------------

CHILD = r"""
import os
import sys
import traceback

from credrecovery import RecoveryService, cheap_context
from credrecovery.sqlite import SQLiteDirectory

path, token, point, outbox, secret, confirm_url, sender, now = sys.argv[1:]


class Directory:
    def __init__(self, inner):
        self.inner = inner

    def find(self, kind, value):
        return self.inner.find(kind, value)

    def replace_key_hash(self, number, current, new):
        if point == "before_swap":
            os._exit(1)
        return self.inner.replace_key_hash(number, current, new)


class Mailer:
    def send(self, message):
        if point == "after_mail":
            with open(outbox, "wb") as f:
                f.write(message.as_bytes())
        os._exit(1)


service = RecoveryService(
    Directory(SQLiteDirectory(path, crypt_context=cheap_context())),
    Mailer(),
    secret_key=secret,
    confirm_url=confirm_url,
    sender=sender,
    crypt_context=cheap_context(),
    rate_limits=None,
    delivery="sync",
    clock=lambda: float(now),
)
try:
    service.confirm(token)
except BaseException:
    traceback.print_exc()
    sys.exit(3)
sys.exit(2)
"""


@pytest.mark.parametrize("point", ["before_swap", "after_swap", "after_mail"])
def test_process_killed_during_confirm_never_locks_the_client_out(
    make_service: ServiceFactory,
    sqlite_directory: SQLiteDirectory,
    db_path: Path,
    ctx: CryptContext,
    clock: FakeClock,
    tmp_path: Path,
    point: str,
) -> None:
    """Whenever the process dies inside confirm(), the account stays recoverable."""
    token = issue_token(make_service, sqlite_directory)
    outbox_file = tmp_path / "credentials.eml"
    source_root = Path(credrecovery.__file__).resolve().parents[1]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            [str(source_root), *filter(None, [os.environ.get("PYTHONPATH")])]
        ),
    }
    child = subprocess.run(
        [
            sys.executable,
            "-c",
            CHILD,
            str(db_path),
            token,
            point,
            str(outbox_file),
            SECRET,
            CONFIRM_URL,
            SENDER,
            repr(clock.now),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=tmp_path,
        check=False,
    )
    assert child.returncode == 1, child.stderr

    conn = sqlite3.connect(db_path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    finally:
        conn.close()
    current = stored_hash(sqlite_directory)
    assert stored_hash(db_path) == current

    if point == "before_swap":
        assert ctx.verify(OLD_KEY, current)
        assert not outbox_file.exists()
        outbox = MemoryMailer()
        assert_confirms(
            make_service(directory=sqlite_directory, mailer=outbox), token, sqlite_directory, outbox
        )
    else:
        assert not ctx.verify(OLD_KEY, current)
        if point == "after_mail":
            mailed = email.message_from_bytes(outbox_file.read_bytes(), policy=email.policy.default)
            assert ctx.verify(key_from(mailed), current)
        else:
            assert not outbox_file.exists()
        with pytest.raises(TokenAlreadyUsed):
            make_service(directory=sqlite_directory, mailer=MemoryMailer()).confirm(token)

    assert_new_recovery_works(make_service, sqlite_directory)
