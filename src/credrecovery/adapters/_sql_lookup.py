"""How both SQLAlchemy directories run a lookup: one statement, one round trip.

A lookup is one ``SELECT`` built once per directory (see ``_Statements``).
On PostgreSQL it runs outside any transaction (autocommit): a transaction
would cost two more round trips, ``BEGIN`` and the pool's ``ROLLBACK``, for a
statement that sees one snapshot either way.

On psycopg 3 and asyncpg the text SQLAlchemy compiled for the engine, once,
goes straight to the driver's connection, which SQLAlchemy checks out of the
engine's pool and takes back as for any statement: SQLAlchemy's execution
costs as much again as the query itself. It runs through SQLAlchemy instead
where a host listens to statements (a tracer's ``before_cursor_execute``,
say) or logs them (``echo``), so that the listeners and the log see it; where
a bound value or a column of the lookup needs a type's conversion; and on
every other driver and database. A driver error on the direct way drops that
connection and runs the lookup again through SQLAlchemy, on a new one, which
then answers or raises as it would have (see ``_guarded_read``): a server
restart costs no failed lookup.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

try:
    import sqlalchemy as sa
except ImportError as exc:  # pragma: no cover - exercised with the extra missing
    raise ImportError(
        "credrecovery.sqlalchemy needs SQLAlchemy 2: pip install 'credrecovery[sqlalchemy]'"
    ) from exc

from ..identifiers import IdentifierKind
from ._sql_errors import _guarded_read, _guarded_read_async

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

#: Seconds after which an engine a directory creates replaces a pooled connection.
POOL_RECYCLE = 1800
_AUTOCOMMIT = "AUTOCOMMIT"
# The drivers whose connections take a compiled lookup directly, and their errors.
_DRIVER_ERRORS = {"psycopg": ("Error",), "asyncpg": ("PostgresError", "InterfaceError")}
# Listeners to these see every statement; a lookup sent to the driver would pass them by.
_STATEMENT_EVENTS = (
    "before_execute",
    "after_execute",
    "before_cursor_execute",
    "after_cursor_execute",
)
_Rows = Sequence[Sequence[Any]]


@dataclasses.dataclass(frozen=True)
class _Compiled:
    """A lookup's SQL text for one engine, and how its parameters are passed."""

    translate: Mapping[str | None, str | None] | None
    sql: str
    #: The values bound in the statement itself, e.g. by a host's ``active`` condition.
    bound: Mapping[str, Any]
    #: The parameters' order for a driver that takes them by position; ``None`` by name.
    order: tuple[str, ...] | None

    def arguments(self, parameters: Mapping[str, Any]) -> Any:
        values = {**self.bound, **parameters}
        return values if self.order is None else [values[name] for name in self.order]


