"""How the SQLAlchemy directories look clients up on PostgreSQL, sync and asyncio.

A lookup is one round trip, outside any transaction, while compare-and-set
still runs in one; an engine the directory makes recycles its connections
instead of pinging them, a host's engine stays as the host configured it;
connections the server dropped cost no failed lookup; and a host's statement
listeners see every lookup.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import tempfile
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from credrecovery import IdentifierKind, cheap_context
from credrecovery.async_sqlalchemy import AsyncSQLAlchemyDirectory
from credrecovery.sqlalchemy import SQLAlchemyDirectory, TableMapping
from helpers import pg
from helpers.pg import async_url

pytestmark = pytest.mark.postgres
postgres = pg.postgres

CONTEXT = cheap_context()
HASH = CONTEXT.hash("Kq7mZr2WxPd9HtNa")
NEW_HASH = CONTEXT.hash("Bn4vTy8QpLm3XsGe")
NUMBER, EMAIL, DOMAIN = (
    IdentifierKind.CLIENT_NUMBER,
    IdentifierKind.EMAIL,
    IdentifierKind.DOMAIN,
)
# Hits and misses of every kind.
LOOKUPS = [
    (NUMBER, "1001"),
    (NUMBER, "1002"),
    (EMAIL, "alice@example.com"),
    (EMAIL, "nobody@example.com"),
    (DOMAIN, "alice.example"),
    (DOMAIN, "nobody.example"),
]


def seed(schema: pg.PostgresSchema) -> None:
    """The directory's tables in ``schema``, with one client."""
    directory = SQLAlchemyDirectory(schema.engine, crypt_context=CONTEXT, create_schema=True)
    directory.add_client("1001", "alice@example.com", key_hash=HASH, domains=["alice.example"])


def in_schema(schema: pg.PostgresSchema) -> TableMapping:
    """The directory's own tables in ``schema``, for an engine with no search path of its own."""
    return dataclasses.replace(SQLAlchemyDirectory("sqlite://").mapping, schema=schema.name)


class Backends:
    """The server processes behind every connection an engine opens."""

    def __init__(self, engine: sa.Engine) -> None:
        self.pids: list[int] = []
        self.drivers: list[Any] = []
        sa.event.listen(engine, "connect", self.opened)

    def opened(self, dbapi_connection: Any, _record: object) -> None:
        driver = getattr(dbapi_connection, "driver_connection", dbapi_connection)
        self.drivers.append(driver)
        if isinstance(driver, psycopg.Connection | psycopg.AsyncConnection):
            self.pids.append(driver.info.backend_pid)
        else:
            self.pids.append(driver.get_server_pid())

    def terminate(self, schema: pg.PostgresSchema) -> None:
        """End them all on the server, as a restart would."""
        assert self.pids
        with schema.engine.connect() as connection:
            for pid in self.pids:
                connection.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        self.pids.clear()


class LibpqTrace:
    """What a psycopg connection and the server say to each other inside the block: ``text``."""

    def __init__(self, driver: Any) -> None:
        self.pgconn = driver.pgconn
        self.text = ""

    def __enter__(self) -> LibpqTrace:
        self.file = tempfile.TemporaryFile()
        self.pgconn.trace(self.file.fileno())
        self.pgconn.set_trace_flags(
            psycopg.pq.Trace.SUPPRESS_TIMESTAMPS | psycopg.pq.Trace.REGRESS_MODE
        )
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.pgconn.untrace()
        self.file.seek(0)
        self.text = self.file.read().decode()
        self.file.close()


def assert_one_round_trip_each(trace: str, lookups: int) -> None:
    assert "BEGIN" not in trace and "ROLLBACK" not in trace, trace
    assert trace.count("ReadyForQuery") == lookups, trace


# --- one round trip, no transaction -----------------------------------------------------------


