"""The "must change" flag and the client's domains, in every shipped directory.

Each adapter, sync and async, is driven through one :class:`Subject`: an async
directory's coroutines run on one event loop that lives as long as the test.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import inspect
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from credrecovery import sqlite as sqlite_module
from credrecovery.async_sqlalchemy import AsyncSQLAlchemyDirectory
from credrecovery.async_sqlite import AsyncSQLiteDirectory
from credrecovery.exceptions import DirectoryError
from credrecovery.identifiers import IdentifierKind
from credrecovery.keys import cheap_context
from credrecovery.memory import MemoryDirectory
from credrecovery.models import Client
from credrecovery.protocols import (
    AsyncClientDirectory,
    AsyncMustChangeDirectory,
    ClientDirectory,
    MustChangeDirectory,
)
from credrecovery.sqlalchemy import SQLAlchemyDirectory, TableMapping
from credrecovery.sqlite import _FIND_SQL, SQLiteDirectory
from helpers import pg

CONTEXT = cheap_context()
HASH = CONTEXT.hash("Old-Access-Key-2024")
NEW_HASH = CONTEXT.hash("New-Access-Key-2025")
NUMBER = IdentifierKind.CLIENT_NUMBER
EMAIL = IdentifierKind.EMAIL
DOMAIN = IdentifierKind.DOMAIN

# As given, and as every directory must store and return them.
ALICE_DOMAINS = ["Alice.Example", "MÜNCHEN.de", "alice-shop.example.", "alice.example"]
ALICE_NORMALIZED = ("alice-shop.example", "alice.example", "xn--mnchen-3ya.de")


# --- one harness over every adapter ---------------------------------------------------------


@dataclasses.dataclass
class Subject:
    """A directory under test, whatever its kind, called as if it were synchronous."""

    open: Callable[[], Any]
    runner: asyncio.Runner | None = None
    #: A context manager inside which the storage fails; None for memory.
    broken: Callable[[], contextlib.AbstractContextManager[None]] | None = None
    #: Whether the storage is readable again once ``broken`` has exited.
    recovers: bool = False
    persistent: bool = True
    directory: Any = None

    def __post_init__(self) -> None:
        self.directory = self.open()

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        result = getattr(self.directory, method)(*args, **kwargs)
        if inspect.isawaitable(result):
            assert self.runner is not None
            return self.runner.run(result)  # type: ignore[arg-type]
        return result

    def close(self) -> None:
        if hasattr(self.directory, "close"):
            self.call("close")

    def reopen(self) -> None:
        self.close()
        self.directory = self.open()

    def find(self, kind: IdentifierKind, value: str) -> Client | None:
        found: Client | None = self.call("find", kind, value)
        return found

    def add_alice(self) -> Client:
        added: Client = self.call(
            "add_client",
            "1001",
            "alice@example.com",
            key_hash=HASH,
            domains=ALICE_DOMAINS,
            name="Alice Martin",
            locale="fr",
        )
        return added

    def add_bob(self) -> Client:
        added: Client = self.call(
            "add_client", "1002", "bob@example.com", key_hash=HASH, domains=["bob.example"]
        )
        return added


@contextlib.contextmanager
def sqlite_write_lock(path: Path) -> Iterator[None]:
    """Another connection holds the file's write lock for the duration."""
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as locker:
        locker.execute("BEGIN EXCLUSIVE")
        try:
            yield
        finally:
            locker.execute("ROLLBACK")


def dropping_tables(engine: sa.Engine) -> Callable[[], contextlib.AbstractContextManager[None]]:
    @contextlib.contextmanager
    def broken() -> Iterator[None]:
        with engine.begin() as connection:
            connection.exec_driver_sql("DROP TABLE credrecovery_domains")
            connection.exec_driver_sql("DROP TABLE credrecovery_clients")
        yield

    return broken


def pg_engine(schema: pg.PostgresSchema) -> sa.Engine:
    return sa.create_engine(
        schema.url, hide_parameters=True, connect_args={"options": f"-csearch_path={schema.name}"}
    )


ADAPTERS = [
    "memory",
    "sqlite",
    "async_sqlite",
    "sqlalchemy_sqlite",
    pytest.param("sqlalchemy_postgresql", marks=pytest.mark.postgres),
    pytest.param("async_sqlalchemy_postgresql", marks=pytest.mark.postgres),
]


