"""One ClientDirectory contract, run against every directory a host may use.

Each store is built by a factory: the in-memory directory, SQLite, SQLAlchemy
on SQLite, SQLAlchemy on PostgreSQL with its own tables and with a host's
tables under other names, and a directory a host wrote itself. The asyncio
adapters (SQLite over aiosqlite, SQLAlchemy's asyncio engine on PostgreSQL over
asyncpg and over psycopg) run the same tests through :class:`RunToCompletion`,
which runs each of their coroutines on an event loop of the test's own. Client
numbers are numeric so that the integer-keyed host tables take part in every test.

The shipped directories also have ``find_all`` and let several clients share a
primary address; those tests apply to every directory with a ``find_all``. The
host-written one has only ``find``, as a host's may, and skips them.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import sqlite3
import threading
from collections.abc import Callable, Coroutine, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar, cast

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

import pg
from conftest import CONFIRM_URL, SECRET, SENDER, key_from, token_from
from credrecovery import (
    AsyncClientDirectory,
    ClientDirectory,
    DirectoryError,
    IdentifierKind,
    RecoveryService,
    TokenAlreadyUsed,
    cheap_context,
    normalize_identifier,
)
from credrecovery.async_sqlalchemy import AsyncSQLAlchemyDirectory
from credrecovery.async_sqlite import AsyncSQLiteDirectory
from credrecovery.memory import MemoryDirectory, MemoryMailer
from credrecovery.models import Client
from credrecovery.sqlalchemy import SQLAlchemyDirectory, TableMapping
from credrecovery.sqlite import SQLiteDirectory

CONTEXT = cheap_context()
OLD_KEY = "Old-Access-Key-2024"
OLD_HASH = CONTEXT.hash(OLD_KEY)
NEW_HASH = "$argon2id$v=19$m=8,t=1,p=1$bmV3LWhhc2g$c3RhbmQtaW4tZm9yLWEtbmV3LWhhc2g"
THIRD_HASH = "$argon2id$v=19$m=8,t=1,p=1$dGhpcmQtaGFzaA$c3RhbmQtaW4tZm9yLWEtdGhpcmQtaGFzaA"

NUMBER = IdentifierKind.CLIENT_NUMBER
EMAIL = IdentifierKind.EMAIL
DOMAIN = IdentifierKind.DOMAIN

ALICE_DOMAINS = ("alice.example", "alice-shop.example", "alice.example.org")


class HostDirectory:
    """A directory as a host might write it: rows in a dict behind a lock.

    It shares nothing with the library's adapters. :attr:`down` makes every
    call fail the way a host's storage does, with an exception of its own.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rows: dict[str, dict[str, Any]] = {}
        self._owners: dict[str, str] = {}
        self.down = False

    def add_client(
        self,
        number: str,
        email: str,
        *,
        key_hash: str,
        domains: Iterable[str] = (),
        name: str = "",
        locale: str | None = None,
    ) -> Client:
        number = normalize_identifier(NUMBER, number)
        row = {
            "number": number,
            "email": normalize_identifier(EMAIL, email),
            "key_hash": key_hash,
            "name": name,
            "locale": locale,
        }
        with self._lock:
            self._rows[number] = row
            for domain in domains:
                self._owners[normalize_identifier(DOMAIN, domain)] = number
        return Client(**row)

    def find(self, kind: IdentifierKind, value: str) -> Client | None:
        self._check()
        with self._lock:
            if kind is NUMBER:
                row = self._rows.get(value)
            elif kind is EMAIL:
                row = next((r for r in self._rows.values() if r["email"] == value), None)
            else:
                owner = self._owners.get(value)
                row = self._rows.get(owner) if owner is not None else None
            return Client(**row) if row is not None else None

    def replace_key_hash(self, number: str, current: str, new: str) -> bool:
        self._check()
        with self._lock:
            row = self._rows.get(number)
            if row is None or row["key_hash"] != current:
                return False
            row["key_hash"] = new
            return True

    def _check(self) -> None:
        if self.down:
            raise RuntimeError("the host's storage backend is unreachable")


class Directory(ClientDirectory, Protocol):
    """A ClientDirectory that tests can fill."""

    def add_client(
        self,
        number: str,
        email: str,
        *,
        key_hash: str,
        domains: Iterable[str] = (),
        name: str = "",
        locale: str | None = None,
    ) -> Client: ...


