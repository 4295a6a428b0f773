"""How far is a PostgreSQL ``find()`` from a raw query of the same row?

Seeds 100,000 clients (``COPY``, one hash reused), then times ``find()`` hits
and misses, the three kinds evenly, next to the same SQL text with the same
parameters sent by the bare driver on one autocommit connection, each pair of
calls interleaved in random order:

* sync: ``SQLAlchemyDirectory`` built from a URL (so with the engine the
  directory makes itself) against a ``psycopg.Connection``;
* async: ``AsyncSQLAlchemyDirectory`` from a URL, on asyncpg against an
  ``asyncpg.Connection``, and on psycopg against a ``psycopg.AsyncConnection``.

The raw queries are prepared as the drivers prepare them by default: psycopg
after five executions of one text (``prepare_threshold=5``), asyncpg always
(its statement cache); SQLAlchemy goes through the same drivers with the same
defaults. ``find_all`` rows ask what the service asks: ``limit=11``.

    python benchmarks/directory_find.py [--clients 100000] [--lookups 2000]
        [--postgres-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import random
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import asyncpg
import psycopg
import sqlalchemy as sa
from _common import header, percentile, synthetic_clients, table, us

from credrecovery import IdentifierKind
from credrecovery.async_sqlalchemy import AsyncSQLAlchemyDirectory
from credrecovery.sqlalchemy import SQLAlchemyDirectory, TableMapping

DEFAULT_PG = os.environ.get(
    "CREDRECOVERY_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
SCHEMA = f"credrecovery_bench_find_{os.getpid()}"
TARGET = 2.0
KINDS = list(IdentifierKind)
FIND_ALL_LIMIT = 11
Lookup = tuple[IdentifierKind, str]
Sent = tuple[str, Any]


def value_of(kind: IdentifierKind, n: int) -> str:
    return {
        IdentifierKind.CLIENT_NUMBER: str(n),
        IdentifierKind.EMAIL: f"client{n}@example.com",
        IdentifierKind.DOMAIN: f"client{n}.example.com",
    }[kind]


def lookups(size: int, count: int, *, hit: bool) -> list[Lookup]:
    """``count`` lookups, the kinds in turn; a miss names a number past the last client."""
    rng = random.Random()
    return [
        (KINDS[i % 3], value_of(KINDS[i % 3], rng.randrange(1, size + 1) + (0 if hit else size)))
        for i in range(count)
    ]


def url_for(base: str, driver: str) -> sa.URL:
    return sa.make_url(base).set(drivername=f"postgresql+{driver}")


def in_schema() -> TableMapping:
    """The directory's own tables, in the benchmark's schema (a URL sets no search path)."""
    return dataclasses.replace(SQLAlchemyDirectory("sqlite://").mapping, schema=SCHEMA)


def libpq_dsn(base: str) -> str:
    return sa.make_url(base).set(drivername="postgresql").render_as_string(hide_password=False)


def seed(base: str, size: int) -> None:
    admin = sa.create_engine(base, poolclass=sa.NullPool)
    with admin.begin() as conn:
        conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
        conn.exec_driver_sql(f"CREATE SCHEMA {SCHEMA}")
    seeding = url_for(base, "psycopg").update_query_dict({"options": f"-csearch_path={SCHEMA}"})
    with SQLAlchemyDirectory(seeding, create_schema=True) as directory:
        directory.bulk_add(synthetic_clients(size))
    with admin.begin() as conn:
        conn.exec_driver_sql(f"ANALYZE {SCHEMA}.credrecovery_clients")
        conn.exec_driver_sql(f"ANALYZE {SCHEMA}.credrecovery_domains")
    admin.dispose()


def drop(base: str) -> None:
    admin = sa.create_engine(base, poolclass=sa.NullPool)
    with admin.begin() as conn:
        conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
    admin.dispose()


class Recorder:
    """The statements an engine sends, with their parameters."""

    def __init__(self, engine: sa.Engine) -> None:
        self.sent: list[Sent] = []
        sa.event.listen(engine, "before_cursor_execute", self.record)
        self.engine = engine

    def record(self, _c: Any, _cur: Any, statement: str, parameters: Any, *_: Any) -> None:
        self.sent.append((statement, parameters))

    def stop(self) -> None:
        sa.event.remove(self.engine, "before_cursor_execute", self.record)


def substituted(template: Sent, old: str, new: str) -> Sent:
    """``template``'s statement with every parameter equal to ``old`` set to ``new``."""
    statement, parameters = template
    if isinstance(parameters, dict):
        return statement, {k: new if v == old else v for k, v in parameters.items()}
    return statement, tuple(new if v == old else v for v in parameters)


def templates(sent: list[Sent]) -> dict[IdentifierKind, Sent]:
    """The one statement each kind's lookup sent, the kinds in turn."""
    assert len(sent) == len(KINDS), "one statement per lookup"
    return dict(zip(KINDS, sent, strict=True))


def summary(label: str, rows: dict[str, list[float]], variant: str) -> list[object]:
    raw, found = rows["raw"], rows["find"]
    p50 = percentile(found, 50) / percentile(raw, 50)
    p99 = percentile(found, 99) / percentile(raw, 99)
    verdict = "pass" if p50 <= TARGET and p99 <= TARGET else "FAIL"
    return [
        label,
        variant,
        us(percentile(raw, 50)),
        us(percentile(raw, 99)),
        us(percentile(found, 50)),
        us(percentile(found, 99)),
        f"{p50:.2f}",
        f"{p99:.2f}",
        verdict,
    ]


