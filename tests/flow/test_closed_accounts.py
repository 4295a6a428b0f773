"""A closed account, through the service: a miss to request, its links refused, its sign-ins
``None``, each at the cost of a client that does not exist.

Run on every shipped directory: memory, SQLite files and PostgreSQL through both
shells, and the asyncio twins (aiosqlite, asyncpg) through the asyncio shell.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from passlib.context import CryptContext
from sqlalchemy.ext.asyncio import create_async_engine

from credrecovery import (
    Client,
    IdentifierKind,
    InvalidToken,
    RecoveryService,
    TokenAlreadyUsed,
)
from credrecovery.async_sqlalchemy import AsyncSQLAlchemyDirectory
from credrecovery.async_sqlite import AsyncSQLiteDirectory
from credrecovery.jobs import ConfirmationJob
from credrecovery.memory import MemoryDirectory, MemoryMailer
from credrecovery.sqlalchemy import SQLAlchemyDirectory
from credrecovery.sqlite import SQLiteDirectory
from helpers import AsyncShell, ChoosingShell, key_from, pg, token_from
from helpers.pg import async_url

pytestmark = pytest.mark.shells("sync", "async")

KEY = "Open-Access-Key-2024"
# Each kind, and what names the open client, the closed one, and nobody.
LOOKUPS = {
    "client_number": ("1001", "1002", "1009"),
    "email": ("open@example.com", "closed@example.com", "nobody@example.com"),
    "domain": ("open.example", "closed.example", "nobody.example"),
}
# Each directory with each shell that drives it: an asyncio directory needs the
# asyncio service. The tests parametrize ``shell`` themselves, with ``kind``.
_PG = pytest.mark.postgres
VARIANTS = pytest.mark.parametrize(
    ("shell", "kind"),
    [
        *[(shell, kind) for kind in ("memory", "sqlite") for shell in ("sync", "async")],
        *[pytest.param(shell, "postgresql", marks=_PG) for shell in ("sync", "async")],
        ("async", "async_sqlite"),
        pytest.param("async", "async_postgresql", marks=_PG),
    ],
    indirect=["shell"],
)


class Recording:
    """A delivery queue that keeps the jobs it is handed: what a request decided."""

    def __init__(self) -> None:
        self.jobs: list[ConfirmationJob] = []

    def bind(self, composer: Any) -> None:
        pass

    def submit(self, job: ConfirmationJob) -> None:
        self.jobs.append(job)

    def flush(self, timeout: float | None = None) -> bool:
        return True

    def close(self, timeout: float | None = 30.0) -> None:
        pass


@dataclasses.dataclass
class Accounts:
    """The directory under test and the service on it; async calls run on the service's loop."""

    directory: Any
    service: Any

    def call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        result = getattr(self.directory, name)(*args, **kwargs)
        return self.awaited(result) if inspect.isawaitable(result) else result

    def awaited(self, awaitable: Any) -> Any:
        inner = self.service.service if isinstance(self.service, ChoosingShell) else self.service
        assert isinstance(inner, AsyncShell), "an asyncio directory needs the asyncio shell"
        return inner._await(awaitable)

    def add(
        self, number: str, email: str, domain: str, *, active: bool = True, ctx: CryptContext
    ) -> Client:
        added: Client = self.call(
            "add_client", number, email, key_hash=ctx.hash(KEY), domains=[domain], active=active
        )
        return added

    def find(self, number: str) -> Client | None:
        found: Client | None = self.call("find", IdentifierKind.CLIENT_NUMBER, number)
        return found


OpenAccounts = Callable[..., Accounts]


