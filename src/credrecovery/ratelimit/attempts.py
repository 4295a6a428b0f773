"""The attempts a code ticket has left, counted where the rate limits are.

Each attempt at a ticket's code is counted *before* the code is compared, so
that of many attempts sent at once no more than the allowance are compared,
in one process or many; an attempt whose code was right is given back. The
counter lives from the ticket's first attempt for the ticket's whole life
(``limits``' fixed window, whose counter expires a set time after its first
hit), so no window boundary hands a ticket new attempts; a ticket with an
expiry of its own is counted in a window as long as its life. It is keyed by
a keyed digest of the ticket's nonce, never the nonce itself.

A service without rate limits still counts attempts, in a bounded store of
its own process. A storage failure lets the attempt through and logs
``limiter_error``, as the limits do.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from limits import RateLimitItemPerSecond
from limits.aio.strategies import FixedWindowRateLimiter as AsyncFixedWindow
from limits.strategies import FixedWindowRateLimiter

from ._limits_storage import BoundedMemoryStorage
from .limiters import AsyncLimiter, Limiter, RateLimits, _AsyncBoundedMemory, _digest

__all__ = ["AsyncAttemptCounter", "AttemptCounter"]

logger = logging.getLogger("credrecovery")

_NAME = "code_attempts"


class AttemptCounter:
    """Counts the attempts at each code ticket, ``allowed`` of them, for ``lifetime`` seconds.

    ``limiter`` is the service's, whose storage it shares (a Redis shared by
    every worker, say); ``None`` counts in a bounded in-process store.
    """

    def __init__(
        self,
        limiter: Limiter | None,
        key: bytes,
        *,
        allowed: int,
        lifetime: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        storage: Any = (
            limiter.storage
            if limiter is not None
            else BoundedMemoryStorage(RateLimits().memory_max_keys, clock=clock)
        )
        self._strategy = FixedWindowRateLimiter(storage)
        self._item = RateLimitItemPerSecond(allowed, max(1, round(lifetime)))
        self._key = key

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._item})"

    def spend(self, nonce: str, lifetime: float | None = None) -> bool:
        """Count one attempt at ticket ``nonce``; False when the ticket has none left.

        ``lifetime`` is the ticket's own, in seconds, when it has one.
        """
        try:
            return self._strategy.hit(_item(self._item, lifetime), _NAME, _digest(self._key, nonce))
        except Exception as exc:  # noqa: BLE001 - any storage failure
            return _let_through(exc)

    def refund(self, nonce: str, lifetime: float | None = None) -> None:
        """Give back the attempt a right code spent."""
        try:
            self._strategy.hit(
                _item(self._item, lifetime), _NAME, _digest(self._key, nonce), cost=-1
            )
        except Exception as exc:  # noqa: BLE001 - any storage failure
            _let_through(exc)


class AsyncAttemptCounter:
    """:class:`AttemptCounter` through ``limits.aio``, for :class:`AsyncLimiter`'s storage."""

    def __init__(
        self,
        limiter: AsyncLimiter | None,
        key: bytes,
        *,
        allowed: int,
        lifetime: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        storage: Any = (
            limiter.storage
            if limiter is not None
            else _AsyncBoundedMemory(RateLimits().memory_max_keys, clock)
        )
        self._strategy = AsyncFixedWindow(storage)
        self._item = RateLimitItemPerSecond(allowed, max(1, round(lifetime)))
        self._key = key

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._item})"

    async def spend(self, nonce: str, lifetime: float | None = None) -> bool:
        """Count one attempt at ticket ``nonce``; False when the ticket has none left.

        ``lifetime`` is the ticket's own, in seconds, when it has one.
        """
        try:
            return await self._strategy.hit(
                _item(self._item, lifetime), _NAME, _digest(self._key, nonce)
            )
        except Exception as exc:  # noqa: BLE001 - any storage failure
            return _let_through(exc)

    async def refund(self, nonce: str, lifetime: float | None = None) -> None:
        """Give back the attempt a right code spent."""
        try:
            await self._strategy.hit(
                _item(self._item, lifetime), _NAME, _digest(self._key, nonce), cost=-1
            )
        except Exception as exc:  # noqa: BLE001 - any storage failure
            _let_through(exc)


def _item(usual: RateLimitItemPerSecond, lifetime: float | None) -> RateLimitItemPerSecond:
    """``usual``, or the same allowance over ``lifetime`` seconds."""
    if lifetime is None:
        return usual
    return RateLimitItemPerSecond(usual.amount, max(1, round(lifetime)))


def _let_through(exc: Exception) -> bool:
    logger.error(
        "rate limit storage failed; letting the attempt through",
        extra={"event": "limiter_error", "limit": _NAME, "error": type(exc).__name__},
    )
    return True
