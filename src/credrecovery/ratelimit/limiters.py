"""Rate limits on the public entry points, counted with the ``limits`` library.

Keys are keyed digests, never the identifier, client number or requester in
clear, so neither a shared Redis nor a log reveals who asked for what.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import logging
import time
import urllib.parse
from collections.abc import Callable

from limits import RateLimitItem, parse
from limits.aio import storage as aio_storage
from limits.aio.strategies import SlidingWindowCounterRateLimiter as AsyncSlidingWindowCounter
from limits.storage import Storage, storage_from_string
from limits.strategies import SlidingWindowCounterRateLimiter

from ._limits_storage import BoundedMemoryStorage

__all__ = ["AsyncLimiter", "Limiter", "RateLimits"]

logger = logging.getLogger("credrecovery")


@dataclasses.dataclass(frozen=True)
class RateLimits:
    """The four limits, as ``limits`` strings, and where they are counted.

    * ``per_requester``: recovery requests from one requester (say, an IP).
      Over it, :class:`RateLimited`.
    * ``per_identifier``: requests naming one identifier value, known or not.
      Over it, nothing is mailed and the answer is unchanged.
    * ``per_client``: confirmation mails to one client, however it was named.
      Over it, nothing is mailed and the answer is unchanged.
    * ``failed_confirmations``: invalid, expired or reused tokens presented by
      one requester. Over it, :class:`RateLimited`.

    ``storage_uri`` is ``"memory://"`` for one process, or a Redis URI such as
    ``"redis://127.0.0.1:6379/0"`` for workers that share limits. Counting uses
    the sliding-window-counter strategy, whose keys expire and are reclaimed.

    With ``"memory://"``, ``per_client`` counters of clients that exist live in
    a store of their own, apart from everything else (the other three limits,
    and ``per_client`` counters of values that matched nobody). A spray of
    misses, however large, never writes to that store and so cannot evict a
    real client's counter. ``memory_max_keys`` caps each of the two stores
    (the cap is per store, not split): at about 300 bytes a counter, some
    70 MiB for the shared store at the default, and as much again at most for
    the clients' store, which holds at most three counters for each client
    asked for within the last three ``per_client`` windows (three hours at the
    default). Past its cap a store forgets its oldest counters first, so a
    spray makes the limits more lenient instead of growing memory; a cap
    comfortably above three times the number of clients keeps every client's
    counter. ``memory_max_keys`` has no effect on Redis, which expires keys
    itself.

    With Redis every counter, of clients and misses alike, is a key in the one
    server, and every key carries a TTL. Run that Redis with
    ``maxmemory-policy noeviction`` and a ``maxmemory`` with headroom. Because
    every key has a TTL, the ``volatile-*`` policies may evict any of them, and
    ``volatile-ttl`` evicts those nearest expiry first: the oldest counters, a
    real client's among them, which is what a spray is after. Under
    ``noeviction`` a full Redis refuses writes instead, so the limiter fails
    open and logs ``limiter_error`` at ERROR, loudly, until keys expire.
    """

    per_requester: str = "20/minute"
    per_identifier: str = "5/hour"
    per_client: str = "3/hour"
    failed_confirmations: str = "20/minute"
    storage_uri: str = "memory://"
    memory_max_keys: int = 250_000

    def __post_init__(self) -> None:
        for field in ("per_requester", "per_identifier", "per_client", "failed_confirmations"):
            try:
                parse(getattr(self, field))
            except ValueError as exc:
                raise ValueError(f"RateLimits.{field} is not a valid limit string") from exc
        if self.memory_max_keys < 1:
            raise ValueError("RateLimits.memory_max_keys must be at least 1")


class Limiter:
    """Counts hits of named limits; built by the service from :class:`RateLimits`.

    If the storage is unreachable the limiter fails open and logs an error:
    refusing every recovery while Redis is down would be a denial of service.

    ``clock`` (the service's) times the ``"memory://"`` windows; Redis keys
    expire on the server's own clock.
    """

    def __init__(self, config: RateLimits, key: bytes, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.config = config
        storage: object
        known_storage: object
        if urllib.parse.urlparse(config.storage_uri).scheme == "memory":
            storage = BoundedMemoryStorage(config.memory_max_keys, clock=clock)
            known_storage = BoundedMemoryStorage(config.memory_max_keys, clock=clock)
        else:
            storage = known_storage = storage_from_string(config.storage_uri)
        if not isinstance(storage, Storage) or not isinstance(known_storage, Storage):
            raise ValueError("storage_uri must name a synchronous storage")
        #: Where every limit is counted, except known clients' ``per_client``.
        self.storage: Storage = storage
        #: Where :meth:`hit_client` counts clients that exist: a store of its
        #: own with ``"memory://"``, else the same storage (Redis) as :attr:`storage`.
        self.known_storage: Storage = known_storage
        self._strategy = SlidingWindowCounterRateLimiter(self.storage)
        self._known_strategy = SlidingWindowCounterRateLimiter(self.known_storage)
        self._items: dict[str, RateLimitItem] = {
            name: parse(getattr(config, name))
            for name in ("per_requester", "per_identifier", "per_client", "failed_confirmations")
        }
        self._key = key

    def __repr__(self) -> str:
        return f"Limiter({self.config!r})"

    def digest(self, value: str) -> str:
        """A short keyed digest of ``value``, stable across workers sharing a secret."""
        return _digest(self._key, value)

    def hit(self, name: str, value: str) -> bool:
        """Count one hit on limit ``name`` for ``value``; False if over the limit.

        Counts in :attr:`storage`, ``per_client`` included: for ``per_client``
        prefer :meth:`hit_client`, which keeps known clients' counters apart.
        """
        return self._fail_open(name, value, self._strategy.hit)

    def hit_client(self, value: str, *, known: bool) -> bool:
        """Count one hit of ``per_client`` for ``value``; False if over the limit.

        ``known`` says whether ``value`` names a client that exists. Known
        clients are counted in :attr:`known_storage`, which misses never write
        to; misses in :attr:`storage`. Either way the call does the same work,
        one digest and one sliding-window hit on a store of the same kind, so
        a hit and a miss cost alike. With Redis both count in the one server,
        under the keys ``hit("per_client", value)`` uses. Fails open, as
        :meth:`hit` does.
        """
        strategy = self._known_strategy if known else self._strategy
        return self._fail_open("per_client", value, strategy.hit)

    def test(self, name: str, value: str) -> bool:
        """Whether limit ``name`` would accept one more hit for ``value``."""
        return self._fail_open(name, value, self._strategy.test)

    def _fail_open(self, name: str, value: str, call: Callable[..., bool]) -> bool:
        try:
            return call(self._items[name], name, self.digest(value))
        except Exception:  # noqa: BLE001 - any storage failure
            logger.error("rate limit storage failed; letting the attempt through",
                         extra={"event": "limiter_error", "limit": name})
            return True

    def retry_after(self, name: str, value: str) -> float:
        """Seconds until limit ``name`` accepts a hit for ``value`` again."""
        try:
            stats = self._strategy.get_window_stats(self._items[name], name, self.digest(value))
        except Exception:  # noqa: BLE001 - any storage failure
            return float(self._items[name].get_expiry())
        return max(1.0, stats.reset_time - time.time())


class _AsyncBoundedMemory(aio_storage.Storage, aio_storage.SlidingWindowCounterSupport):
    """:class:`BoundedMemoryStorage` behind ``limits.aio``'s interface.

    Its operations never wait on anything but a short in-process lock, so
    they run inline on the event loop.
    """

    STORAGE_SCHEME = None

    def __init__(self, max_keys: int, clock: Callable[[], float]) -> None:
        super().__init__()
        self.bounded = BoundedMemoryStorage(max_keys, clock=clock)

    @property
    def base_exceptions(self) -> type[Exception] | tuple[type[Exception], ...]:
        return ValueError

    async def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        return self.bounded.incr(key, expiry, amount)

    async def get(self, key: str) -> int:
        return self.bounded.get(key)

    async def get_expiry(self, key: str) -> float:
        return self.bounded.get_expiry(key)

    async def check(self) -> bool:
        return True

    async def reset(self) -> int | None:
        return self.bounded.reset()

    async def clear(self, key: str) -> None:
        self.bounded.clear(key)

    async def acquire_sliding_window_entry(
        self, key: str, limit: int, expiry: int, amount: int = 1
    ) -> bool:
        return self.bounded.acquire_sliding_window_entry(key, limit, expiry, amount)

    async def get_sliding_window(self, key: str, expiry: int) -> tuple[int, float, int, float]:
        return self.bounded.get_sliding_window(key, expiry)

    async def clear_sliding_window(self, key: str, expiry: int) -> None:
        self.bounded.clear_sliding_window(key, expiry)


class AsyncLimiter:
    """:class:`Limiter` for asyncio, counted with ``limits.aio``.

    ``"memory://"`` uses two bounded in-process stores, as :class:`Limiter`
    does; a Redis URI is counted through redis-py's asyncio client. Failures
    reach the caller, whose flow fails open and logs ``limiter_error``.
    """

    def __init__(self, config: RateLimits, key: bytes, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self._key = key
        self._items = {name: parse(getattr(config, name))
                       for name in ("per_requester", "per_identifier", "per_client",
                                    "failed_confirmations")}
        storage: object
        known: object
        if urllib.parse.urlparse(config.storage_uri).scheme == "memory":
            storage = _AsyncBoundedMemory(config.memory_max_keys, clock)
            known = _AsyncBoundedMemory(config.memory_max_keys, clock)
        else:
            uri = config.storage_uri
            if not uri.startswith("async+"):
                uri = "async+" + uri
            options = {"implementation": "redispy"} if "redis" in uri.split("://")[0] else {}
            storage = known = storage_from_string(uri, **options)
        if not isinstance(storage, aio_storage.Storage):
            raise ValueError("storage_uri must name a storage that limits.aio supports")
        self.storage = storage
        self.known_storage = known
        self._strategy = AsyncSlidingWindowCounter(storage)
        self._known_strategy = AsyncSlidingWindowCounter(known)

    def __repr__(self) -> str:
        return f"AsyncLimiter({self.config!r})"

    async def aclose(self) -> None:
        """Close the storage's connections, which belong to the running event loop."""
        client = getattr(getattr(self.storage, "bridge", None), "storage", None)
        close = getattr(client, "aclose", None)
        if close is not None:
            await close()

    def digest(self, value: str) -> str:
        """The same keyed digest :meth:`Limiter.digest` gives."""
        return _digest(self._key, value)

    async def hit(self, name: str, value: str) -> bool:
        """Count one hit on limit ``name`` for ``value``; False if over the limit."""
        return await self._strategy.hit(self._items[name], name, self.digest(value))

    async def hit_client(self, value: str, *, known: bool) -> bool:
        """Count one ``per_client`` hit, known clients apart, as :meth:`Limiter.hit_client`."""
        strategy = self._known_strategy if known else self._strategy
        return await strategy.hit(self._items["per_client"], "per_client", self.digest(value))

    async def test(self, name: str, value: str) -> bool:
        """Whether limit ``name`` would accept one more hit for ``value``."""
        return await self._strategy.test(self._items[name], name, self.digest(value))

    async def retry_after(self, name: str, value: str) -> float:
        """Seconds until limit ``name`` accepts a hit for ``value`` again."""
        stats = await self._strategy.get_window_stats(self._items[name], name, self.digest(value))
        return max(1.0, stats.reset_time - time.time())


def _digest(key: bytes, value: str) -> str:
    return hmac.new(key, value.encode("utf-8"), hashlib.sha256).hexdigest()[:24]
