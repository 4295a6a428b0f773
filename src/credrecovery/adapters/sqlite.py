"""SQLite client directory: the embedded default storage, in one local file.

:class:`SQLiteDirectory` keeps clients and their domains in a SQLite database
in WAL mode. Each thread gets a connection of its own, opened on first use and
reopened after a fork, so one instance is safe to share between threads, and
several processes may use the same file.

The schema's version is kept in ``PRAGMA user_version``. Opening a file that
an earlier version of the library wrote migrates it, once, under the write
lock; a file from a later version is refused. A file the directory creates is
readable by its owner only (mode 0600), and so are its ``-wal`` and ``-shm``
files, which SQLite creates with the main file's permissions.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import Self

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
    _create_private,
    _decode_text,
    _exists,
    _find_sql,
    _matched_clients,
    _prepare_file,
)
from ._sqlite_schema import _FIND_SQL as _FIND_SQL
from ._sqlite_schema import _SCHEMA_VERSION as _SCHEMA_VERSION

__all__ = ["SQLiteDirectory"]


class SQLiteDirectory:
    """A :class:`~credrecovery.ClientDirectory` stored in a SQLite file.

    ``path`` must name a file: ``":memory:"`` is refused because every thread
    opens its own connection, and each would see a different empty database.
    ``timeout`` is how many seconds a call waits for a lock held by another
    connection before it fails with :class:`DirectoryError`.

    A missing file is created with mode 0600; an existing file keeps its mode,
    which its ``-wal`` and ``-shm`` files then get too. Opening a file of an
    earlier schema version migrates it. Raises :class:`DirectoryError` when
    the file cannot be created, opened or migrated, or when a later version of
    the library wrote it.

    Numbers and domains are unique; several clients may share a primary
    address, and :meth:`find_all` returns them all. Clients come back with
    their domains, sorted, with the flag :meth:`set_must_change` keeps, and
    open or closed as :meth:`add_client` or :meth:`set_active` left them.
    Text that is not valid UTF-8 reads back with its bad bytes as lone
    surrogates (``surrogateescape``) rather than failing the lookup, so that
    the service can set the record aside as unusable.

    :meth:`close`, or leaving a ``with`` block, closes the directory for good.
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
            raise ValueError("SQLiteDirectory needs a database file, not an in-memory database")
        self._crypt_context = crypt_context
        self._timeout = timeout
        self._closed = False
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[sqlite3.Connection] = []
        _create_private(self._path)
        try:
            with self._connect("prepare its schema") as conn:
                _prepare_file(conn)
        except BaseException:
            self.close()
            raise

    def __repr__(self) -> str:
        return f"SQLiteDirectory({self._path!r})"

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close every thread's connection and refuse any further call; idempotent.

        Every later call raises :class:`DirectoryError` ("the client directory
        is closed"). The file stays as it is, for another directory to open.
        """
        with self._lock:
            self._closed = True
            connections, self._connections = self._connections, []
        for conn in connections:
            conn.close()

    def add_client(
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

        Values are normalized as the service will look them up. The client and
        its domains are written in one transaction. The primary address may be
        another client's too. ``active=False`` adds it closed (see
        :attr:`Client.active <credrecovery.models.Client.active>`). Raises
        :class:`ValueError` when the number or a domain is taken.
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
        with self._connect("add a client") as conn, conn:
            # Taking the write lock first makes the checks below race-free.
            conn.execute("BEGIN IMMEDIATE")
            if _exists(conn, "SELECT 1 FROM clients WHERE number = ?", client.number):
                raise ValueError("a client with this number already exists")
            if any(
                _exists(conn, "SELECT 1 FROM domains WHERE domain = ?", domain)
                for domain in record.domains
            ):
                raise ValueError("one of these domains belongs to another client")
            conn.execute(_INSERT_CLIENT_SQL, _client_values(client))
            conn.executemany(
                _INSERT_DOMAIN_SQL, ((domain, client.number) for domain in record.domains)
            )
        return client

    def bulk_add(self, records: Iterable[tuple[Client, Sequence[str]]]) -> int:
        """Insert many clients and their domains in one transaction; return the count.

        For imports and benchmarks: values must already be normalized and
        hashed, and nothing is checked beyond the database's constraints.
        Each client's ``must_change`` and ``active`` are stored; its domains
        are the pair's second item, not ``Client.domains``. Raises
        :class:`ValueError` on a duplicate and :class:`DirectoryError` on any
        other database error, having inserted nothing.
        """
        clients: list[tuple[str, str, str, str, str | None, int, int]] = []
        domains: list[tuple[str, str]] = []
        for client, client_domains in records:
            clients.append(_client_values(client))
            domains.extend((domain, client.number) for domain in client_domains)
        try:
            with self._connect("import clients") as conn, conn:
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany(_INSERT_CLIENT_SQL, clients)
                conn.executemany(_INSERT_DOMAIN_SQL, domains)
        except DirectoryError as exc:
            if isinstance(exc.__cause__, sqlite3.IntegrityError):
                raise ValueError("a client or domain is already in the directory") from None
            raise
        return len(clients)

    def find(self, kind: IdentifierKind, value: str) -> Client | None:
        """Return the client whose number, primary email or domain is ``value``, or ``None``.

        ``value`` must already be normalized for ``kind``. For an address
        several clients share, the first of :meth:`find_all`'s. Raises
        :class:`DirectoryError` when the database fails.
        """
        found = self.find_all(kind, value, limit=1)
        return found[0] if found else None

    def find_all(self, kind: IdentifierKind, value: str, *, limit: int = 50) -> list[Client]:
        """Every client the normalized ``value`` names, by client number, at most ``limit``.

        A number or a domain names at most one client; an email, every client
        whose primary address it is, ordered by number as text. The service
        asks for a small ``limit``. Raises :class:`ValueError` when ``limit``
        is below 1 and :class:`DirectoryError` when the database fails.
        """
        sql = _find_sql(kind, limit)
        with self._connect("look up a client") as conn:
            try:
                rows = conn.execute(sql, (value, limit)).fetchall()
            except sqlite3.OperationalError:
                # Undecodable text, most likely: read it again with the bad
                # bytes kept as lone surrogates, for the service to refuse.
                conn.text_factory = _decode_text
                try:
                    rows = conn.execute(sql, (value, limit)).fetchall()
                finally:
                    conn.text_factory = str
        return _matched_clients(rows)

    def replace_key_hash(self, number: str, current: str, new: str) -> bool:
        """Store ``new`` as the key hash of client ``number`` if it is still ``current``.

        One conditional ``UPDATE``: atomic across threads and processes.
        Returns whether the hash was replaced. Raises :class:`DirectoryError`
        when the database fails, having written nothing.
        """
        with self._connect("replace a key hash") as conn:
            cursor = conn.execute(_REPLACE_SQL, (new, number, current))
            return cursor.rowcount == 1

    def set_must_change(self, number: str, value: bool) -> None:
        """Record whether client ``number`` must replace its key at the next sign-in.

        One ``UPDATE``; an unknown number changes nothing. Raises
        :class:`DirectoryError` when the database fails, having written nothing.
        """
        with self._connect("record whether a key must change") as conn:
            conn.execute(_MUST_CHANGE_SQL, (int(bool(value)), number))

    def set_active(self, number: str, active: bool) -> None:
        """Open (``True``) or close (``False``) client ``number``'s account.

        One ``UPDATE``; an unknown number changes nothing. A closed client is
        found as it is, with ``active`` false, and the service treats it as
        unknown. Raises :class:`DirectoryError` when the database fails,
        having written nothing.
        """
        with self._connect("open or close an account") as conn:
            conn.execute(_ACTIVE_SQL, (int(bool(active)), number))

    @contextlib.contextmanager
    def _connect(self, action: str) -> Iterator[sqlite3.Connection]:
        """Yield this thread's autocommit connection; turn SQLite errors into DirectoryError."""
        # Messages name the action only: parameters may hold hashes or addresses.
        try:
            conn = self._thread_connection()
        except sqlite3.Error as exc:
            raise DirectoryError(f"could not open the client directory to {action}") from exc
        try:
            yield conn
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.rollback()
            raise DirectoryError(f"the client directory failed to {action}") from exc

    def _thread_connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid():
            if self._closed:
                raise closed_error()
            return conn
        with self._lock:
            if self._closed:
                raise closed_error()
            # check_same_thread is off only so that close() may close it; the
            # connection is otherwise used by its own thread alone.
            conn = sqlite3.connect(
                self._path,
                timeout=self._timeout,
                isolation_level=None,
                check_same_thread=False,
            )
            self._connections.append(conn)
        conn.execute("PRAGMA foreign_keys = ON")
        self._local.conn, self._local.pid = conn, os.getpid()
        return conn
