"""A :class:`~credrecovery.AsyncClientDirectory` on SQLAlchemy's asyncio engine.

:class:`AsyncSQLAlchemyDirectory` is :class:`~credrecovery.sqlalchemy.SQLAlchemyDirectory`
for an event loop: the same own tables or host :class:`TableMapping`, the same
statements, and the same errors, with ``sqlstate`` and ``constraint`` kept and
a row a database message may quote dropped. On PostgreSQL it runs on asyncpg
(``postgresql+asyncpg://``) or psycopg 3 (``postgresql+psycopg://``); SQLAlchemy's
asyncio extension needs greenlet.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Self

try:
    import sqlalchemy as sa
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
except ImportError as exc:  # pragma: no cover - exercised with the extra missing
    raise ImportError(
        "credrecovery.async_sqlalchemy needs SQLAlchemy 2 with asyncio:"
        " pip install 'credrecovery[sqlalchemy,asyncio]'"
    ) from exc

from passlib.context import CryptContext

from .._records import ClientRecord
from ..identifiers import IdentifierKind
from ..models import Client
from ._sql_errors import _ADD_REFUSAL, _guarded_async, _guarded_write_async
from ._sql_lookup import POOL_RECYCLE, _Reader
from ._sql_statements import _Statements
from ._sql_tables import TableMapping as TableMapping

__all__ = ["AsyncSQLAlchemyDirectory", "TableMapping"]


class AsyncSQLAlchemyDirectory:
    """A :class:`~credrecovery.AsyncClientDirectory` in a SQL database, through asyncio.

    ``engine_or_url`` is an :class:`~sqlalchemy.ext.asyncio.AsyncEngine`, or
    a URL naming an asyncio driver from which one is created with
    ``pool_recycle=1800`` and ``hide_parameters=True``, without
    ``pool_pre_ping``: as in the synchronous directory, a call whose
    connection the server dropped runs once more on a new one. Create yours
    with ``hide_parameters=True`` too, so that SQLAlchemy's messages quote no
    key hash. Without ``mapping`` the directory uses its own tables (create them
    with :meth:`create_schema`); with a :class:`TableMapping`, the host's.
    ``crypt_context`` hashes the keys given to :meth:`add_client`.

    Every method behaves as the synchronous directory's of the same name, as
    a coroutine; see :class:`~credrecovery.sqlalchemy.SQLAlchemyDirectory`.
    :meth:`aclose`, :meth:`close` and leaving ``async with`` do what
    :meth:`dispose` does: the pool is closed and the directory stays usable.
    """

    def __init__(
        self,
        engine_or_url: AsyncEngine | sa.URL | str,
        *,
        mapping: TableMapping | None = None,
        crypt_context: CryptContext | None = None,
    ) -> None:
        if isinstance(engine_or_url, AsyncEngine):
            self._engine = engine_or_url
        else:
            self._engine = create_async_engine(
                engine_or_url, pool_recycle=POOL_RECYCLE, hide_parameters=True
            )
        self._reader = _Reader(self._engine.sync_engine)
        self._statements = _Statements(mapping)
        self._crypt_context = crypt_context

    def __repr__(self) -> str:
        return f"AsyncSQLAlchemyDirectory({self._statements.describe(self._engine.url)})"

    @property
    def engine(self) -> AsyncEngine:
        """The engine every statement runs on."""
        return self._engine

    @property
    def mapping(self) -> TableMapping:
        """The tables and columns in use; the built-in one in own-schema mode."""
        return self._statements.mapping

    @property
    def metadata(self) -> sa.MetaData:
        """The tables as SQLAlchemy sees them; in mapped mode, never create them."""
        return self._statements.metadata

    async def create_schema(self) -> None:
        """Create the directory's own tables and indexes where they are missing.

        Idempotent; to tables an earlier version created it adds the
        ``must_change`` and ``active`` columns, as :meth:`SQLAlchemyDirectory.create_schema
        <credrecovery.sqlalchemy.SQLAlchemyDirectory.create_schema>` does.
        Raises :class:`TypeError` with a :class:`TableMapping`, and
        :class:`~credrecovery.DirectoryError` when the database fails.
        """
        statements = self._statements
        statements.check_own_schema()

        async def create() -> None:
            async with self._engine.begin() as connection:
                await connection.run_sync(statements.create_own_schema)

        await _guarded_async("create its tables", create)

    async def dispose(self) -> None:
        """Close the engine's pooled connections; they are opened again on demand."""
        await self._engine.dispose()

    async def aclose(self) -> None:
        """:meth:`dispose`, by the name every async object of this package has."""
        await self._engine.dispose()

    close = dispose

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.dispose()

    async def find(self, kind: IdentifierKind | str, value: str) -> Client | None:
        """Return the client that the normalized ``value`` identifies, or ``None``.

        For an address several clients share, the first of :meth:`find_all`'s.
        Raises :class:`~credrecovery.DirectoryError` when the database fails
        or when several clients have the number or the domain.
        """
        found = await self.find_all(kind, value, limit=1)
        return found[0] if found else None

    async def find_all(
        self, kind: IdentifierKind | str, value: str, *, limit: int = 50
    ) -> list[Client]:
        """Every client the normalized ``value`` names, by client number, at most ``limit``.

        As :meth:`SQLAlchemyDirectory.find_all
        <credrecovery.sqlalchemy.SQLAlchemyDirectory.find_all>`. Raises
        :class:`ValueError` when ``limit`` is below 1.
        """
        kind, statement, parameters = self._statements.select(kind, value, limit)
        if statement is None:
            return []

        rows = await self._reader.read_async(self._engine, kind, statement, parameters)
        return self._statements.found(kind, rows, limit)

    async def replace_key_hash(self, number: str, current: str, new: str) -> bool:
        """Store ``new`` as ``number``'s key hash if it still is ``current``.

        One conditional ``UPDATE``, atomic on any database. Returns whether it
        changed a row. Raises :class:`~credrecovery.DirectoryError` when the
        database fails.
        """
        statement = self._statements.replace(number, current, new)
        if statement is None:
            return False

        async def swap(connection: AsyncConnection) -> bool:
            return (await connection.execute(statement)).rowcount == 1

        return await _guarded_write_async("replace a key hash", self._engine, swap)

    async def set_must_change(self, number: str, value: bool) -> None:
        """Record whether client ``number`` must replace its key at the next sign-in.

        As :meth:`SQLAlchemyDirectory.set_must_change
        <credrecovery.sqlalchemy.SQLAlchemyDirectory.set_must_change>`: one
        ``UPDATE``, nothing for an unknown number or without a mapped
        ``must_change`` column; :class:`~credrecovery.DirectoryError` when the
        database fails.
        """
        statement = self._statements.set_must_change(number, value)
        if statement is not None:
            await self._update(statement, "record whether a key must change")

    async def set_active(self, number: str, active: bool) -> None:
        """Open (``True``) or close (``False``) client ``number``'s account.

        As :meth:`SQLAlchemyDirectory.set_active
        <credrecovery.sqlalchemy.SQLAlchemyDirectory.set_active>`: one
        ``UPDATE``, nothing for an unknown number; :class:`TypeError` without
        an ``active`` column; :class:`~credrecovery.DirectoryError` when the
        database fails.
        """
        statement = self._statements.set_active(number, active)
        if statement is not None:
            await self._update(statement, "open or close an account")

    async def _update(self, statement: sa.Update, what: str) -> None:
        async def run(connection: AsyncConnection) -> None:
            await connection.execute(statement)

        await _guarded_write_async(what, self._engine, run)

    async def add_client(
        self,
        number: str,
        email: str,
        *,
        key: str | None = None,
        key_hash: str | None = None,
        domains: Iterable[str] = (),
        name: str = "",
        locale: str | None = None,
        active: bool = True,
    ) -> Client:
        """Add a client, given exactly one of ``key`` or an imported ``key_hash``.

        As :meth:`SQLAlchemyDirectory.add_client
        <credrecovery.sqlalchemy.SQLAlchemyDirectory.add_client>`: one
        transaction; ``active=False`` for a closed account; :class:`ValueError`
        when the number or a domain is taken, a constraint refuses the row
        (with ``sqlstate`` and ``constraint``), or a closed client has no
        ``active`` column to go to.
        """
        record = ClientRecord.build(
            number,
            email,
            key=key,
            key_hash=key_hash,
            domains=domains,
            name=name,
            locale=locale,
            crypt_context=self._crypt_context,
            active=active,
        )
        statements = self._statements
        client, number_value = statements.stored_record(record)
        taken = statements.taken_checks(number_value, record.domains)

        async def insert(connection: AsyncConnection) -> None:
            for check, refusal in taken:
                if (await connection.execute(check)).first() is not None:
                    raise ValueError(refusal)
            for statement, rows in statements.inserts(client, number_value, record.domains):
                await connection.execute(statement, rows)

        await _guarded_write_async("add a client", self._engine, insert, refusal=_ADD_REFUSAL)
        return client
