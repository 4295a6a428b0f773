"""Sign-in timing tells nothing: an unknown number, a wrong key on a current hash and a
wrong key on a legacy (bcrypt) hash cost the same.

With ``cheap_context()`` an argon2 verification takes some tens of microseconds and
a bcrypt one (4 rounds) over a millisecond, so a sign-in that verified only the hash
it found would differ by a factor of fifty between a legacy client and anyone else.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from passlib.context import CryptContext

from credrecovery import RateLimits, RecoveryService
from credrecovery.memory import MemoryDirectory
from credrecovery.testing import ks_2samp_pvalue

pytestmark = [pytest.mark.shells("sync", "async"), pytest.mark.slow]

WRONG = "Not-The-Key-2024"
SAMPLES = 300
ATTEMPTS = 3
ALPHA = 0.01
CASES = {"unknown number": "5555", "current hash": "9000", "legacy hash": "7000"}
# Limits that never refuse here: the limiter's work is timed, not its refusals.
GENEROUS = RateLimits(
    failed_signins="1000000/minute",
    failed_signins_per_requester="1000000/minute",
    failed_signins_per_client="1000000/minute",
)


def _p_value(first: Sequence[float], second: Sequence[float]) -> float:
    """The two-sample Kolmogorov-Smirnov p-value: SciPy's when installed, else the
    project's own (``credrecovery.testing.ks_2samp_pvalue``)."""
    try:
        from scipy.stats import ks_2samp
    except ImportError:
        return ks_2samp_pvalue(first, second)
    return float(ks_2samp(first, second).pvalue)


def _measure(authenticate: Callable[[str], Any]) -> dict[str, list[float]]:
    """SAMPLES wrong-key sign-ins of each case, interleaved in a random order, in seconds."""
    plan = [case for case in CASES for _ in range(SAMPLES)]
    random.shuffle(plan)
    durations: dict[str, list[float]] = {case: [] for case in CASES}
    clock = time.perf_counter
    for case in plan:
        number = CASES[case]
        started = clock()
        assert authenticate(number) is None
        durations[case].append(clock() - started)
    return durations


def _differences(durations: dict[str, list[float]]) -> list[str]:
    baseline = durations["unknown number"]
    found = []
    for case in ("current hash", "legacy hash"):
        p_value = _p_value(baseline, durations[case])
        if p_value <= ALPHA:
            found.append(
                f"{case}: median {statistics.median(durations[case]) * 1e6:.0f} µs "
                f"vs {statistics.median(baseline) * 1e6:.0f} µs for an unknown "
                f"number, KS p = {p_value:.2g}"
            )
    return found


def test_unknown_current_and_legacy_cost_the_same(
    make_service: Callable[..., RecoveryService],
    ctx: CryptContext,
) -> None:
    """Wrong keys for a client with an argon2 hash, a client with a bcrypt hash, and a
    number nobody holds: a two-sample KS test tells none of them from the unknown number
    (p above 0.01 with 300 samples each, in one of three attempts)."""
    directory = MemoryDirectory(crypt_context=ctx)
    directory.add_client("9000", "current@example.com", key="Current-Access-Key-1")
    directory.add_client(
        "7000", "legacy@example.com", key_hash=ctx.handler("bcrypt").hash("Legacy-Access-Key-22")
    )
    service = make_service(directory=directory, rate_limits=GENEROUS)

    def authenticate(number: str) -> Any:
        return service.authenticate(number, WRONG, requester="203.0.113.7")

    for _ in range(30):  # warm-up: the stand-ins are made, caches filled
        for number in CASES.values():
            authenticate(number)
    failures = []
    for attempt in range(1, ATTEMPTS + 1):
        differences = _differences(_measure(authenticate))
        if not differences:
            return
        failures.append(f"attempt {attempt}: " + "; ".join(differences))
    pytest.fail("sign-in time tells the cases apart:\n" + "\n".join(failures), pytrace=False)


def test_a_legacy_hash_still_signs_in_and_is_upgraded(
    make_service: Callable[..., RecoveryService],
    ctx: CryptContext,
) -> None:
    """Verifying every scheme keeps what a sign-in does: the bcrypt client's right key
    signs in and its hash is replaced by an argon2 one; the current client's stays."""
    directory = MemoryDirectory(crypt_context=ctx)
    directory.add_client("9000", "current@example.com", key="Current-Access-Key-1")
    directory.add_client(
        "7000", "legacy@example.com", key_hash=ctx.handler("bcrypt").hash("Legacy-Access-Key-22")
    )
    service = make_service(directory=directory)
    current = directory.find("client_number", "9000")
    assert service.authenticate("9000", "Current-Access-Key-1") is not None
    assert directory.find("client_number", "9000") == current
    assert service.authenticate("7000", "Legacy-Access-Key-22") is not None
    upgraded = directory.find("client_number", "7000")
    assert upgraded is not None and upgraded.key_hash.startswith("$argon2")
    assert service.authenticate("7000", "Legacy-Access-Key-22") is not None
    assert service.authenticate("7000", WRONG) is None
