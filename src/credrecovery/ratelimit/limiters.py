"""Rate limits on the public entry points, counted with the ``limits`` library.

Keys are keyed digests, never the identifier, client number or requester in
clear, so neither a shared Redis nor a log reveals who asked for what.

Both limiters meet a storage failure alike, decided in one place:
:func:`_let_through` and :func:`_whole_window` say what it means and log it.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import TypeVar, cast

from limits import RateLimitItem, parse
from limits.aio import storage as aio_storage
from limits.aio.strategies import SlidingWindowCounterRateLimiter as AsyncSlidingWindowCounter
from limits.storage import SlidingWindowCounterSupport, Storage, storage_from_string
from limits.strategies import SlidingWindowCounterRateLimiter

from .._flow.limits import LimitName
from ._limits_storage import BoundedMemoryStorage
from .settings import RateLimits

__all__ = ["AsyncLimiter", "LimitName", "Limiter", "RateLimits"]

# What a sliding window counter's storage reports: previous count, seconds the
# previous window still weighs, current count, seconds the current one lives.
_Window = tuple[int, float, int, float]

logger = logging.getLogger("credrecovery")


class Limiter:
    """Counts hits of named limits; built by the service from :class:`RateLimits`.

    If the storage fails the limiter fails open and logs ``limiter_error``:
    refusing every recovery while Redis is down would be a denial of service.
    :class:`AsyncLimiter` does exactly the same.

    ``clock`` (the service's) times the ``"memory://"`` windows, and so
    :meth:`retry_after`; Redis keys expire on the server's own clock.
    """

    def __init__(
        self, config: RateLimits, key: bytes, *, clock: Callable[[], float] = time.time
    ) -> None:
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
        #: Where every limit is counted, except known clients' ``per_client``
        #: and ``per_mailbox``.
        self.storage: Storage = storage
        #: Where :meth:`hit_client` and :meth:`hit_mailbox` count clients that
        #: exist: a store of its own with ``"memory://"``, else the same
        #: storage (Redis) as :attr:`storage`.
        self.known_storage: Storage = known_storage
        self._strategy = SlidingWindowCounterRateLimiter(self.storage)
        self._known_strategy = SlidingWindowCounterRateLimiter(self.known_storage)
        self._items = _items(config)
        self._key = key

    def __repr__(self) -> str:
        return f"Limiter({self.config!r})"

    def digest(self, value: str) -> str:
        """A short keyed digest of ``value``, stable across workers sharing a secret."""
        return _digest(self._key, value)

    def hit(self, name: str, value: str) -> bool:
        """Count one hit on limit ``name`` for ``value``; False if over the limit.

        ``name`` is a :class:`LimitName` or its value. Counts in :attr:`storage`,
        ``per_client`` included: for ``per_client`` prefer :meth:`hit_client`,
        which keeps known clients' counters apart.
        """
        return self._ask(self._strategy.hit, name, value)

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
        return self._ask(strategy.hit, LimitName.PER_CLIENT, value)

    def hit_mailbox(self, value: str, *, known: bool, sends: bool = True) -> bool:
        """Count one ``per_mailbox`` hit for ``value``; False if over the limit.

        Counted where :meth:`hit_client` counts, as ``known`` says. With
        ``sends=False`` the counter is touched without being counted: the same
        storage work, for a request whose mail another limit withholds, so
        that whether this limit counts shows in no timing. Fails open.
        """
        strategy = self._known_strategy if known else self._strategy
        return self._ask(_costing(strategy.hit, 1 if sends else 0), LimitName.PER_MAILBOX, value)

    def claim(self, name: str, value: str) -> bool:
        """Take the whole of limit ``name`` for ``value`` at once, if its counter holds no hit.

        True, and the counter then full, when it was empty; False otherwise.
        One atomic step, so of concurrent claims one wins. Fails open.
        """
        return self._ask(_whole(self._strategy.hit), name, value)

    def clear(self, name: str, value: str) -> None:
        """Forget the hits of limit ``name`` for ``value``; a storage failure is logged."""
        limit = LimitName(name)
        try:
            self._strategy.clear(self._items[limit], limit.value, self.digest(value))
        except Exception as exc:  # noqa: BLE001 - any storage failure
            _let_through(limit, exc)

    def test(self, name: str, value: str) -> bool:
        """Whether limit ``name`` would accept one more hit for ``value``."""
        return self._ask(self._strategy.test, name, value)

    def retry_after(self, name: str, value: str) -> float:
        """Seconds (at least 1) until limit ``name`` accepts a hit for ``value`` again.

        Reckoned from the storage's own times, never the wall clock; the
        limit's whole window if the storage fails.
        """
        limit = LimitName(name)
        item = self._items[limit]
        storage = cast(SlidingWindowCounterSupport, self.storage)
        try:
            window = storage.get_sliding_window(
                item.key_for(limit.value, self.digest(value)), item.get_expiry()
            )
        except Exception as exc:  # noqa: BLE001 - any storage failure
            return _whole_window(limit, item, exc)
        return _until_reset(item, window)

    def _ask(self, call: Callable[[RateLimitItem, str, str], bool], name: str, value: str) -> bool:
        limit = LimitName(name)
        try:
            return call(self._items[limit], limit.value, self.digest(value))
        except Exception as exc:  # noqa: BLE001 - any storage failure
            return _let_through(limit, exc)


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
    does; a Redis URI is counted through redis-py's asyncio client. A storage
    failure is met as :class:`Limiter` meets it: the attempt is let through
    and ``limiter_error`` logged, with the same fields.
    """

    def __init__(
        self, config: RateLimits, key: bytes, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.config = config
        self._key = key
        self._items = _items(config)
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
        return await self._ask(self._strategy.hit, name, value)

    async def hit_client(self, value: str, *, known: bool) -> bool:
        """Count one ``per_client`` hit, known clients apart, as :meth:`Limiter.hit_client`."""
        strategy = self._known_strategy if known else self._strategy
        return await self._ask(strategy.hit, LimitName.PER_CLIENT, value)

    async def hit_mailbox(self, value: str, *, known: bool, sends: bool = True) -> bool:
        """Count one ``per_mailbox`` hit, as :meth:`Limiter.hit_mailbox`."""
        strategy = self._known_strategy if known else self._strategy
        return await self._ask(
            _costing(strategy.hit, 1 if sends else 0), LimitName.PER_MAILBOX, value
        )

    async def claim(self, name: str, value: str) -> bool:
        """Take the whole of a limit if its counter is empty, as :meth:`Limiter.claim`."""
        return await self._ask(_whole(self._strategy.hit), name, value)

    async def clear(self, name: str, value: str) -> None:
        """Forget the hits of limit ``name`` for ``value``, as :meth:`Limiter.clear`."""
        limit = LimitName(name)
        try:
            await self._strategy.clear(self._items[limit], limit.value, self.digest(value))
        except Exception as exc:  # noqa: BLE001 - any storage failure
            _let_through(limit, exc)

    async def test(self, name: str, value: str) -> bool:
        """Whether limit ``name`` would accept one more hit for ``value``."""
        return await self._ask(self._strategy.test, name, value)

    async def retry_after(self, name: str, value: str) -> float:
        """Seconds until limit ``name`` accepts a hit again, as :meth:`Limiter.retry_after`."""
        limit = LimitName(name)
        item = self._items[limit]
        storage = cast(aio_storage.SlidingWindowCounterSupport, self.storage)
        try:
            window = await storage.get_sliding_window(
                item.key_for(limit.value, self.digest(value)), item.get_expiry()
            )
        except Exception as exc:  # noqa: BLE001 - any storage failure
            return _whole_window(limit, item, exc)
        return _until_reset(item, window)

    async def _ask(
        self, call: Callable[[RateLimitItem, str, str], Awaitable[bool]], name: str, value: str
    ) -> bool:
        limit = LimitName(name)
        try:
            return await call(self._items[limit], limit.value, self.digest(value))
        except Exception as exc:  # noqa: BLE001 - any storage failure
            return _let_through(limit, exc)


# --- shared by both limiters ---------------------------------------------------------


def _items(config: RateLimits) -> dict[LimitName, RateLimitItem]:
    return {name: parse(getattr(config, name.value)) for name in LimitName}


_R = TypeVar("_R")


def _costing(hit: Callable[..., _R], cost: int) -> Callable[[RateLimitItem, str, str], _R]:
    """``hit`` counting ``cost`` hits: 0 reads and writes the counter without counting."""
    return lambda item, *identifiers: hit(item, *identifiers, cost=cost)


def _whole(hit: Callable[..., _R]) -> Callable[[RateLimitItem, str, str], _R]:
    """``hit`` counting as many hits as the limit takes: it passes only on an empty counter."""
    return lambda item, *identifiers: hit(item, *identifiers, cost=item.amount)


def _digest(key: bytes, value: str) -> str:
    return hmac.new(key, value.encode("utf-8"), hashlib.sha256).hexdigest()[:24]


def _let_through(limit: LimitName, exc: Exception) -> bool:
    """A failed count lets the attempt through: refusing every recovery while the
    storage is down would be a denial of service of its own."""
    logger.error(
        "rate limit storage failed; letting the attempt through",
        extra={"event": "limiter_error", "limit": limit.value, "error": type(exc).__name__},
    )
    return True


def _whole_window(limit: LimitName, item: RateLimitItem, exc: Exception) -> float:
    """When the storage cannot say, a refused caller waits one whole window of the
    limit, after which its counts have surely weighed off."""
    logger.error(
        "rate limit storage failed; retry after the limit's whole window",
        extra={"event": "limiter_error", "limit": limit.value, "error": type(exc).__name__},
    )
    return float(item.get_expiry())


def _until_reset(item: RateLimitItem, window: _Window) -> float:
    """Seconds, at least 1, until the sliding window counter lets a hit through again.

    The reckoning of ``limits``' ``get_window_stats``, kept relative: the
    storage's remaining times are on its own clock (the service's for
    ``"memory://"``), and no wall-clock reading is mixed in.
    """
    previous_count, previous_expires_in, current_count, current_expires_in = window
    expiry = item.get_expiry()
    waits = []
    if previous_count:
        waits.append(previous_expires_in % (expiry / previous_count))
    if current_count:
        waits.append(current_expires_in % expiry)
    return max(1.0, min(waits, default=0.0))