@pytest.fixture
def open_accounts(
    kind: str, tmp_path: Path, ctx: CryptContext, make_service: Callable[..., Any]
) -> Iterator[OpenAccounts]:
    """Builds the ``kind`` directory and a service on it, with an open and a closed client."""
    with contextlib.ExitStack() as stack:
        made: list[Accounts] = []

        def build(**options: Any) -> Accounts:
            path = tmp_path / "clients.sqlite3"
            directory: Any
            if kind == "memory":
                directory = MemoryDirectory(crypt_context=ctx)
            elif kind == "sqlite":
                directory = stack.enter_context(SQLiteDirectory(path, crypt_context=ctx))
            elif kind == "async_sqlite":
                directory = AsyncSQLiteDirectory(path, crypt_context=ctx)
            else:
                schema = stack.enter_context(pg.fresh_schema())
                if kind == "postgresql":
                    directory = SQLAlchemyDirectory(
                        schema.engine, crypt_context=ctx, create_schema=True
                    )
                else:
                    url, connect_args = async_url(schema, "asyncpg")
                    directory = AsyncSQLAlchemyDirectory(
                        create_async_engine(url, hide_parameters=True, connect_args=connect_args),
                        crypt_context=ctx,
                    )
            accounts = Accounts(directory, make_service(directory=directory, **options))
            if kind == "async_postgresql":
                accounts.awaited(directory.create_schema())
            made.append(accounts)
            accounts.add("1001", "open@example.com", "open.example", ctx=ctx)
            accounts.add("1002", "closed@example.com", "closed.example", active=False, ctx=ctx)
            return accounts

        yield build
        # Before make_service's teardown ends the asyncio shell's loop.
        for accounts in made:
            if kind == "async_sqlite":
                accounts.awaited(accounts.directory.aclose())
            elif kind == "async_postgresql":
                accounts.awaited(accounts.directory.engine.dispose())


@VARIANTS
def test_a_request_for_a_closed_client_is_a_miss(
    open_accounts: OpenAccounts,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """By every kind, a closed client's request hands delivery the job a stranger's does.

    The same decoy, logged as an unknown identifier, and no error logged: a
    closed account is not a bad record.
    """
    queue = Recording()
    accounts = open_accounts(delivery=queue)
    caplog.set_level(logging.INFO, logger="credrecovery")
    for kind, (opened, closed, nobody) in LOOKUPS.items():
        del queue.jobs[:]
        caplog.clear()
        for value in (closed, nobody, opened):
            accounts.service.request(kind, value)
        for_closed, for_nobody, for_open = queue.jobs
        assert for_closed == for_nobody and for_closed.decoy, kind
        assert not for_open.decoy and for_open.clients[0][0] == "1001", kind
        events = [getattr(r, "event", None) for r in caplog.records]
        assert events == ["unknown_identifier", "unknown_identifier", "requested"], kind
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING], kind


@VARIANTS
@pytest.mark.key_modes("generate", "choose")
def test_a_closed_clients_links_are_refused_as_a_strangers(
    open_accounts: OpenAccounts,
    mailer: MemoryMailer,
) -> None:
    """A link mailed while open is refused once closed, as a stranger's; reopened, it works."""
    accounts = open_accounts()
    service = accounts.service
    service.request("client_number", "1001")
    token = token_from(mailer.outbox[-1])
    before = accounts.find("1001")
    accounts.call("set_active", "1001", False)
    stranger = service.tokens.issue(Client("1009", "nobody@example.com", "stand-in-hash"))
    for call in (service.check, service.confirm):
        errors = []
        for link in (token, stranger):
            with pytest.raises(InvalidToken) as refused:
                call(link)
            errors.append((type(refused.value), str(refused.value)))
        assert errors[0] == errors[1] and errors[0][0] is InvalidToken
    assert len(mailer.outbox) == 1
    assert before is not None and accounts.find("1001") == dataclasses.replace(before, active=False)
    accounts.call("set_active", "1001", True)
    assert service.confirm(token).number == "1001"
    assert service.authenticate("1001", key_from(mailer.outbox[-1])) is not None


