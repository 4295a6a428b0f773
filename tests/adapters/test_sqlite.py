"""Tests specific to the SQLite client directory."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import queue
import re
import sqlite3
import stat
import threading
from collections.abc import Iterator
from multiprocessing.synchronize import Event
from pathlib import Path

import pytest
from passlib.context import CryptContext

from credrecovery import sqlite as sqlite_module
from credrecovery.adapters import _sqlite_schema
from credrecovery.exceptions import DirectoryError
from credrecovery.identifiers import IdentifierKind
from credrecovery.keys import cheap_context
from credrecovery.models import Client
from credrecovery.protocols import ClientDirectory
from credrecovery.sqlite import _FIND_SQL, _REPLACE_SQL, SQLiteDirectory

KEY = "Abcdefghjkmnpqrs"
GARBAGE = b"this is not a sqlite database\x00" * 200


@pytest.fixture(scope="module")
def ctx() -> CryptContext:
    return cheap_context()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "clients.sqlite3"


@pytest.fixture
def directory(db_path: Path, ctx: CryptContext) -> Iterator[SQLiteDirectory]:
    with SQLiteDirectory(db_path, crypt_context=ctx) as directory:
        yield directory


def _stored_hash(directory: SQLiteDirectory, number: str) -> str:
    client = directory.find(IdentifierKind.CLIENT_NUMBER, number)
    assert client is not None
    return client.key_hash


def test_is_a_client_directory(directory: SQLiteDirectory) -> None:
    """SQLiteDirectory satisfies the ClientDirectory protocol."""
    assert isinstance(directory, ClientDirectory)


def test_new_file_gets_schema_in_wal_mode(db_path: Path, directory: SQLiteDirectory) -> None:
    """Opening a new file creates both tables and switches the file to WAL."""
    conn = sqlite3.connect(db_path)
    try:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
    finally:
        conn.close()
    assert {"clients", "domains"} <= tables
    assert mode == "wal"


def test_reopening_keeps_data(db_path: Path, ctx: CryptContext) -> None:
    """A second directory on an existing file sees the clients stored before."""
    with SQLiteDirectory(db_path, crypt_context=ctx) as first:
        added = first.add_client("C1", "a@example.com", key=KEY, domains=["example.com"])
    with SQLiteDirectory(db_path, crypt_context=ctx) as second:
        assert second.find(IdentifierKind.CLIENT_NUMBER, "C1") == added
        assert second.find(IdentifierKind.DOMAIN, "example.com") == added


def test_lookups_and_update_use_indexes(db_path: Path, directory: SQLiteDirectory) -> None:
    """Every lookup and the compare-and-set search an index instead of scanning."""
    conn = sqlite3.connect(db_path)
    try:
        statements: list[tuple[str, tuple[str | int, ...]]] = [
            (sql, ("x", 50)) for sql in _FIND_SQL.values()
        ]
        statements.append((_REPLACE_SQL, ("new", "C1", "old")))
        for sql, params in statements:
            details = [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql, params)]
            tables = [d for d in details if re.search(r"\b(clients|domains)\b", d)]
            assert tables, (sql, details)
            assert all(d.startswith("SEARCH") for d in tables), (sql, details)
    finally:
        conn.close()
    assert set(_FIND_SQL) == set(IdentifierKind)


def test_several_domains_resolve_to_one_client(directory: SQLiteDirectory) -> None:
    """Each of a client's domains finds that same client."""
    added = directory.add_client(
        "C1", "a@example.com", key=KEY, domains=["one.example", "two.example", "three.example"]
    )
    for domain in ("one.example", "two.example", "three.example"):
        assert directory.find(IdentifierKind.DOMAIN, domain) == added
    assert directory.find(IdentifierKind.DOMAIN, "four.example") is None


def test_values_are_stored_normalized(directory: SQLiteDirectory) -> None:
    """Email and domains are stored in the normalized form the service looks up."""
    added = directory.add_client(
        " C1 ",
        "Foo@Example.COM",
        key=KEY,
        domains=["MÜNCHEN.de", "Example.ORG."],
        name="Foo GmbH",
        locale="de",
    )
    assert added == Client(
        "C1",
        "foo@example.com",
        added.key_hash,
        "Foo GmbH",
        "de",
        domains=("example.org", "xn--mnchen-3ya.de"),
    )
    assert directory.find(IdentifierKind.EMAIL, "foo@example.com") == added
    assert directory.find(IdentifierKind.DOMAIN, "xn--mnchen-3ya.de") == added
    assert directory.find(IdentifierKind.DOMAIN, "example.org") == added
    assert directory.find(IdentifierKind.CLIENT_NUMBER, "C1") == added
    assert directory.find(IdentifierKind.EMAIL, "Foo@Example.COM") is None


