"""How many recovery requests per second do 1, 2 and 4 worker processes serve, and mail?

Each worker process builds its own RecoveryService on one shared PostgreSQL
directory (100,000 clients) with rate limits counted in the shared Redis, as
web workers would, and calls ``request()`` for a mix of existing and missing
identifiers for a fixed time, timing each call. Each service has the
library's default delivery: a ``BackgroundMailer`` around an ``SMTPMailer``,
composing and sending in a delivery process of its own (the random delay of
0.2 to 2 s before each mail included), to a real SMTP sink on 127.0.0.1 that
answers at once, in a process of its own. Reported per worker count: requests
per second and their p50 and p99, against one process; the mails the sink
accepted per second during the run, against the hits' mails asked for; and
how long after the run the last hit's mail arrived. ``--no-mail`` runs the
same requests with a delivery that drops every job: what the requests cost
without any mail work, to see where the ceiling is.

    python benchmarks/throughput.py [--seconds 10] [--workers 1,2,4] [--no-mail]
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import secrets
import time
from multiprocessing.synchronize import Barrier

import redis
import sqlalchemy as sa
from _common import header, percentile, synthetic_clients, table
from _http_apps import DropEverything
from delivery_throughput import sink

from credrecovery import RateLimits, RecoveryService, cheap_context
from credrecovery.smtp import SMTPMailer
from credrecovery.sqlalchemy import SQLAlchemyDirectory

PG_URL = os.environ.get(
    "CREDRECOVERY_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("CREDRECOVERY_BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
SCHEMA = "credrecovery_throughput"
SECRET = secrets.token_urlsafe(32)


def engine() -> sa.Engine:
    return sa.create_engine(
        PG_URL, connect_args={"options": f"-csearch_path={SCHEMA}"}, hide_parameters=True
    )


def worker(
    clients: int,
    seconds: float,
    port: int,
    mail: bool,
    barrier: Barrier,
    results: multiprocessing.Queue[tuple[list[float], int]],
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
    took: list[float] = []
    hits = 0
    with RecoveryService(
        directory,
        SMTPMailer("127.0.0.1", port),
        secret_key=SECRET,
        rate_limits=limits,
        confirm_url="https://panel.example.com/recover/{token}",
        sender="panel@example.com",
        crypt_context=cheap_context(),
        **({} if mail else {"delivery": DropEverything()}),
    ) as service:
        service.request("email", "warm-up@example.com", requester="warm-up")
        barrier.wait()
        deadline = time.perf_counter() + seconds
        while (start := time.perf_counter()) < deadline:
            n = rng.randrange(1, 2 * clients)  # half of them exist
            service.request("email", f"client{n}@example.com", requester=f"10.0.{n % 250}.1")
            took.append(time.perf_counter() - start)
            hits += n <= clients
        # Hands the queued mails over before the service closes.
        service.flush(timeout=300)
    directory.dispose()
    results.put((took, hits))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--no-mail", action="store_true", help="drop every job: no mail work")
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
            with sink(0.0) as running:
                barrier = context.Barrier(count + 1)
                results: multiprocessing.Queue[tuple[list[float], int]] = context.Queue()
                procs = [
                    context.Process(
                        target=worker,
                        args=(
                            args.clients,
                            args.seconds,
                            running.port,
                            not args.no_mail,
                            barrier,
                            results,
                        ),
                    )
                    for _ in range(count)
                ]
                for p in procs:
                    p.start()
                barrier.wait()
                started = time.perf_counter()
                ended = started + args.seconds
                outcomes = [results.get(timeout=args.seconds + 600) for _ in procs]
                for p in procs:
                    p.join()
                took = [t for times, _ in outcomes for t in times]
                hits = sum(h for _, h in outcomes)
                running.wait_for(0 if args.no_mail else hits)
                during = sum(1 for t in running.times if t <= ended) / args.seconds
                last = max(running.times) - ended if running.times else 0.0
            rate = len(took) / args.seconds
            baseline = baseline or rate
            rows.append(
                [
                    count,
                    f"{rate:,.0f}",
                    f"{rate / baseline:.2f}",
                    f"{percentile(took, 50) * 1000:.2f} ms",
                    f"{percentile(took, 99) * 1000:.2f} ms",
                    f"{hits / args.seconds:,.0f}",
                    f"{during:,.0f}",
                    f"{last:.1f} s",
                ]
            )
    finally:
        redis.Redis.from_url(REDIS_URL).flushdb()
        with admin.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
        admin.dispose()
    print(f"{args.clients:,} clients; {args.seconds:g} s per run; {os.cpu_count()} cores.\n")
    table(
        [
            "worker processes",
            "requests/s",
            "× one process",
            "p50",
            "p99",
            "hits' mails asked/s",
            "mails accepted/s during the run",
            "last mail after the run",
        ],
        rows,
    )


if __name__ == "__main__":
    main()
