"""The timing contract: a directory answers a hit and a miss alike in time."""

from __future__ import annotations

import dataclasses
import math
import random
import statistics
import time
from collections.abc import Callable, Sequence
from typing import ClassVar

import pytest

from ..identifiers import IdentifierKind
from ..jobs import MAX_CLIENTS_PER_MAIL

# --- timing ---------------------------------------------------------------------------------
from ._harness import (
    _DOMAIN,
    _EMAIL,
    _NUMBER,
    _OLD_HASH,
    DirectoryUnderTest,
    _AsyncHooks,
    _DirectorySettings,
    _find_all_of,
    _Pick,
    _SyncHooks,
)


def ks_2samp_pvalue(first: Sequence[float], second: Sequence[float]) -> float:
    """The p-value of the two-sample Kolmogorov-Smirnov test that both samples share a law.

    The statistic ``D`` is the largest gap between the two empirical
    distribution functions; the p-value is Kolmogorov's limiting distribution
    ``Q(λ) = 2 Σ (-1)^(k-1) exp(-2 k² λ²)`` at ``λ = (√e + 0.12 + 0.11/√e) D``,
    where ``e = n m / (n + m)`` (Stephens' small-sample correction, as in
    *Numerical Recipes*). Close to SciPy's ``ks_2samp(method="asymp")`` for
    samples of a few hundred values or more, which is what a timing check
    takes. Raises :class:`ValueError` when either sample is empty.
    """
    if not first or not second:
        raise ValueError("both samples need at least one value")
    a, b = sorted(first), sorted(second)
    n, m = len(a), len(b)
    i = j = 0
    gap = 0.0
    while i < n and j < m:
        # Step past every value equal to the smaller one, in both samples.
        value = min(a[i], b[j])
        while i < n and a[i] == value:
            i += 1
        while j < m and b[j] == value:
            j += 1
        gap = max(gap, abs(i / n - j / m))
    effective = math.sqrt(n * m / (n + m))
    lam = (effective + 0.12 + 0.11 / effective) * gap
    if lam < 0.2:
        return 1.0
    total = 0.0
    for k in range(1, 101):
        term = math.exp(-2.0 * k * k * lam * lam)
        total += term if k % 2 else -term
        if term < 1e-12:
            break
    return min(1.0, max(0.0, 2.0 * total))


@dataclasses.dataclass(frozen=True)
class _Timings:
    """The durations of one comparison, in nanoseconds, and its verdict."""

    label: str
    first: list[int]
    second: list[int]

    @property
    def p_value(self) -> float:
        return ks_2samp_pvalue(self.first, self.second)

    @property
    def gap(self) -> float:
        """The gap of the medians, relative to the smaller one."""
        first, second = statistics.median(self.first), statistics.median(self.second)
        return abs(first - second) / max(1.0, min(first, second))

    def describe(self, first: str, second: str) -> str:
        return (
            f"{self.label}: median {statistics.median(self.first) / 1000:.2f} µs {first},"
            f" {statistics.median(self.second) / 1000:.2f} µs {second},"
            f" KS p = {self.p_value:.2g}"
        )


