"""Closed accounts in the shipped directories: stored, added to earlier files and tables,
and read from a host's own column or condition.

The contract suites check every shipped directory's closed accounts (see
test_directory_contract.py); this module checks what lies outside them: the
SQLite migration of a file the previous version wrote, ``create_schema`` on
own tables an earlier version created, ``TableMapping.active`` as a condition
over a WHMCS-style ``status`` column, and the mistakes a mapping refuses.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from credrecovery import Client, IdentifierKind, InvalidToken, RecoveryService, cheap_context
from credrecovery import sqlite as sqlite_module
from credrecovery.async_sqlalchemy import AsyncSQLAlchemyDirectory
from credrecovery.async_sqlite import AsyncSQLiteDirectory
from credrecovery.exceptions import DirectoryError
from credrecovery.memory import MemoryMailer
from credrecovery.sqlalchemy import SQLAlchemyDirectory, TableMapping
from credrecovery.sqlite import SQLiteDirectory
from helpers import CONFIRM_URL, SECRET, SENDER, pg, token_from
from helpers.pg import async_url

CONTEXT = cheap_context()
KEY = "Old-Access-Key-2024"
HASH = CONTEXT.hash(KEY)
NEW_HASH = CONTEXT.hash("New-Access-Key-2025")
NUMBER = IdentifierKind.CLIENT_NUMBER
EMAIL = IdentifierKind.EMAIL
DOMAIN = IdentifierKind.DOMAIN


def service_on(directory: Any, mailer: MemoryMailer) -> RecoveryService:
    return RecoveryService(
        directory,
        mailer,
        secret_key=SECRET,
        confirm_url=CONFIRM_URL,
        sender=SENDER,
        crypt_context=CONTEXT,
        rate_limits=None,
        delivery="sync",
    )


# --- SQLite: a file of the previous version -------------------------------------------------

# The schema at version 2, before active, kept verbatim so that the migration
# meets the files the previous version wrote.
SCHEMA_2 = """
BEGIN IMMEDIATE;
CREATE TABLE IF NOT EXISTS clients (
    number   TEXT PRIMARY KEY NOT NULL,
    email    TEXT NOT NULL,
    key_hash TEXT NOT NULL,
    name     TEXT NOT NULL DEFAULT '',
    locale   TEXT,
    must_change INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS clients_email ON clients (email, number);
CREATE TABLE IF NOT EXISTS domains (
    domain TEXT PRIMARY KEY NOT NULL,
    number TEXT NOT NULL REFERENCES clients (number) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS domains_number ON domains (number);
PRAGMA user_version = 2;
COMMIT;
"""


def make_version_2_file(path: Path) -> None:
    """A file as the previous version left it: WAL, two clients (one flagged), two domains."""
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.executescript(SCHEMA_2)
        conn.executemany(
            "INSERT INTO clients VALUES (?, ?, ?, ?, ?, ?)",
            [
                ("C1", "a@example.com", HASH, "Ana", "es", 1),
                ("C2", "a@example.com", HASH, "", None, 0),
            ],
        )
        conn.executemany(
            "INSERT INTO domains VALUES (?, ?)", [("a.example", "C1"), ("a-shop.example", "C1")]
        )


def file_schema(path: Path) -> tuple[int, list[tuple[object, ...]], list[tuple[object, ...]]]:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return (
            conn.execute("PRAGMA user_version").fetchone()[0],
            conn.execute("PRAGMA table_info(clients)").fetchall(),
            conn.execute("SELECT * FROM clients ORDER BY number").fetchall(),
        )


def test_a_version_2_file_gains_the_column_on_open(tmp_path: Path) -> None:
    """Every client of the old file stays open and keeps its values; closing then works."""
    old = tmp_path / "old.sqlite3"
    make_version_2_file(old)
    with SQLiteDirectory(old, crypt_context=CONTEXT) as directory:
        ana = directory.find(DOMAIN, "a-shop.example")
        assert ana == Client(
            "C1",
            "a@example.com",
            HASH,
            "Ana",
            "es",
            domains=("a-shop.example", "a.example"),
            must_change=True,
            active=True,
        )
        assert [c.active for c in directory.find_all(EMAIL, "a@example.com")] == [True, True]
        directory.set_active("C2", False)
        closed = directory.find(NUMBER, "C2")
        assert closed == Client("C2", "a@example.com", HASH, active=False)
        added = directory.add_client("C3", "c@example.com", key_hash=HASH, active=False)
        assert added.active is False
    fresh = tmp_path / "fresh.sqlite3"
    SQLiteDirectory(fresh).close()
    version, columns, rows = file_schema(old)
    assert (version, columns) == file_schema(fresh)[:2]
    assert version == sqlite_module._SCHEMA_VERSION == 3
    # number, email, key_hash, name, locale, must_change, active
    assert [(row[0], row[5], row[6]) for row in rows] == [("C1", 1, 1), ("C2", 0, 0), ("C3", 0, 0)]
    with SQLiteDirectory(old, crypt_context=CONTEXT) as reopened:
        again = reopened.find(EMAIL, "c@example.com")
        assert again is not None and again.active is False


def test_the_async_directory_migrates_it_alike(tmp_path: Path) -> None:
    """AsyncSQLiteDirectory opens the old file, migrates it, and closes an account in it."""
    old = tmp_path / "old.sqlite3"
    make_version_2_file(old)

    async def scenario() -> tuple[Client | None, Client | None]:
        async with AsyncSQLiteDirectory(old, crypt_context=CONTEXT) as directory:
            before = await directory.find(NUMBER, "C1")
            await directory.set_active("C1", False)
            await directory.add_client("C4", "d@example.com", key_hash=HASH, active=False)
            return before, await directory.find(DOMAIN, "a.example")

    before, after = asyncio.run(scenario())
    assert before is not None and before.active is True and before.must_change is True
    assert after is not None and after.number == "C1" and after.active is False
    with SQLiteDirectory(old) as directory:
        added = directory.find(NUMBER, "C4")
        assert added is not None and added.active is False
    assert file_schema(old)[0] == 3


def test_a_version_2_file_with_an_active_column_of_its_own_is_refused(tmp_path: Path) -> None:
    """A host's own active column is not taken over silently; the file stays at version 2."""
    old = tmp_path / "old.sqlite3"
    make_version_2_file(old)
    with contextlib.closing(sqlite3.connect(old)) as conn:
        conn.execute("ALTER TABLE clients ADD COLUMN active TEXT")
    with pytest.raises(DirectoryError, match="active"):
        SQLiteDirectory(old)
    assert file_schema(old)[0] == 2


def test_sqlite_bulk_add_stores_closed_accounts(tmp_path: Path) -> None:
    """bulk_add keeps each client's active as given."""
    with SQLiteDirectory(tmp_path / "c.sqlite3") as directory:
        directory.bulk_add(
            [
                (Client("1", "a@example.com", HASH), ["a.example"]),
                (Client("2", "b@example.com", HASH, active=False), []),
            ]
        )
        assert [
            c.active
            for c in (directory.find(DOMAIN, "a.example"), directory.find(EMAIL, "b@example.com"))
            if c is not None
        ] == [True, False]


# --- SQLAlchemy: own tables of the previous version -----------------------------------------


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


# The own tables as the previous version's create_schema made them, before active.
PREVIOUS_OWN_TABLES = {
    "sqlite": [
        "CREATE TABLE credrecovery_clients (number VARCHAR(32) NOT NULL, email VARCHAR(320)"
        " NOT NULL, key_hash TEXT NOT NULL, name VARCHAR(255) DEFAULT '' NOT NULL, locale"
        " VARCHAR(35), must_change BOOLEAN DEFAULT 0 NOT NULL,"
        " CONSTRAINT pk_credrecovery_clients PRIMARY KEY (number))",
        "CREATE INDEX ix_credrecovery_clients_email ON credrecovery_clients (email)",
    ],
    "postgresql": [
        "CREATE TABLE credrecovery_clients (number VARCHAR(32) NOT NULL, email VARCHAR(320)"
        " NOT NULL, key_hash TEXT NOT NULL, name VARCHAR(255) DEFAULT '' NOT NULL, locale"
        " VARCHAR(35), must_change BOOLEAN DEFAULT false NOT NULL,"
        " CONSTRAINT pk_credrecovery_clients PRIMARY KEY (number))",
        "CREATE INDEX ix_credrecovery_clients_email ON credrecovery_clients (email)",
    ],
}
PREVIOUS_DOMAINS = (
    "CREATE TABLE credrecovery_domains (domain VARCHAR(253) NOT NULL, client_number VARCHAR(32)"
    " NOT NULL, CONSTRAINT pk_credrecovery_domains PRIMARY KEY (domain),"
    " CONSTRAINT fk_credrecovery_domains_client_number FOREIGN KEY(client_number)"
    " REFERENCES credrecovery_clients (number) ON DELETE CASCADE)"
)


def create_previous_own_tables(engine: sa.Engine) -> None:
    with engine.begin() as connection:
        for statement in [*PREVIOUS_OWN_TABLES[engine.dialect.name], PREVIOUS_DOMAINS]:
            connection.exec_driver_sql(statement)
        connection.execute(
            sa.text(
                "INSERT INTO credrecovery_clients (number, email, key_hash) VALUES ('1', :m, :h)"
            ),
            {"m": "a@x.example", "h": HASH},
        )
        connection.exec_driver_sql("INSERT INTO credrecovery_domains VALUES ('a.example', '1')")


def test_create_schema_adds_active_to_the_previous_own_tables(engine: sa.Engine) -> None:
    """The column comes NOT NULL, every client already there open; closing then works."""
    create_previous_own_tables(engine)
    directory = SQLAlchemyDirectory(engine, crypt_context=CONTEXT, create_schema=True)
    directory.create_schema()  # idempotent
    columns = {c["name"]: c for c in sa.inspect(engine).get_columns("credrecovery_clients")}
    assert columns["active"]["nullable"] is False
    assert directory.find(DOMAIN, "a.example") == Client(
        "1", "a@x.example", HASH, domains=("a.example",)
    )
    directory.set_active("1", False)
    found = directory.find(EMAIL, "a@x.example")
    assert found is not None and found.active is False
    directory.add_client("2", "b@x.example", key_hash=HASH, active=False)
    added = directory.find(NUMBER, "2")
    assert added is not None and added.active is False


@pytest.mark.postgres
def test_async_create_schema_adds_active_alike() -> None:
    """AsyncSQLAlchemyDirectory.create_schema upgrades the same tables on PostgreSQL."""
    with pg.fresh_schema() as schema:
        create_previous_own_tables(schema.engine)
        url, connect_args = async_url(schema, "asyncpg")

        async def scenario() -> tuple[Client | None, Client | None]:
            engine = create_async_engine(url, hide_parameters=True, connect_args=connect_args)
            directory = AsyncSQLAlchemyDirectory(engine, crypt_context=CONTEXT)
            try:
                await directory.create_schema()
                before = await directory.find(NUMBER, "1")
                await directory.set_active("1", False)
                return before, await directory.find(DOMAIN, "a.example")
            finally:
                await engine.dispose()

        before, after = asyncio.run(scenario())
    assert before is not None and before.active is True
    assert after is not None and after.active is False


# --- SQLAlchemy: a host's tables, WHMCS-style ------------------------------------------------

HOST_DDL = [
    "CREATE TABLE tblclients (id integer PRIMARY KEY, email text NOT NULL, password text"
    " NOT NULL, status text, enabled boolean)",
    "CREATE TABLE tbldomains (domain text PRIMARY KEY, userid integer REFERENCES tblclients)",
]
# number, status, enabled: WHMCS keeps Active, Inactive and Closed; NULL is a row
# whose status nobody set.
HOST_ROWS = [(1, "Active", True), (2, "Inactive", True), (3, "Closed", False), (4, None, None)]
OPEN_BY_STATUS = {1: True, 2: True, 3: False, 4: False}


def host_mapping(active: Any) -> TableMapping:
    return TableMapping(
        clients_table="tblclients",
        number="id",
        email="email",
        key_hash="password",
        active=active,
        domains_table="tbldomains",
        domain="domain",
        domain_client="userid",
        number_is_integer=True,
    )


CONDITIONS = {
    "expression": lambda: sa.column("status") != "Closed",
    "text": lambda: sa.text("status <> 'Closed'"),
    "column": lambda: "enabled",
}


def create_host_tables(engine: sa.Engine) -> None:
    with engine.begin() as connection:
        for statement in HOST_DDL:
            connection.exec_driver_sql(statement)
        for number, status, enabled in HOST_ROWS:
            connection.execute(
                sa.text("INSERT INTO tblclients VALUES (:n, :m, :h, :s, :e)"),
                {"n": number, "m": f"c{number}@example.com", "h": HASH, "s": status, "e": enabled},
            )
            connection.execute(
                sa.text("INSERT INTO tbldomains VALUES (:d, :n)"),
                {"d": f"c{number}.example", "n": number},
            )


@pytest.mark.parametrize("how", sorted(CONDITIONS))
def test_the_hosts_column_or_condition_decides_who_is_open(engine: sa.Engine, how: str) -> None:
    """Active and Inactive are open, Closed and an unset status closed, by every kind."""
    create_host_tables(engine)
    directory = SQLAlchemyDirectory(
        engine, mapping=host_mapping(CONDITIONS[how]()), crypt_context=CONTEXT
    )
    for number, is_open in OPEN_BY_STATUS.items():
        for kind, value in [
            (NUMBER, str(number)),
            (EMAIL, f"c{number}@example.com"),
            (DOMAIN, f"c{number}.example"),
        ]:
            found = directory.find(kind, value)
            assert found is not None and found.active is is_open, (number, kind)
    mailer = MemoryMailer()
    service = service_on(directory, mailer)
    for number in OPEN_BY_STATUS:
        service.request("email", f"c{number}@example.com")
    assert [m["To"].addresses[0].addr_spec for m in mailer.outbox] == [
        "c1@example.com",
        "c2@example.com",
    ]
    assert service.authenticate("3", KEY) is None
    assert service.authenticate("2", KEY) is not None


@pytest.mark.parametrize("how", ["expression", "text"])
def test_a_condition_leaves_opening_and_closing_to_the_host(engine: sa.Engine, how: str) -> None:
    """set_active and adding a closed client are refused; an open one is added as before."""
    create_host_tables(engine)
    directory = SQLAlchemyDirectory(
        engine, mapping=host_mapping(CONDITIONS[how]()), crypt_context=CONTEXT
    )
    with pytest.raises(TypeError, match="condition"):
        directory.set_active("1", False)
    with pytest.raises(ValueError, match="closed client"):
        directory.add_client("5", "c5@example.com", key_hash=HASH, active=False)
    assert directory.find(NUMBER, "5") is None
    found = directory.find(NUMBER, "1")
    assert found is not None and found.active is True


@pytest.mark.postgres
def test_an_async_directory_reads_a_condition_alike() -> None:
    """AsyncSQLAlchemyDirectory on the host's tables: the same clients open and closed."""
    with pg.fresh_schema() as schema:
        create_host_tables(schema.engine)
        url, connect_args = async_url(schema, "psycopg")

        async def scenario() -> dict[int, bool]:
            engine = create_async_engine(url, hide_parameters=True, connect_args=connect_args)
            directory = AsyncSQLAlchemyDirectory(
                engine, mapping=host_mapping(sa.column("status") != "Closed")
            )
            try:
                with pytest.raises(TypeError):
                    await directory.set_active("1", False)
                read = {n: await directory.find(DOMAIN, f"c{n}.example") for n in OPEN_BY_STATUS}
                return {n: c.active for n, c in read.items() if c is not None}
            finally:
                await engine.dispose()

        assert asyncio.run(scenario()) == OPEN_BY_STATUS


def test_a_mapping_without_active_opens_everyone_and_stores_no_closed_client(
    engine: sa.Engine,
) -> None:
    """Every client reads open; closing one, by any call, is refused and writes nothing."""
    create_host_tables(engine)
    directory = SQLAlchemyDirectory(engine, mapping=host_mapping(None), crypt_context=CONTEXT)
    found = directory.find(NUMBER, "3")
    assert found is not None and found.active is True
    with pytest.raises(TypeError, match="no active column"):
        directory.set_active("3", False)
    with pytest.raises(ValueError, match="closed client"):
        directory.add_client("5", "c5@example.com", key_hash=HASH, active=False)
    with pytest.raises(ValueError, match="closed client"):
        directory.bulk_add(
            [
                (Client("6", "c6@example.com", HASH), []),
                (Client("7", "c7@example.com", HASH, active=False), []),
            ]
        )
    assert [directory.find(NUMBER, n) for n in ("5", "6", "7")] == [None, None, None]


def test_a_mapping_refuses_what_is_no_column_and_no_self_contained_condition() -> None:
    """SQL as a plain string, a column of another table object, or another type."""
    with pytest.raises(ValueError, match="expression"):
        host_mapping("status = 'Active'")
    with pytest.raises(ValueError, match="unattached"):
        host_mapping(sa.table("tblclients", sa.column("status")).c.status == "Active")
    with pytest.raises(ValueError, match="column"):
        host_mapping("")
    with pytest.raises(TypeError):
        host_mapping(True)


# --- a host's directory that gets closed accounts wrong --------------------------------------

HOST_TESTS = '''
import dataclasses

import pytest

from credrecovery.memory import MemoryDirectory
from credrecovery.testing import DirectoryContract


class OpensEveryone(MemoryDirectory):
    """Stores every client open and ignores set_active."""

    def add_client(self, number, email, *, active=True, **fields):
        return super().add_client(number, email, **fields)

    def set_active(self, number, active):
        pass


class HidesClosed(MemoryDirectory):
    """Leaves a closed client out of its lookups rather than returning it closed."""

    def find_all(self, kind, value, *, limit=50):
        return [c for c in super().find_all(kind, value, limit=limit) if c.active]

    def find(self, kind, value):
        found = self.find_all(kind, value, limit=1)
        return found[0] if found else None


class TestOpensEveryone(DirectoryContract):
    @pytest.fixture
    def directory(self):
        return OpensEveryone()


class TestHidesClosed(DirectoryContract):
    @pytest.fixture
    def directory(self):
        return HidesClosed()
'''


@pytest.mark.slow  # runs pytest in a fresh interpreter
def test_the_contract_catches_a_directory_that_gets_closed_accounts_wrong(
    tmp_path: Path,
) -> None:
    """Exactly the closed-account tests fail, and the rest of the contract passes."""
    (tmp_path / "test_host.py").write_text(textwrap.dedent(HOST_TESTS), encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rf", "test_host.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    failed = set(re.findall(r"^FAILED test_host\.py::(\S+)", result.stdout, re.MULTILINE))
    assert result.returncode == 1, result.stdout + result.stderr
    assert failed == {
        "TestOpensEveryone::test_a_closed_account_reads_back_closed",
        "TestOpensEveryone::test_set_active_closes_and_reopens",
        "TestOpensEveryone::test_a_closed_account_is_unknown_to_the_service",
        "TestOpensEveryone::test_closing_an_account_kills_its_links_and_reopening_revives_it",
        "TestOpensEveryone::test_a_shared_address_mails_its_open_clients_only",
        "TestHidesClosed::test_a_closed_account_reads_back_closed",
        "TestHidesClosed::test_set_active_closes_and_reopens",
        "TestHidesClosed::test_a_closed_account_is_unknown_to_the_service",
    }, result.stdout


def test_a_closed_client_answers_a_request_as_nobody_does(tmp_path: Path) -> None:
    """On a real SQLite file: no mail, the old link refused as a stranger's, sign-in None."""
    with SQLiteDirectory(tmp_path / "c.sqlite3", crypt_context=CONTEXT) as directory:
        directory.add_client("1", "a@example.com", key_hash=HASH)
        mailer = MemoryMailer()
        service = service_on(directory, mailer)
        service.request("email", "a@example.com")
        token = token_from(mailer.outbox[0])
        directory.set_active("1", False)
        service.request("email", "a@example.com")
        assert len(mailer.outbox) == 1
        with pytest.raises(InvalidToken) as closed:
            service.confirm(token)
        stranger = service.tokens.issue(Client("2", "b@example.com", HASH))
        with pytest.raises(InvalidToken) as unknown:
            service.confirm(stranger)
        assert (type(closed.value), str(closed.value)) == (type(unknown.value), str(unknown.value))
        assert service.authenticate("1", KEY) is None