@dataclasses.dataclass
class Store:
    """A directory under test and, unless it cannot fail, a way to break its storage.

    ``shares_addresses`` tells that the directory has ``find_all`` and lets
    several clients share a primary address, as every shipped one does.
    """

    directory: Directory
    break_it: Callable[[], None] | None = None
    shares_addresses: bool = True
    #: The asyncio directory that ``directory`` drives, if any.
    async_directory: AsyncClientDirectory | None = None


_T = TypeVar("_T")


class EventLoopThread:
    """An event loop running in a thread of its own, for synchronous code to hand coroutines to.

    Calls may come from any thread, several at once: their coroutines then run
    concurrently on the one loop, as an asyncio application's tasks do.
    """

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, _T]) -> _T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=60)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


class RunToCompletion:
    """A synchronous face on an asyncio directory: each call runs its coroutine to completion.

    It has ``find_all`` only when the directory has it.
    """

    def __init__(self, directory: Any, runner: EventLoopThread) -> None:
        self._directory = directory
        self._runner = runner
        if hasattr(directory, "find_all"):
            self.find_all = self._find_all

    def add_client(self, number: str, email: str, **fields: Any) -> Client:
        client: Client = self._runner.run(self._directory.add_client(number, email, **fields))
        return client

    def find(self, kind: IdentifierKind, value: str) -> Client | None:
        found: Client | None = self._runner.run(self._directory.find(kind, value))
        return found

    def _find_all(self, kind: IdentifierKind, value: str, *, limit: int = 50) -> list[Client]:
        found: list[Client] = self._runner.run(
            self._directory.find_all(kind, value, limit=limit))
        return found

    def replace_key_hash(self, number: str, current: str, new: str) -> bool:
        replaced: bool = self._runner.run(
            self._directory.replace_key_hash(number, current, new))
        return replaced


@contextlib.contextmanager
def run_to_completion(
    directory: Any,
    break_it: Callable[[], None] | None,
    prepare: Callable[[], Coroutine[Any, Any, None]] | None = None,
) -> Iterator[Store]:
    """A Store driving the asyncio ``directory``, after ``prepare``; closed on its loop after."""
    runner = EventLoopThread()
    try:
        if prepare is not None:
            runner.run(prepare())
        yield Store(cast(Directory, RunToCompletion(directory, runner)), break_it,
                    async_directory=directory)
    finally:
        try:
            runner.run(directory.close())
        finally:
            runner.stop()


# --- the factories --------------------------------------------------------------------------


@contextlib.contextmanager
def memory_store(tmp_path: Path) -> Iterator[Store]:
    yield Store(MemoryDirectory(crypt_context=CONTEXT))


@contextlib.contextmanager
def sqlite_store(tmp_path: Path) -> Iterator[Store]:
    path = tmp_path / "clients.sqlite3"
    with SQLiteDirectory(path, crypt_context=CONTEXT) as directory:
        yield Store(directory, _sqlite_dropper(path))


def _drop(engine: sa.Engine, *tables: str) -> Callable[[], None]:
    def drop_tables() -> None:
        with engine.begin() as connection:
            for table in tables:
                connection.exec_driver_sql(f"DROP TABLE {table}")

    return drop_tables


@contextlib.contextmanager
def sqlalchemy_sqlite_store(tmp_path: Path) -> Iterator[Store]:
    directory = SQLAlchemyDirectory(
        f"sqlite:///{tmp_path / 'clients.sqlite3'}", crypt_context=CONTEXT, create_schema=True
    )
    try:
        yield Store(directory, _drop(directory.engine, "credrecovery_domains",
                                     "credrecovery_clients"))
    finally:
        directory.dispose()


@contextlib.contextmanager
def sqlalchemy_postgres_store(tmp_path: Path) -> Iterator[Store]:
    with pg.fresh_schema() as schema:
        directory = SQLAlchemyDirectory(schema.engine, crypt_context=CONTEXT, create_schema=True)
        yield Store(directory, _drop(schema.engine, "credrecovery_domains",
                                     "credrecovery_clients"))