@pytest.fixture(params=ADAPTERS)
def subject(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Subject]:
    path = tmp_path / "clients.sqlite3"
    with contextlib.ExitStack() as stack:
        runner = stack.enter_context(asyncio.Runner())
        made: Subject
        match request.param:
            case "memory":
                made = Subject(lambda: MemoryDirectory(crypt_context=CONTEXT), persistent=False)
            case "sqlite":
                made = Subject(
                    lambda: SQLiteDirectory(path, crypt_context=CONTEXT, timeout=0.2),
                    broken=lambda: sqlite_write_lock(path),
                    recovers=True,
                )
            case "async_sqlite":
                made = Subject(
                    lambda: AsyncSQLiteDirectory(path, crypt_context=CONTEXT, timeout=0.2),
                    runner=runner,
                    broken=lambda: sqlite_write_lock(path),
                    recovers=True,
                )
            case "sqlalchemy_sqlite":
                url = f"sqlite:///{path}"
                admin = sa.create_engine(url, hide_parameters=True)
                stack.callback(admin.dispose)
                made = Subject(
                    lambda: SQLAlchemyDirectory(url, crypt_context=CONTEXT, create_schema=True),
                    broken=dropping_tables(admin),
                )
            case "sqlalchemy_postgresql":
                schema = stack.enter_context(pg.fresh_schema())
                made = Subject(
                    lambda: SQLAlchemyDirectory(
                        pg_engine(schema), crypt_context=CONTEXT, create_schema=True
                    ),
                    broken=dropping_tables(schema.engine),
                )
            case "async_sqlalchemy_postgresql":
                schema = stack.enter_context(pg.fresh_schema())
                url = sa.make_url(schema.url).set(drivername="postgresql+asyncpg")

                def open_async() -> AsyncSQLAlchemyDirectory:
                    engine = create_async_engine(
                        url,
                        hide_parameters=True,
                        connect_args={"server_settings": {"search_path": schema.name}},
                    )
                    directory = AsyncSQLAlchemyDirectory(engine, crypt_context=CONTEXT)
                    runner.run(directory.create_schema())
                    return directory

                made = Subject(open_async, runner=runner, broken=dropping_tables(schema.engine))
        try:
            yield made
        finally:
            made.close()


# --- the contract, on every adapter -----------------------------------------------------------


def test_the_capability_is_detected_and_the_base_protocol_still_holds(subject: Subject) -> None:
    """set_must_change is there to find at run time; the directory is still a directory."""
    directory = subject.directory
    assert callable(getattr(directory, "set_must_change", None))
    if subject.runner is None:
        assert isinstance(directory, ClientDirectory)
        assert isinstance(directory, MustChangeDirectory)
    else:
        assert isinstance(directory, AsyncClientDirectory)
        assert isinstance(directory, AsyncMustChangeDirectory)
        assert inspect.iscoroutinefunction(directory.set_must_change)


def test_the_flag_is_set_and_cleared(subject: Subject) -> None:
    """True reads back True by every kind of lookup, then False reads back False."""
    alice = subject.add_alice()
    assert alice.must_change is False
    assert subject.find(NUMBER, "1001") == alice
    assert subject.call("set_must_change", "1001", True) is None
    for kind, value in [
        (NUMBER, "1001"),
        (EMAIL, "alice@example.com"),
        (DOMAIN, "xn--mnchen-3ya.de"),
    ]:
        found = subject.find(kind, value)
        assert found is not None and found.must_change is True, kind
        assert subject.call("find_all", kind, value) == [found], kind
    subject.call("set_must_change", "1001", False)
    assert subject.find(NUMBER, "1001") == alice
    # Setting a value twice is no error and changes nothing more.
    subject.call("set_must_change", "1001", False)
    assert subject.find(NUMBER, "1001") == alice


def test_nothing_else_of_the_record_changes(subject: Subject) -> None:
    """Only must_change moves; the other client keeps its flag; the key swap leaves the flag."""
    alice, bob = subject.add_alice(), subject.add_bob()
    subject.call("set_must_change", "1001", True)
    assert subject.find(NUMBER, "1001") == dataclasses.replace(alice, must_change=True)
    assert subject.find(NUMBER, "1002") == bob
    assert subject.call("replace_key_hash", "1001", HASH, NEW_HASH) is True
    assert subject.find(NUMBER, "1001") == dataclasses.replace(
        alice, must_change=True, key_hash=NEW_HASH
    )


