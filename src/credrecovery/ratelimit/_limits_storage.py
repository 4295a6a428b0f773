"""A ``limits`` storage for one process whose memory is bounded and reclaimed.

``limits``' own ``MemoryStorage`` grows with every distinct key it is shown and
frees expired keys only from a timer that scans them all, so an attack spraying
distinct identifiers costs memory without bound. :class:`BoundedMemoryStorage`
holds at most ``max_keys`` counters, frees expired ones as it goes, and counts
windows exactly as ``MemoryStorage`` does, so the sliding window counter gives
the same answers on either.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from itertools import islice
from math import floor

from limits.storage.base import (
    SlidingWindowCounterSupport,
    Storage,
    TimestampedSlidingWindow,
)

__all__ = ["BoundedMemoryStorage"]

# A sweep started by the clock rather than by insertions waits at least this
# long after the previous one, and 100 times as long as that one took: the
# clock alone never spends more than about 1% of the time sweeping.
_MIN_SWEEP_INTERVAL = 1.0
_SWEEP_DUTY = 100.0


class _Entry:
    __slots__ = ("count", "expires_at")

    def __init__(self, count: int, expires_at: float) -> None:
        self.count = count
        self.expires_at = expires_at


class BoundedMemoryStorage(Storage, SlidingWindowCounterSupport, TimestampedSlidingWindow):
    """Counters for the fixed and sliding window strategies, for one process.

    One lock guards a dict of ``key -> (count, expiry time)`` kept in insertion
    order. Expiry times are ``clock()`` (``time.time`` unless a test clock is
    given) plus the TTL a strategy asks for;
    a sliding window's counter lives for two windows from its first hit, as on
    ``MemoryStorage``.

    Memory stays bounded and is given back:

    * an expired counter is dropped when it is next read or written;
    * every ``max(1000, max_keys // 8)`` new keys, and on the first new key a
      second or more after the last such sweep (longer if sweeps are slow),
      every expired counter is dropped and the dict rebuilt, which also gives
      back the space of deleted slots;
    * a new key arriving with ``max_keys`` counters held first drops the run of
      expired counters at the front, then the oldest-inserted counters, a
      batch of ``max(1, max_keys // 64)`` at a time.

    Eviction forgets the oldest counters first: under a spray of more distinct
    keys than ``max_keys`` the limits grow more lenient instead of memory
    growing. The per-requester limit and the cap together bound what an
    attacker gains, and the limiter keeps known clients' ``per_client``
    counters in an instance of their own, which misses never fill. The count
    never exceeds ``max_keys``.

    Not registered under a URI scheme: it is constructed directly.
    """

    STORAGE_SCHEME = None

    def __init__(self, max_keys: int = 250_000, *, clock: Callable[[], float] = time.time) -> None:
        if max_keys < 1:
            raise ValueError("max_keys must be at least 1")
        super().__init__()
        self.max_keys = max_keys
        self._clock = clock
        self._sweep_every = max(1000, max_keys // 8)
        self._evict_batch = max(1, max_keys // 64)
        self._lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}
        self._inserted = 0
        self._next_timed_sweep = clock() + _MIN_SWEEP_INTERVAL

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"BoundedMemoryStorage(max_keys={self.max_keys})"

    @property
    def base_exceptions(self) -> type[Exception] | tuple[type[Exception], ...]:
        return ValueError

    # --- under the lock ---------------------------------------------------------------

    def _live(self, key: str, now: float) -> _Entry | None:
        entry = self._entries.get(key)
        if entry is not None and entry.expires_at <= now:
            del self._entries[key]
            return None
        return entry

    def _count(self, key: str, now: float) -> int:
        entry = self._live(key, now)
        return 0 if entry is None else entry.count

    def _incr(self, key: str, expiry: float, amount: int, now: float) -> int:
        entry = self._live(key, now)
        if entry is None:
            self._insert(key, _Entry(amount, now + expiry), now)
            return amount
        entry.count += amount
        if entry.count == amount:
            entry.expires_at = now + expiry
        return entry.count

    def _insert(self, key: str, entry: _Entry, now: float) -> None:
        self._inserted += 1
        if self._inserted >= self._sweep_every or now >= self._next_timed_sweep:
            self._sweep(now)
        if len(self._entries) >= self.max_keys:
            self._evict(now)
        self._entries[key] = entry

    def _sweep(self, now: float) -> None:
        started = time.perf_counter()
        # A new dict rather than deletions in place: deleted slots at the front
        # would otherwise be walked over by every eviction until the dict resizes.
        self._entries = {k: e for k, e in self._entries.items() if e.expires_at > now}
        self._inserted = 0
        took = time.perf_counter() - started
        self._next_timed_sweep = now + max(_MIN_SWEEP_INTERVAL, _SWEEP_DUTY * took)

    def _evict(self, now: float) -> None:
        doomed: list[str] = []
        for key, entry in self._entries.items():
            if entry.expires_at > now:
                break
            doomed.append(key)
        if len(doomed) < self._evict_batch:
            doomed = list(islice(self._entries, self._evict_batch))
        for key in doomed:
            del self._entries[key]

    def _window(
        self, previous_key: str, current_key: str, expiry: int, now: float
    ) -> tuple[int, float, int, float]:
        previous_count = self._count(previous_key, now)
        current_count = self._count(current_key, now)
        # How much of the previous window the sliding window still covers, in seconds.
        previous_ttl = (1 - (((now - expiry) / expiry) % 1)) * expiry if previous_count else 0.0
        current_ttl = (1 - ((now / expiry) % 1)) * expiry + expiry
        return previous_count, previous_ttl, current_count, current_ttl

    # --- Storage ----------------------------------------------------------------------

    def incr(self, key: str, expiry: float, amount: int = 1) -> int:
        """Add ``amount`` to ``key``'s counter; a new counter expires in ``expiry`` seconds."""
        with self._lock:
            return self._incr(key, expiry, amount, self._clock())

    def get(self, key: str) -> int:
        """The counter for ``key``; 0 if there is none or it expired."""
        with self._lock:
            return self._count(key, self._clock())

    def get_expiry(self, key: str) -> float:
        """When ``key``'s counter expires, on the storage's clock; now if there is none."""
        now = self._clock()
        with self._lock:
            entry = self._live(key, now)
            return now if entry is None else entry.expires_at

    def check(self) -> bool:
        """Always healthy: nothing to reach."""
        return True

    def reset(self) -> int | None:
        """Drop every counter; return how many there were."""
        with self._lock:
            count = len(self._entries)
            self._entries = {}
            self._inserted = 0
            return count

    def clear(self, key: str) -> None:
        """Drop ``key``'s counter."""
        with self._lock:
            self._entries.pop(key, None)

    # --- SlidingWindowCounterSupport --------------------------------------------------

    def acquire_sliding_window_entry(
        self, key: str, limit: int, expiry: int, amount: int = 1
    ) -> bool:
        """Count ``amount`` hits if the weighted count stays within ``limit``, atomically."""
        if amount > limit:
            return False
        now = self._clock()
        previous_key, current_key = self.sliding_window_keys(key, expiry, now)
        with self._lock:
            previous_count, previous_ttl, current_count, _ = self._window(
                previous_key, current_key, expiry, now
            )
            weighted_count = previous_count * previous_ttl / expiry + current_count
            if floor(weighted_count) + amount > limit:
                return False
            # As on MemoryStorage: a new counter lives two windows, long enough
            # to be weighed as the previous window throughout the next one.
            self._incr(current_key, 2 * expiry, amount, now)
            return True

    def get_sliding_window(self, key: str, expiry: int) -> tuple[int, float, int, float]:
        """Previous count, its weight in seconds, current count and its TTL."""
        now = self._clock()
        previous_key, current_key = self.sliding_window_keys(key, expiry, now)
        with self._lock:
            return self._window(previous_key, current_key, expiry, now)

    def clear_sliding_window(self, key: str, expiry: int) -> None:
        """Drop the current and previous windows' counters for ``key``."""
        previous_key, current_key = self.sliding_window_keys(key, expiry, self._clock())
        with self._lock:
            self._entries.pop(previous_key, None)
            self._entries.pop(current_key, None)