HOST_TABLES = """
CREATE TABLE accounts (
    acct_no       integer PRIMARY KEY,
    contact_email text NOT NULL,
    secret_hash   text NOT NULL,
    display_name  text,
    lang          text
);
CREATE INDEX accounts_contact_email ON accounts (contact_email);
CREATE TABLE account_hostnames (
    hostname text PRIMARY KEY,
    acct_no  integer REFERENCES accounts
);
"""


def host_mapping(schema: str) -> TableMapping:
    """HOST_TABLES, as a TableMapping describes them."""
    return TableMapping(
        clients_table="accounts",
        number="acct_no",
        email="contact_email",
        key_hash="secret_hash",
        name="display_name",
        locale="lang",
        domains_table="account_hostnames",
        domain="hostname",
        domain_client="acct_no",
        schema=schema,
        number_is_integer=True,
    )


@contextlib.contextmanager
def sqlalchemy_postgres_host_tables_store(tmp_path: Path) -> Iterator[Store]:
    with pg.fresh_schema() as schema:
        with schema.engine.begin() as connection:
            connection.exec_driver_sql(HOST_TABLES)
        directory = SQLAlchemyDirectory(schema.engine, mapping=host_mapping(schema.name),
                                        crypt_context=CONTEXT)
        yield Store(directory, _drop(schema.engine, "account_hostnames", "accounts"))


@contextlib.contextmanager
def host_written_store(tmp_path: Path) -> Iterator[Store]:
    directory = HostDirectory()

    def go_down() -> None:
        directory.down = True

    yield Store(directory, go_down, shares_addresses=False)


def _sqlite_dropper(path: Path) -> Callable[[], None]:
    def drop_tables() -> None:
        with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as conn:
            conn.executescript("DROP TABLE domains; DROP TABLE clients;")

    return drop_tables


@contextlib.contextmanager
def async_sqlite_store(tmp_path: Path) -> Iterator[Store]:
    path = tmp_path / "clients.sqlite3"
    directory = AsyncSQLiteDirectory(path, crypt_context=CONTEXT)
    with run_to_completion(directory, _sqlite_dropper(path)) as store:
        yield store


def _async_url(schema: pg.PostgresSchema, driver: str) -> tuple[sa.URL, dict[str, Any]]:
    """The test server's URL for an asyncio ``driver``, and connect_args for the schema."""
    url = sa.make_url(schema.url).set(drivername=f"postgresql+{driver}")
    if driver == "asyncpg":
        return url, {"server_settings": {"search_path": schema.name}}
    return url, {"options": f"-csearch_path={schema.name}"}


@contextlib.contextmanager
def async_sqlalchemy_postgres_store(tmp_path: Path, driver: str) -> Iterator[Store]:
    with pg.fresh_schema() as schema:
        url, connect_args = _async_url(schema, driver)
        engine = create_async_engine(url, hide_parameters=True, connect_args=connect_args)
        directory = AsyncSQLAlchemyDirectory(engine, crypt_context=CONTEXT)
        drop_tables = _drop(schema.engine, "credrecovery_domains", "credrecovery_clients")
        with run_to_completion(directory, drop_tables, directory.create_schema) as store:
            yield store


@contextlib.contextmanager
def async_sqlalchemy_postgres_host_tables_store(tmp_path: Path) -> Iterator[Store]:
    with pg.fresh_schema() as schema:
        with schema.engine.begin() as connection:
            connection.exec_driver_sql(HOST_TABLES)
        url, connect_args = _async_url(schema, "psycopg")
        engine = create_async_engine(url, hide_parameters=True, connect_args=connect_args)
        directory = AsyncSQLAlchemyDirectory(
            engine, mapping=host_mapping(schema.name), crypt_context=CONTEXT)
        with run_to_completion(directory, _drop(schema.engine, "account_hostnames",
                                                "accounts")) as store:
            yield store


FACTORIES: dict[str, Callable[[Path], contextlib.AbstractContextManager[Store]]] = {
    "memory": memory_store,
    "sqlite": sqlite_store,
    "sqlalchemy-sqlite": sqlalchemy_sqlite_store,
    "sqlalchemy-postgresql": sqlalchemy_postgres_store,
    "sqlalchemy-postgresql-host-tables": sqlalchemy_postgres_host_tables_store,
    "host-written": host_written_store,
    "async-sqlite": async_sqlite_store,
    "async-sqlalchemy-postgresql-asyncpg": functools.partial(
        async_sqlalchemy_postgres_store, driver="asyncpg"),
    "async-sqlalchemy-postgresql-psycopg": functools.partial(
        async_sqlalchemy_postgres_store, driver="psycopg"),
    "async-sqlalchemy-postgresql-host-tables": async_sqlalchemy_postgres_host_tables_store,
}