def test_an_unknown_number_is_no_error_and_changes_nothing(subject: Subject) -> None:
    """set_must_change for a number nobody has returns None and writes nothing."""
    alice = subject.add_alice()
    assert subject.call("set_must_change", "9999", True) is None
    assert subject.call("set_must_change", "1001 ", True) is None
    assert subject.find(NUMBER, "9999") is None
    assert subject.find(NUMBER, "1001") == alice


def test_the_flag_survives_reopening(subject: Subject) -> None:
    """A new directory on the same storage reads the flag the old one wrote."""
    if not subject.persistent:
        pytest.skip("a MemoryDirectory keeps nothing once it is gone")
    subject.add_alice()
    subject.add_bob()
    subject.call("set_must_change", "1001", True)
    subject.reopen()
    found = subject.find(DOMAIN, "alice.example")
    assert found is not None and found.must_change is True
    assert found.domains == ALICE_NORMALIZED
    bob = subject.find(NUMBER, "1002")
    assert bob is not None and bob.must_change is False


def test_lookups_return_the_clients_domains_normalized(subject: Subject) -> None:
    """find and find_all return each client's domains, normalized, deduplicated and sorted."""
    alice = subject.add_alice()
    assert alice.domains == ALICE_NORMALIZED
    carol: Client = subject.call("add_client", "1003", "alice@example.com", key_hash=HASH)
    assert carol.domains == ()
    for kind, value in [
        (NUMBER, "1001"),
        (EMAIL, "alice@example.com"),
        (DOMAIN, "alice-shop.example"),
    ]:
        assert subject.find(kind, value) == alice, kind
    # A shared address: each client comes with its own domains, or none.
    shared = subject.call("find_all", EMAIL, "alice@example.com")
    assert [(c.number, c.domains) for c in shared] == [("1001", ALICE_NORMALIZED), ("1003", ())]
    assert subject.find(NUMBER, "1003") == carol


def test_a_storage_failure_raises_directory_error(subject: Subject) -> None:
    """A database that fails under set_must_change gives DirectoryError naming no value."""
    if subject.broken is None:
        pytest.skip("a MemoryDirectory has no storage to fail")
    subject.add_alice()
    with subject.broken(), pytest.raises(DirectoryError) as caught:
        subject.call("set_must_change", "1001", True)
    assert caught.value.__cause__ is not None
    for secret in ("1001", HASH, "alice"):
        assert secret not in str(caught.value)
    if subject.recovers:
        found = subject.find(NUMBER, "1001")
        assert found is not None and found.must_change is False


# --- SQLite: the stand-in row and migration -----------------------------------------------------


def test_a_sqlite_miss_reads_the_flag_and_domains_of_its_stand_in(tmp_path: Path) -> None:
    """A miss's stand-in row carries the same columns as a hit's, its domains among them."""
    with SQLiteDirectory(tmp_path / "c.sqlite3", crypt_context=CONTEXT) as directory:
        for n in range(1, 4):
            directory.add_client(
                f"C{n}",
                f"c{n}@example.com",
                key_hash=HASH,
                domains=[f"c{n}.example", f"www.c{n}.example"],
            )
            directory.set_must_change(f"C{n}", True)
        conn = directory._thread_connection()
        for kind, hit, miss in [
            (NUMBER, "C1", "C9"),
            (EMAIL, "c1@example.com", "c9@x.example"),
            (DOMAIN, "c1.example", "c9.example"),
        ]:
            [row] = conn.execute(_FIND_SQL[kind], (hit, 1)).fetchall()
            assert (
                row[5]
                and row[6] == 1
                and sorted(row[8].split(",")) == ["c1.example", "www.c1.example"]
            )
            [stand_in] = conn.execute(_FIND_SQL[kind], (miss, 1)).fetchall()
            assert len(stand_in) == len(row) and not stand_in[5]
            number = stand_in[0]
            assert stand_in[6] == 1 and sorted(stand_in[8].split(",")) == [
                f"{number.lower()}.example",
                f"www.{number.lower()}.example",
            ]
            assert directory.find_all(kind, miss) == []