class _TimingTests(_DirectorySettings):
    """The timing checks, on the ``directory_under_test`` fixture."""

    timing_clients: ClassVar[int] = 200
    """How many clients the checks add, each with a number, an address and a domain."""

    timing_samples: ClassVar[int] = 1000
    """How many calls each side of a comparison times, per attempt."""

    timing_attempts: ClassVar[int] = 3
    """How many times a comparison is measured before it fails: noise passes once."""

    timing_alpha: ClassVar[float] = 0.001
    """The p-value below which a comparison counts as different."""

    timing_tolerance: ClassVar[float] = 0.03
    """The gap of medians, relative, that a comparison must also exceed to count as different.

    Two Python paths that return different results (a client, or nothing)
    differ by some tens of nanoseconds, which many samples show as
    significant; a directory that reads or decodes more on one side differs
    by far more than this.
    """

    def _add_timing_clients(self, subject: DirectoryUnderTest) -> None:
        """Clients at even positions; the odd ones, of the same shape, name nobody."""
        for n in range(self.timing_clients):
            number = 200000 + 2 * n
            subject.add_client(
                str(number),
                f"c{number}@example.com",
                key_hash=_OLD_HASH,
                domains=[f"c{number}.example"],
                name=f"Client {number}",
            )

    def _measure(self, calls: dict[str, _Pick]) -> dict[str, list[int]]:
        """Time ``timing_samples`` calls of each kind, interleaved in a random order.

        Each entry makes the next call to time; the order is shuffled so that
        whatever else the machine does falls on every kind alike.
        """
        plan = [name for name in calls for _ in range(self.timing_samples)]
        rng = random.Random()  # noqa: S311 - orders and picks test values
        rng.shuffle(plan)
        for name in plan[: min(len(plan), 300)]:
            calls[name]()()
        durations: dict[str, list[int]] = {name: [] for name in calls}
        clock = time.perf_counter_ns
        for name in plan:
            call = calls[name]()
            started = clock()
            call()
            durations[name].append(clock() - started)
        return durations

    def _check(self, calls: dict[str, _Pick], pairs: Sequence[tuple[str, str, str]]) -> None:
        """Fail unless, in one attempt, every pair of ``calls`` times alike."""
        failures: list[str] = []
        for attempt in range(1, self.timing_attempts + 1):
            durations = self._measure(calls)
            differ = [
                timings.describe(f"for {first}", f"for {second}")
                for first, second, label in pairs
                if (timings := _Timings(label, durations[first], durations[second])).p_value
                < self.timing_alpha
                and timings.gap > self.timing_tolerance
            ]
            if not differ:
                return
            failures.append(f"attempt {attempt}: " + "; ".join(differ))
        pytest.fail(
            f"the directory takes measurably longer on one side (p below {self.timing_alpha}"
            f" and medians more than {self.timing_tolerance:.0%} apart in each of"
            f" {self.timing_attempts} attempts of {self.timing_samples} calls a side):\n"
            + "\n".join(failures),
            pytrace=False,
        )

    def test_a_miss_costs_what_a_hit_costs(
        self,
        directory_under_test: DirectoryUnderTest,
    ) -> None:
        """find takes as long for a number, address or domain naming nobody as for a client's."""
        subject = directory_under_test
        self._add_timing_clients(subject)
        find = subject.directory.find
        rng = random.Random()  # noqa: S311 - orders and picks test values

        def picker(kind: IdentifierKind, template: str, parity: int) -> _Pick:
            def pick() -> Callable[[], object]:
                value = template.format(200000 + 2 * rng.randrange(self.timing_clients) + parity)
                return lambda: find(kind, value)

            return pick

        calls: dict[str, _Pick] = {}
        pairs = []
        for kind, template in (
            (_NUMBER, "{}"),
            (_EMAIL, "c{}@example.com"),
            (_DOMAIN, "c{}.example"),
        ):
            calls[f"{kind.value} hit"] = picker(kind, template, 0)
            calls[f"{kind.value} miss"] = picker(kind, template, 1)
            pairs.append((f"{kind.value} hit", f"{kind.value} miss", f"find by {kind.value}"))
        self._check(calls, pairs)

    def test_a_shared_address_costs_what_a_miss_costs(
        self,
        directory_under_test: DirectoryUnderTest,
    ) -> None:
        """find_all, asked for what a mail lists, takes as long for an address that up to
        MAX_CLIENTS_PER_MAIL clients share, or one client has, as for an address nobody has."""
        subject = directory_under_test
        find_all = _find_all_of(subject)
        self._add_timing_clients(subject)
        groups = max(2, self.timing_clients // 20)
        for group in range(groups):
            address = f"s{300000 + 2 * group}@example.com"
            for member in range(MAX_CLIENTS_PER_MAIL):
                number = 400000 + group * 20 + member
                subject.add_client(
                    str(number),
                    address,
                    key_hash=_OLD_HASH,
                    domains=[f"s{number}.example"],
                    name=f"Shop {number}",
                )
        rng = random.Random()  # noqa: S311 - orders and picks test values
        limit = MAX_CLIENTS_PER_MAIL + 1

        def picker(
            template: str,
            base: int,
            count: int,
            parity: int,
        ) -> _Pick:
            def pick() -> Callable[[], object]:
                value = template.format(base + 2 * rng.randrange(count) + parity)
                return lambda: find_all(_EMAIL, value, limit=limit)

            return pick

        calls = {
            "a shared address": picker("s{}@example.com", 300000, groups, 0),
            "an address nobody has": picker("s{}@example.com", 300000, groups, 1),
            "one client's address": picker("c{}@example.com", 200000, self.timing_clients, 0),
            "another address nobody has": picker("c{}@example.com", 200000, self.timing_clients, 1),
        }
        self._check(
            calls,
            [
                (
                    "a shared address",
                    "an address nobody has",
                    f"find_all(limit={limit}) by an address {MAX_CLIENTS_PER_MAIL} clients share",
                ),
                (
                    "one client's address",
                    "another address nobody has",
                    f"find_all(limit={limit}) by one client's address",
                ),
            ],
        )


class DirectoryTimingContract(_SyncHooks, _TimingTests):
    """Checks that your directory takes as long to find nobody as to find a client.

    The service answers a request the same way whether or not a client
    matched, so that the answer tells nothing; its time must tell nothing
    either. Subclass it as ``Test...`` with the same ``directory`` fixture and
    :meth:`add_client` hook as :class:`DirectoryContract`. It adds
    :attr:`timing_clients` clients (and, when the directory has ``find_all``,
    addresses that :data:`~credrecovery.jobs.MAX_CLIENTS_PER_MAIL` clients
    share), then times many lookups, hits and misses interleaved in a random
    order, and compares the two sides with a two-sample Kolmogorov-Smirnov
    test (:func:`ks_2samp_pvalue`): a p-value below :attr:`timing_alpha`
    with medians more than :attr:`timing_tolerance` apart, in each of
    :attr:`timing_attempts` attempts, fails the test with the medians and
    the p-value. Because the sides interleave, a busy machine
    slows both alike and does not fail it; a directory that does more work on
    one side (reads a row, decodes a record, sleeps) does.

    Misses are values of the same shape and length as the hits, and fall
    between them in every index's order, so that a lookup's cost may depend
    on where its value sorts without failing the test; it must not depend on
    whether the value is there. A directory passes when a miss reads and
    decodes as many records as a hit, such as a stand-in record it then drops
    (see the custom adapters guide). The checks take a few seconds on a local
    database; run them apart from your unit tests if need be, e.g. with a
    marker.
    """


class AsyncDirectoryTimingContract(_AsyncHooks, _TimingTests):
    """:class:`DirectoryTimingContract` for an asyncio directory.

    The same checks, with the hooks of :class:`AsyncDirectoryContract`. Each
    timed call runs to completion on the contract's event loop, so the
    hand-over to the loop's thread is timed too; it costs both sides alike.
    """
