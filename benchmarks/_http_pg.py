"""The PostgreSQL directory of the HTTP timing benchmark's ``pg-*`` rows.

The directory's own tables live in a schema of the benchmark's own
(``credrecovery_bench`` unless ``CREDRECOVERY_BENCH_PG_SCHEMA`` says
otherwise), reached through SQLAlchemy's ``schema_translate_map``: the script
creates the schema and loads the clients with :func:`load` before a row starts,
the web app opens the same tables with :func:`sync_directory` or
:func:`async_directory`, and :func:`drop` removes the schema after the row.

The database is ``CREDRECOVERY_BENCH_POSTGRES_URL``, else
``CREDRECOVERY_TEST_POSTGRES_URL``, else the local server's ``test`` database,
through psycopg; the asyncio directory reaches it through asyncpg.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import sqlalchemy as sa

from credrecovery import Client
from credrecovery.sqlalchemy import SQLAlchemyDirectory

if TYPE_CHECKING:
    from credrecovery.async_sqlalchemy import AsyncSQLAlchemyDirectory

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
DEFAULT_SCHEMA = "credrecovery_bench"


def url() -> str:
    """The database, as a psycopg URL."""
    return (
        os.environ.get("CREDRECOVERY_BENCH_POSTGRES_URL")
        or os.environ.get("CREDRECOVERY_TEST_POSTGRES_URL")
        or DEFAULT_URL
    )


def async_url() -> str:
    """The same database, through asyncpg."""
    return (
        sa.make_url(url())
        .set(drivername="postgresql+asyncpg")
        .render_as_string(hide_password=False)
    )


def schema() -> str:
    return os.environ.get("CREDRECOVERY_BENCH_PG_SCHEMA", DEFAULT_SCHEMA)


def _translate() -> dict[str | None, str]:
    # The directory's tables carry no schema; this puts every statement in ours.
    return {None: schema()}


def sync_directory() -> SQLAlchemyDirectory:
    """The directory on psycopg, with the options the library gives an engine it creates."""
    engine = sa.create_engine(url(), pool_pre_ping=True, hide_parameters=True)
    return SQLAlchemyDirectory(engine.execution_options(schema_translate_map=_translate()))


def async_directory() -> AsyncSQLAlchemyDirectory:
    """The directory on asyncpg, with the options the library gives an engine it creates."""
    from sqlalchemy.ext.asyncio import create_async_engine

    from credrecovery.async_sqlalchemy import AsyncSQLAlchemyDirectory

    engine = create_async_engine(async_url(), pool_pre_ping=True, hide_parameters=True)
    return AsyncSQLAlchemyDirectory(engine.execution_options(schema_translate_map=_translate()))


def load(clients: Iterable[tuple[Client, Sequence[str]]]) -> int:
    """Create the schema afresh with the directory's tables, load ``clients``; return how many."""
    engine = sa.create_engine(url(), hide_parameters=True)
    try:
        quoted = engine.dialect.identifier_preparer.quote_schema(schema())
        with engine.begin() as connection:
            connection.exec_driver_sql(f"DROP SCHEMA IF EXISTS {quoted} CASCADE")
            connection.exec_driver_sql(f"CREATE SCHEMA {quoted}")
        directory = SQLAlchemyDirectory(
            engine.execution_options(schema_translate_map=_translate()), create_schema=True
        )
        count = directory.bulk_add(clients)
        with engine.begin() as connection:
            # Fresh statistics, so that the planner uses the indexes from the first request.
            connection.exec_driver_sql(f"ANALYZE {quoted}.credrecovery_clients")
            connection.exec_driver_sql(f"ANALYZE {quoted}.credrecovery_domains")
        return count
    finally:
        engine.dispose()


def drop() -> None:
    """Drop the schema and everything in it."""
    engine = sa.create_engine(url(), hide_parameters=True)
    try:
        quoted = engine.dialect.identifier_preparer.quote_schema(schema())
        with engine.begin() as connection:
            connection.exec_driver_sql(f"DROP SCHEMA IF EXISTS {quoted} CASCADE")
    finally:
        engine.dispose()
