"""The flows' directory effects, with the library's own error handling, and limiter effects."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from typing import Any, NoReturn

from ..exceptions import DirectoryError, RateLimited, RecoveryError
from .effects import Effect, Flow, Hit, Interrupted, RetryAfter
from .limits import LimitName

__all__ = ["Guarded", "asked_by"]

logger = logging.getLogger("credrecovery")


def asked_by(value: str, requester: str) -> str:
    """What a limit counting each requester apart counts ``value`` under, for ``requester``.

    Unambiguous whatever either holds: the requester's length comes first.
    """
    return f"{len(requester)}:{requester}\n{value}"


class Guarded:
    """Base of the flows: wraps directory errors, asks the limiters, serializes swaps."""

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
            logger.error(
                "client directory failed",
                extra={"event": "directory_error", "error": type(exc).__name__},
            )
            if isinstance(exc, RecoveryError):
                raise
            raise DirectoryError("the client directory is unavailable") from exc

    def _limit(self, effect: Effect) -> Flow[bool]:
        """A limiter effect's answer, True when limiting is off.

        A storage failure is the limiters' to meet, alike in both shells:
        they let the attempt through and log ``limiter_error``.
        """
        if not self._limited:
            return True
        return bool((yield effect))

    def _hit(self, name: LimitName, value: str) -> Flow[bool]:
        return (yield from self._limit(Hit(name, value)))

    def _enforce(self, name: LimitName, requester: str) -> Flow[None]:
        if not (yield from self._hit(name, requester)):
            yield from self._throttle(name, requester)

    def _throttle(self, name: LimitName, value: str) -> Flow[NoReturn]:
        logger.warning(
            "attempt refused by rate limit", extra={"event": "throttled", "limit": name.value}
        )
        # On the limiter's clock, the service's; its whole window if the storage fails.
        retry_after = float((yield RetryAfter(name, value)))
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
