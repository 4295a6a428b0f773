"""The ClientDirectory contract of :mod:`credrecovery.testing`, run on every shipped directory.

The in-memory directory, SQLite, SQLAlchemy on a SQLite file, SQLAlchemy on
PostgreSQL with its own tables and with a host's tables under other names, and
the asyncio adapters (SQLite over aiosqlite, SQLAlchemy's asyncio engine on
PostgreSQL over asyncpg and over psycopg). Each class here only builds its
directory and says how to break its storage; the tests are the contract's. A
directory a host wrote itself runs the same contract in test_host_directory.py.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from credrecovery import DirectoryError, cheap_context
from credrecovery.async_sqlalchemy import AsyncSQLAlchemyDirectory
from credrecovery.async_sqlite import AsyncSQLiteDirectory
from credrecovery.memory import MemoryDirectory
from credrecovery.sqlalchemy import SQLAlchemyDirectory, TableMapping
from credrecovery.sqlite import SQLiteDirectory
from credrecovery.testing import AsyncDirectoryContract, DirectoryContract
from helpers import pg
from helpers.pg import DisposesItsEngine, async_url

CONTEXT = cheap_context()


class ShippedDirectory:
    """What every shipped directory promises beyond a host's: find_all and DirectoryError."""

    shares_addresses: ClassVar[bool | None] = True
    storage_error: ClassVar[type[BaseException]] = DirectoryError
    #: Set by the ``directory`` fixture: makes the storage fail.
    breaker: Callable[[], None]

    def break_storage(self, directory: Any) -> None:
        self.breaker()


def drop_sqlite_tables(path: Path) -> Callable[[], None]:
    def drop_tables() -> None:
        with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as conn:
            conn.executescript("DROP TABLE domains; DROP TABLE clients;")

    return drop_tables


def drop_tables(engine: sa.Engine, *tables: str) -> Callable[[], None]:
    def drop() -> None:
        with engine.begin() as connection:
            for table in tables:
                connection.exec_driver_sql(f"DROP TABLE {table}")

    return drop


OWN_TABLES = ("credrecovery_domains", "credrecovery_clients")
HOST_TABLE_NAMES = ("account_hostnames", "accounts")

HOST_TABLES = """
CREATE TABLE accounts (
    acct_no       integer PRIMARY KEY,
    contact_email text NOT NULL,
    secret_hash   text NOT NULL,
    display_name  text,
    lang          text,
    must_reset    boolean NOT NULL DEFAULT false,
    enabled       boolean NOT NULL DEFAULT true
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
        must_change="must_reset",
        active="enabled",
        domains_table="account_hostnames",
        domain="hostname",
        domain_client="acct_no",
        schema=schema,
        number_is_integer=True,
    )


# --- synchronous directories ------------------------------------------------------------------


class TestMemoryDirectory(DirectoryContract):
    shares_addresses = True

    @pytest.fixture
    def directory(self) -> MemoryDirectory:
        return MemoryDirectory(crypt_context=CONTEXT)


class TestSQLiteDirectory(ShippedDirectory, DirectoryContract):
    @pytest.fixture
    def directory(self, tmp_path: Path) -> Iterator[SQLiteDirectory]:
        path = tmp_path / "clients.sqlite3"
        self.breaker = drop_sqlite_tables(path)
        with SQLiteDirectory(path, crypt_context=CONTEXT) as directory:
            yield directory


class TestSQLAlchemyOnSQLite(ShippedDirectory, DirectoryContract):
    refuses_after_close = False

    @pytest.fixture
    def directory(self, tmp_path: Path) -> Iterator[SQLAlchemyDirectory]:
        directory = SQLAlchemyDirectory(
            f"sqlite:///{tmp_path / 'clients.sqlite3'}", crypt_context=CONTEXT, create_schema=True
        )
        self.breaker = drop_tables(directory.engine, *OWN_TABLES)
        try:
            yield directory
        finally:
            directory.dispose()


@pytest.mark.postgres
class TestSQLAlchemyOnPostgreSQL(ShippedDirectory, DirectoryContract):
    refuses_after_close = False

    @pytest.fixture
    def directory(self) -> Iterator[SQLAlchemyDirectory]:
        with pg.fresh_schema() as schema:
            self.breaker = drop_tables(schema.engine, *OWN_TABLES)
            yield SQLAlchemyDirectory(schema.engine, crypt_context=CONTEXT, create_schema=True)


@pytest.mark.postgres
class TestSQLAlchemyOnPostgreSQLHostTables(ShippedDirectory, DirectoryContract):
    refuses_after_close = False

    @pytest.fixture
    def directory(self) -> Iterator[SQLAlchemyDirectory]:
        with pg.fresh_schema() as schema:
            with schema.engine.begin() as connection:
                connection.exec_driver_sql(HOST_TABLES)
            self.breaker = drop_tables(schema.engine, *HOST_TABLE_NAMES)
            yield SQLAlchemyDirectory(
                schema.engine, mapping=host_mapping(schema.name), crypt_context=CONTEXT
            )


# --- asyncio directories ----------------------------------------------------------------------


class TestAsyncSQLiteDirectory(ShippedDirectory, AsyncDirectoryContract):
    @pytest.fixture
    def directory(self, tmp_path: Path) -> AsyncSQLiteDirectory:
        path = tmp_path / "clients.sqlite3"
        self.breaker = drop_sqlite_tables(path)
        return AsyncSQLiteDirectory(path, crypt_context=CONTEXT)


@pytest.mark.postgres
@pytest.mark.parametrize("driver", ["asyncpg", "psycopg"])
class TestAsyncSQLAlchemyOnPostgreSQL(DisposesItsEngine, ShippedDirectory, AsyncDirectoryContract):
    refuses_after_close = False

    @pytest.fixture
    def directory(self, driver: str) -> Iterator[AsyncSQLAlchemyDirectory]:
        with pg.fresh_schema() as schema:
            url, connect_args = async_url(schema, driver)
            engine = create_async_engine(url, hide_parameters=True, connect_args=connect_args)
            self.breaker = drop_tables(schema.engine, *OWN_TABLES)
            yield AsyncSQLAlchemyDirectory(engine, crypt_context=CONTEXT)

    async def prepare_directory(self, directory: AsyncSQLAlchemyDirectory) -> None:
        await directory.create_schema()


@pytest.mark.postgres
class TestAsyncSQLAlchemyOnPostgreSQLHostTables(
    DisposesItsEngine, ShippedDirectory, AsyncDirectoryContract
):
    refuses_after_close = False

    @pytest.fixture
    def directory(self) -> Iterator[AsyncSQLAlchemyDirectory]:
        with pg.fresh_schema() as schema:
            with schema.engine.begin() as connection:
                connection.exec_driver_sql(HOST_TABLES)
            url, connect_args = async_url(schema, "psycopg")
            engine = create_async_engine(url, hide_parameters=True, connect_args=connect_args)
            self.breaker = drop_tables(schema.engine, *HOST_TABLE_NAMES)
            yield AsyncSQLAlchemyDirectory(
                engine, mapping=host_mapping(schema.name), crypt_context=CONTEXT
            )
