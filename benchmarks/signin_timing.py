"""Does a sign-in take the same time for an unknown number, a current hash and a legacy one?

Times interleaved wrong-key ``authenticate()`` calls under the production hashing
policy, ``default_context()`` (argon2id at passlib's default cost, bcrypt hashes still
verified at their default 12 rounds), for three cases: a number nobody holds, a client
whose hash is argon2, and a client whose hash is bcrypt. Prints each case's median,
its ratio to the unknown-number baseline, and a two-sample Kolmogorov-Smirnov p-value
against that baseline. Every sign-in verifies once per scheme of the policy, so the
three should be alike: a p-value above 0.01.

    python benchmarks/signin_timing.py [--samples 300]
"""

from __future__ import annotations

import argparse
import logging
import random
import secrets
import time

from _common import header, median, table
from scipy.stats import ks_2samp

from credrecovery import RateLimits, RecoveryService, default_context
from credrecovery.memory import MemoryDirectory, MemoryMailer

WRONG = "Not-The-Key-2024"
CASES = {"unknown number": "5555", "argon2 (current)": "9000", "bcrypt (legacy)": "7000"}


def measure(service: RecoveryService, samples: int) -> dict[str, list[float]]:
    """``samples`` wrong-key sign-ins of each case, interleaved in a random order."""
    plan = [case for case in CASES for _ in range(samples)]
    random.shuffle(plan)
    durations: dict[str, list[float]] = {case: [] for case in CASES}
    for case in plan:
        started = time.perf_counter()
        assert service.authenticate(CASES[case], WRONG, requester="203.0.113.7") is None
        durations[case].append(time.perf_counter() - started)
    return durations


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=300, help="sign-ins of each case")
    args = parser.parse_args()
    logging.disable(logging.CRITICAL)
    header("authenticate() timing: unknown number, argon2 hash, bcrypt hash (wrong keys)")
    context = default_context()
    directory = MemoryDirectory(crypt_context=context)
    directory.add_client("9000", "current@example.com", key="Current-Access-Key-1")
    directory.add_client(
        "7000",
        "legacy@example.com",
        key_hash=context.handler("bcrypt").hash("Legacy-Access-Key-22"),
    )
    # Limits that never refuse: their work is timed, not their refusals.
    limits = RateLimits(
        failed_signins="1000000/minute",
        failed_signins_per_requester="1000000/minute",
        failed_signins_per_client="1000000/minute",
    )
    with RecoveryService(
        directory,
        MemoryMailer(),
        secret_key=secrets.token_urlsafe(32),
        confirm_url="https://panel.example.com/recover/{token}",
        sender="panel@example.com",
        crypt_context=context,
        rate_limits=limits,
        delivery="sync",
    ) as service:
        for number in CASES.values():  # warm-up: the stand-in hashes are made once
            service.authenticate(number, WRONG, requester="203.0.113.7")
        started = time.perf_counter()
        durations = measure(service, args.samples)
        took = time.perf_counter() - started
    baseline = durations["unknown number"]
    rows = []
    for case, times in durations.items():
        p_value = "—" if times is baseline else f"{ks_2samp(baseline, times).pvalue:.3g}"
        rows.append(
            [
                case,
                len(times),
                f"{median(times) * 1000:.1f} ms",
                f"{median(times) / median(baseline):.3f}",
                p_value,
            ]
        )
    print(
        f"default_context(); {args.samples} wrong-key sign-ins of each case, interleaved; "
        f"{took:.0f} s in all.\n"
    )
    table(["case", "sign-ins", "median", "ratio to unknown", "KS p-value vs unknown"], rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