@VARIANTS
def test_a_closed_client_signs_in_as_nobody(
    open_accounts: OpenAccounts,
    ctx: CryptContext,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The right key signs a closed client in to nothing, verifying what an unknown number
    verifies and never the client's own hash; change_key is refused alike."""
    accounts = open_accounts()
    service = accounts.service
    closed = accounts.find("1002")
    assert closed is not None and closed.active is False
    verified: list[str] = []
    real = ctx.verify_and_update

    def counted(secret: str, stored: str, **kwargs: Any) -> Any:
        verified.append(stored)
        return real(secret, stored, **kwargs)

    monkeypatch.setattr(ctx, "verify_and_update", counted)
    # The first sign-in makes the stand-in hashes; those after it are compared.
    assert service.authenticate("1009", KEY) is None
    work = {}
    for number in ("1009", "1002"):
        del verified[:]
        assert service.authenticate(number, KEY) is None
        work[number] = list(verified)
    assert work["1002"] == work["1009"] and work["1002"]
    assert closed.key_hash not in work["1002"]
    assert service.change_key("1002", KEY, "A-New-Key-For-Closed-1") is None
    assert accounts.find("1002") == closed
    assert service.authenticate("1001", KEY) is not None


@VARIANTS
def test_a_shared_address_mails_its_open_clients_only(
    open_accounts: OpenAccounts,
    mailer: MemoryMailer,
    ctx: CryptContext,
) -> None:
    """One mail for the open clients of an address; none when every one is closed."""
    accounts = open_accounts()
    accounts.add("1003", "closed@example.com", "third.example", ctx=ctx)
    accounts.add("1004", "closed@example.com", "fourth.example", active=False, ctx=ctx)
    accounts.service.request("email", "closed@example.com")
    [mail] = mailer.outbox
    assert accounts.service.check(token_from(mail)).number == "1003"
    body = mail.get_body(("plain",))
    assert body is not None and "1002" not in body.get_content()
    accounts.call("set_active", "1003", False)
    accounts.service.request("email", "closed@example.com")
    assert len(mailer.outbox) == 1


class ClosedMidway(MemoryDirectory):
    """Closes the account just before the key swap, as a host's admin might meanwhile."""

    closing: str | None = None

    def replace_key_hash(self, number: str, current: str, new: str) -> bool:
        if number == self.closing:
            self.set_active(number, False)
        return super().replace_key_hash(number, current, new)


@pytest.mark.key_modes("generate", "choose")
def test_an_account_closed_during_confirmation_gets_no_key(
    make_service: Callable[..., RecoveryService],
    mailer: MemoryMailer,
    ctx: CryptContext,
) -> None:
    """The swap is undone and no key leaves: the confirmation ends as a used link."""
    directory = ClosedMidway(crypt_context=ctx)
    directory.add_client("1001", "open@example.com", key=KEY)
    service = make_service(directory=directory)
    service.request("client_number", "1001")
    token = token_from(mailer.outbox[0])
    directory.closing = "1001"
    with pytest.raises(TokenAlreadyUsed):
        service.confirm(token)
    stored = directory.find(IdentifierKind.CLIENT_NUMBER, "1001")
    assert stored is not None and stored.active is False and ctx.verify(KEY, stored.key_hash)
    assert len(mailer.outbox) == 1


class HostDirectory:
    """A host's directory of the previous version: it builds Client positionally, no active."""

    def __init__(self, ctx: CryptContext) -> None:
        self.client = Client("7", "host@example.com", ctx.hash(KEY), "Host", None, (), False)

    def find(self, kind: IdentifierKind, value: str) -> Client | None:
        return self.client if value in ("7", "host@example.com") else None

    def replace_key_hash(self, number: str, current: str, new: str) -> bool:
        if number != "7" or self.client.key_hash != current:
            return False
        self.client = dataclasses.replace(self.client, key_hash=new)
        return True


def test_a_host_directory_that_knows_no_closed_accounts_works_as_before(
    make_service: Callable[..., RecoveryService],
    mailer: MemoryMailer,
    ctx: CryptContext,
) -> None:
    """Its clients are open: mailed, confirmed, signed in."""
    directory = HostDirectory(ctx)
    assert directory.client.active is True
    service = make_service(directory=directory)
    service.request("email", "host@example.com")
    service.confirm(token_from(mailer.outbox[0]))
    assert service.authenticate("7", key_from(mailer.outbox[-1])) is not None