def watch(engine: sa.Engine) -> None:
    """Give ``engine`` a statement listener, as a tracer would: lookups then go through it."""
    sa.event.listen(engine, "before_cursor_execute", lambda *_: None)


@pytest.mark.parametrize("watched", [False, True], ids=["direct", "listened"])
def test_a_lookup_is_one_round_trip_outside_a_transaction(
    postgres: pg.PostgresSchema, watched: bool
) -> None:
    """Each find is one exchange with the server, no BEGIN or ROLLBACK; CAS keeps a transaction."""
    seed(postgres)
    engine = sa.create_engine(
        postgres.url,
        pool_size=1,
        max_overflow=0,
        connect_args={"options": f"-csearch_path={postgres.name}"},
    )
    if watched:
        watch(engine)
    backends = Backends(engine)
    directory = SQLAlchemyDirectory(engine)
    for _ in range(8):  # psycopg prepares a statement at its sixth run
        for kind, value in LOOKUPS:
            directory.find(kind, value)
    [driver] = backends.drivers

    def lookups() -> None:
        for kind, value in LOOKUPS:
            directory.find(kind, value)
            directory.find_all(kind, value, limit=11)

    with LibpqTrace(driver) as trace:
        lookups()
    assert_one_round_trip_each(trace.text, 2 * len(LOOKUPS))
    with LibpqTrace(driver) as trace:
        assert directory.replace_key_hash("1001", HASH, NEW_HASH)
    assert "BEGIN" in trace.text and "COMMIT" in trace.text
    assert directory.find(NUMBER, "1001").key_hash == NEW_HASH  # type: ignore[union-attr]
    # The connection goes back to the pool as it came: in transactions, as the host set it.
    assert driver.autocommit is False
    with engine.connect() as connection:
        assert connection.get_isolation_level() == "READ COMMITTED"
    engine.dispose()


@pytest.mark.parametrize("watched", [False, True], ids=["direct", "listened"])
@pytest.mark.parametrize("driver_name", ["asyncpg", "psycopg"])
def test_an_async_lookup_is_one_round_trip_outside_a_transaction(
    postgres: pg.PostgresSchema, driver_name: str, watched: bool
) -> None:
    """The asyncio directory's lookups too: one exchange each, no transaction."""
    seed(postgres)
    url, connect_args = async_url(postgres, driver_name)
    engine = create_async_engine(url, pool_size=1, max_overflow=0, connect_args=connect_args)
    if watched:
        watch(engine.sync_engine)
    backends = Backends(engine.sync_engine)
    directory = AsyncSQLAlchemyDirectory(engine)

    async def lookups() -> None:
        for kind, value in LOOKUPS:
            await directory.find(kind, value)
            await directory.find_all(kind, value, limit=11)

    async def scenario() -> None:
        for _ in range(8):
            await lookups()
        [driver] = backends.drivers
        if driver_name == "psycopg":
            with LibpqTrace(driver) as trace:
                await lookups()
            assert_one_round_trip_each(trace.text, 2 * len(LOOKUPS))
        else:
            # asyncpg logs what it sends, a transaction's BEGIN too, but not what
            # SQLAlchemy runs as prepared statements.
            sent: list[str] = []
            driver.add_query_logger(lambda logged: sent.append(logged.query))
            await lookups()
            assert not [q for q in sent if "BEGIN" in q or "ROLLBACK" in q], sent
            assert len(sent) == (0 if watched else 2 * len(LOOKUPS)), sent

    async def run() -> None:
        try:
            await scenario()
        finally:
            await engine.dispose()

    asyncio.run(run())


def test_the_lookup_statements_are_built_once() -> None:
    """Every lookup of a kind runs the one statement built with the directory; values are bound."""
    statements = SQLAlchemyDirectory("sqlite://")._statements
    for kind, value in LOOKUPS:
        first = statements.select(kind, value, 11)
        again = statements.select(kind, value + "0", 5)
        assert first[1] is again[1] is not None
        assert again[2]["probe"] == value + "0"


