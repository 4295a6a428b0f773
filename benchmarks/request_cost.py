"""What does one request() cost in process, next to Django's password reset for an unknown address?

Both systems run in this process, on this machine, in the same run:

* Django (configured here with ``settings.configure``: a SQLite database file,
  ``django.contrib.auth`` and ``contenttypes`` migrated, 10,000 users made with
  ``bulk_create``, the locmem email backend): ``PasswordResetForm(data={"email":
  unknown})``, ``is_valid()``, then ``save(domain_override="panel.example.com")``,
  form construction and validation included, as a view would run them. This is
  the baseline.
* credrecovery: ``service.request(kind, value, requester=...)`` on a SQLite
  directory of 10,000 clients with the default (background) delivery and rate
  limits high enough never to refuse, so that the limiter still runs; hits and
  misses by each of the three identifier kinds. Each hit names a client not
  named before and each miss a value not named before. ``service.flush()`` runs
  every 100 calls, outside the timed region, so the delivery queue never fills.

The seven series are measured interleaved: each round runs ``--batch`` calls of
every series in a shuffled order, so that machine noise spreads over all of
them; the first ``--warmup-rounds`` rounds are discarded.

    python benchmarks/request_cost.py [--rounds 20] [--batch 50] [--warmup-rounds 1]

How to read it: the median and p99 of each series (µs), and each credrecovery
median divided by Django's, with a 95 % bootstrap interval of that ratio. The
library's target is a ratio of at most 0.25 for hits and misses alike.
"""

from __future__ import annotations

import argparse
import gc
import logging
import random
import secrets
import tempfile
import time
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from importlib import metadata
from pathlib import Path

import numpy as np
from _common import header, median, percentile, synthetic_clients, table

from credrecovery import RateLimits, RecoveryService
from credrecovery.sqlite import SQLiteDirectory

CLIENTS = 10_000
# Numbers 100000-109999: every identifier of a kind has one length, and a miss
# built from the same digits is as long as a hit.
FIRST_NUMBER = 100_000
TARGET = 0.25
BOOTSTRAP = 2000
# Well under the background queue's default capacity of 1,000 messages.
FLUSH_EVERY = 100
KINDS = ("email", "domain", "client_number")


class NullMailer:
    """Accepts every message at once: the cost measured is request()'s, not a relay's."""

    def send(self, message: EmailMessage) -> None:
        pass


def identifier(kind: str, n: int, hit: bool) -> str:
    if kind == "client_number":
        return str(n if hit else n + FIRST_NUMBER)
    stem = "client" if hit else "absent"
    return f"{stem}{n}@example.com" if kind == "email" else f"{stem}{n}.example.com"


def django_reset(tmp: Path) -> Callable[[str], None]:
    """Configure Django on a fresh SQLite file with 10,000 users; return the timed view body."""
    import django
    from django.conf import settings

    settings.configure(
        DEBUG=False,
        SECRET_KEY=secrets.token_urlsafe(50),
        INSTALLED_APPS=["django.contrib.auth", "django.contrib.contenttypes"],
        DATABASES={
            "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(tmp / "django.sqlite3")}
        },
        EMAIL_BACKEND="django.core.mail.backends.locmem.EmailBackend",
        DEFAULT_AUTO_FIELD="django.db.models.AutoField",
        USE_TZ=True,
    )
    django.setup()
    from django.contrib.auth.forms import PasswordResetForm
    from django.contrib.auth.hashers import make_password
    from django.contrib.auth.models import User
    from django.core import mail
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)
    password = make_password("benchmark-password")  # hashed once, shared by every user
    User.objects.bulk_create(
        [
            User(username=f"user{n}", email=f"client{n}@example.com", password=password)
            for n in range(FIRST_NUMBER, FIRST_NUMBER + CLIENTS)
        ],
        batch_size=1000,
    )

    def reset(email: str) -> None:
        form = PasswordResetForm(data={"email": email})
        if form.is_valid():
            form.save(domain_override="panel.example.com")

    reset("warm-up@example.com")
    if getattr(mail, "outbox", []):
        raise RuntimeError("Django mailed an unknown address")
    return reset


def requesting(service: RecoveryService, kind: str, values: Iterator[str]) -> Callable[[], None]:
    """One timed call: request() for the next value, from one requester."""

    def call() -> None:
        service.request(kind, next(values), requester="198.51.100.7")

    return call


