"""The bounded memory storage behind ``RateLimits(storage_uri="memory://")``."""

from __future__ import annotations

import threading
import time

import pytest
from limits import parse
from limits.storage import MemoryStorage
from limits.strategies import SlidingWindowCounterRateLimiter

from credrecovery import RateLimits
from credrecovery._limits_storage import BoundedMemoryStorage
from credrecovery.ratelimit import Limiter
from helpers import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    """The storages' clock, ten minutes into an hour: no window turns unless it is moved."""
    return FakeClock(1_800_000_600.0)


@pytest.fixture
def no_timed_sweep(monkeypatch: pytest.MonkeyPatch) -> None:
    """Leave only the insertion-counted sweep, so tests see exactly when it runs."""
    monkeypatch.setattr("credrecovery._limits_storage._MIN_SWEEP_INTERVAL", 1e9)


def test_allows_exactly_the_limit_then_refuses(clock: FakeClock) -> None:
    """Five hits in a window pass, the sixth is refused, and test/get_window_stats agree."""
    limiter = SlidingWindowCounterRateLimiter(BoundedMemoryStorage(clock=clock))
    item = parse("5/hour")
    for i in range(5):
        assert limiter.get_window_stats(item, "k").remaining == 5 - i
        assert limiter.test(item, "k")
        assert limiter.hit(item, "k")
    assert not limiter.test(item, "k")
    assert not limiter.hit(item, "k")
    stats = limiter.get_window_stats(item, "k")
    assert stats.remaining == 0
    assert time.time() < stats.reset_time <= time.time() + 2 * 3600
    assert limiter.test(item, "other")


def test_answers_like_limits_memory_storage() -> None:
    """Hit for hit, the sliding window counter answers as it does on limits' MemoryStorage."""
    # Both count on the real clock here, so the test keeps clear of a minute's turn.
    if 60.0 - time.time() % 60.0 < 1.0:
        time.sleep(1.1)
    ours = SlidingWindowCounterRateLimiter(BoundedMemoryStorage())
    theirs = SlidingWindowCounterRateLimiter(MemoryStorage())
    item = parse("7/minute")
    for cost in [1, 2, 1, 3, 1, 1, 2, 9, 1]:
        assert ours.hit(item, "k", cost=cost) == theirs.hit(item, "k", cost=cost)
        assert ours.test(item, "k") == theirs.test(item, "k")
        assert (
            ours.get_window_stats(item, "k").remaining
            == theirs.get_window_stats(item, "k").remaining
        )


def test_hits_are_allowed_again_after_the_window(clock: FakeClock) -> None:
    """Once two windows of a 3/second limit have passed, three more hits pass."""
    limiter = SlidingWindowCounterRateLimiter(BoundedMemoryStorage(clock=clock))
    item = parse("3/second")
    assert [limiter.hit(item, "k") for _ in range(4)] == [True, True, True, False]
    clock.advance(1.1)
    # A tenth into the next window, the last one's three hits still weigh 2.7.
    assert [limiter.hit(item, "k") for _ in range(2)] == [True, False]
    clock.advance(1.0)
    assert limiter.test(item, "k")
    assert [limiter.hit(item, "k") for _ in range(4)] == [True, True, True, False]


def test_the_cap_is_never_exceeded() -> None:
    """Spraying three times max_keys distinct keys never holds more than max_keys."""
    storage = BoundedMemoryStorage(max_keys=1000)
    limiter = SlidingWindowCounterRateLimiter(storage)
    item = parse("5/hour")
    for n in range(3000):
        assert limiter.hit(item, f"spray{n}")
        assert len(storage) <= 1000
    assert len(storage) > 900


def test_expired_keys_are_reclaimed_by_the_counted_sweep(
    no_timed_sweep: None,
    clock: FakeClock,
) -> None:
    """Keys from a spray are dropped by the sweep run after max(1000, max_keys // 8) new keys."""
    storage = BoundedMemoryStorage(max_keys=4000, clock=clock)
    limiter = SlidingWindowCounterRateLimiter(storage)
    item = parse("5/second")
    for n in range(500):
        limiter.hit(item, f"old{n}")
    assert len(storage) == 500
    clock.advance(2.1)
    for n in range(499):
        limiter.hit(item, f"new{n}")
    assert len(storage) == 999  # nothing read the old keys, and no sweep yet
    limiter.hit(item, "new499")  # the 1000th new key since the last sweep
    assert len(storage) <= 500