# --- engines: the directory's own, and a host's --------------------------------------------------


def test_an_own_engine_recycles_instead_of_pinging() -> None:
    """From a URL, sync and asyncio: no pre-ping, connections replaced after 30 minutes."""
    sync = SQLAlchemyDirectory("postgresql+psycopg://panel@db.invalid/panel")
    asynchronous = AsyncSQLAlchemyDirectory("postgresql+asyncpg://panel@db.invalid/panel")
    for engine in (sync.engine, asynchronous.engine.sync_engine):
        assert engine.pool._pre_ping is False
        assert engine.pool._recycle == 1800
        assert engine.hide_parameters is True
    sync.dispose()
    asyncio.run(asynchronous.dispose())


def test_a_host_engine_keeps_its_pool_settings(postgres: pg.PostgresSchema) -> None:
    """A host's engine is used as it is: its pre-ping and recycle stay, and lookups work."""
    seed(postgres)
    engine = sa.create_engine(
        postgres.url,
        pool_pre_ping=True,
        pool_recycle=-1,
        connect_args={"options": f"-csearch_path={postgres.name}"},
    )
    directory = SQLAlchemyDirectory(engine)
    assert directory.engine is engine
    assert directory.find(EMAIL, "alice@example.com") is not None
    assert engine.pool._pre_ping is True
    assert engine.pool._recycle == -1
    engine.dispose()