@pytest.fixture(params=[
    pytest.param(name, marks=[pytest.mark.postgres] if "postgresql" in name else [])
    for name in FACTORIES
])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    with FACTORIES[request.param](tmp_path) as store:
        yield store


@pytest.fixture
def directory(store: Store) -> Directory:
    return store.directory


def add_alice(directory: Directory) -> Client:
    return directory.add_client(
        "1001", "alice@example.com", key_hash=OLD_HASH, domains=ALICE_DOMAINS,
        name="Alice Martin", locale="fr",
    )


def add_bob(directory: Directory) -> Client:
    return directory.add_client(
        "1002", "bob@example.net", key_hash=CONTEXT.hash("Bob-Access-Key-2024"),
        domains=["bob.example"],
    )


def make_service(directory: Directory, mailer: MemoryMailer) -> RecoveryService:
    return RecoveryService(
        directory, mailer, secret_key=SECRET, confirm_url=CONFIRM_URL, sender=SENDER,
        crypt_context=CONTEXT, rate_limits=None, delivery="sync",
    )


# --- the contract ---------------------------------------------------------------------------


def test_satisfies_the_protocol(store: Store) -> None:
    """Each directory meets ClientDirectory, and an asyncio one AsyncClientDirectory too."""
    assert isinstance(store.directory, ClientDirectory)
    if store.async_directory is not None:
        assert isinstance(store.async_directory, AsyncClientDirectory)
        for name in ("find", "find_all", "replace_key_hash"):
            assert asyncio.iscoroutinefunction(getattr(store.async_directory, name)), name


def test_find_by_each_kind(directory: Directory) -> None:
    """Number, primary email and every one of several domains find the client."""
    add_alice(directory)
    bob = add_bob(directory)
    lookups = [(NUMBER, "1001"), (EMAIL, "alice@example.com")]
    lookups += [(DOMAIN, domain) for domain in ALICE_DOMAINS]
    for kind, value in lookups:
        found = directory.find(kind, value)
        assert found == Client("1001", "alice@example.com", OLD_HASH, "Alice Martin", "fr"), (
            kind, value)
    for kind, value in [(NUMBER, "1002"), (EMAIL, "bob@example.net"), (DOMAIN, "bob.example")]:
        assert directory.find(kind, value) == bob


def test_misses_return_none(directory: Directory) -> None:
    add_alice(directory)
    misses = [
        (NUMBER, "9999"),
        (EMAIL, "nobody@example.com"),
        (DOMAIN, "nobody.example"),
        # The email is matched against the primary address only...
        (EMAIL, "alice@alice.example"),
        # ...the primary address's domain is not one of the client's domains...
        (DOMAIN, "example.com"),
        # ...and a value of one kind does not match another kind's column.
        (EMAIL, "alice.example"),
        (DOMAIN, "alice@example.com"),
        (NUMBER, "alice"),
    ]
    for kind, value in misses:
        assert directory.find(kind, value) is None, (kind, value)


def test_stored_values_are_normalized(directory: Directory) -> None:
    """Values added in any case or script are found by normalize_identifier's output."""
    added = directory.add_client(
        " 1003 ", "Carla.Diaz@Example.COM", key_hash=OLD_HASH,
        domains=["Bücher.Example.", "SHOP.CARLA.EXAMPLE"],
    )
    assert (added.number, added.email) == ("1003", "carla.diaz@example.com")
    lookups = [
        (NUMBER, "1003 "),
        (EMAIL, "CARLA.DIAZ@example.com"),
        (DOMAIN, "BÜCHER.example"),
        (DOMAIN, "shop.carla.example."),
    ]
    for kind, typed in lookups:
        found = directory.find(kind, normalize_identifier(kind, typed))
        assert found is not None, (kind, typed)
        assert (found.number, found.email) == ("1003", "carla.diaz@example.com")
    assert directory.find(DOMAIN, "xn--bcher-kva.example") is not None
    assert directory.find(DOMAIN, "Bücher.Example.") is None


