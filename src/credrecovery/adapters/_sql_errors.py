"""How both SQLAlchemy directories turn the database's errors into the library's.

An error becomes a :class:`DirectoryError` (or, for a refused insert, a
:class:`ValueError`) whose message is fixed text plus the SQLSTATE and the
constraint name, kept as ``sqlstate`` and ``constraint``. An error whose text
may quote a row is raised unchained, so the row never rides along.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast

try:
    import sqlalchemy as sa
    from sqlalchemy import exc as sa_exc
except ImportError as exc:  # pragma: no cover - exercised with the extra missing
    raise ImportError(
        "credrecovery.sqlalchemy needs SQLAlchemy 2: pip install 'credrecovery[sqlalchemy]'"
    ) from exc

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ..exceptions import DirectoryError

_T = TypeVar("_T")
# SQLSTATE classes whose messages may quote a row: data exceptions, integrity
# violations (DETAIL: Failing row contains ...), PL/pgSQL RAISE in host triggers.
_ROW_QUOTING_CLASSES = frozenset({"22", "23", "P0"})

#: What add_client's ValueError says when a constraint refuses the client.
_ADD_REFUSAL = "the database refused the client: a duplicate or a constraint"


def _translated(
    exc: sa_exc.SQLAlchemyError, action: str, refusal: str | None
) -> tuple[Exception, bool]:
    """The error to raise for ``exc``, and whether it may be chained to ``exc``.

    With ``refusal``, an integrity error becomes a :class:`ValueError` with
    that message instead. Either carries ``sqlstate`` and ``constraint``. An
    error whose text may quote a row must not be chained: neither
    ``__cause__`` nor ``__context__`` may lead back to it.
    """
    sqlstate, constraint = _error_codes(exc)
    error: Exception
    if refusal is not None and isinstance(exc, sa_exc.IntegrityError):
        error = _tagged(ValueError(refusal), sqlstate, constraint)
    else:
        error = _directory_error(f"the client directory could not {action}", sqlstate, constraint)
    return error, not _may_quote_row(exc)


def _guarded(action: str, work: Callable[[], _T], *, refusal: str | None = None) -> _T:
    """Run ``work``, turning SQLAlchemy's errors into :class:`DirectoryError` (see _translated)."""
    try:
        return work()
    except sa_exc.SQLAlchemyError as exc:
        error, chained = _translated(exc, action, refusal)
        if chained:
            raise error from exc
    # Raised outside the handler, so that no __context__ is set.
    raise error


def _guarded_read(action: str, work: Callable[[], _T]) -> _T:
    """:func:`_guarded` for a read, run once more when its connection was found dead.

    SQLAlchemy tells a lost connection (a restarted server, a connection the
    server or a proxy closed) by ``connection_invalidated``; it has then
    dropped that connection and every older one in the pool, so the second
    attempt runs on a new connection. A read may run twice; a write, only as
    :func:`_guarded_write` runs it.
    """

    def once_more_if_disconnected() -> _T:
        try:
            return work()
        except sa_exc.DBAPIError as exc:
            if not exc.connection_invalidated:
                raise
        return work()

    return _guarded(action, once_more_if_disconnected)


def _guarded_write(
    action: str,
    engine: sa.Engine,
    work: Callable[[sa.Connection], _T],
    *,
    refusal: str | None = None,
) -> _T:
    """:func:`_guarded` for ``work`` in one transaction, run again if its connection was dead.

    Again only when SQLAlchemy found the connection dead before ``COMMIT``
    was sent: the server has then rolled the transaction back, so nothing is
    written twice. A failure during ``COMMIT`` is never run again.
    """

    def in_transaction() -> _T:
        committing = False
        try:
            with engine.begin() as connection:
                result = work(connection)
                committing = True
            return result
        except sa_exc.DBAPIError as exc:
            if committing or not exc.connection_invalidated:
                raise
        with engine.begin() as connection:
            return work(connection)

    return _guarded(action, in_transaction, refusal=refusal)


async def _guarded_write_async(
    action: str,
    engine: AsyncEngine,
    work: Callable[[AsyncConnection], Awaitable[_T]],
    *,
    refusal: str | None = None,
) -> _T:
    """:func:`_guarded_write` for a coroutine."""

    async def in_transaction() -> _T:
        committing = False
        try:
            async with engine.begin() as connection:
                result = await work(connection)
                committing = True
            return result
        except sa_exc.DBAPIError as exc:
            if committing or not exc.connection_invalidated:
                raise
        async with engine.begin() as connection:
            return await work(connection)

    return await _guarded_async(action, in_transaction, refusal=refusal)


async def _guarded_read_async(action: str, work: Callable[[], Awaitable[_T]]) -> _T:
    """:func:`_guarded_read` for a coroutine."""

    async def once_more_if_disconnected() -> _T:
        try:
            return await work()
        except sa_exc.DBAPIError as exc:
            if not exc.connection_invalidated:
                raise
        return await work()

    return await _guarded_async(action, once_more_if_disconnected)


async def _guarded_async(
    action: str, work: Callable[[], Awaitable[_T]], *, refusal: str | None = None
) -> _T:
    """:func:`_guarded` for a coroutine."""
    try:
        return await work()
    except sa_exc.SQLAlchemyError as exc:
        error, chained = _translated(exc, action, refusal)
        if chained:
            raise error from exc
    raise error


def _directory_error(
    message: str, sqlstate: str | None = None, constraint: str | None = None
) -> DirectoryError:
    # The message is fixed text plus codes: SQLAlchemy's would quote the statement.
    return _tagged(DirectoryError(message), sqlstate, constraint)


_E = TypeVar("_E", bound=Exception)


def _tagged(error: _E, sqlstate: str | None, constraint: str | None) -> _E:
    """``error`` with ``sqlstate`` and ``constraint`` set, and named in its message."""
    codes = [f"SQLSTATE {sqlstate}"] if sqlstate else []
    codes += [f"constraint {constraint}"] if constraint else []
    if codes:
        error.args = (f"{error.args[0]} ({', '.join(codes)})",)
    target = cast(Any, error)
    target.sqlstate, target.constraint = sqlstate, constraint
    return error


def _error_codes(exc: sa_exc.SQLAlchemyError) -> tuple[str | None, str | None]:
    """The SQLSTATE and constraint name a driver reported (psycopg 3 or 2, asyncpg), if any."""
    orig = getattr(exc, "orig", None)
    sqlstate = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    constraint = getattr(getattr(orig, "diag", None), "constraint_name", None)
    if constraint is None:
        # SQLAlchemy's asyncpg adapter keeps asyncpg's own error as the cause.
        constraint = getattr(getattr(orig, "__cause__", None), "constraint_name", None)
    return (
        sqlstate if isinstance(sqlstate, str) else None,
        constraint if isinstance(constraint, str) else None,
    )


def _may_quote_row(exc: sa_exc.SQLAlchemyError) -> bool:
    if isinstance(exc, sa_exc.IntegrityError | sa_exc.DataError | sa_exc.InternalError):
        return True
    if not isinstance(exc, sa_exc.DBAPIError):
        return False
    sqlstate, _ = _error_codes(exc)
    if sqlstate is not None and sqlstate[:2] in _ROW_QUOTING_CLASSES:
        return True
    # PostgreSQL puts row values in DETAIL and, for COPY, the input line in CONTEXT.
    diag = getattr(exc.orig, "diag", None)
    if any(getattr(diag, field, None) for field in ("message_detail", "context")):
        return True
    asyncpg_error = getattr(exc.orig, "__cause__", None)
    return any(getattr(asyncpg_error, field, None) for field in ("detail", "context"))