# The schema at version 1, before must_change, kept verbatim so that the
# migration meets real files.
SCHEMA_1 = """
BEGIN IMMEDIATE;
CREATE TABLE IF NOT EXISTS clients (
    number   TEXT PRIMARY KEY NOT NULL,
    email    TEXT NOT NULL,
    key_hash TEXT NOT NULL,
    name     TEXT NOT NULL DEFAULT '',
    locale   TEXT
);
CREATE INDEX IF NOT EXISTS clients_email ON clients (email, number);
CREATE TABLE IF NOT EXISTS domains (
    domain TEXT PRIMARY KEY NOT NULL,
    number TEXT NOT NULL REFERENCES clients (number) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS domains_number ON domains (number);
PRAGMA user_version = 1;
COMMIT;
"""


def make_version_1_file(path: Path) -> None:
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.executescript(SCHEMA_1)
        conn.executemany(
            "INSERT INTO clients VALUES (?, ?, ?, ?, ?)",
            [
                ("C1", "a@example.com", HASH, "Ana", "es"),
                ("C2", "a@example.com", HASH, "", None),
            ],
        )
        conn.executemany(
            "INSERT INTO domains VALUES (?, ?)", [("a.example", "C1"), ("a-shop.example", "C1")]
        )


def table_info(path: Path) -> tuple[int, list[tuple[object, ...]]]:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return (
            conn.execute("PRAGMA user_version").fetchone()[0],
            conn.execute("PRAGMA table_info(clients)").fetchall(),
        )


def test_a_version_1_file_gains_the_flag_on_open(tmp_path: Path) -> None:
    """A file of the previous schema is migrated: version bumped, old clients False, working."""
    assert sqlite_module._SCHEMA_VERSION >= 2
    old = tmp_path / "old.sqlite3"
    make_version_1_file(old)
    with SQLiteDirectory(old, crypt_context=CONTEXT) as directory:
        ana = directory.find(DOMAIN, "a-shop.example")
        assert ana == Client(
            "C1",
            "a@example.com",
            HASH,
            "Ana",
            "es",
            domains=("a-shop.example", "a.example"),
            must_change=False,
        )
        assert [c.number for c in directory.find_all(EMAIL, "a@example.com")] == ["C1", "C2"]
        directory.set_must_change("C1", True)
        assert directory.find(NUMBER, "C1") == dataclasses.replace(ana, must_change=True)
        assert directory.replace_key_hash("C2", HASH, NEW_HASH)
        assert directory.find(NUMBER, "C2") == Client("C2", "a@example.com", NEW_HASH)
        directory.add_client("C3", "c@example.com", key_hash=HASH, domains=["c.example"])
    fresh = tmp_path / "fresh.sqlite3"
    SQLiteDirectory(fresh).close()
    assert table_info(old) == table_info(fresh)
    assert table_info(old)[0] == sqlite_module._SCHEMA_VERSION


def test_a_version_0_file_goes_through_both_steps(tmp_path: Path) -> None:
    """A 0.1.0 file (unique email) reaches version 2 with the flag false, under the async twin."""
    old = tmp_path / "old.sqlite3"
    with contextlib.closing(sqlite3.connect(old, isolation_level=None)) as conn:
        conn.executescript(
            "CREATE TABLE clients (number TEXT PRIMARY KEY NOT NULL, email TEXT NOT NULL UNIQUE,"
            " key_hash TEXT NOT NULL, name TEXT NOT NULL DEFAULT '', locale TEXT);"
            "CREATE TABLE domains (domain TEXT PRIMARY KEY NOT NULL, number TEXT NOT NULL"
            " REFERENCES clients (number) ON DELETE CASCADE);"
            "CREATE INDEX domains_number ON domains (number);"
        )
        conn.execute("INSERT INTO clients VALUES ('C1', 'a@example.com', ?, 'Ana', 'es')", (HASH,))
        conn.execute("INSERT INTO domains VALUES ('a.example', 'C1')")

    async def scenario() -> tuple[Client | None, Client | None]:
        async with AsyncSQLiteDirectory(old) as directory:
            before = await directory.find(NUMBER, "C1")
            await directory.set_must_change("C1", True)
            return before, await directory.find(DOMAIN, "a.example")

    before, after = asyncio.run(scenario())
    assert before == Client("C1", "a@example.com", HASH, "Ana", "es", domains=("a.example",))
    assert after == dataclasses.replace(before, must_change=True)
    fresh = tmp_path / "fresh.sqlite3"
    SQLiteDirectory(fresh).close()
    assert table_info(old) == table_info(fresh)