def pairs(plan: list[Lookup]) -> Iterator[tuple[Lookup, bool]]:
    """Each lookup, with whether the raw query goes first this time."""
    rng = random.Random()
    for lookup in plan:
        yield lookup, rng.random() < 0.5


def variants(directory: Any) -> list[tuple[str, Callable[[IdentifierKind, str], Any]]]:
    """``find``, and ``find_all`` as the service asks it."""
    return [
        ("find", directory.find),
        ("find_all", lambda kind, value: directory.find_all(kind, value, limit=FIND_ALL_LIMIT)),
    ]


def sync_rows(base: str, size: int, count: int) -> list[list[object]]:
    directory = SQLAlchemyDirectory(url_for(base, "psycopg"), mapping=in_schema())
    raw = psycopg.connect(libpq_dsn(base), autocommit=True)
    out: list[list[object]] = []
    try:
        for variant, call in variants(directory):
            recorder = Recorder(directory.engine)
            for kind in KINDS:
                call(kind, value_of(kind, 1))
            recorder.stop()
            sent = templates(recorder.sent)
            for hit in (True, False):
                samples: dict[str, list[float]] = {"raw": [], "find": []}
                plan = lookups(size, 300, hit=hit) + lookups(size, count, hit=hit)
                for i, ((kind, value), raw_first) in enumerate(pairs(plan)):
                    statement, params = substituted(sent[kind], value_of(kind, 1), value)
                    for side in ("raw", "find") if raw_first else ("find", "raw"):
                        started = time.perf_counter()
                        if side == "raw":
                            raw.execute(statement, params).fetchall()
                        else:
                            call(kind, value)
                        if i >= 300:
                            samples[side].append(time.perf_counter() - started)
                label = f"{variant} {'hit' if hit else 'miss'}"
                out.append(summary("sync, psycopg", samples, label))
    finally:
        raw.close()
        directory.close()
    return out


async def async_rows(base: str, size: int, count: int, driver: str) -> list[list[object]]:
    directory = AsyncSQLAlchemyDirectory(url_for(base, driver), mapping=in_schema())
    run_raw: Callable[[str, Any], Awaitable[object]]
    if driver == "asyncpg":
        apg = await asyncpg.connect(libpq_dsn(base))

        async def run_raw(statement: str, params: Any) -> object:
            return await apg.fetch(statement, *params)

        close = apg.close
    else:
        ps = await psycopg.AsyncConnection.connect(libpq_dsn(base), autocommit=True)

        async def run_raw(statement: str, params: Any) -> object:
            return await (await ps.execute(statement, params)).fetchall()

        close = ps.close
    out: list[list[object]] = []
    try:
        for variant, call in variants(directory):
            recorder = Recorder(directory.engine.sync_engine)
            for kind in KINDS:
                await call(kind, value_of(kind, 1))
            recorder.stop()
            sent = templates(recorder.sent)
            for hit in (True, False):
                samples: dict[str, list[float]] = {"raw": [], "find": []}
                plan = lookups(size, 300, hit=hit) + lookups(size, count, hit=hit)
                for i, ((kind, value), raw_first) in enumerate(pairs(plan)):
                    statement, params = substituted(sent[kind], value_of(kind, 1), value)
                    for side in ("raw", "find") if raw_first else ("find", "raw"):
                        started = time.perf_counter()
                        if side == "raw":
                            await run_raw(statement, params)
                        else:
                            await call(kind, value)
                        if i >= 300:
                            samples[side].append(time.perf_counter() - started)
                label = f"{variant} {'hit' if hit else 'miss'}"
                out.append(summary(f"async, {driver}", samples, label))
    finally:
        await close()
        await directory.aclose()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=100_000)
    parser.add_argument("--lookups", type=int, default=2000)
    parser.add_argument("--postgres-url", default=DEFAULT_PG)
    args = parser.parse_args()
    logging.disable(logging.CRITICAL)
    header(f"find() against a raw query of the same row, {args.clients:,} clients")
    started = time.perf_counter()
    seed(args.postgres_url, args.clients)
    print(f"seeded in {time.perf_counter() - started:.1f} s\n")
    try:
        rows = sync_rows(args.postgres_url, args.clients, args.lookups)
        for driver in ("asyncpg", "psycopg"):
            rows += asyncio.run(async_rows(args.postgres_url, args.clients, args.lookups, driver))
    finally:
        drop(args.postgres_url)
    table(
        [
            "directory",
            "call",
            "raw p50",
            "raw p99",
            "directory p50",
            "directory p99",
            "p50 ratio",
            "p99 ratio",
            f"≤ {TARGET}× p50 and p99",
        ],
        rows,
    )
    print(
        f"{args.lookups} lookups per row after 300 of warm-up, the three kinds evenly, each "
        "interleaved with the raw query in random order. Raw: the same SQL text and "
        "parameters on one autocommit driver connection, prepared as the driver prepares "
        "by default (psycopg after five executions, asyncpg always)."
    )


if __name__ == "__main__":
    main()
