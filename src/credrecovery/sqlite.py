"""SQLite client directory: the embedded default storage, in one local file.

:class:`SQLiteDirectory` keeps clients and their domains in a SQLite database
in WAL mode. Each thread gets a connection of its own, opened on first use and
reopened after a fork, so one instance is safe to share between threads, and
several processes may use the same file.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import Self

from passlib.context import CryptContext

from ._records import ClientRecord
from .exceptions import DirectoryError
from .identifiers import IdentifierKind, parse_kind
from .models import Client

__all__ = ["SQLiteDirectory"]

_SCHEMA = """
BEGIN IMMEDIATE;
CREATE TABLE IF NOT EXISTS clients (
    number   TEXT PRIMARY KEY NOT NULL,
    email    TEXT NOT NULL UNIQUE,
    key_hash TEXT NOT NULL,
    name     TEXT NOT NULL DEFAULT '',
    locale   TEXT
);
CREATE TABLE IF NOT EXISTS domains (
    domain TEXT PRIMARY KEY NOT NULL,
    number TEXT NOT NULL REFERENCES clients (number) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS domains_number ON domains (number);
COMMIT;
"""

_SELECT_CLIENT = "SELECT c.number, c.email, c.key_hash, c.name, c.locale FROM clients c"
_FIND_SQL: dict[IdentifierKind, str] = {
    IdentifierKind.CLIENT_NUMBER: _SELECT_CLIENT + " WHERE c.number = ?",
    IdentifierKind.EMAIL: _SELECT_CLIENT + " WHERE c.email = ?",
    IdentifierKind.DOMAIN: (
        _SELECT_CLIENT + " JOIN domains d ON d.number = c.number WHERE d.domain = ?"
    ),
}
_REPLACE_SQL = "UPDATE clients SET key_hash = ? WHERE number = ? AND key_hash = ?"
_INSERT_CLIENT_SQL = (
    "INSERT INTO clients (number, email, key_hash, name, locale) VALUES (?, ?, ?, ?, ?)"
)
_INSERT_DOMAIN_SQL = "INSERT INTO domains (domain, number) VALUES (?, ?)"


class SQLiteDirectory:
    """A :class:`~credrecovery.ClientDirectory` stored in a SQLite file.

    ``path`` must name a file: ``":memory:"`` is refused because every thread
    opens its own connection, and each would see a different empty database.
    ``timeout`` is how many seconds a call waits for a lock held by another
    connection before it fails with :class:`DirectoryError`.
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
        with self._connect("create its schema") as conn:
            # WAL lets readers go on while a writer holds the lock; the mode is
            # stored in the file, so setting it once here is enough.
            conn.execute("PRAGMA journal_mode = WAL")
            conn.executescript(_SCHEMA)

    def __repr__(self) -> str:
        return f"SQLiteDirectory({self._path!r})"

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close every thread's connection and refuse any further call."""
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
    ) -> Client:
        """Add a client, given exactly one of ``key`` or an imported ``key_hash``.

        Values are normalized as the service will look them up. The client and
        its domains are written in one transaction. Raises :class:`ValueError`
        when the number, email or a domain is taken.
        """
        record = ClientRecord.build(
            number, email, key=key, key_hash=key_hash, domains=domains,
            name=name, locale=locale, crypt_context=self._crypt_context,
        )
        client = record.client
        with self._connect("add a client") as conn, conn:
            # Taking the write lock first makes the checks below race-free.
            conn.execute("BEGIN IMMEDIATE")
            if _exists(conn, "SELECT 1 FROM clients WHERE number = ?", client.number):
                raise ValueError("a client with this number already exists")
            if _exists(conn, "SELECT 1 FROM clients WHERE email = ?", client.email):
                raise ValueError("a client with this primary email already exists")
            if any(_exists(conn, "SELECT 1 FROM domains WHERE domain = ?", domain)
                   for domain in record.domains):
                raise ValueError("one of these domains belongs to another client")
            conn.execute(
                _INSERT_CLIENT_SQL,
                (client.number, client.email, client.key_hash, client.name, client.locale),
            )
            conn.executemany(
                _INSERT_DOMAIN_SQL, ((domain, client.number) for domain in record.domains)
            )
        return client

    def bulk_add(self, records: Iterable[tuple[Client, Sequence[str]]]) -> int:
        """Insert many clients and their domains in one transaction; return the count.

        For imports and benchmarks: values must already be normalized and
        hashed, and nothing is checked beyond the database's constraints.
        Raises :class:`ValueError` on a duplicate and :class:`DirectoryError`
        on any other database error, having inserted nothing.
        """
        clients: list[tuple[str, str, str, str, str | None]] = []
        domains: list[tuple[str, str]] = []
        for client, client_domains in records:
            clients.append((client.number, client.email, client.key_hash, client.name,
                            client.locale))
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

        ``value`` must already be normalized for ``kind``. Raises
        :class:`DirectoryError` when the database fails.
        """
        sql = _FIND_SQL[parse_kind(kind)]
        with self._connect("look up a client") as conn:
            row = conn.execute(sql, (value,)).fetchone()
        return None if row is None else Client(*row)

    def replace_key_hash(self, number: str, current: str, new: str) -> bool:
        """Store ``new`` as the key hash of client ``number`` if it is still ``current``.

        One conditional ``UPDATE``: atomic across threads and processes.
        Returns whether the hash was replaced. Raises :class:`DirectoryError`
        when the database fails, having written nothing.
        """
        with self._connect("replace a key hash") as conn:
            cursor = conn.execute(_REPLACE_SQL, (new, number, current))
            return cursor.rowcount == 1

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
                raise DirectoryError("the client directory is closed")
            return conn
        with self._lock:
            if self._closed:
                raise DirectoryError("the client directory is closed")
            # check_same_thread is off only so that close() may close it; the
            # connection is otherwise used by its own thread alone.
            conn = sqlite3.connect(
                self._path, timeout=self._timeout, isolation_level=None,
                check_same_thread=False,
            )
            self._connections.append(conn)
        conn.execute("PRAGMA foreign_keys = ON")
        self._local.conn, self._local.pid = conn, os.getpid()
        return conn


def _exists(conn: sqlite3.Connection, sql: str, value: str) -> bool:
    return conn.execute(sql, (value,)).fetchone() is not None
