"""The retry decision both delivery workers share: give up, or wait and try again."""

from __future__ import annotations

import logging
import secrets
from typing import Any

__all__ = ["next_wait"]

logger = logging.getLogger("credrecovery")


def next_wait(details: dict[str, Any], *, temporary: bool, attempt: int, max_attempts: int,
              backoff: float, max_backoff: float) -> float | None:
    """Log a failed attempt; return the seconds to wait before the next, or ``None`` to give up.

    A permanent failure, or the last attempt, is given up (``delivery_failed``,
    at ERROR). Otherwise the wait doubles from ``backoff`` with each attempt,
    capped at ``max_backoff``, times a random factor between 0.5 and 1 so that
    retries from many workers do not arrive together (``delivery_retry``).
    ``details`` are the event's fields, a ``reason`` among them.
    """
    if not temporary or attempt >= max_attempts:
        logger.error("mail delivery failed; giving up: %s", details["reason"],
                     extra={"event": "delivery_failed", **details})
        return None
    wait = min(max_backoff, backoff * 2.0 ** (attempt - 1))
    wait *= 0.5 + secrets.randbelow(500) / 1000
    logger.warning("mail delivery failed; retrying in %.1f s: %s", wait, details["reason"],
                   extra={"event": "delivery_retry", **details})
    return wait