def test_a_version_1_file_that_already_has_the_column_is_refused(tmp_path: Path) -> None:
    """A host's own must_change column is not taken over silently; the file stays at 1."""
    old = tmp_path / "old.sqlite3"
    make_version_1_file(old)
    with contextlib.closing(sqlite3.connect(old)) as conn:
        conn.execute("ALTER TABLE clients ADD COLUMN must_change TEXT")
    with pytest.raises(DirectoryError, match="must_change"):
        SQLiteDirectory(old)
    assert table_info(old)[0] == 1


# --- SQLAlchemy: own tables of an earlier version, and host tables -----------------------------


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sa.Engine]:
    if request.param == "sqlite":
        made = sa.create_engine(f"sqlite:///{tmp_path / 'c.sqlite3'}", hide_parameters=True)
        try:
            yield made
        finally:
            made.dispose()
    else:
        with pg.fresh_schema() as schema:
            yield schema.engine


def test_create_schema_adds_the_flag_to_earlier_own_tables(engine: sa.Engine) -> None:
    """Tables without must_change gain it, NOT NULL and false for the clients already there."""
    with engine.begin() as connection:
        connection.exec_driver_sql(
            "CREATE TABLE credrecovery_clients (number VARCHAR(32) PRIMARY KEY, email"
            " VARCHAR(320) NOT NULL, key_hash TEXT NOT NULL, name VARCHAR(255) NOT NULL"
            " DEFAULT '', locale VARCHAR(35))"
        )
        connection.exec_driver_sql(
            "CREATE TABLE credrecovery_domains (domain VARCHAR(253) PRIMARY KEY,"
            " client_number VARCHAR(32) NOT NULL REFERENCES credrecovery_clients (number))"
        )
        connection.execute(
            sa.text(
                "INSERT INTO credrecovery_clients (number, email, key_hash)"
                " VALUES ('1', 'a@x.example', :h)"
            ),
            {"h": HASH},
        )
        connection.exec_driver_sql(
            "INSERT INTO credrecovery_domains VALUES ('a.example', '1'), ('b.example', '1')"
        )
    old = SQLAlchemyDirectory(engine, crypt_context=CONTEXT)
    with pytest.raises(DirectoryError):
        old.find(NUMBER, "1")
    directory = SQLAlchemyDirectory(engine, crypt_context=CONTEXT, create_schema=True)
    directory.create_schema()  # idempotent
    columns = {c["name"]: c for c in sa.inspect(engine).get_columns("credrecovery_clients")}
    assert columns["must_change"]["nullable"] is False
    assert directory.find(DOMAIN, "b.example") == Client(
        "1", "a@x.example", HASH, domains=("a.example", "b.example")
    )
    directory.set_must_change("1", True)
    found = directory.find(EMAIL, "a@x.example")
    assert found is not None and found.must_change is True


HOST_DDL = {
    "sqlite": [
        "CREATE TABLE cust (cust_id integer primary key, mail text not null,"
        " pw_hash text not null, must_reset integer, notes text default 'keep')",
        "CREATE TABLE cust_domains (fqdn text, cust_id integer references cust)",
    ],
    "postgresql": [
        "CREATE TABLE cust (cust_id integer primary key, mail text not null,"
        " pw_hash text not null, must_reset boolean, notes text default 'keep')",
        "CREATE TABLE cust_domains (fqdn text, cust_id integer references cust)",
    ],
}
MAPPING = TableMapping(
    clients_table="cust",
    number="cust_id",
    email="mail",
    key_hash="pw_hash",
    must_change="must_reset",
    domains_table="cust_domains",
    domain="fqdn",
    domain_client="cust_id",
    number_is_integer=True,
    domain_lowercased=False,
)


def create_host_tables(engine: sa.Engine) -> None:
    with engine.begin() as connection:
        for statement in HOST_DDL[engine.dialect.name]:
            connection.exec_driver_sql(statement)
        # must_reset NULL, as a host column added without a default leaves it.
        connection.execute(
            sa.text("INSERT INTO cust (cust_id, mail, pw_hash) VALUES (7, :m, :h)"),
            {"m": "host@example.com", "h": HASH},
        )
        # Mixed case and listed twice: read back lower-cased, once.
        connection.exec_driver_sql(
            "INSERT INTO cust_domains VALUES ('Host.Example', 7),"
            " ('host.example', 7), ('other.example', 7)"
        )


