"""SQLite client directory for asyncio, over aiosqlite.

:class:`AsyncSQLiteDirectory` is :class:`~credrecovery.sqlite.SQLiteDirectory`
for an event loop: the same file format, schema versions and migrations, the
same statements and the same errors. A file either of them wrote, the other
reads. aiosqlite runs SQLite in a thread of its own, so a lookup that waits
for another process's lock waits there, and the event loop runs on.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
from collections.abc import AsyncIterator, Iterable
from typing import Self

try:
    import aiosqlite
except ImportError as exc:  # pragma: no cover - exercised with the extra missing
    raise ImportError(
        "credrecovery.async_sqlite needs aiosqlite: pip install 'credrecovery[asyncio]'"
    ) from exc

from passlib.context import CryptContext

from .._records import ClientRecord
from ..exceptions import DirectoryError
from ..identifiers import IdentifierKind
from ..models import Client
from ._closing import closed_error
from ._sqlite_schema import (
    _ACTIVE_SQL,
    _INSERT_CLIENT_SQL,
    _INSERT_DOMAIN_SQL,
    _MUST_CHANGE_SQL,
    _REPLACE_SQL,
    _client_values,
    _decode_text,
    _find_sql,
    _matched_clients,
    _prepare_path,
)

__all__ = ["AsyncSQLiteDirectory"]


class AsyncSQLiteDirectory:
    """A :class:`~credrecovery.AsyncClientDirectory` stored in a SQLite file.

    ``path`` must name a file; ``":memory:"`` is refused, as by
    :class:`~credrecovery.sqlite.SQLiteDirectory`. ``timeout`` is how many
    seconds a call waits for a lock held by another connection before it
    fails with :class:`DirectoryError`.

    Nothing is opened at construction: the first call creates a missing file
    with mode 0600, migrates a file of an earlier schema version, once, in a
    worker thread, and opens one connection that every later call shares.
    That first call raises :class:`DirectoryError` when the file cannot be
    created, opened or migrated, or when a later version of the library wrote
    it. Calls on one instance take turns on its connection; close it with
    :meth:`aclose` or ``async with``, after which every call raises
    :class:`DirectoryError`. An instance belongs to the event loop of its
    first call.

    Hits and misses read one client row each, and its domains, as in the
    synchronous directory, so that they take the same time.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        crypt_context: CryptContext | None = None,
        timeout: float = 5.0,
    ) -> None:
        self._path = os.fspath(path)
        if self._path in ("", ":memory:"):
            raise ValueError(
                "AsyncSQLiteDirectory needs a database file, not an in-memory database"
            )
        self._crypt_context = crypt_context
        self._timeout = timeout
        self._conn: aiosqlite.Connection | None = None
        self._closed = False
        # Created on first use, inside the loop that will run the calls.
        self._turn: asyncio.Lock | None = None

    def __repr__(self) -> str:
        return f"AsyncSQLiteDirectory({self._path!r})"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection and refuse any further call; idempotent.

        Every later call raises :class:`DirectoryError` ("the client directory
        is closed"). The file stays as it is, for another directory to open.
        """
        self._closed = True
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()

    async def close(self) -> None:
        """:meth:`aclose`, by its earlier name."""
        await self.aclose()

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

        As :meth:`SQLiteDirectory.add_client
        <credrecovery.sqlite.SQLiteDirectory.add_client>`: values normalized,
        one transaction, a shared primary address allowed, ``active=False``
        for a closed account; raises :class:`ValueError` when the number or a
        domain is taken.
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
        client = record.client
        async with self._connect("add a client") as conn:
            # Taking the write lock first makes the checks below race-free.
            await conn.execute("BEGIN IMMEDIATE")
            try:
                if await _exists(conn, "SELECT 1 FROM clients WHERE number = ?", client.number):
                    raise ValueError("a client with this number already exists")
                for domain in record.domains:
                    if await _exists(conn, "SELECT 1 FROM domains WHERE domain = ?", domain):
                        raise ValueError("one of these domains belongs to another client")
                await conn.execute(_INSERT_CLIENT_SQL, _client_values(client))
                await conn.executemany(
                    _INSERT_DOMAIN_SQL, [(domain, client.number) for domain in record.domains]
                )
                await conn.commit()
            except BaseException:
                # A refusal, or a cancelled task: the shared connection must not
                # stay inside this transaction. A SQLite error is rolled back below.
                if conn.in_transaction:
                    await conn.rollback()
                raise
        return client

    async def find(self, kind: IdentifierKind, value: str) -> Client | None:
        """Return the client whose number, primary email or domain is ``value``, or ``None``.

        ``value`` must already be normalized for ``kind``. For an address
        several clients share, the first of :meth:`find_all`'s. Raises
        :class:`DirectoryError` when the database fails.
        """
        found = await self.find_all(kind, value, limit=1)
        return found[0] if found else None

    async def find_all(self, kind: IdentifierKind, value: str, *, limit: int = 50) -> list[Client]:
        """Every client the normalized ``value`` names, by client number, at most ``limit``.

        As :meth:`SQLiteDirectory.find_all
        <credrecovery.sqlite.SQLiteDirectory.find_all>`. Raises
        :class:`ValueError` when ``limit`` is below 1 and
        :class:`DirectoryError` when the database fails.
        """
        sql = _find_sql(kind, limit)
        async with self._connect("look up a client") as conn:
            try:
                rows = await conn.execute_fetchall(sql, (value, limit))
            except sqlite3.OperationalError:
                # Undecodable text, most likely: read it again with the bad
                # bytes kept as lone surrogates, for the service to refuse.
                conn.text_factory = _decode_text
                try:
                    rows = await conn.execute_fetchall(sql, (value, limit))
                finally:
                    conn.text_factory = str
        return _matched_clients(rows)

    async def replace_key_hash(self, number: str, current: str, new: str) -> bool:
        """Store ``new`` as the key hash of client ``number`` if it is still ``current``.

        One conditional ``UPDATE``: atomic across tasks, threads and
        processes. Returns whether the hash was replaced. Raises
        :class:`DirectoryError` when the database fails, having written nothing.
        """
        async with self._connect("replace a key hash") as conn:
            cursor = await conn.execute(_REPLACE_SQL, (new, number, current))
            return cursor.rowcount == 1

    async def set_must_change(self, number: str, value: bool) -> None:
        """Record whether client ``number`` must replace its key at the next sign-in.

        As :meth:`SQLiteDirectory.set_must_change
        <credrecovery.sqlite.SQLiteDirectory.set_must_change>`: one ``UPDATE``,
        nothing for an unknown number; :class:`DirectoryError` when the
        database fails.
        """
        async with self._connect("record whether a key must change") as conn:
            await conn.execute(_MUST_CHANGE_SQL, (int(bool(value)), number))

    async def set_active(self, number: str, active: bool) -> None:
        """Open (``True``) or close (``False``) client ``number``'s account.

        As :meth:`SQLiteDirectory.set_active
        <credrecovery.sqlite.SQLiteDirectory.set_active>`: one ``UPDATE``,
        nothing for an unknown number; :class:`DirectoryError` when the
        database fails.
        """
        async with self._connect("open or close an account") as conn:
            await conn.execute(_ACTIVE_SQL, (int(bool(active)), number))

    @contextlib.asynccontextmanager
    async def _connect(self, action: str) -> AsyncIterator[aiosqlite.Connection]:
        """Yield the autocommit connection, with this call's turn on it; SQLite errors
        become DirectoryError, worded as the synchronous directory words them."""
        if self._turn is None:
            self._turn = asyncio.Lock()
        async with self._turn:
            # Messages name the action only: parameters may hold hashes or addresses.
            try:
                conn = await self._connection()
            except sqlite3.Error as exc:
                raise DirectoryError(f"could not open the client directory to {action}") from exc
            try:
                yield conn
            except sqlite3.Error as exc:
                if conn.in_transaction:
                    await conn.rollback()
                raise DirectoryError(f"the client directory failed to {action}") from exc

    async def _connection(self) -> aiosqlite.Connection:
        if self._closed:
            raise closed_error()
        if self._conn is not None:
            return self._conn
        # Creating and migrating the file is a one-off; a thread keeps it off the loop.
        await asyncio.to_thread(_prepare_path, self._path, self._timeout)
        conn = await aiosqlite.connect(self._path, timeout=self._timeout, isolation_level=None)
        try:
            await conn.execute("PRAGMA foreign_keys = ON")
        except BaseException:
            await conn.close()
            raise
        if self._closed:
            await conn.close()
            raise closed_error()
        self._conn = conn
        return conn


async def _exists(conn: aiosqlite.Connection, sql: str, value: str) -> bool:
    async with conn.execute(sql, (value,)) as cursor:
        return await cursor.fetchone() is not None
