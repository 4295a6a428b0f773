"""The retry decision both delivery workers share, logged alike, and their retry settings."""

from __future__ import annotations

import copy
import dataclasses
import logging
from email.message import EmailMessage
from typing import Any

from ._crossing import _rebuilt_from_settings
from .retry import RetryPolicy

__all__ = ["RetrySettings", "attempt_message", "chosen_policy", "next_wait"]

logger = logging.getLogger("credrecovery")


def next_wait(
    details: dict[str, Any], *, temporary: bool, attempt: int, policy: RetryPolicy
) -> float | None:
    """Log a failed attempt; return the seconds to wait before the next, or ``None`` to give up.

    ``policy`` decides (see :meth:`RetryPolicy.retry_after`). Giving up is
    logged as ``delivery_failed`` at ERROR, a retry as ``delivery_retry`` at
    WARNING. ``details`` are the event's fields, a ``reason`` among them.
    """
    wait = policy.retry_after(attempt, temporary=temporary)
    if wait is None:
        logger.error(
            "mail delivery failed; giving up: %s",
            details["reason"],
            extra={"event": "delivery_failed", **details},
        )
        return None
    logger.warning(
        "mail delivery failed; retrying in %.1f s: %s",
        wait,
        details["reason"],
        extra={"event": "delivery_retry", **details},
    )
    return wait


def attempt_message(
    mailer: object, message: EmailMessage, *, attempt: int, policy: RetryPolicy
) -> EmailMessage:
    """What attempt ``attempt`` hands ``mailer``: ``message``, or a copy a later attempt needs.

    A host's mailer may change the message it is given, while a later attempt
    must send the one composed: it gets a copy, unless this is the last
    attempt. The library's SMTP mailers never change it, and get it as it is.
    """
    if attempt >= policy.max_attempts or _rebuilt_from_settings(mailer):
        return message
    return copy.deepcopy(message)


def chosen_policy(
    retry: RetryPolicy | None,
    *,
    max_attempts: int | None,
    backoff: float | None,
    max_backoff: float | None,
) -> RetryPolicy:
    """The policy a delivery was given: ``retry``, or one built from the separate settings.

    Settings left ``None`` keep :class:`RetryPolicy`'s defaults. Raises
    :class:`TypeError` when both are given, :class:`ValueError` for bad values.
    """
    separate: dict[str, Any] = {
        "max_attempts": max_attempts,
        "backoff": backoff,
        "max_backoff": max_backoff,
    }
    given = {name: value for name, value in separate.items() if value is not None}
    if retry is None:
        return RetryPolicy(**given)
    if not isinstance(retry, RetryPolicy):
        raise TypeError("retry must be a RetryPolicy")
    if given:
        raise TypeError(f"give retry=RetryPolicy(...) or {', '.join(given)}, not both")
    return retry


class RetrySettings:
    """``retry``, and the separate settings it holds, for a delivery's readers and writers.

    ``max_attempts``, ``backoff`` and ``max_backoff`` read the policy's
    fields; setting one replaces :attr:`retry` with a copy that has it.
    """

    #: How failed mails are retried.
    retry: RetryPolicy

    @property
    def max_attempts(self) -> int:
        """Attempts per mail in all: :attr:`RetryPolicy.max_attempts`."""
        return self.retry.max_attempts

    @max_attempts.setter
    def max_attempts(self, value: int) -> None:
        self.retry = dataclasses.replace(self.retry, max_attempts=value)

    @property
    def backoff(self) -> float:
        """Seconds before the first retry: :attr:`RetryPolicy.backoff`."""
        return self.retry.backoff

    @backoff.setter
    def backoff(self, value: float) -> None:
        self.retry = dataclasses.replace(self.retry, backoff=value)

    @property
    def max_backoff(self) -> float:
        """The longest wait between attempts: :attr:`RetryPolicy.max_backoff`."""
        return self.retry.max_backoff

    @max_backoff.setter
    def max_backoff(self, value: float) -> None:
        self.retry = dataclasses.replace(self.retry, max_backoff=value)