def stored_flag(engine: sa.Engine) -> Any:
    with engine.connect() as connection:
        return connection.exec_driver_sql("SELECT must_reset FROM cust WHERE cust_id = 7").scalar()


def test_host_tables_with_a_named_column(engine: sa.Engine) -> None:
    """A mapped must_change column is read (NULL as false) and written; nothing else is."""
    create_host_tables(engine)
    directory = SQLAlchemyDirectory(engine, mapping=MAPPING, crypt_context=CONTEXT)
    host = directory.find(DOMAIN, "other.example")
    assert host == Client(
        "7", "host@example.com", HASH, domains=("host.example", "other.example"), must_change=False
    )
    directory.set_must_change("0007", True)
    assert stored_flag(engine) in (True, 1)
    assert directory.find(NUMBER, "7") == dataclasses.replace(host, must_change=True)
    directory.set_must_change("7", False)
    assert stored_flag(engine) in (False, 0)
    directory.set_must_change("not-a-number", True)
    directory.set_must_change("8", True)
    added = directory.add_client("8", "new@example.com", key_hash=HASH, domains=["New.Example"])
    assert added == Client("8", "new@example.com", HASH, domains=("new.example",))
    assert directory.find(DOMAIN, "new.example") == added
    with engine.connect() as connection:
        assert connection.exec_driver_sql(
            "SELECT must_reset, notes FROM cust WHERE cust_id = 8"
        ).one() in [(False, "keep"), (0, "keep")]


def test_host_tables_without_a_named_column(engine: sa.Engine) -> None:
    """With no column named, set_must_change sends nothing and records report False."""
    create_host_tables(engine)
    with engine.begin() as connection:
        connection.exec_driver_sql("UPDATE cust SET must_reset = (1 = 1)")
    directory = SQLAlchemyDirectory(engine, mapping=dataclasses.replace(MAPPING, must_change=None))
    sent: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        sent.append(statement)

    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        assert directory.set_must_change("7", False) is None
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)
    assert sent == []
    found = directory.find(NUMBER, "7")
    assert found is not None and found.must_change is False
    assert stored_flag(engine) in (True, 1)


@pytest.mark.postgres
def test_async_host_tables_with_a_named_column() -> None:
    """The asyncio directory reads and writes a host's flag as the sync one does."""
    with pg.fresh_schema() as schema:
        create_host_tables(schema.engine)
        url = sa.make_url(schema.url).set(drivername="postgresql+asyncpg")
        engine = create_async_engine(
            url,
            hide_parameters=True,
            connect_args={"server_settings": {"search_path": schema.name}},
        )

        async def scenario() -> tuple[Client | None, Client | None]:
            async with AsyncSQLAlchemyDirectory(engine, mapping=MAPPING) as directory:
                before = await directory.find(DOMAIN, "host.example")
                await directory.set_must_change("7", True)
                return before, await directory.find(EMAIL, "host@example.com")

        before, after = asyncio.run(scenario())
        assert before is not None and before.domains == ("host.example", "other.example")
        assert after == dataclasses.replace(before, must_change=True)
        assert stored_flag(schema.engine) is True


def test_bulk_add_stores_the_flag(engine: sa.Engine, tmp_path: Path) -> None:
    """bulk_add keeps each client's must_change (through COPY on PostgreSQL), and the domains."""
    rows = [
        (
            Client(f"{n}", f"u{n}@example.com", HASH, must_change=n % 2 == 1),
            [f"www.u{n}.example", f"u{n}.example"],
        )
        for n in range(1, 5)
    ]
    expected = [
        dataclasses.replace(client, domains=tuple(sorted(domains))) for client, domains in rows
    ]
    directory = SQLAlchemyDirectory(engine, create_schema=True)
    assert directory.bulk_add(rows, batch_size=3) == 4
    assert [directory.find(NUMBER, c.number) for c in expected] == expected
    with SQLiteDirectory(tmp_path / "bulk.sqlite3") as sqlite_directory:
        assert sqlite_directory.bulk_add(rows) == 4
        assert [sqlite_directory.find(DOMAIN, f"u{c.number}.example") for c in expected] == expected
