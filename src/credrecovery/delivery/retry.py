"""How delivery tries a mail again: one :class:`RetryPolicy` for background and Celery delivery."""

from __future__ import annotations

import dataclasses
import secrets

__all__ = ["RetryPolicy"]

# 2.0 ** 1023 is the largest power of two a float holds; later attempts wait the cap anyway.
_MAX_DOUBLINGS = 1023


@dataclasses.dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """How many times, and after how long, a mail that failed is tried again.

    Give it to :class:`~credrecovery.BackgroundMailer` or
    :class:`~credrecovery.celery.CeleryDelivery` as ``retry=``; both then
    retry alike. Every field is keyword-only:

    * ``max_attempts``: attempts per mail in all, the first included;
    * ``backoff``: seconds before the first retry, doubled before each next one;
    * ``max_backoff``: the longest wait between two attempts;
    * ``jitter``: the share of each wait drawn at random. A wait is
      multiplied by a factor between ``1 - jitter`` and 1, so that the
      retries of many workers do not arrive together; ``0`` waits exactly.

    With the defaults a mail is tried again after about 1, 2, 4 and 8
    seconds (each times a factor between 0.5 and 1), then given up. Raises
    :class:`ValueError` for ``max_attempts`` below 1, a negative ``backoff``,
    ``max_backoff`` below ``backoff`` or ``jitter`` outside 0 to 1.
    """

    max_attempts: int = 5
    backoff: float = 1.0
    max_backoff: float = 300.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        # Written so that NaN fails every check.
        if not (
            self.max_attempts >= 1
            and self.backoff >= 0
            and self.max_backoff >= self.backoff
            and 0 <= self.jitter <= 1
        ):
            raise ValueError("invalid retry settings")

    def retry_after(self, attempt: int, *, temporary: bool = True) -> float | None:
        """Seconds to wait after failed attempt number ``attempt`` (1 for the first), or ``None``.

        ``None`` means give up: the failure was permanent (``temporary``
        false, as for an SMTP 5xx), or ``attempt`` was the last one allowed.
        Otherwise the wait is ``backoff`` doubled ``attempt - 1`` times,
        capped at ``max_backoff``, times the random factor of ``jitter``.
        Raises :class:`ValueError` when ``attempt`` is below 1.
        """
        if attempt < 1:
            raise ValueError("attempts are counted from 1")
        if not temporary or attempt >= self.max_attempts:
            return None
        wait = min(self.max_backoff, self.backoff * 2.0 ** min(attempt - 1, _MAX_DOUBLINGS))
        return wait * (1.0 - self.jitter * secrets.randbelow(1001) / 1000)
