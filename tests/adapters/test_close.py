"""close() and aclose() on every shipped directory: what they release, and what comes after.

close() (aclose() on an asyncio one, whose close() stays as its earlier
name) releases what the directory holds and may be called again. A SQLite
directory lets its file go (its -wal and -shm files are gone) and refuses
every later call with DirectoryError. A SQLAlchemy directory's close() is
dispose(), as it always was: the pool's connections end, the host's engine's
too, and the directory opens new ones on demand.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from credrecovery import Client, DirectoryError, IdentifierKind, cheap_context
from credrecovery.async_sqlalchemy import AsyncSQLAlchemyDirectory
from credrecovery.async_sqlite import AsyncSQLiteDirectory
from credrecovery.sqlalchemy import SQLAlchemyDirectory
from credrecovery.sqlite import SQLiteDirectory
from helpers import pg

CONTEXT = cheap_context()
HASH = CONTEXT.hash("Old-Access-Key-2024")
NEW_HASH = CONTEXT.hash("New-Access-Key-2025")
NUMBER = IdentifierKind.CLIENT_NUMBER
EMAIL = IdentifierKind.EMAIL
CLOSED = "the client directory is closed"


def calls_of(directory: Any) -> dict[str, Callable[[], Any]]:
    """Every call a directory offers, each with arguments that would otherwise succeed."""
    calls: dict[str, Callable[[], Any]] = {
        "find": lambda: directory.find(EMAIL, "alice@example.com"),
        "find_all": lambda: directory.find_all(EMAIL, "alice@example.com"),
        "replace_key_hash": lambda: directory.replace_key_hash("1001", HASH, NEW_HASH),
        "set_must_change": lambda: directory.set_must_change("1001", True),
        "add_client": lambda: directory.add_client("1002", "bob@example.com", key_hash=HASH),
    }
    if hasattr(directory, "bulk_add"):
        calls["bulk_add"] = lambda: directory.bulk_add(
            [(Client("1003", "carla@example.com", HASH), ["carla.example"])]
        )
    if hasattr(directory, "create_schema"):
        calls["create_schema"] = directory.create_schema
    return calls


def assert_refuses(directory: Any) -> None:
    """Each call raises DirectoryError "the client directory is closed", with no cause."""
    for name, call in calls_of(directory).items():
        with pytest.raises(DirectoryError) as caught:
            call()
        assert str(caught.value) == CLOSED, name
        assert caught.value.__cause__ is None, name


async def assert_refuses_async(directory: Any) -> None:
    for name, call in calls_of(directory).items():
        with pytest.raises(DirectoryError) as caught:
            await call()
        assert str(caught.value) == CLOSED, name


def add_alice(directory: Any) -> Any:
    return directory.add_client(
        "1001", "alice@example.com", key_hash=HASH, domains=["alice.example"]
    )


def wal_files(path: Path) -> list[Path]:
    return [p for p in (Path(f"{path}-wal"), Path(f"{path}-shm")) if p.exists()]


# --- SQLite -----------------------------------------------------------------------------------


def test_sqlite_close_lets_the_file_go_from_every_thread(tmp_path: Path) -> None:
    """Connections of several threads all close: SQLite checkpoints and removes -wal and -shm."""
    path = tmp_path / "clients.sqlite3"
    directory = SQLiteDirectory(path, crypt_context=CONTEXT)
    add_alice(directory)
    found: list[Client | None] = []
    reader = threading.Thread(target=lambda: found.append(directory.find(NUMBER, "1001")))
    reader.start()
    reader.join(10)
    assert found and found[0] is not None
    assert wal_files(path)
    directory.close()
    assert wal_files(path) == []
    assert_refuses(directory)
    directory.close()
    with SQLiteDirectory(path) as again:
        assert again.find(NUMBER, "1001") is not None
    with pytest.raises(DirectoryError, match=CLOSED):
        again.find(NUMBER, "1001")


def test_async_sqlite_aclose_lets_the_file_go(tmp_path: Path) -> None:
    """aclose(), async with and the earlier close() close the connection, for good."""
    path = tmp_path / "clients.sqlite3"

    async def scenario() -> None:
        async with AsyncSQLiteDirectory(path, crypt_context=CONTEXT) as directory:
            await add_alice(directory)
            assert wal_files(path)
        assert wal_files(path) == []
        await assert_refuses_async(directory)
        await directory.aclose()
        await directory.close()
        again = AsyncSQLiteDirectory(path)
        assert await again.find(NUMBER, "1001") is not None
        await again.close()
        await again.aclose()
        await assert_refuses_async(again)

    asyncio.run(scenario())


# --- SQLAlchemy on PostgreSQL ------------------------------------------------------------------


def named_url(schema: pg.PostgresSchema, driver: str = "psycopg") -> tuple[sa.URL, str]:
    """The schema's URL with a unique application_name, to count its server connections."""
    name = f"credrecovery-close-{uuid.uuid4().hex[:12]}"
    url = (
        sa.make_url(schema.url)
        .set(drivername=f"postgresql+{driver}")
        .update_query_dict({"options": f"-csearch_path={schema.name}", "application_name": name})
    )
    return url, name


