"""The SQLite directories' file format, shared by the sync and asyncio directories.

The schema a new file gets, its migrations from earlier versions, the
statements both directories run, and how a lookup's rows decode into clients.
The schema's version is kept in ``PRAGMA user_version``; :func:`_prepare_file`
brings a file to the current one, once, under the write lock.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from ..exceptions import DirectoryError
from ..identifiers import IdentifierKind, parse_kind
from ..models import Client

# The schema a new file gets, at _SCHEMA_VERSION. Several clients may share a
# primary address; the index on (email, number) returns them in number order.
_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS clients (
    number   TEXT PRIMARY KEY NOT NULL,
    email    TEXT NOT NULL,
    key_hash TEXT NOT NULL,
    name     TEXT NOT NULL DEFAULT '',
    locale   TEXT,
    must_change INTEGER NOT NULL DEFAULT 0,
    active   INTEGER NOT NULL DEFAULT 1
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
# column tells a match from a stand-in. The last three, the flag, whether the
# account is open and the row's domains (read through the domains_number
# index), are read for a stand-in too. Numbers and domains are primary keys,
# so only an email can match several rows. A compound SELECT runs its parts in
# order, so the outer LIMIT reads the wrapped part only when too few addresses
# follow.
_FIND_SQL: dict[IdentifierKind, str] = {
    IdentifierKind.CLIENT_NUMBER: (
        "SELECT * FROM (SELECT number, email, key_hash, name, locale, number = ?1,"
        " must_change, active,"
        " (SELECT group_concat(domain, ',') FROM domains WHERE domains.number = clients.number)"
        " FROM clients WHERE number >= ?1 ORDER BY number LIMIT 1)"
        " UNION ALL"
        " SELECT * FROM (SELECT number, email, key_hash, name, locale, 0,"
        " must_change, active,"
        " (SELECT group_concat(domain, ',') FROM domains WHERE domains.number = clients.number)"
        " FROM clients WHERE number < ?1 ORDER BY number LIMIT 1)"
        " LIMIT min(?2, 1)"
    ),
    IdentifierKind.EMAIL: (
        "SELECT * FROM (SELECT number, email, key_hash, name, locale, email = ?1,"
        " must_change, active,"
        " (SELECT group_concat(domain, ',') FROM domains WHERE domains.number = clients.number)"
        " FROM clients WHERE email >= ?1 ORDER BY email, number LIMIT ?2)"
        " UNION ALL"
        " SELECT * FROM (SELECT number, email, key_hash, name, locale, 0,"
        " must_change, active,"
        " (SELECT group_concat(domain, ',') FROM domains WHERE domains.number = clients.number)"
        " FROM clients WHERE email < ?1 ORDER BY email, number LIMIT ?2)"
        " LIMIT ?2"
    ),
    IdentifierKind.DOMAIN: (
        "SELECT * FROM (SELECT c.number, c.email, c.key_hash, c.name, c.locale, d.domain = ?1,"
        " c.must_change, c.active, (SELECT group_concat(domain, ',') FROM domains"
        " WHERE domains.number = c.number)"
        " FROM domains AS d JOIN clients AS c ON c.number = d.number"
        " WHERE d.domain >= ?1 ORDER BY d.domain LIMIT 1)"
        " UNION ALL"
        " SELECT * FROM (SELECT c.number, c.email, c.key_hash, c.name, c.locale, 0,"
        " c.must_change, c.active, (SELECT group_concat(domain, ',') FROM domains"
        " WHERE domains.number = c.number)"
        " FROM domains AS d JOIN clients AS c ON c.number = d.number"
        " WHERE d.domain < ?1 ORDER BY d.domain LIMIT 1)"
        " LIMIT min(?2, 1)"
    ),
}
_REPLACE_SQL = "UPDATE clients SET key_hash = ? WHERE number = ? AND key_hash = ?"
_INSERT_CLIENT_SQL = (
    "INSERT INTO clients (number, email, key_hash, name, locale, must_change, active)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_MUST_CHANGE_SQL = "UPDATE clients SET must_change = ? WHERE number = ?"
_ACTIVE_SQL = "UPDATE clients SET active = ? WHERE number = ?"
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
    extras = [
        row[0]
        for row in conn.execute(
            "SELECT sql FROM sqlite_master"
            " WHERE tbl_name = 'clients' AND type IN ('index', 'trigger') AND sql IS NOT NULL"
        )
    ]
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


def _migrate_to_3(conn: sqlite3.Connection) -> None:
    """Version 2 to 3: ``clients.active``, 1 (open) for every client already there."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(clients)")}
    if "active" in columns:
        raise DirectoryError("the clients table already has an active column; migrate it by hand")
    conn.execute("ALTER TABLE clients ADD COLUMN active INTEGER NOT NULL DEFAULT 1")


# _MIGRATIONS[n] takes a file from version n to n + 1: a change of schema is
# one more step here, with _SCHEMA changed to match its outcome.
_MIGRATIONS: tuple[Callable[[sqlite3.Connection], None], ...] = (
    _migrate_to_1,
    _migrate_to_2,
    _migrate_to_3,
)
_SCHEMA_VERSION = len(_MIGRATIONS)


def _find_sql(kind: IdentifierKind | str, limit: int) -> str:
    """The lookup statement for ``kind``; raises :class:`ValueError` for a ``limit`` below 1."""
    sql = _FIND_SQL[parse_kind(kind)]
    if limit < 1:
        raise ValueError("limit must be at least 1")
    return sql


def _matched_clients(rows: Iterable[Sequence[Any]]) -> list[Client]:
    """The clients of a _FIND_SQL result that matched; a miss's stand-in row is dropped."""
    found = []
    for row in rows:
        # Built for a hit and a miss alike, so that both do the same work.
        number, email, key_hash, name, locale = row[:5]
        client = Client(
            number,
            email,
            key_hash,
            name,
            locale,
            domains=_split_domains(row[8]),
            must_change=bool(row[6]),
            active=bool(row[7]),
        )
        if row[5]:
            found.append(client)
    return found


def _split_domains(joined: object) -> tuple[str, ...]:
    """The domains a lookup's group_concat joined, sorted as ClientRecord sorts them."""
    # Normalized domains hold no comma; SQLite joins them in no defined order.
    return tuple(sorted(joined.split(","))) if isinstance(joined, str) and joined else ()


def _client_values(client: Client) -> tuple[str, str, str, str, str | None, int, int]:
    """The parameters of _INSERT_CLIENT_SQL for ``client``."""
    return (
        client.number,
        client.email,
        client.key_hash,
        client.name,
        client.locale,
        int(client.must_change),
        int(bool(client.active)),
    )


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
