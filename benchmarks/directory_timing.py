"""Does request() cost the same for a client, nobody, and an address ten clients share?

In process, on each shipped directory: 10,000 clients with an address each,
plus 100 addresses that ten clients share (the most a mail lists), and a
delivery that drops every job, so that only the request path is timed:
normalizing, the limiter, the lookup and the job. Four kinds of call run
interleaved in one random order, N of each: an address one client has, a
missing address sorted right after it, an address ten clients share, and a
missing address sorted right after that one. Each comparison reports the
medians, the gap of medians and a two-sample Kolmogorov-Smirnov p-value. A
miss is compared with a value that sorts next to it, because a lookup reads
the rows that follow its value: what is compared is whether the value exists,
not where it sorts.

    python benchmarks/directory_timing.py [--calls 2000] [--directories memory,sqlite,postgresql]

The PostgreSQL row uses ``CREDRECOVERY_BENCH_POSTGRES_URL`` (default
``postgresql+psycopg://postgres@127.0.0.1:5432/test``), in a schema of its
own that it drops after. Target: a gap below 1 % or a p-value above 0.01.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import random
import secrets
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from _common import header, median, table
from scipy.stats import ks_2samp

from credrecovery import Client, RateLimits, RecoveryService, cheap_context
from credrecovery.memory import MemoryDirectory
from credrecovery.sqlite import SQLiteDirectory

CLIENTS = 10_000
GROUPS = 100
SHARED = 10
FIRST = 100_000
POSTGRES_URL = os.environ.get(
    "CREDRECOVERY_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
SCHEMA = "credrecovery_bench_directory"


class DropDelivery:
    """Takes every job and drops it: the request path alone is timed."""

    def bind(self, composer: Any) -> None:
        pass

    def submit(self, job: Any) -> None:
        pass

    def flush(self, timeout: float | None = None) -> bool:
        return True

    def close(self, timeout: float | None = None) -> None:
        pass


class NullMailer:
    def send(self, message: Any) -> None:
        pass


def population() -> Iterator[tuple[Client, list[str]]]:
    key_hash = cheap_context().hash("benchmark-key")
    for n in range(FIRST, FIRST + CLIENTS):
        yield Client(str(n), f"client{n}@example.com", key_hash), [f"client{n}.example.com"]
    for group in range(GROUPS):
        for member in range(SHARED):
            number = 500_000 + group * SHARED + member
            yield (
                Client(str(number), f"shared{FIRST + group}@example.com", key_hash),
                [f"shop{number}.example.com"],
            )


@contextlib.contextmanager
def directory(name: str, folder: Path) -> Iterator[Any]:
    if name == "memory":
        memory = MemoryDirectory(crypt_context=cheap_context())
        for client, domains in population():
            memory.add_client(
                client.number, client.email, key_hash=client.key_hash, domains=domains
            )
        yield memory
    elif name == "sqlite":
        with SQLiteDirectory(folder / "clients.sqlite3") as sqlite:
            sqlite.bulk_add(population())
            yield sqlite
    else:
        from sqlalchemy import create_engine, text

        from credrecovery.sqlalchemy import SQLAlchemyDirectory

        admin = create_engine(POSTGRES_URL)
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
            conn.execute(text(f"CREATE SCHEMA {SCHEMA}"))
        engine = create_engine(
            POSTGRES_URL,
            hide_parameters=True,
            pool_pre_ping=True,
            execution_options={"schema_translate_map": {None: SCHEMA}},
        )
        try:
            postgres = SQLAlchemyDirectory(engine, create_schema=True)
            postgres.bulk_add(population())
            with engine.begin() as conn:
                conn.execute(text("ANALYZE"))
            yield postgres
        finally:
            engine.dispose()
            with admin.begin() as conn:
                conn.execute(text(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
            admin.dispose()


def measure(service: RecoveryService, calls: int) -> dict[str, list[float]]:
    rng = random.Random()
    kinds = {
        "one client": lambda n: f"client{FIRST + n % CLIENTS}@example.com",
        "missing, among clients": lambda n: f"client{FIRST + n % CLIENTS}@example.net",
        "ten clients": lambda n: f"shared{FIRST + n % GROUPS}@example.com",
        "missing, among shared": lambda n: f"shared{FIRST + n % GROUPS}@example.net",
    }
    plan = [kind for kind in kinds for _ in range(calls)]
    rng.shuffle(plan)
    durations: dict[str, list[float]] = {kind: [] for kind in kinds}
    for position, kind in enumerate(plan):
        value = kinds[kind](rng.randrange(10**6))
        started = time.perf_counter()
        service.request("email", value, requester="198.51.100.7")
        elapsed = time.perf_counter() - started
        if position >= 400:  # the first calls warm caches and connections
            durations[kind].append(elapsed)
    return durations


def compare(name: str, label: str, first: list[float], second: list[float]) -> list[object]:
    gap = (median(first) - median(second)) / median(second)
    p_value = ks_2samp(first, second).pvalue
    verdict = "meets" if abs(gap) < 0.01 or p_value > 0.01 else "misses"
    return [
        name,
        label,
        len(first),
        f"{median(first) * 1e6:.1f} µs",
        f"{median(second) * 1e6:.1f} µs",
        f"{gap:+.2%}",
        f"{p_value:.2g}",
        verdict,
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000, help="calls of each kind")
    parser.add_argument("--directories", default="memory,sqlite,postgresql")
    args = parser.parse_args()
    logging.disable(logging.CRITICAL)
    header("request() in process: one client, ten clients, nobody")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.directories.split(","):
            with directory(name.strip(), Path(tmp)) as chosen:
                service = RecoveryService(
                    chosen,
                    NullMailer(),
                    delivery=DropDelivery(),
                    secret_key=secrets.token_urlsafe(32),
                    sender="Panel <panel@example.com>",
                    confirm_url="https://panel.example.com/recover/{token}",
                    rate_limits=RateLimits(
                        per_requester="1000000/minute",
                        per_identifier="1000000/hour",
                        per_client="1000000/hour",
                    ),
                )
                times = measure(service, args.calls)
                rows.append(
                    compare(
                        name,
                        "one client vs missing",
                        times["one client"],
                        times["missing, among clients"],
                    )
                )
                rows.append(
                    compare(
                        name,
                        "ten clients vs missing",
                        times["ten clients"],
                        times["missing, among shared"],
                    )
                )
    print(
        f"{CLIENTS:,} clients and {GROUPS} addresses of {SHARED}; misses sort right after "
        "an address that exists; jobs dropped.\n"
    )
    table(
        [
            "directory",
            "comparison",
            "calls a side",
            "median, first",
            "median, second",
            "gap",
            "KS p-value",
            "target",
        ],
        rows,
    )
    print("Target: a gap below 1 % or p > 0.01.")
    return 0 if all(row[-1] == "meets" for row in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
