"""How many recovery requests per second do 1, 2 and 4 worker processes serve?

Each worker process builds its own RecoveryService on one shared PostgreSQL
directory (100,000 clients) with rate limits counted in the shared Redis, as
web workers would, and calls ``request()`` for a mix of existing and missing
identifiers for a fixed time. The single-process figure is the baseline.

    python benchmarks/throughput.py [--seconds 5] [--workers 1,2,4]
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import secrets
import time
from email.message import EmailMessage
from multiprocessing.synchronize import Barrier

import redis
import sqlalchemy as sa
from _common import header, synthetic_clients, table

from credrecovery import RateLimits, RecoveryService, cheap_context
from credrecovery.sqlalchemy import SQLAlchemyDirectory

PG_URL = os.environ.get(
    "CREDRECOVERY_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("CREDRECOVERY_BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
SCHEMA = "credrecovery_throughput"
SECRET = secrets.token_urlsafe(32)


class NullMailer:
    def send(self, message: EmailMessage) -> None:
        pass


def engine() -> sa.Engine:
    return sa.create_engine(
        PG_URL, connect_args={"options": f"-csearch_path={SCHEMA}"}, hide_parameters=True
    )


def worker(
    clients: int, seconds: float, barrier: Barrier, results: multiprocessing.Queue[int]
) -> None:
    logging.disable(logging.CRITICAL)
    directory = SQLAlchemyDirectory(engine())
    limits = RateLimits(
        per_requester="1000000/minute",
        per_identifier="1000/hour",
        per_client="1000/hour",
        storage_uri=REDIS_URL,
    )
    rng = secrets.SystemRandom()
    done = 0
    with RecoveryService(
        directory,
        NullMailer(),
        secret_key=SECRET,
        rate_limits=limits,
        confirm_url="https://panel.example.com/recover/{token}",
        sender="panel@example.com",
        crypt_context=cheap_context(),
    ) as service:
        service.request("email", "warm-up@example.com", requester="warm-up")
        barrier.wait()
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            n = rng.randrange(1, 2 * clients)  # half of them exist
            service.request("email", f"client{n}@example.com", requester=f"10.0.{n % 250}.1")
            done += 1
    directory.dispose()
    results.put(done)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--workers", default="1,2,4")
    args = parser.parse_args()
    header("request() throughput with worker processes on PostgreSQL and Redis")
    admin = sa.create_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
        conn.execute(sa.text(f"CREATE SCHEMA {SCHEMA}"))
    setup = SQLAlchemyDirectory(engine(), create_schema=True)
    setup.bulk_add(synthetic_clients(args.clients))
    with setup.engine.begin() as conn:
        conn.execute(sa.text("ANALYZE"))
    setup.dispose()
    context = multiprocessing.get_context("spawn")
    rows = []
    baseline = 0.0
    try:
        for count in (int(w) for w in args.workers.split(",")):
            redis.Redis.from_url(REDIS_URL).flushdb()
            barrier = context.Barrier(count)
            results: multiprocessing.Queue[int] = context.Queue()
            procs = [
                context.Process(target=worker, args=(args.clients, args.seconds, barrier, results))
                for _ in range(count)
            ]
            for p in procs:
                p.start()
            total = sum(results.get(timeout=args.seconds + 120) for _ in procs)
            for p in procs:
                p.join()
            rate = total / args.seconds
            baseline = baseline or rate
            rows.append([count, total, f"{rate:,.0f}", f"{rate / baseline:.2f}"])
    finally:
        redis.Redis.from_url(REDIS_URL).flushdb()
        with admin.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
        admin.dispose()
    print(f"{args.clients:,} clients; {args.seconds:g} s per run; {os.cpu_count()} cores.\n")
    table(["worker processes", "requests", "requests per second", "× one process"], rows)


if __name__ == "__main__":
    main()
