"""Does request() take the same time for known and unknown identifiers?

Runs interleaved request() calls for existing and missing identifiers against a
SQLite directory of 100,000 clients with a mailer that sleeps 50 ms, first with
background delivery (the default), then with synchronous delivery as the naive
baseline, and reports medians, p99s, the relative gap of medians and a
two-sample Kolmogorov-Smirnov p-value for each.

    python benchmarks/timing.py [--clients 100000] [--calls 2000] [--sync-calls 200]
"""

from __future__ import annotations

import argparse
import logging
import secrets
import tempfile
import time
from email.message import EmailMessage
from pathlib import Path

from _common import header, median, percentile, synthetic_clients, table, us
from scipy.stats import ks_2samp

from credrecovery import BackgroundMailer, RateLimits, RecoveryService, cheap_context
from credrecovery.sqlite import SQLiteDirectory


class SlowMailer:
    """Stands in for an SMTP server that takes 50 ms per message."""

    def send(self, message: EmailMessage) -> None:
        time.sleep(0.05)


def measure(service: RecoveryService, clients: int, calls: int) -> tuple[list[float], list[float]]:
    rng = secrets.SystemRandom()
    plan = [True] * calls + [False] * calls
    rng.shuffle(plan)
    known_numbers = rng.sample(range(1, clients + 1), calls)
    hits: list[float] = []
    misses: list[float] = []
    for is_hit in plan:
        if is_hit:
            value = f"client{known_numbers.pop()}@example.com"
        else:
            # Sorted right after a client's address, as a guess would be: a lookup
            # reads the rows that follow its value, so misses that all sorted
            # together would read the same cached rows.
            value = f"client{rng.randrange(1, clients + 1)}@example.net"
        started = time.perf_counter()
        service.request("email", value)
        elapsed = time.perf_counter() - started
        (hits if is_hit else misses).append(elapsed)
    return hits, misses


def report(name: str, hits: list[float], misses: list[float]) -> list[object]:
    gap = abs(median(hits) - median(misses)) / median(misses)
    p_value = ks_2samp(hits, misses).pvalue
    return [
        name,
        len(hits),
        us(median(hits)),
        us(median(misses)),
        us(percentile(hits, 99)),
        us(percentile(misses, 99)),
        f"{gap:.2%}",
        f"{p_value:.3g}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=100_000)
    parser.add_argument("--calls", type=int, default=2000, help="per side, background mode")
    parser.add_argument("--sync-calls", type=int, default=200, help="per side, sync baseline")
    args = parser.parse_args()
    logging.disable(logging.CRITICAL)
    header("request() timing: existing vs missing identifiers")
    with tempfile.TemporaryDirectory() as tmp:
        directory = SQLiteDirectory(Path(tmp) / "clients.sqlite3")
        directory.bulk_add(synthetic_clients(args.clients))
        common = dict(
            secret_key=secrets.token_urlsafe(32),
            confirm_url="https://panel.example.com/recover/{token}",
            sender="Client Panel <panel@example.com>",
            crypt_context=cheap_context(),
            # Generous limits: the benchmark measures the path, not the throttle.
            rate_limits=RateLimits(
                per_requester="1000000/minute", per_identifier="100/hour", per_client="100/hour"
            ),
        )
        rows = []
        background = BackgroundMailer(SlowMailer(), max_queue=args.calls + 10)
        with RecoveryService(directory, SlowMailer(), delivery=background, **common) as svc:
            measure(svc, args.clients, 200)  # warm-up: caches, imports, first connection
            rows.append(report("background (default)", *measure(svc, args.clients, args.calls)))
            background.close(timeout=0)
        with RecoveryService(directory, SlowMailer(), delivery="sync", **common) as svc:
            rows.append(report("sync (baseline)", *measure(svc, args.clients, args.sync_calls)))
    print(f"{args.clients:,} clients in SQLite; the mailer sleeps 50 ms per message.\n")
    table(
        [
            "delivery",
            "calls per side",
            "median, existing",
            "median, missing",
            "p99, existing",
            "p99, missing",
            "gap of medians",
            "KS p-value",
        ],
        rows,
    )
    print("Target for background delivery: gap below 2 % and p > 0.01.")


if __name__ == "__main__":
    main()