def test_find_unknown_returns_none(directory: SQLiteDirectory) -> None:
    """Lookups that match nothing return None rather than raising."""
    assert directory.find(IdentifierKind.CLIENT_NUMBER, "nobody") is None
    assert directory.find(IdentifierKind.EMAIL, "nobody@example.com") is None
    assert directory.find(IdentifierKind.DOMAIN, "nobody.example") is None


@pytest.mark.parametrize(
    ("number", "email", "domains"),
    [
        ("C1", "b@example.com", ["b.example"]),
        ("C2", "b@example.com", ["b.example", "A.Example"]),
    ],
    ids=["number", "domain"],
)
def test_duplicates_are_refused_without_partial_write(
    directory: SQLiteDirectory, number: str, email: str, domains: list[str]
) -> None:
    """A taken number or domain raises ValueError and stores nothing of the new client."""
    directory.add_client("C1", "a@example.com", key_hash="$h$1", domains=["a.example"])
    with pytest.raises(ValueError, match=r"already exists|belongs to another client"):
        directory.add_client(number, email, key_hash="$h$2", domains=domains)
    assert directory.find(IdentifierKind.DOMAIN, "b.example") is None
    assert directory.find(IdentifierKind.EMAIL, "b@example.com") is None
    assert _stored_hash(directory, "C1") == "$h$1"


@pytest.mark.parametrize(
    ("key", "key_hash"), [(KEY, "$h$1"), (None, None)], ids=["both", "neither"]
)
def test_exactly_one_of_key_and_hash(
    directory: SQLiteDirectory, key: str | None, key_hash: str | None
) -> None:
    """Giving both or neither of key and key_hash raises ValueError."""
    with pytest.raises(ValueError, match="exactly one"):
        directory.add_client("C1", "a@example.com", key=key, key_hash=key_hash)
    assert directory.find(IdentifierKind.CLIENT_NUMBER, "C1") is None


def test_key_is_hashed_with_the_context(directory: SQLiteDirectory, ctx: CryptContext) -> None:
    """A plain key is stored only as a hash made by the configured context."""
    added = directory.add_client("C1", "a@example.com", key=KEY)
    assert added.key_hash != KEY
    assert ctx.verify(KEY, _stored_hash(directory, "C1"))


def test_replace_key_hash_compares_before_setting(directory: SQLiteDirectory) -> None:
    """The hash changes only when the current one matches and the client exists."""
    directory.add_client("C1", "a@example.com", key_hash="$h$1")
    assert directory.replace_key_hash("C1", "$h$wrong", "$h$2") is False
    assert directory.replace_key_hash("C2", "$h$1", "$h$2") is False
    assert _stored_hash(directory, "C1") == "$h$1"
    assert directory.replace_key_hash("C1", "$h$1", "$h$2") is True
    assert _stored_hash(directory, "C1") == "$h$2"