def test_replace_key_hash_is_compare_and_set(directory: Directory) -> None:
    add_alice(directory)
    add_bob(directory)
    assert directory.replace_key_hash("1001", OLD_HASH, NEW_HASH) is True
    assert directory.replace_key_hash("1001", OLD_HASH, THIRD_HASH) is False
    assert directory.replace_key_hash("9999", NEW_HASH, THIRD_HASH) is False
    assert directory.find(NUMBER, "9999") is None
    stored = directory.find(NUMBER, "1001")
    assert stored is not None and stored.key_hash == NEW_HASH
    assert directory.replace_key_hash("1001", NEW_HASH, THIRD_HASH) is True
    stored = directory.find(NUMBER, "1001")
    assert stored is not None and stored.key_hash == THIRD_HASH
    bob = directory.find(NUMBER, "1002")
    assert bob is not None and CONTEXT.verify("Bob-Access-Key-2024", bob.key_hash)


def test_concurrent_compare_and_set_lets_one_win(directory: Directory) -> None:
    """Eight threads swap the same current hash at once: exactly one succeeds."""
    add_alice(directory)
    barrier = threading.Barrier(8)
    results: dict[str, bool] = {}
    errors: list[BaseException] = []

    def swap(new: str) -> None:
        try:
            barrier.wait(timeout=10)
            results[new] = directory.replace_key_hash("1001", OLD_HASH, new)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    candidates = [f"{NEW_HASH}-{i}" for i in range(8)]
    threads = [threading.Thread(target=swap, args=(new,)) for new in candidates]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    winners = [new for new, won in results.items() if won]
    assert len(results) == 8 and len(winners) == 1
    stored = directory.find(NUMBER, "1001")
    assert stored is not None and stored.key_hash == winners[0]


def test_storage_failure_surfaces_as_directory_error(store: Store) -> None:
    """A failing storage makes request and confirm raise DirectoryError, hash-free."""
    if store.break_it is None:
        pytest.skip("the in-memory directory has no storage that can fail")
    add_alice(store.directory)
    mailer = MemoryMailer()
    service = make_service(store.directory, mailer)
    service.request("email", "alice@example.com")
    token = token_from(mailer.outbox[0])
    store.break_it()
    for call in (
        lambda: service.request("domain", "alice.example"),
        lambda: service.confirm(token),
    ):
        with pytest.raises(DirectoryError) as caught:
            call()
        error = caught.value
        assert error.__cause__ is not None
        if isinstance(store.directory, HostDirectory):
            assert isinstance(error.__cause__, RuntimeError)
        assert OLD_HASH not in str(error) and OLD_HASH not in repr(error)
    assert len(mailer.outbox) == 1
    # Called directly, the library's adapters raise DirectoryError themselves; a
    # host's directory raises whatever its storage raises.
    raised = RuntimeError if isinstance(store.directory, HostDirectory) else DirectoryError
    for direct in (
        lambda: store.directory.find(EMAIL, "alice@example.com"),
        lambda: store.directory.replace_key_hash("1001", OLD_HASH, NEW_HASH),
    ):
        with pytest.raises(raised) as caught_directly:
            direct()
        assert OLD_HASH not in str(caught_directly.value)


@pytest.mark.parametrize(("kind", "typed"), [
    ("domain", "Alice-Shop.EXAMPLE."),
    ("client_number", " 1001"),
    ("email", "Alice@Example.COM"),
])
def test_full_flow_through_the_service(directory: Directory, kind: str, typed: str) -> None:
    """Request by any kind, confirm, and the mailed key is the one stored."""
    add_alice(directory)
    add_bob(directory)
    mailer = MemoryMailer()
    service = make_service(directory, mailer)
    service.request(kind, typed)
    [confirmation_mail] = mailer.outbox
    assert confirmation_mail["To"].addresses[0].addr_spec == "alice@example.com"
    token = token_from(confirmation_mail)

    confirmation = service.confirm(token)

    assert (confirmation.number, confirmation.email) == ("1001", "alice@example.com")
    assert len(mailer.outbox) == 2
    key = key_from(mailer.outbox[1])
    stored = directory.find(NUMBER, "1001")
    assert stored is not None
    assert CONTEXT.verify(key, stored.key_hash)
    assert not CONTEXT.verify(OLD_KEY, stored.key_hash)
    with pytest.raises(TokenAlreadyUsed):
        service.confirm(token)
    bob = directory.find(NUMBER, "1002")
    assert bob is not None and CONTEXT.verify("Bob-Access-Key-2024", bob.key_hash)