def bootstrap_ratio(
    sample: np.ndarray, baseline: np.ndarray, rng: np.random.Generator
) -> tuple[float, float]:
    """A 95 % percentile-bootstrap interval of median(sample) / median(baseline)."""
    ours = np.median(rng.choice(sample, (BOOTSTRAP, sample.size)), axis=1)
    theirs = np.median(rng.choice(baseline, (BOOTSTRAP, baseline.size)), axis=1)
    low, high = np.percentile(ours / theirs, [2.5, 97.5])
    return float(low), float(high)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20, help="measured rounds")
    parser.add_argument("--batch", type=int, default=50, help="calls per series per round")
    parser.add_argument("--warmup-rounds", type=int, default=1)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rounds = args.rounds + args.warmup_rounds
    if args.rounds < 1 or args.batch < 1 or args.warmup_rounds < 0:
        parser.error("rounds and batch must be at least 1")
    if rounds * args.batch > CLIENTS:
        parser.error(f"(rounds + warmup rounds) × batch must not exceed {CLIENTS}")
    header("request() in process next to Django's PasswordResetForm.save() for an unknown address")
    print(f"django {metadata.version('django')}\n")
    # Neither system's log output is part of what is measured.
    logging.disable(logging.CRITICAL)
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="credrecovery-cost-") as name:
        tmp = Path(name)
        reset = django_reset(tmp)
        directory = SQLiteDirectory(tmp / "clients.sqlite3")
        directory.bulk_add(synthetic_clients(CLIENTS, start=FIRST_NUMBER))
        limits = RateLimits(
            per_requester="1000000/minute",
            per_identifier="1000000/minute",
            per_client="1000000/minute",
        )
        service = RecoveryService(
            directory,
            NullMailer(),
            secret_key=secrets.token_urlsafe(32),
            confirm_url="https://panel.example.com/recover/{token}",
            sender="Client Panel <panel@example.com>",
            rate_limits=limits,
        )
        numbers = range(FIRST_NUMBER, FIRST_NUMBER + CLIENTS)
        calls = rounds * args.batch
        series: dict[str, Callable[[], None]] = {}
        django_values = iter([identifier("email", n, False) for n in rng.sample(numbers, calls)])
        series["Django, unknown email (baseline)"] = lambda: reset(next(django_values))
        for kind in KINDS:
            for hit in (True, False):
                values = iter([identifier(kind, n, hit) for n in rng.sample(numbers, calls)])
                series[f"credrecovery, {kind}, {'hit' if hit else 'miss'}"] = requesting(
                    service, kind, values
                )
        samples: dict[str, list[float]] = {name: [] for name in series}
        made = 0
        with service:
            for round_number in range(rounds):
                order = [name for name in series for _ in range(args.batch)]
                rng.shuffle(order)
                gc.collect()
                for name in order:
                    run = series[name]
                    started = time.perf_counter_ns()
                    run()
                    elapsed = time.perf_counter_ns() - started
                    if round_number >= args.warmup_rounds:
                        samples[name].append(elapsed / 1000)
                    made += 1
                    if made % FLUSH_EVERY == 0:
                        service.flush()
                service.flush()
        directory.close()

    baseline_name = next(iter(samples))
    baseline = median(samples[baseline_name])
    np_rng = np.random.default_rng(args.seed)
    base_array = np.asarray(samples[baseline_name])
    rows: list[list[object]] = []
    for name, timings in samples.items():
        ratio = median(timings) / baseline
        if name == baseline_name:
            interval, verdict = "—", "—"
        else:
            low, high = bootstrap_ratio(np.asarray(timings), base_array, np_rng)
            interval = f"{low:.3f} – {high:.3f}"
            verdict = "meets target" if ratio <= TARGET else "misses target"
        rows.append(
            [
                name,
                len(timings),
                f"{median(timings):.1f}",
                f"{percentile(timings, 99):.1f}",
                f"{ratio:.3f}",
                interval,
                verdict,
            ]
        )
    print(
        f"{CLIENTS:,} clients in each SQLite database; {args.rounds} rounds of {args.batch} "
        f"calls per series, interleaved, after {args.warmup_rounds} warm-up round(s).\n"
    )
    table(
        [
            "series",
            "calls",
            "median (µs)",
            "p99 (µs)",
            "÷ Django median",
            "95 % bootstrap interval",
            "verdict",
        ],
        rows,
    )
    print(f"Target: every credrecovery median at most {TARGET} × Django's, hits and misses alike.")


if __name__ == "__main__":
    main()