def backends(schema: pg.PostgresSchema, name: str, *, until: int | None = None) -> int:
    """How many server connections carry ``name``; waits a while for ``until``, if given."""
    deadline = time.monotonic() + 10
    while True:
        with schema.engine.connect() as connection:
            count = int(
                connection.execute(
                    sa.text("SELECT count(*) FROM pg_stat_activity WHERE application_name = :n"),
                    {"n": name},
                ).scalar_one()
            )
        # A backend leaves the list a moment after its client hangs up.
        if until is None or count == until or time.monotonic() > deadline:
            return count
        time.sleep(0.05)


def backend_pid(engine: sa.Engine) -> int:
    with engine.connect() as connection:
        return int(connection.exec_driver_sql("SELECT pg_backend_pid()").scalar_one())


@pytest.fixture
def schema() -> Iterator[pg.PostgresSchema]:
    with pg.fresh_schema() as made:
        yield made


@pytest.mark.postgres
def test_sqlalchemy_close_releases_its_connections_and_stays_usable(
    schema: pg.PostgresSchema,
) -> None:
    """From a URL: close() ends its server connections; the next call opens one again."""
    url, name = named_url(schema)
    directory = SQLAlchemyDirectory(url, crypt_context=CONTEXT, create_schema=True)
    add_alice(directory)
    assert backends(schema, name) >= 1
    directory.close()
    assert backends(schema, name, until=0) == 0
    assert directory.find(NUMBER, "1001") is not None
    directory.close()
    directory.close()
    assert backends(schema, name, until=0) == 0


@pytest.mark.postgres
def test_sqlalchemy_close_and_with_dispose_the_hosts_pool(schema: pg.PostgresSchema) -> None:
    """On the host's engine: close() and with close its pool, as dispose() does; still usable."""
    engine = schema.engine
    directory = SQLAlchemyDirectory(engine, crypt_context=CONTEXT, create_schema=True)
    add_alice(directory)
    pid = backend_pid(engine)
    directory.close()
    assert directory.find(NUMBER, "1001") is not None
    after_close = backend_pid(engine)
    assert after_close != pid
    with SQLAlchemyDirectory(engine) as other:
        assert other.find(NUMBER, "1001") is not None
    assert backend_pid(engine) != after_close
    directory.dispose()
    assert directory.find(NUMBER, "1001") is not None


@pytest.mark.postgres
def test_async_sqlalchemy_aclose_releases_its_connections_and_stays_usable(
    schema: pg.PostgresSchema,
) -> None:
    """From a URL: aclose(), close() and async with end its connections; it reconnects."""
    url, name = named_url(schema)

    async def scenario() -> tuple[int, list[int]]:
        async with AsyncSQLAlchemyDirectory(url, crypt_context=CONTEXT) as directory:
            await directory.create_schema()
            await add_alice(directory)
            while_open = backends(schema, name)
        after = [backends(schema, name, until=0)]
        for close in (directory.aclose, directory.close):
            assert await directory.find(NUMBER, "1001") is not None
            await close()
            after.append(backends(schema, name, until=0))
        return while_open, after

    while_open, after = asyncio.run(scenario())
    assert while_open >= 1
    assert after == [0, 0, 0]
