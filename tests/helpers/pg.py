"""PostgreSQL for tests: a fresh schema per test, dropped afterwards.

The server is the one at ``$CREDRECOVERY_TEST_POSTGRES_URL`` (a SQLAlchemy
URL, by default ``postgresql+psycopg://postgres@127.0.0.1:5432/test``). When it
cannot be reached the test is skipped, or fails when
``CREDRECOVERY_REQUIRE_SERVICES=1``.

Use the :func:`postgres` fixture by importing it into a test module
(``from helpers.pg import postgres``) or listing ``"helpers.pg"`` in a root conftest's
``pytest_plugins``; outside fixtures use :func:`fresh_schema`. The asyncio
directories' tests reach a schema with :func:`async_url` and close what they
made with :class:`DisposesItsEngine`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, NoReturn

import pytest
import sqlalchemy as sa

if TYPE_CHECKING:
    from credrecovery.async_sqlalchemy import AsyncSQLAlchemyDirectory

URL_ENV = "CREDRECOVERY_TEST_POSTGRES_URL"
DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
REQUIRE_ENV = "CREDRECOVERY_REQUIRE_SERVICES"
CONNECT_TIMEOUT = 5


def postgres_url() -> str:
    """The SQLAlchemy URL of the test server."""
    return os.environ.get(URL_ENV) or DEFAULT_URL


def services_required() -> bool:
    """Whether a missing service fails the test instead of skipping it."""
    return os.environ.get(REQUIRE_ENV) == "1"


def unavailable(message: str) -> NoReturn:
    """Skip the current test, or fail it when services are required."""
    if services_required():
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@dataclasses.dataclass(frozen=True)
class PostgresSchema:
    """A schema of one's own on the test server.

    ``engine`` has its ``search_path`` set to the schema, so unqualified names
    (raw SQL, or tables without a schema) land there. ``url`` is the server's
    plain URL, for code that must qualify names with ``name`` itself.
    """

    url: str
    name: str
    engine: sa.Engine


def _reason(exc: BaseException) -> str:
    cause = getattr(exc, "orig", None) or exc
    lines = str(cause).strip().splitlines()
    return lines[0] if lines else type(cause).__name__


@contextlib.contextmanager
def fresh_schema(url: str | None = None) -> Iterator[PostgresSchema]:
    """Create a uniquely named schema, yield it, then drop it with its contents."""
    url = url or postgres_url()
    shown = sa.make_url(url).render_as_string(hide_password=True)
    name = f"credrecovery_test_{uuid.uuid4().hex[:16]}"
    try:
        admin = sa.create_engine(
            url,
            poolclass=sa.NullPool,
            hide_parameters=True,
            connect_args={"connect_timeout": CONNECT_TIMEOUT},
        )
        with admin.begin() as connection:
            connection.exec_driver_sql(f'CREATE SCHEMA "{name}"')
    except (sa.exc.SQLAlchemyError, ImportError) as exc:
        unavailable(f"PostgreSQL not reachable at {shown}: {_reason(exc)}")
    engine = sa.create_engine(
        url,
        hide_parameters=True,
        connect_args={
            "connect_timeout": CONNECT_TIMEOUT,
            "options": f"-csearch_path={name}",
        },
    )
    try:
        yield PostgresSchema(url=url, name=name, engine=engine)
    finally:
        engine.dispose()
        try:
            with admin.begin() as connection:
                connection.exec_driver_sql(f'DROP SCHEMA "{name}" CASCADE')
        finally:
            admin.dispose()


@pytest.fixture
def postgres() -> Iterator[PostgresSchema]:
    """A fresh schema on the test server; skips (or fails) when it is unreachable."""
    with fresh_schema() as schema:
        yield schema


def async_url(schema: PostgresSchema, driver: str) -> tuple[sa.URL, dict[str, Any]]:
    """The test server's URL for an asyncio ``driver``, and connect_args for the schema."""
    url = sa.make_url(schema.url).set(drivername=f"postgresql+{driver}")
    if driver == "asyncpg":
        return url, {"server_settings": {"search_path": schema.name}}
    return url, {"options": f"-csearch_path={schema.name}"}


class DisposesItsEngine:
    """Closes the directory, then disposes the engine the test made: closing leaves it alone."""

    async def close_directory(self, directory: AsyncSQLAlchemyDirectory) -> None:
        await directory.aclose()
        await directory.engine.dispose()