def test_expired_keys_are_reclaimed_by_a_timed_sweep(clock: FakeClock) -> None:
    """A new key a second or more after the last sweep drops what expired meanwhile."""
    storage = BoundedMemoryStorage(max_keys=4000, clock=clock)
    limiter = SlidingWindowCounterRateLimiter(storage)
    item = parse("5/second")
    for n in range(500):
        limiter.hit(item, f"old{n}")
    clock.advance(2.1)
    limiter.hit(item, "fresh")
    assert len(storage) == 1


def test_expired_keys_are_dropped_when_read(clock: FakeClock) -> None:
    """Reading an expired counter drops it and reads zero."""
    storage = BoundedMemoryStorage(clock=clock)
    assert storage.incr("k", 1, amount=3) == 3
    clock.advance(0.9)
    assert storage.get("k") == 3
    clock.advance(0.2)
    assert storage.get("k") == 0
    assert len(storage) == 0


def test_eviction_drops_the_oldest_first(no_timed_sweep: None) -> None:
    """Past the cap the oldest counters go, and the newest keep their counts."""
    storage = BoundedMemoryStorage(max_keys=1000)
    for n in range(1500):
        storage.incr(f"k{n}", 3600, amount=2)
    assert len(storage) <= 1000
    assert storage.get("k0") == 0
    assert storage.get("k499") == 0
    assert all(storage.get(f"k{n}") == 2 for n in range(1000, 1500))
    survivors = [n for n in range(1500) if storage.get(f"k{n}")]
    assert survivors == list(range(1500 - len(survivors), 1500))


def test_eviction_prefers_expired_keys(no_timed_sweep: None, clock: FakeClock) -> None:
    """At the cap, expired counters at the front go before any live one."""
    storage = BoundedMemoryStorage(max_keys=500, clock=clock)
    for n in range(250):
        storage.incr(f"short{n}", 1)
    for n in range(250):
        storage.incr(f"long{n}", 3600)
    clock.advance(1.1)
    for n in range(50):
        storage.incr(f"new{n}", 3600)
    assert len(storage) == 300
    assert all(storage.get(f"long{n}") == 1 for n in range(250))


def test_concurrent_hits_on_one_key_never_overshoot(clock: FakeClock) -> None:
    """Eight threads hammering one key with a limit of 50 get exactly 50 successes."""
    limiter = SlidingWindowCounterRateLimiter(BoundedMemoryStorage(clock=clock))
    item = parse("50/minute")
    successes = [0] * 8
    start = threading.Barrier(8)

    def hammer(slot: int) -> None:
        start.wait()
        for _ in range(500):
            if limiter.hit(item, "shared"):
                successes[slot] += 1

    threads = [threading.Thread(target=hammer, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(successes) == 50


def test_clear_and_reset(clock: FakeClock) -> None:
    """clear forgets one limit's windows, reset forgets everything and says how much."""
    storage = BoundedMemoryStorage(clock=clock)
    limiter = SlidingWindowCounterRateLimiter(storage)
    item = parse("2/hour")
    for key in ("a", "b"):
        limiter.hit(item, key)
        limiter.hit(item, key)
    storage.incr("plain", 60)
    assert not limiter.test(item, "a")
    limiter.clear(item, "a")
    assert limiter.test(item, "a")
    assert limiter.get_window_stats(item, "a").remaining == 2
    assert not limiter.test(item, "b")
    storage.clear("plain")
    assert storage.get("plain") == 0
    assert storage.reset() == 1
    assert len(storage) == 0
    assert limiter.test(item, "b")
    assert storage.check()


def test_expiry_is_reported() -> None:
    """get_expiry gives the counter's expiry time, or now when there is none."""
    storage = BoundedMemoryStorage()
    before = time.time()
    storage.incr("k", 60)
    assert before + 60 <= storage.get_expiry("k") <= time.time() + 60
    assert before <= storage.get_expiry("missing") <= time.time()


def test_max_keys_must_be_positive() -> None:
    """A cap below one is refused, by the storage and by RateLimits."""
    with pytest.raises(ValueError, match="max_keys"):
        BoundedMemoryStorage(0)
    with pytest.raises(ValueError, match="memory_max_keys"):
        RateLimits(memory_max_keys=0)


def test_memory_uri_uses_the_bounded_storage() -> None:
    """RateLimits' memory:// counts in a BoundedMemoryStorage capped at memory_max_keys."""
    limiter = Limiter(RateLimits(memory_max_keys=1234), b"key")
    assert isinstance(limiter.storage, BoundedMemoryStorage)
    assert limiter.storage.max_keys == 1234
    assert limiter.hit("per_requester", "203.0.113.7")
    assert len(limiter.storage) == 1
    assert isinstance(Limiter(RateLimits(), b"key").storage, BoundedMemoryStorage)