# --- shared primary addresses and find_all -------------------------------------------------


def find_all_of(store: Store) -> Callable[..., Sequence[Client]]:
    """The directory's ``find_all``; skips the test for a directory that has only ``find``."""
    if not store.shares_addresses:
        pytest.skip("this directory has only find, as a host's may")
    find_all = getattr(store.directory, "find_all", None)
    assert callable(find_all), "a shipped directory has find_all"
    return cast(Callable[..., Sequence[Client]], find_all)


def add_reseller_client(directory: Directory, number: str, domain: str) -> Client:
    """Another client under Alice's primary address, as a reseller holds them."""
    return directory.add_client(
        number, "Alice@Example.com", key_hash=CONTEXT.hash(f"Key-of-{number}"), domains=[domain],
        name=f"Shop {number}",
    )


def test_shared_primary_address_finds_every_client(store: Store) -> None:
    """Several clients may share a primary address; find_all returns them all, find the first."""
    find_all = find_all_of(store)
    directory = store.directory
    last = add_reseller_client(directory, "1005", "shop5.example")
    alice = add_alice(directory)
    middle = add_reseller_client(directory, "1003", "shop3.example")
    bob = add_bob(directory)

    assert list(find_all(EMAIL, "alice@example.com")) == [alice, middle, last]
    assert directory.find(EMAIL, "alice@example.com") == alice
    # Each client keeps its own number, key and domains.
    assert directory.find(DOMAIN, "shop3.example") == middle
    assert directory.find(NUMBER, "1005") == last
    assert last.key_hash != middle.key_hash
    assert list(find_all(EMAIL, "bob@example.net")) == [bob]


def test_find_all_stops_at_the_limit(store: Store) -> None:
    """find_all returns at most ``limit`` clients, the lowest numbers first; 50 by default."""
    find_all = find_all_of(store)
    directory = store.directory
    for number in ("1005", "1001", "1004", "1002", "1003"):
        add_reseller_client(directory, number, f"shop{number}.example")
    numbers = [client.number for client in find_all(EMAIL, "alice@example.com")]
    assert numbers == ["1001", "1002", "1003", "1004", "1005"]
    for limit, expected in ((1, ["1001"]), (2, ["1001", "1002"]), (9, numbers)):
        found = find_all(EMAIL, "alice@example.com", limit=limit)
        assert [client.number for client in found] == expected, limit
    for limit in (0, -1):
        with pytest.raises(ValueError, match="limit"):
            find_all(EMAIL, "alice@example.com", limit=limit)


def test_find_all_by_number_or_domain_is_one_client_at_most(store: Store) -> None:
    """A number or a domain names one client; a miss of any kind is an empty list."""
    find_all = find_all_of(store)
    directory = store.directory
    alice = add_alice(directory)
    add_reseller_client(directory, "1003", "shop3.example")
    assert list(find_all(NUMBER, "1001")) == [alice]
    for domain in ALICE_DOMAINS:
        assert list(find_all(DOMAIN, domain)) == [alice], domain
    for kind, value in [(NUMBER, "9999"), (EMAIL, "nobody@example.com"),
                        (DOMAIN, "nobody.example"), (EMAIL, "alice@alice.example"),
                        (NUMBER, "alice")]:
        assert list(find_all(kind, value)) == [], (kind, value)


def test_numbers_and_domains_stay_unique(store: Store) -> None:
    """A taken number or domain is still refused, leaving nothing of the new client."""
    find_all_of(store)
    directory = store.directory
    alice = add_alice(directory)
    with pytest.raises(ValueError):
        directory.add_client("1001", "someone@example.org", key_hash=NEW_HASH)
    with pytest.raises(ValueError):
        directory.add_client("1009", "alice@example.com", key_hash=NEW_HASH,
                             domains=["new.example", "alice-shop.example"])
    assert directory.find(NUMBER, "1009") is None
    assert directory.find(DOMAIN, "new.example") is None
    assert directory.find(EMAIL, "someone@example.org") is None
    assert directory.find(NUMBER, "1001") == alice
    assert directory.find(DOMAIN, "alice-shop.example") == alice
