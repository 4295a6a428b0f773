"""Does lookup time stay flat as the directory grows?

Measures the p50 and p99 of ``find()`` and of ``request()`` at 1,000, 100,000
and 1,000,000 clients, for SQLite and for PostgreSQL, growing one directory
through the sizes with bulk inserts (hashes made once and reused).

    python benchmarks/directory_scale.py [--sizes 1000,100000,1000000]
        [--backends sqlite,postgresql] [--postgres-url URL]
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import secrets
import tempfile
import time
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import sqlalchemy as sa
from _common import header, median, percentile, synthetic_clients, table, us

from credrecovery import ClientDirectory, IdentifierKind, RecoveryService, cheap_context
from credrecovery.sqlalchemy import SQLAlchemyDirectory
from credrecovery.sqlite import SQLiteDirectory

DEFAULT_PG = os.environ.get(
    "CREDRECOVERY_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
SCHEMA = "credrecovery_bench"


class NullMailer:
    def send(self, message: EmailMessage) -> None:
        pass


@contextlib.contextmanager
def sqlite_directory() -> Iterator[SQLiteDirectory]:
    with tempfile.TemporaryDirectory() as tmp, SQLiteDirectory(Path(tmp) / "c.sqlite3") as d:
        yield d


@contextlib.contextmanager
def postgres_directory(url: str) -> Iterator[SQLAlchemyDirectory]:
    admin = sa.create_engine(url)
    with admin.begin() as conn:
        conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
        conn.execute(sa.text(f"CREATE SCHEMA {SCHEMA}"))
    engine = sa.create_engine(
        url, connect_args={"options": f"-csearch_path={SCHEMA}"}, hide_parameters=True
    )
    directory = SQLAlchemyDirectory(engine, create_schema=True)
    try:
        yield directory
    finally:
        directory.dispose()
        with admin.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
        admin.dispose()


def analyze(directory: ClientDirectory) -> None:
    if isinstance(directory, SQLAlchemyDirectory):
        with directory.engine.begin() as conn:
            conn.execute(sa.text("ANALYZE"))


def lookups(size: int, count: int) -> list[tuple[IdentifierKind, str]]:
    rng = secrets.SystemRandom()
    plan = []
    for i in range(count):
        n = rng.randrange(1, size + 1)
        kind = list(IdentifierKind)[i % 3]
        value = {
            IdentifierKind.DOMAIN: f"client{n}.example.com",
            IdentifierKind.EMAIL: f"client{n}@example.com",
            IdentifierKind.CLIENT_NUMBER: str(n),
        }[kind]
        plan.append((kind, value))
    return plan


def sample(fn: object, plan: list[tuple[IdentifierKind, str]]) -> list[float]:
    samples = []
    for kind, value in plan:
        started = time.perf_counter()
        fn(kind, value)  # type: ignore[operator]
        samples.append(time.perf_counter() - started)
    return samples


def run(
    name: str, directory: ClientDirectory, sizes: list[int], finds: int, requests: int
) -> list[list[object]]:
    service = RecoveryService(
        directory,
        NullMailer(),
        secret_key=secrets.token_urlsafe(32),
        confirm_url="https://panel.example.com/recover/{token}",
        sender="panel@example.com",
        crypt_context=cheap_context(),
        delivery="sync",
        rate_limits=None,
    )
    rows: list[list[object]] = []
    loaded = 0
    first: tuple[float, float] | None = None
    for size in sizes:
        started = time.perf_counter()
        directory.bulk_add(synthetic_clients(size - loaded, start=loaded + 1))  # type: ignore[attr-defined]
        analyze(directory)
        load_time = time.perf_counter() - started
        loaded = size
        sample(directory.find, lookups(size, 300))  # warm-up
        find_s = sample(directory.find, lookups(size, finds))
        request_s = sample(service.request, lookups(size, requests))
        first = first or (median(find_s), median(request_s))
        rows.append(
            [
                name,
                f"{size:,}",
                f"{load_time:.1f} s",
                us(median(find_s)),
                us(percentile(find_s, 99)),
                f"{median(find_s) / first[0]:.2f}",
                us(median(request_s)),
                us(percentile(request_s, 99)),
                f"{median(request_s) / first[1]:.2f}",
            ]
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,100000,1000000")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--postgres-url", default=DEFAULT_PG)
    parser.add_argument("--finds", type=int, default=3000)
    parser.add_argument("--requests", type=int, default=600)
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    logging.disable(logging.CRITICAL)
    header("lookup and request time against directory size")
    rows: list[list[object]] = []
    backends = args.backends.split(",")
    if "sqlite" in backends:
        with sqlite_directory() as d:
            rows += run("SQLite", d, sizes, args.finds, args.requests)
    if "postgresql" in backends:
        with postgres_directory(args.postgres_url) as pg:
            rows += run("PostgreSQL", pg, sizes, args.finds, args.requests)
    table(
        [
            "backend",
            "clients",
            "load (cumulative step)",
            "find p50",
            "find p99",
            "find p50 ÷ smallest",
            "request p50",
            "request p99",
            "request p50 ÷ smallest",
        ],
        rows,
    )
    print(
        "Lookups mix the three kinds evenly. Target: at 1,000,000 clients within 1.5× "
        "of the time at 1,000."
    )


if __name__ == "__main__":
    main()