def test_compare_and_set_across_threads(directory: SQLiteDirectory) -> None:
    """Of 8 threads swapping the same current hash, exactly one succeeds."""
    current = directory.add_client("C1", "a@example.com", key=KEY).key_hash
    barrier = threading.Barrier(8)
    results: dict[str, bool] = {}

    def swap(new: str) -> None:
        barrier.wait()
        results[new] = directory.replace_key_hash("C1", current, new)

    threads = [threading.Thread(target=swap, args=(f"$h$new{i}",)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [new for new, won in results.items() if won]
    assert len(results) == 8
    assert len(winners) == 1
    assert _stored_hash(directory, "C1") == winners[0]


def _swap_in_process(
    path: str,
    current: str,
    new: str,
    start: Event,
    results: multiprocessing.Queue[tuple[str, bool]],
) -> None:
    with SQLiteDirectory(path) as directory:
        start.wait(30)
        results.put((new, directory.replace_key_hash("C1", current, new)))


@pytest.mark.slow  # starts processes
def test_compare_and_set_across_processes(db_path: Path, directory: SQLiteDirectory) -> None:
    """Of 4 processes sharing the file and swapping the same hash, exactly one succeeds."""
    current = directory.add_client("C1", "a@example.com", key=KEY).key_hash
    mp = multiprocessing.get_context("spawn")
    start = mp.Event()
    results: multiprocessing.Queue[tuple[str, bool]] = mp.Queue()
    processes = [
        mp.Process(
            target=_swap_in_process,
            args=(str(db_path), current, f"$h$p{i}", start, results),
        )
        for i in range(4)
    ]
    for process in processes:
        process.start()
    start.set()
    try:
        outcomes = [results.get(timeout=60) for _ in processes]
    except queue.Empty:
        pytest.fail("a process did not report")
    finally:
        for process in processes:
            process.join(timeout=60)
        results.close()
        results.join_thread()
    assert all(process.exitcode == 0 for process in processes)
    winners = [new for new, won in outcomes if won]
    assert len(winners) == 1
    assert _stored_hash(directory, "C1") == winners[0]


def test_locked_database_raises_directory_error(db_path: Path, ctx: CryptContext) -> None:
    """A write lock held past the timeout gives DirectoryError, no hash in it, nothing written."""
    with SQLiteDirectory(db_path, crypt_context=ctx, timeout=0.1) as directory:
        current = directory.add_client("C1", "a@example.com", key=KEY).key_hash
        new = ctx.hash("Zyxwvutsrqpnmkjh")
        blocker = sqlite3.connect(db_path, isolation_level=None)
        try:
            blocker.execute("BEGIN EXCLUSIVE")
            with pytest.raises(DirectoryError) as info:
                directory.replace_key_hash("C1", current, new)
            with pytest.raises(DirectoryError):
                directory.add_client("C2", "b@example.com", key_hash="$h$2")
            # WAL: readers are not held up by the writer.
            assert _stored_hash(directory, "C1") == current
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        assert isinstance(info.value.__cause__, sqlite3.OperationalError)
        message = str(info.value)
        assert current not in message
        assert new not in message
        assert "C1" not in message
        assert _stored_hash(directory, "C1") == current
        assert directory.find(IdentifierKind.CLIENT_NUMBER, "C2") is None


def test_file_that_is_not_a_database(db_path: Path) -> None:
    """Opening a file of garbage raises DirectoryError caused by a sqlite3 error."""
    db_path.write_bytes(GARBAGE)
    with pytest.raises(DirectoryError) as info:
        SQLiteDirectory(db_path)
    assert isinstance(info.value.__cause__, sqlite3.DatabaseError)


def test_missing_table_raises_directory_error(db_path: Path, directory: SQLiteDirectory) -> None:
    """A dropped table makes lookups raise DirectoryError instead of sqlite3 errors."""
    conn = sqlite3.connect(db_path)
    try:
        conn.execute("DROP TABLE domains")
        conn.commit()
    finally:
        conn.close()
    with pytest.raises(DirectoryError) as info:
        directory.find(IdentifierKind.DOMAIN, "a.example")
    assert isinstance(info.value.__cause__, sqlite3.OperationalError)


def test_repr_shows_path_only(db_path: Path, directory: SQLiteDirectory) -> None:
    """The repr names the file and never a key hash."""
    added = directory.add_client("C1", "a@example.com", key=KEY)
    assert repr(directory) == f"SQLiteDirectory({str(db_path)!r})"
    assert added.key_hash not in repr(directory)


def test_closed_directory_refuses_calls(db_path: Path) -> None:
    """After close, or leaving the with block, calls raise DirectoryError."""
    with SQLiteDirectory(db_path) as directory:
        pass
    with pytest.raises(DirectoryError, match="closed"):
        directory.find(IdentifierKind.CLIENT_NUMBER, "C1")


def test_in_memory_database_is_refused() -> None:
    """':memory:' is refused since each call opens its own connection."""
    with pytest.raises(ValueError, match="file"):
        SQLiteDirectory(":memory:")


# --- shared addresses, schema versions and migration -----------------------------------------

# The schema as version 0.1 created it, before the schema had a version: the
# primary email was unique. Kept verbatim so that the migration meets real files.
SCHEMA_0 = """
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

VERSION_0_CLIENTS = [
    ("C1", "a@example.com", "$h$1", "Ana", "es"),
    ("C2", "b@example.com", "$h$2", "", None),
]
VERSION_0_DOMAINS = [("a.example", "C1"), ("a-shop.example", "C1"), ("b.example", "C2")]


def make_version_0_file(path: Path) -> None:
    """A file as version 0.1 left it: WAL, its schema, two clients and three domains."""
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.executescript(SCHEMA_0)
        conn.executemany("INSERT INTO clients VALUES (?, ?, ?, ?, ?)", VERSION_0_CLIENTS)
        conn.executemany("INSERT INTO domains VALUES (?, ?)", VERSION_0_DOMAINS)


def schema_facts(path: Path) -> dict[str, object]:
    """What the schema says, independent of how its SQL text is spelled."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        facts: dict[str, object] = {
            "user_version": conn.execute("PRAGMA user_version").fetchone()[0]
        }
        for table in ("clients", "domains"):
            facts[f"{table} columns"] = conn.execute(f"PRAGMA table_info({table})").fetchall()
            facts[f"{table} foreign keys"] = conn.execute(
                f"PRAGMA foreign_key_list({table})"
            ).fetchall()
            indexes = {}
            for _, name, unique, origin, partial in conn.execute(f"PRAGMA index_list({table})"):
                columns = [row[2] for row in conn.execute(f"PRAGMA index_info({name})")]
                indexes[name if origin == "c" else origin] = (unique, partial, columns)
            facts[f"{table} indexes"] = indexes
        return facts


def stored_rows(path: Path) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return (
            conn.execute("SELECT * FROM clients ORDER BY number").fetchall(),
            conn.execute("SELECT * FROM domains ORDER BY domain").fetchall(),
        )


def test_shared_primary_address(directory: SQLiteDirectory) -> None:
    """Two clients may share a primary address; find returns the lower number, find_all both."""
    second = directory.add_client("C2", "A@Example.com", key_hash="$h$2", domains=["b.example"])
    first = directory.add_client("C1", "a@example.com", key_hash="$h$1", domains=["a.example"])
    assert directory.find_all(IdentifierKind.EMAIL, "a@example.com") == [first, second]
    assert directory.find(IdentifierKind.EMAIL, "a@example.com") == first
    assert directory.find_all(IdentifierKind.EMAIL, "a@example.com", limit=1) == [first]


def test_email_lookup_reads_the_index_in_number_order(
    db_path: Path, directory: SQLiteDirectory
) -> None:
    """The email lookup searches the email index; what it finds comes in number order."""
    with contextlib.closing(sqlite3.connect(db_path)) as conn:
        plan = [
            row[3]
            for row in conn.execute(
                "EXPLAIN QUERY PLAN " + _FIND_SQL[IdentifierKind.EMAIL], ("x", 50)
            )
        ]
    assert any("USING INDEX clients_email (email>?)" in step for step in plan), plan
    assert not any("TEMP B-TREE" in step for step in plan), plan
    for number in ("C3", "C1", "C2"):
        directory.add_client(number, "shared@example.com", key=KEY)
    found = directory.find_all(IdentifierKind.EMAIL, "shared@example.com")
    assert [c.number for c in found] == ["C1", "C2", "C3"]


def test_new_file_is_at_the_current_schema_version(
    db_path: Path, directory: SQLiteDirectory
) -> None:
    """A new file records the schema version it was created at."""
    assert schema_facts(db_path)["user_version"] == sqlite_module._SCHEMA_VERSION >= 1


def test_version_0_file_is_migrated_on_open(tmp_path: Path, ctx: CryptContext) -> None:
    """A file of the unique-email schema is migrated: data intact, shared address allowed."""
    old = tmp_path / "old.sqlite3"
    make_version_0_file(old)
    before = stored_rows(old)
    with SQLiteDirectory(old, crypt_context=ctx) as directory:
        clients, domains = stored_rows(old)
        # The rows as they were, each with must_change 0 and active 1 after them.
        assert ([row[:-2] for row in clients], domains) == before
        assert [row[-2:] for row in clients] == [(0, 1), (0, 1)]
        ana = directory.find(IdentifierKind.DOMAIN, "a-shop.example")
        assert ana == Client(
            "C1", "a@example.com", "$h$1", "Ana", "es", domains=("a-shop.example", "a.example")
        )
        shared = directory.add_client("C3", "a@example.com", key_hash="$h$3", domains=["c.example"])
        assert directory.find_all(IdentifierKind.EMAIL, "a@example.com") == [ana, shared]
        with pytest.raises(ValueError, match="domain"):
            directory.add_client("C4", "d@example.com", key_hash="$h$4", domains=["b.example"])
    # The rebuilt table still cascades to the domains, which survived the rebuild.
    with contextlib.closing(sqlite3.connect(old, isolation_level=None)) as conn:
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("DELETE FROM clients WHERE number = 'C2'")
        assert conn.execute("SELECT count(*) FROM domains").fetchone()[0] == 3
    fresh = tmp_path / "fresh.sqlite3"
    SQLiteDirectory(fresh).close()
    assert schema_facts(old) == schema_facts(fresh)


def test_migration_keeps_the_hosts_indexes_on_clients(tmp_path: Path) -> None:
    """An index a host added to the old clients table is there again after the rebuild."""
    old = tmp_path / "old.sqlite3"
    make_version_0_file(old)
    with contextlib.closing(sqlite3.connect(old)) as conn:
        conn.execute("CREATE INDEX clients_by_name ON clients (name)")
    SQLiteDirectory(old).close()
    indexes = schema_facts(old)["clients indexes"]
    assert isinstance(indexes, dict)
    assert indexes["clients_by_name"] == (0, 0, ["name"])


def test_concurrent_openers_migrate_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Openers that all saw version 0 before the lock was free migrate the file once only."""
    old = tmp_path / "old.sqlite3"
    make_version_0_file(old)
    openers = 4
    read_unlocked = threading.Barrier(openers + 1)
    reads: dict[int, int] = {}
    real_user_version = _sqlite_schema._user_version

    def user_version(conn: sqlite3.Connection) -> int:
        version = real_user_version(conn)
        thread = threading.get_ident()
        reads[thread] = reads.get(thread, 0) + 1
        if reads[thread] == 1:
            # Every opener has read the old version before any may take the lock.
            read_unlocked.wait(10)
        return version

    monkeypatch.setattr(_sqlite_schema, "_user_version", user_version)
    with contextlib.closing(sqlite3.connect(old, isolation_level=None)) as conn:
        schema_before = conn.execute("PRAGMA schema_version").fetchone()[0]
    errors: list[BaseException] = []

    def open_it() -> None:
        try:
            SQLiteDirectory(old, timeout=20).close()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_it) for _ in range(openers)]
    for thread in threads:
        thread.start()
    read_unlocked.wait(10)
    for thread in threads:
        thread.join(30)
    assert errors == []
    # The schema cookie grows with each DDL statement: compare with one migration alone.
    single = tmp_path / "single.sqlite3"
    make_version_0_file(single)
    monkeypatch.setattr(_sqlite_schema, "_user_version", real_user_version)
    SQLiteDirectory(single).close()
    with (
        contextlib.closing(sqlite3.connect(old)) as conn,
        contextlib.closing(sqlite3.connect(single)) as one,
    ):
        migrated = conn.execute("PRAGMA schema_version").fetchone()[0] - schema_before
        once = one.execute("PRAGMA schema_version").fetchone()[0] - schema_before
    assert migrated == once > 0
    assert stored_rows(old) == stored_rows(single)
    assert len(reads) == openers


def test_file_from_a_later_version_is_refused(db_path: Path) -> None:
    """A file whose schema version is newer than the code's is refused, naming both versions."""
    with SQLiteDirectory(db_path) as directory:
        directory.add_client("C1", "a@example.com", key_hash="$h$1")
    later = sqlite_module._SCHEMA_VERSION + 1
    with contextlib.closing(sqlite3.connect(db_path)) as conn:
        conn.execute(f"PRAGMA user_version = {later}")
    with pytest.raises(DirectoryError) as info:
        SQLiteDirectory(db_path)
    assert f"version {later}" in str(info.value)
    assert f"up to {sqlite_module._SCHEMA_VERSION}" in str(info.value)
    assert schema_facts(db_path)["user_version"] == later
    assert stored_rows(db_path)[0][0][0] == "C1"


# --- file modes and undecodable text -------------------------------------------------------


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
def test_created_file_and_its_wal_and_shm_are_private(db_path: Path) -> None:
    """A file the directory creates is 0600, and so are its -wal and -shm files."""
    old_umask = os.umask(0o022)
    try:
        with SQLiteDirectory(db_path) as directory:
            directory.add_client("C1", "a@example.com", key_hash="$h$1")
            files = [db_path, Path(f"{db_path}-wal"), Path(f"{db_path}-shm")]
            assert {path.name: mode(path) for path in files} == {path.name: 0o600 for path in files}
    finally:
        os.umask(old_umask)


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
def test_existing_file_keeps_its_mode(db_path: Path) -> None:
    """An existing file's mode is left as the host set it."""
    db_path.touch()
    db_path.chmod(0o640)
    with SQLiteDirectory(db_path) as directory:
        directory.add_client("C1", "a@example.com", key_hash="$h$1")
        assert mode(db_path) == 0o640
        assert mode(Path(f"{db_path}-wal")) == 0o640


def test_file_that_cannot_be_created(tmp_path: Path) -> None:
    """A path in a missing folder raises DirectoryError caused by the OS error."""
    with pytest.raises(DirectoryError) as info:
        SQLiteDirectory(tmp_path / "missing" / "clients.sqlite3")
    assert isinstance(info.value.__cause__, OSError)


def test_a_miss_steps_through_sqlite_as_a_hit_does(directory: SQLiteDirectory) -> None:
    """A hit and a miss read as many client rows, a miss the ones that follow it, then dropped."""
    for n in range(1, 6):
        directory.add_client(f"C{n}", f"c{n}@example.com", key=KEY, domains=[f"c{n}.example"])
    conn = directory._thread_connection()
    for kind, hit, miss in [
        (IdentifierKind.CLIENT_NUMBER, "C1", "C9"),
        (IdentifierKind.DOMAIN, "c1.example", "c9.example"),
    ]:
        [matched] = conn.execute(_FIND_SQL[kind], (hit, 50)).fetchall()
        assert matched[:2] == ("C1", "c1@example.com") and matched[5]
        # The stand-in is the row the missing value would sort before, or the first.
        for value, stand_in in [
            (miss, "C1"),
            (hit.replace("1", "0"), "C1"),
            (
                hit.replace("1", "2").replace("C2", "C15")
                if kind is IdentifierKind.CLIENT_NUMBER
                else "c15.example",
                "C2",
            ),
        ]:
            [row] = conn.execute(_FIND_SQL[kind], (value, 50)).fetchall()
            assert row[0] == stand_in and not row[5], (kind, value)
        assert directory.find_all(kind, miss) == []
    # An email reads ``limit`` rows, wrapping round past the last address.
    for value, matches in [
        ("c2@example.com", ["C2"]),
        ("c0@example.com", []),
        ("c9@example.com", []),
        ("c5@example.com", ["C5"]),
    ]:
        rows = conn.execute(_FIND_SQL[IdentifierKind.EMAIL], (value, 3)).fetchall()
        assert len(rows) == 3, value
        assert [row[0] for row in rows if row[5]] == matches, value
        assert [c.number for c in directory.find_all(IdentifierKind.EMAIL, value)] == matches


def test_invalid_utf8_reads_back_with_surrogates(db_path: Path, directory: SQLiteDirectory) -> None:
    """A row holding bytes that are not UTF-8 is returned, escaped, by find and find_all."""
    directory.add_client("C1", "a@example.com", key_hash="$h$1", domains=["a.example"])
    with contextlib.closing(sqlite3.connect(db_path, isolation_level=None)) as conn:
        conn.execute(
            "UPDATE clients SET name = CAST(x'416effe1' AS TEXT),"
            " key_hash = CAST(x'2468ff' AS TEXT) WHERE number = 'C1'"
        )
    broken = Client("C1", "a@example.com", "$h\udcff", "An\udcff\udce1", domains=("a.example",))
    for kind, value in [(IdentifierKind.CLIENT_NUMBER, "C1"), (IdentifierKind.DOMAIN, "a.example")]:
        assert directory.find(kind, value) == broken, kind
        assert directory.find_all(kind, value) == [broken], kind
    directory.add_client("C2", "a@example.com", key_hash="$h$2")
    both = directory.find_all(IdentifierKind.EMAIL, "a@example.com")
    assert [(c.number, c.key_hash) for c in both] == [("C1", "$h\udcff"), ("C2", "$h$2")]
    assert directory.find(IdentifierKind.EMAIL, "a@example.com") == broken


def test_find_all_refuses_a_limit_below_one(directory: SQLiteDirectory) -> None:
    """A limit below 1 is a ValueError, not an empty answer."""
    with pytest.raises(ValueError, match="limit"):
        directory.find_all(IdentifierKind.EMAIL, "a@example.com", limit=0)
