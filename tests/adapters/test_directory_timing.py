"""The timing contract of :mod:`credrecovery.testing`, run on every shipped directory.

A miss must cost what a hit costs, and an address that up to
MAX_CLIENTS_PER_MAIL clients share what a miss costs: the in-memory
directory, SQLite, SQLAlchemy on a SQLite file and on PostgreSQL, and the
asyncio adapters. A directory that reads a row on a hit alone fails it.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from credrecovery import Client, IdentifierKind, cheap_context
from credrecovery.async_sqlalchemy import AsyncSQLAlchemyDirectory
from credrecovery.async_sqlite import AsyncSQLiteDirectory
from credrecovery.memory import MemoryDirectory
from credrecovery.sqlalchemy import SQLAlchemyDirectory
from credrecovery.sqlite import SQLiteDirectory
from credrecovery.testing import (
    AsyncDirectoryTimingContract,
    DirectoryTimingContract,
    DirectoryUnderTest,
    ks_2samp_pvalue,
)
from helpers import pg
from helpers.pg import DisposesItsEngine, async_url

pytestmark = pytest.mark.slow
CONTEXT = cheap_context()


class TestMemoryDirectoryTiming(DirectoryTimingContract):
    @pytest.fixture
    def directory(self) -> MemoryDirectory:
        return MemoryDirectory(crypt_context=CONTEXT)


class TestSQLiteDirectoryTiming(DirectoryTimingContract):
    @pytest.fixture
    def directory(self, tmp_path: Path) -> Iterator[SQLiteDirectory]:
        with SQLiteDirectory(tmp_path / "clients.sqlite3", crypt_context=CONTEXT) as directory:
            yield directory


class TestSQLAlchemyOnSQLiteTiming(DirectoryTimingContract):
    # Fewer calls than a host's default, for a short suite; a read on one side still
    # shows: on SQLite and on PostgreSQL it doubles the median, far past what 100 resolve.
    timing_samples = 100

    @pytest.fixture
    def directory(self, tmp_path: Path) -> Iterator[SQLAlchemyDirectory]:
        directory = SQLAlchemyDirectory(
            f"sqlite:///{tmp_path / 'clients.sqlite3'}", crypt_context=CONTEXT, create_schema=True
        )
        try:
            yield directory
        finally:
            directory.dispose()


@pytest.mark.postgres
class TestSQLAlchemyOnPostgreSQLTiming(DirectoryTimingContract):
    timing_samples = 100

    @pytest.fixture
    def directory(self) -> Iterator[SQLAlchemyDirectory]:
        with pg.fresh_schema() as schema:
            yield SQLAlchemyDirectory(schema.engine, crypt_context=CONTEXT, create_schema=True)


class TestAsyncSQLiteDirectoryTiming(AsyncDirectoryTimingContract):
    @pytest.fixture
    def directory(self, tmp_path: Path) -> AsyncSQLiteDirectory:
        return AsyncSQLiteDirectory(tmp_path / "clients.sqlite3", crypt_context=CONTEXT)


@pytest.mark.postgres
class TestAsyncSQLAlchemyOnPostgreSQLTiming(DisposesItsEngine, AsyncDirectoryTimingContract):
    timing_samples = 100

    @pytest.fixture
    def directory(self) -> Iterator[AsyncSQLAlchemyDirectory]:
        with pg.fresh_schema() as schema:
            url, connect_args = async_url(schema, "asyncpg")
            engine = create_async_engine(url, hide_parameters=True, connect_args=connect_args)
            yield AsyncSQLAlchemyDirectory(engine, crypt_context=CONTEXT)

    async def prepare_directory(self, directory: AsyncSQLAlchemyDirectory) -> None:
        await directory.create_schema()


class RereadsOnAHit:
    """A host directory that reads the client's row again when it found one, and only then."""

    def __init__(self, inner: SQLiteDirectory) -> None:
        self.inner = inner

    def add_client(self, *args: Any, **kwargs: Any) -> Client:
        return self.inner.add_client(*args, **kwargs)

    def find(self, kind: IdentifierKind, value: str) -> Client | None:
        found = self.inner.find(kind, value)
        if found is not None:
            found = self.inner.find(IdentifierKind.CLIENT_NUMBER, found.number)
        return found

    def replace_key_hash(self, number: str, current: str, new: str) -> bool:
        return self.inner.replace_key_hash(number, current, new)


def test_a_directory_that_reads_a_row_on_a_hit_alone_fails(tmp_path: Path) -> None:
    """The timing contract fails, with medians and p-values, a directory whose hit reads more."""
    with SQLiteDirectory(tmp_path / "clients.sqlite3", crypt_context=CONTEXT) as inner:
        leaky = RereadsOnAHit(inner)
        contract = DirectoryTimingContract()
        subject = DirectoryUnderTest(
            leaky,  # type: ignore[arg-type]
            lambda *args, **kwargs: contract.add_client(leaky, *args, **kwargs),
            lambda: None,
            shares_addresses=False,
        )
        with pytest.raises(pytest.fail.Exception) as failed:
            contract.test_a_miss_costs_what_a_hit_costs(subject)
    message = str(failed.value)
    assert "find by client_number: median" in message
    assert "KS p = " in message and "attempt 3" in message


def test_ks_p_value_matches_scipy() -> None:
    """The contract's KS p-value agrees with SciPy's asymptotic two-sample test."""
    stats = pytest.importorskip("scipy.stats")
    rng = random.Random(7)
    for shift in (0.0, 0.05, 0.1, 0.3):
        first = [rng.gauss(0, 1) for _ in range(800)]
        second = [rng.gauss(shift, 1) for _ in range(1000)]
        expected = stats.ks_2samp(first, second, method="asymp").pvalue
        assert ks_2samp_pvalue(first, second) == pytest.approx(expected, rel=0.1, abs=1e-3)
    assert ks_2samp_pvalue([1, 2, 3] * 100, [1, 2, 3] * 100) == 1.0
    with pytest.raises(ValueError):
        ks_2samp_pvalue([], [1.0])
