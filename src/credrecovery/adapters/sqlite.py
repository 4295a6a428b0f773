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
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Self

from passlib.context import CryptContext

from .._records import ClientRecord
from ..exceptions import DirectoryError
from ..identifiers import IdentifierKind, parse_kind
from ..models import Client

__all__ = ["SQLiteDirectory"]

# The schema a new file gets, at _SCHEMA_VERSION. Several clients may share a
# primary address; the index on (email, number) returns them in number order.
_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS clients (
    number   TEXT PRIMARY KEY NOT NULL,
    email    TEXT NOT NULL,
    key_hash TEXT NOT NULL,
    name     TEXT NOT NULL DEFAULT '',
    locale   TEXT,
    must_change INTEGER NOT NULL DEFAULT 0
)""",
    "CREATE INDEX IF NOT EXISTS clients_email ON clients (email, number)",
    """CREATE TABLE IF NOT EXISTS domains (
    domain TEXT PRIMARY KEY NOT NULL,
    number TEXT NOT NULL REFERENCES clients (number) ON DELETE CASCADE
)""",
    "CREATE INDEX IF NOT EXISTS domains_number ON domains (number)",
)

# A lookup reads as many client rows whether or not anything matched: one for
# a number or a domain, ?2 (the limit) for an email. They are the rows that
# follow the value in the index that serves the lookup, a hit's own first,
# wrapping round to the first rows when too few follow. Rows that did not match are
# dropped. A hit and a miss then take the same steps through SQLite, touch as
# much memory and decode as many values; a hit alone reading a row shows in
# its timing, all the more on a busy server whose caches are cold. The sixth
# column tells a match from a stand-in. The last two, the flag and the row's
# domains (read through the domains_number index), are read for a stand-in
# too. Numbers and domains are primary keys, so only an email can match
# several rows. A compound SELECT runs its parts in order, so the outer LIMIT
# reads the wrapped part only when too few addresses follow.
_FIND_SQL: dict[IdentifierKind, str] = {
    IdentifierKind.CLIENT_NUMBER: (
        "SELECT * FROM (SELECT number, email, key_hash, name, locale, number = ?1, must_change,"
        " (SELECT group_concat(domain, ',') FROM domains WHERE domains.number = clients.number)"
        " FROM clients WHERE number >= ?1 ORDER BY number LIMIT 1)"
        " UNION ALL"
        " SELECT * FROM (SELECT number, email, key_hash, name, locale, 0, must_change,"
        " (SELECT group_concat(domain, ',') FROM domains WHERE domains.number = clients.number)"
        " FROM clients WHERE number < ?1 ORDER BY number LIMIT 1)"
        " LIMIT min(?2, 1)"
    ),
    IdentifierKind.EMAIL: (
        "SELECT * FROM (SELECT number, email, key_hash, name, locale, email = ?1, must_change,"
        " (SELECT group_concat(domain, ',') FROM domains WHERE domains.number = clients.number)"
        " FROM clients WHERE email >= ?1 ORDER BY email, number LIMIT ?2)"
        " UNION ALL"
        " SELECT * FROM (SELECT number, email, key_hash, name, locale, 0, must_change,"
        " (SELECT group_concat(domain, ',') FROM domains WHERE domains.number = clients.number)"
        " FROM clients WHERE email < ?1 ORDER BY email, number LIMIT ?2)"
        " LIMIT ?2"
    ),
    IdentifierKind.DOMAIN: (
        "SELECT * FROM (SELECT c.number, c.email, c.key_hash, c.name, c.locale, d.domain = ?1,"
        " c.must_change, (SELECT group_concat(domain, ',') FROM domains"
        " WHERE domains.number = c.number)"
        " FROM domains AS d JOIN clients AS c ON c.number = d.number"
        " WHERE d.domain >= ?1 ORDER BY d.domain LIMIT 1)"
        " UNION ALL"
        " SELECT * FROM (SELECT c.number, c.email, c.key_hash, c.name, c.locale, 0,"
        " c.must_change, (SELECT group_concat(domain, ',') FROM domains"
        " WHERE domains.number = c.number)"
        " FROM domains AS d JOIN clients AS c ON c.number = d.number"
        " WHERE d.domain < ?1 ORDER BY d.domain LIMIT 1)"
        " LIMIT min(?2, 1)"
    ),
}
_REPLACE_SQL = "UPDATE clients SET key_hash = ? WHERE number = ? AND key_hash = ?"
_INSERT_CLIENT_SQL = (
    "INSERT INTO clients (number, email, key_hash, name, locale, must_change)"
    " VALUES (?, ?, ?, ?, ?, ?)"
)
_MUST_CHANGE_SQL = "UPDATE clients SET must_change = ? WHERE number = ?"
_INSERT_DOMAIN_SQL = "INSERT INTO domains (domain, number) VALUES (?, ?)"


def _migrate_to_1(conn: sqlite3.Connection) -> None:
    """Version 0 to 1: a primary address is no longer unique, and it is indexed.

    SQLite cannot drop a constraint, so ``clients`` is rebuilt as its
    documentation prescribes: create the new table, copy, drop, rename, then
    recreate the old table's indexes and triggers. The caller holds the write
    lock with foreign keys off, so dropping the old table leaves ``domains``
    as it is.
    """
    columns = {row[1] for row in conn.execute("PRAGMA table_info(clients)")}
    if columns != {"number", "email", "key_hash", "name", "locale"}:
        raise DirectoryError(
            "the clients table has other columns than the directory's; migrate it by hand"
        )
    extras = [row[0] for row in conn.execute(
        "SELECT sql FROM sqlite_master"
        " WHERE tbl_name = 'clients' AND type IN ('index', 'trigger') AND sql IS NOT NULL"
    )]
    # Spelled out rather than taken from _SCHEMA: later versions change that.
    conn.execute(
        """CREATE TABLE clients_new (
    number   TEXT PRIMARY KEY NOT NULL,
    email    TEXT NOT NULL,
    key_hash TEXT NOT NULL,
    name     TEXT NOT NULL DEFAULT '',
    locale   TEXT
)"""
    )
    conn.execute(
        "INSERT INTO clients_new (number, email, key_hash, name, locale)"
        " SELECT number, email, key_hash, name, locale FROM clients"
    )
    conn.execute("DROP TABLE clients")
    conn.execute("ALTER TABLE clients_new RENAME TO clients")
    for sql in extras:
        conn.execute(sql)
    conn.execute("CREATE INDEX IF NOT EXISTS clients_email ON clients (email, number)")


def _migrate_to_2(conn: sqlite3.Connection) -> None:
    """Version 1 to 2: ``clients.must_change``, 0 for every client already there."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(clients)")}
    if "must_change" in columns:
        raise DirectoryError(
            "the clients table already has a must_change column; migrate it by hand"
        )
    # Adding a column with a constant default rewrites no row.
    conn.execute("ALTER TABLE clients ADD COLUMN must_change INTEGER NOT NULL DEFAULT 0")


