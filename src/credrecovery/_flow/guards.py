"""Directory and limiter effects with the library's own error handling, for the flows."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from typing import Any, NoReturn

from ..exceptions import DirectoryError, RateLimited, RecoveryError
from .effects import Effect, Flow, Hit, Interrupted, RetryAfter

__all__ = ["Guarded"]

logger = logging.getLogger("credrecovery")


class Guarded:
    """Base of the flows: wraps directory errors, lets limiter errors through, serializes swaps."""

    _limited: bool
    _confirming: set[str]
    _confirming_lock: threading.Lock

    def _directory(self, effect: Effect) -> Flow[Any]:
        """Perform a directory effect; wrap what a host's directory raises in DirectoryError."""
        try:
            return (yield effect)
        except Interrupted:
            raise
        except Exception as exc:
            logger.error("client directory failed",
                         extra={"event": "directory_error", "error": type(exc).__name__})
            if isinstance(exc, RecoveryError):
                raise
            raise DirectoryError("the client directory is unavailable") from exc

    def _limit(self, effect: Effect, name: str) -> Flow[bool]:
        """A limiter effect that fails open: refusing every recovery while Redis is down
        would be a denial of service of its own."""
        if not self._limited:
            return True
        try:
            return bool((yield effect))
        except Interrupted:
            raise
        except Exception:  # noqa: BLE001 - any storage failure
            logger.error("rate limit storage failed; letting the attempt through",
                         extra={"event": "limiter_error", "limit": name})
            return True

    def _hit(self, name: str, value: str) -> Flow[bool]:
        return (yield from self._limit(Hit(name, value), name))

    def _enforce(self, name: str, requester: str) -> Flow[None]:
        if not (yield from self._hit(name, requester)):
            yield from self._throttle(name, requester)

    def _throttle(self, name: str, requester: str) -> Flow[NoReturn]:
        logger.warning("attempt refused by rate limit", extra={"event": "throttled",
                                                               "limit": name})
        try:
            retry_after = float((yield RetryAfter(name, requester)))
        except Interrupted:
            raise
        except Exception:  # noqa: BLE001 - any storage failure
            retry_after = 60.0
        raise RateLimited(name, retry_after)

    @contextlib.contextmanager
    def _exclusive(self, number: str) -> Iterator[bool]:
        # The losers of a race hash nothing: argon2 costs memory, and one link
        # posted many times at once must not multiply it.
        with self._confirming_lock:
            busy = number in self._confirming
            if not busy:
                self._confirming.add(number)
        try:
            yield busy
        finally:
            if not busy:
                with self._confirming_lock:
                    self._confirming.discard(number)