class _Reader:
    """Runs one directory's lookups on its engine (see the module's docstring)."""

    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine
        dialect = engine.dialect
        self._autocommit = dialect.name == "postgresql"
        self._errors: tuple[type[BaseException], ...] = ()
        if self._autocommit and dialect.driver in _DRIVER_ERRORS:
            module = importlib.import_module(dialect.driver)
            names = _DRIVER_ERRORS[dialect.driver]
            self._errors = (OSError, *(getattr(module, name) for name in names))
        self._compiled: dict[IdentifierKind, _Compiled | None] = {}

    def _direct(self, kind: IdentifierKind, statement: sa.Select[Any]) -> _Compiled | None:
        """The lookup compiled for the driver, or ``None`` when SQLAlchemy must run it."""
        engine = self._engine
        if not self._errors or engine.logger.isEnabledFor(logging.INFO):  # echo logs statements
            return None
        if any(getattr(engine.dispatch, event) for event in _STATEMENT_EVENTS):
            return None
        translate = engine.get_execution_options().get("schema_translate_map")
        compiled = self._compiled.get(kind)
        if kind not in self._compiled or (compiled is not None and compiled.translate != translate):
            compiled = self._compiled[kind] = _compile(statement, engine.dialect, translate)
        return compiled

    def _through_sqlalchemy(
        self, connection: sa.Connection, statement: sa.Select[Any], parameters: dict[str, Any]
    ) -> _Rows:
        if self._autocommit:
            connection.execution_options(isolation_level=_AUTOCOMMIT)
        return connection.execute(statement, parameters).all()

    def read(
        self, kind: IdentifierKind, statement: sa.Select[Any], parameters: dict[str, Any]
    ) -> _Rows:
        """The lookup's rows, in the statement's column order."""

        def attempt() -> _Rows:
            compiled = self._direct(kind, statement)
            if compiled is not None:
                with self._engine.connect() as connection:
                    driver = connection.connection.driver_connection
                    try:
                        return _psycopg_rows(driver, compiled.sql, compiled.arguments(parameters))
                    except BaseException as exc:
                        connection.invalidate()
                        if not isinstance(exc, self._errors):
                            raise
            with self._engine.connect() as connection:
                return self._through_sqlalchemy(connection, statement, parameters)

        return _guarded_read("look up a client", attempt)

    async def read_async(
        self,
        engine: AsyncEngine,
        kind: IdentifierKind,
        statement: sa.Select[Any],
        parameters: dict[str, Any],
    ) -> _Rows:
        """:meth:`read` on ``engine``, whose ``sync_engine`` this reader was made with."""

        def through_sqlalchemy(connection: sa.Connection) -> _Rows:
            return self._through_sqlalchemy(connection, statement, parameters)

        async def attempt() -> _Rows:
            compiled = self._direct(kind, statement)
            if compiled is not None:
                async with engine.connect() as connection:
                    # Checked out by connect(): reaching the driver's connection does no I/O.
                    assert connection.sync_connection is not None
                    driver = connection.sync_connection.connection.driver_connection
                    arguments = compiled.arguments(parameters)
                    try:
                        if self._engine.dialect.driver == "asyncpg":
                            return await _asyncpg_rows(driver, compiled.sql, arguments)
                        return await _async_psycopg_rows(driver, compiled.sql, arguments)
                    except BaseException as exc:
                        await connection.invalidate()
                        if not isinstance(exc, self._errors):
                            raise
            async with engine.connect() as connection:
                return await connection.run_sync(through_sqlalchemy)

        return await _guarded_read_async("look up a client", attempt)


def _compile(
    statement: sa.Select[Any],
    dialect: sa.Dialect,
    translate: Mapping[str | None, str | None] | None,
) -> _Compiled | None:
    """``statement`` as ``dialect`` sends it; ``None`` if a type converts a value."""
    compiled = statement.compile(
        dialect=dialect,
        schema_translate_map=translate,
        render_schema_translate=translate is not None,
        compile_kwargs={"render_postcompile": True},
    )
    types = [bind.type for bind in compiled.binds.values()]
    if any(t.dialect_impl(dialect).bind_processor(dialect) for t in types):
        return None
    columns = [column.type for column in statement.selected_columns]
    if any(t.dialect_impl(dialect).result_processor(dialect, None) for t in columns):
        return None
    order = None if compiled.positiontup is None else tuple(compiled.positiontup)
    return _Compiled(translate, compiled.string, dict(compiled.params), order)


def _psycopg_rows(driver: Any, sql: str, arguments: Any) -> _Rows:
    if driver.autocommit:
        return driver.execute(sql, arguments).fetchall()  # type: ignore[no-any-return]
    driver.autocommit = True
    try:
        return driver.execute(sql, arguments).fetchall()  # type: ignore[no-any-return]
    finally:
        driver.autocommit = False


async def _asyncpg_rows(driver: Any, sql: str, arguments: list[Any]) -> _Rows:
    # Outside a transaction, as every connection the pool hands out is.
    return await driver.fetch(sql, *arguments)  # type: ignore[no-any-return]


async def _async_psycopg_rows(driver: Any, sql: str, arguments: Any) -> _Rows:
    if driver.autocommit:
        return await (await driver.execute(sql, arguments)).fetchall()  # type: ignore[no-any-return]
    await driver.set_autocommit(True)
    try:
        return await (await driver.execute(sql, arguments)).fetchall()  # type: ignore[no-any-return]
    finally:
        await driver.set_autocommit(False)
