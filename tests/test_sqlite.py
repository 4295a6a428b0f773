"""Tests specific to the SQLite client directory."""

from __future__ import annotations

import multiprocessing
import queue
import sqlite3
import threading
from collections.abc import Iterator
from multiprocessing.synchronize import Event
from pathlib import Path

import pytest
from passlib.context import CryptContext

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
        statements: list[tuple[str, tuple[str, ...]]] = [
            (sql, ("x",)) for sql in _FIND_SQL.values()
        ]
        statements.append((_REPLACE_SQL, ("new", "C1", "old")))
        for sql, params in statements:
            details = [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql, params)]
            assert details, sql
            assert not any(d.startswith("SCAN") for d in details), (sql, details)
            assert all(d.startswith("SEARCH") for d in details), (sql, details)
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
        " C1 ", "Foo@Example.COM", key=KEY, domains=["MÜNCHEN.de", "Example.ORG."],
        name="Foo GmbH", locale="de",
    )
    assert added == Client("C1", "foo@example.com", added.key_hash, "Foo GmbH", "de")
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
        ("C2", "A@EXAMPLE.com", ["b.example"]),
        ("C2", "b@example.com", ["b.example", "A.Example"]),
    ],
    ids=["number", "email", "domain"],
)
def test_duplicates_are_refused_without_partial_write(
    directory: SQLiteDirectory, number: str, email: str, domains: list[str]
) -> None:
    """A taken number, email or domain raises ValueError and stores nothing of the new client."""
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