# _MIGRATIONS[n] takes a file from version n to n + 1: a change of schema is
# one more step here, with _SCHEMA changed to match its outcome.
_MIGRATIONS: tuple[Callable[[sqlite3.Connection], None], ...] = (_migrate_to_1, _migrate_to_2)
_SCHEMA_VERSION = len(_MIGRATIONS)


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
    their domains, sorted, and with the flag :meth:`set_must_change` keeps.
    Text that is not valid UTF-8 reads back with its bad bytes as lone
    surrogates (``surrogateescape``) rather than failing the lookup, so that
    the service can set the record aside as unusable.
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
        its domains are written in one transaction. The primary address may be
        another client's too. Raises :class:`ValueError` when the number or a
        domain is taken.
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
            if any(_exists(conn, "SELECT 1 FROM domains WHERE domain = ?", domain)
                   for domain in record.domains):
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
        Each client's ``must_change`` is stored; its domains are the pair's
        second item, not ``Client.domains``.
        Raises :class:`ValueError` on a duplicate and :class:`DirectoryError`
        on any other database error, having inserted nothing.
        """
        clients: list[tuple[str, str, str, str, str | None, int]] = []
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


def _find_sql(kind: IdentifierKind | str, limit: int) -> str:
    """The lookup statement for ``kind``; raises :class:`ValueError` for a ``limit`` below 1."""
    sql = _FIND_SQL[parse_kind(kind)]
    if limit < 1:
        raise ValueError("limit must be at least 1")
    return sql


def _matched_clients(rows: Iterable[Sequence[object]]) -> list[Client]:
    """The clients of a _FIND_SQL result that matched; a miss's stand-in row is dropped."""
    found = []
    for row in rows:
        # Built for a hit and a miss alike, so that both do the same work.
        number, email, key_hash, name, locale = row[:5]
        client = Client(number, email, key_hash, name, locale,  # type: ignore[arg-type]
                        domains=_split_domains(row[7]), must_change=bool(row[6]))
        if row[5]:
            found.append(client)
    return found