def test_statement_listeners_see_every_lookup(postgres: pg.PostgresSchema) -> None:
    """With a before_cursor_execute listener (a tracer), each lookup passes through it."""
    seed(postgres)
    directory = SQLAlchemyDirectory(postgres.engine)
    seen: list[str] = []

    def listener(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        seen.append(statement)

    sa.event.listen(postgres.engine, "before_cursor_execute", listener)
    found = [directory.find(kind, value) for kind, value in LOOKUPS]
    sa.event.remove(postgres.engine, "before_cursor_execute", listener)
    assert len(seen) == len(LOOKUPS)
    assert all("credrecovery_clients" in statement for statement in seen)
    assert found == [directory.find(kind, value) for kind, value in LOOKUPS]


def test_a_statement_log_shows_every_lookup(
    postgres: pg.PostgresSchema, caplog: pytest.LogCaptureFixture
) -> None:
    """With SQLAlchemy's statement log on (echo, or its logger at INFO), lookups appear in it."""
    seed(postgres)
    directory = SQLAlchemyDirectory(postgres.engine)
    with caplog.at_level(logging.INFO, logger="sqlalchemy.engine"):
        for kind, value in LOOKUPS:
            directory.find(kind, value)
    logged = [r.getMessage() for r in caplog.records if "credrecovery_clients" in r.getMessage()]
    assert len(logged) == len(LOOKUPS)


# --- connections the server dropped -----------------------------------------------------------


def fill_pool(engine: sa.Engine, size: int) -> None:
    """Open ``size`` connections at once, so that the pool then holds that many."""
    connections = [engine.connect() for _ in range(size)]
    for connection in connections:
        connection.exec_driver_sql("SELECT 1")
        connection.close()


@pytest.fixture(params=["own engine", "host engine with a listener"])
def sync_directory(
    request: pytest.FixtureRequest, postgres: pg.PostgresSchema
) -> Iterator[SQLAlchemyDirectory]:
    """A directory on the directory's own engine (the driver's way), or a watched host engine."""
    seed(postgres)
    if request.param == "own engine":
        url = sa.make_url(postgres.url).update_query_dict(
            {"options": f"-csearch_path={postgres.name}"}
        )
        directory = SQLAlchemyDirectory(url)
    else:
        engine = sa.create_engine(
            postgres.url, connect_args={"options": f"-csearch_path={postgres.name}"}
        )
        watch(engine)
        directory = SQLAlchemyDirectory(engine)
    yield directory
    directory.dispose()


def test_lookups_answer_after_the_server_dropped_every_connection(
    sync_directory: SQLAlchemyDirectory, postgres: pg.PostgresSchema
) -> None:
    """Pooled connections the server ended (a restart) cost no failed lookup, and no ping."""
    backends = Backends(sync_directory.engine)
    fill_pool(sync_directory.engine, 3)
    assert len(backends.pids) == 3
    backends.terminate(postgres)
    for _ in range(2):
        for kind, value in LOOKUPS:
            found = sync_directory.find(kind, value)
            assert (found is not None) == (value.startswith("alice") or value == "1001")
    assert backends.pids  # reconnected


@pytest.mark.parametrize("driver", ["asyncpg", "psycopg"])
def test_async_lookups_answer_after_the_server_dropped_every_connection(
    postgres: pg.PostgresSchema, driver: str
) -> None:
    """The asyncio directory on its own engine, on both drivers, after its connections ended."""
    seed(postgres)
    url = sa.make_url(postgres.url).set(drivername=f"postgresql+{driver}")
    directory = AsyncSQLAlchemyDirectory(url, mapping=in_schema(postgres))
    engine: AsyncEngine = directory.engine
    backends = Backends(engine.sync_engine)

    async def scenario() -> None:
        connections = [await engine.connect() for _ in range(3)]
        for connection in connections:
            await connection.exec_driver_sql("SELECT 1")
            await connection.close()
        assert len(backends.pids) == 3
        backends.terminate(postgres)
        for _ in range(2):
            for kind, value in LOOKUPS:
                found = await directory.find(kind, value)
                assert (found is not None) == (value.startswith("alice") or value == "1001")
        assert backends.pids
        await directory.aclose()

    asyncio.run(scenario())


def test_writes_answer_after_the_server_dropped_every_connection(
    sync_directory: SQLAlchemyDirectory, postgres: pg.PostgresSchema
) -> None:
    """A write whose connection died before COMMIT runs again, once, on a new one."""
    backends = Backends(sync_directory.engine)
    fill_pool(sync_directory.engine, 3)
    backends.terminate(postgres)
    assert sync_directory.replace_key_hash("1001", HASH, NEW_HASH)
    backends.terminate(postgres)
    sync_directory.add_client("1002", "bob@example.com", key_hash=HASH)
    backends.terminate(postgres)
    sync_directory.set_active("1002", False)
    bob = sync_directory.find(NUMBER, "1002")
    assert bob is not None and not bob.active
    assert sync_directory.find(NUMBER, "1001").key_hash == NEW_HASH  # type: ignore[union-attr]
    # The compare-and-set ran once: the key it replaced is gone.
    assert not sync_directory.replace_key_hash("1001", HASH, NEW_HASH)


@pytest.mark.parametrize("driver", ["asyncpg", "psycopg"])
def test_async_writes_answer_after_the_server_dropped_every_connection(
    postgres: pg.PostgresSchema, driver: str
) -> None:
    """The asyncio directory's writes too, on both drivers."""
    seed(postgres)
    url = sa.make_url(postgres.url).set(drivername=f"postgresql+{driver}")
    directory = AsyncSQLAlchemyDirectory(url, mapping=in_schema(postgres))
    backends = Backends(directory.engine.sync_engine)

    async def scenario() -> None:
        await directory.find(NUMBER, "1001")
        backends.terminate(postgres)
        assert await directory.replace_key_hash("1001", HASH, NEW_HASH)
        backends.terminate(postgres)
        await directory.add_client("1002", "bob@example.com", key_hash=HASH)
        backends.terminate(postgres)
        await directory.set_active("1002", False)
        bob = await directory.find(NUMBER, "1002")
        assert bob is not None and not bob.active

    async def run() -> None:
        try:
            await scenario()
        finally:
            await directory.aclose()

    asyncio.run(run())
