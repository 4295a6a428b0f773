"""Codes tell nothing by their timing: request_code() for a client and for nobody, and a code
checked on a hit's ticket and on a miss's, cost the same in process."""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable
from typing import Any

import pytest

from credrecovery import InvalidCode, RateLimits
from credrecovery.memory import MemoryDirectory
from credrecovery.testing import ks_2samp_pvalue

pytestmark = [pytest.mark.shells("sync", "async"), pytest.mark.slow]

SAMPLES = 300
ATTEMPTS = 3
ALPHA = 0.01
TOLERANCE = 0.03
GENEROUS = RateLimits(
    per_requester="1000000/minute",
    per_identifier="1000000/minute",
    per_client="1000000/minute",
    per_mailbox="1000000/minute",
    failed_confirmations="1000000/minute",
)


class Drop:
    """A delivery queue that drops every job: the request path alone is timed."""

    def bind(self, composer: object) -> None:
        """Nothing composes here."""

    def submit(self, job: object) -> None:
        """Drop ``job``."""

    def flush(self, timeout: float | None = None) -> bool:
        return True

    def close(self, timeout: float | None = None) -> None:
        """Nothing to stop."""


def _same(measure: Callable[[], dict[bool, list[float]]]) -> None:
    """Up to ATTEMPTS rounds: hits and misses must not differ in one of them.

    Different means both a KS p-value below ALPHA and medians more than
    TOLERANCE apart, as in the directory timing contract: in process, at
    80 microseconds a call, the KS test alone also tells apart sub-microsecond
    gaps that no one measures over a network.
    """
    measure()  # warm-up: the first calls pay for caches both sides share
    seen = []
    for _ in range(ATTEMPTS):
        durations = measure()
        p_value = ks_2samp_pvalue(durations[True], durations[False])
        hit, miss = statistics.median(durations[True]), statistics.median(durations[False])
        gap = abs(hit - miss) / min(hit, miss)
        if p_value > ALPHA or gap <= TOLERANCE:
            return
        seen.append((p_value, gap))
    pytest.fail(f"hits and misses differ: (KS p-value, median gap) {seen}")


@pytest.fixture
def clients(directory: MemoryDirectory) -> list[str]:
    """SAMPLES clients, each with a domain of one length: client-NNN.example."""
    domains = []
    for n in range(SAMPLES):
        domain = f"client-{n:03d}.example"
        directory.add_client(
            str(10000 + n), f"c{n:03d}@example.com", key="Key-Of-Client-1", domains=[domain]
        )
        domains.append(domain)
    return domains


def test_request_code_costs_the_same_for_a_hit_and_a_miss(
    make_service: Callable[..., Any],
    clients: list[str],
) -> None:
    """Interleaved at random, requests naming a client and naming nobody are alike."""
    service = make_service(delivery=Drop(), rate_limits=GENEROUS)
    lengths: set[int] = set()

    def measure() -> dict[bool, list[float]]:
        plan = [(True, domain) for domain in clients]
        plan += [(False, domain.replace("client-", "nobody-")) for domain in clients]
        random.shuffle(plan)
        durations: dict[bool, list[float]] = {True: [], False: []}
        for hit, domain in plan:
            started = time.perf_counter()
            ticket = service.request_code("domain", domain, requester="203.0.113.9")
            durations[hit].append(time.perf_counter() - started)
            lengths.add(len(ticket))
        return durations

    _same(measure)
    assert len(lengths) == 1


def test_a_code_costs_the_same_on_a_hits_ticket_and_a_miss(
    make_service: Callable[..., Any],
    clients: list[str],
) -> None:
    """A wrong code on a client's ticket and a code on nobody's ticket are alike."""
    service = make_service(delivery=Drop(), rate_limits=GENEROUS)

    def measure() -> dict[bool, list[float]]:
        plan = [(True, service.request_code("domain", domain)) for domain in clients]
        plan += [
            (False, service.request_code("domain", domain.replace("client-", "nobody-")))
            for domain in clients
        ]
        random.shuffle(plan)
        durations: dict[bool, list[float]] = {True: [], False: []}
        for hit, ticket in plan:
            started = time.perf_counter()
            with pytest.raises(InvalidCode):
                service.check_code(ticket, "CCCC-CCCC", requester="203.0.113.9")
            durations[hit].append(time.perf_counter() - started)
        return durations

    _same(measure)