def _split_domains(joined: object) -> tuple[str, ...]:
    """The domains a lookup's group_concat joined, sorted as ClientRecord sorts them."""
    # Normalized domains hold no comma; SQLite joins them in no defined order.
    return tuple(sorted(joined.split(","))) if isinstance(joined, str) and joined else ()


def _client_values(client: Client) -> tuple[str, str, str, str, str | None, int]:
    """The parameters of _INSERT_CLIENT_SQL for ``client``."""
    return (client.number, client.email, client.key_hash, client.name, client.locale,
            int(client.must_change))


def _prepare_file(conn: sqlite3.Connection) -> None:
    """Switch a file to WAL and bring its schema to _SCHEMA_VERSION, on a fresh connection."""
    # WAL lets readers go on while a writer holds the lock; the mode is stored
    # in the file, so setting it once, when the directory opens it, is enough.
    conn.execute("PRAGMA journal_mode = WAL")
    _prepare_schema(conn)


def _prepare_path(path: str, timeout: float) -> None:
    """Create ``path`` (mode 0600) if missing and prepare it, on a connection of its own.

    Raises :class:`DirectoryError` worded as :class:`SQLiteDirectory` words it.
    """
    _create_private(path)
    try:
        conn = sqlite3.connect(path, timeout=timeout, isolation_level=None)
    except sqlite3.Error as exc:
        raise DirectoryError("could not open the client directory to prepare its schema") from exc
    try:
        _prepare_file(conn)
    except sqlite3.Error as exc:
        raise DirectoryError("the client directory failed to prepare its schema") from exc
    finally:
        conn.close()


def _exists(conn: sqlite3.Connection, sql: str, value: str) -> bool:
    return conn.execute(sql, (value,)).fetchone() is not None


def _decode_text(data: bytes) -> str:
    # A strict decode would fail the lookup on a hit only, telling hits from misses.
    return data.decode("utf-8", "surrogateescape")


def _create_private(path: str) -> None:
    """Create ``path`` with mode 0600 unless it exists; an existing file is left alone."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    except OSError as exc:
        raise DirectoryError("could not create the client directory file") from exc
    os.close(fd)


def _user_version(conn: sqlite3.Connection) -> int:
    version: int = conn.execute("PRAGMA user_version").fetchone()[0]
    return version


def _check_version(version: int) -> None:
    if not 0 <= version <= _SCHEMA_VERSION:
        raise DirectoryError(
            f"the client directory file has schema version {version}, but this version"
            f" of credrecovery knows versions up to {_SCHEMA_VERSION}"
        )


def _foreign_key_violations(conn: sqlite3.Connection) -> int:
    return len(conn.execute("PRAGMA foreign_key_check").fetchall())


def _upgrade(conn: sqlite3.Connection, version: int) -> None:
    """Create the schema in a new file, or migrate one at ``version``; under the write lock."""
    new_file = version == 0 and not _exists(
        conn, "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", "clients"
    )
    if new_file:
        for statement in _SCHEMA:
            conn.execute(statement)
        return
    violations = _foreign_key_violations(conn)
    for migrate in _MIGRATIONS[version:]:
        migrate(conn)
    if _foreign_key_violations(conn) > violations:
        raise DirectoryError("migrating the client directory would break its domains")


def _prepare_schema(conn: sqlite3.Connection) -> None:
    """Bring the file to _SCHEMA_VERSION: create the schema, or run the migrations due.

    Concurrent openers are serialized by the write lock, and each reads the
    version again once it holds it, so a file is migrated once.
    """
    version = _user_version(conn)
    _check_version(version)
    if version == _SCHEMA_VERSION:
        return
    # A no-op inside a transaction, so switched before it: with foreign keys
    # on, dropping the old clients table would delete every domain.
    conn.execute("PRAGMA foreign_keys = OFF")
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = _user_version(conn)
            _check_version(version)
            if version < _SCHEMA_VERSION:
                _upgrade(conn, version)
                conn.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.rollback()
            raise
    finally:
        conn.execute("PRAGMA foreign_keys = ON")
