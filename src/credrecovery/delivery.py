"""Background delivery: a Mailer that queues and sends from a worker thread.

Taking the mailer off the request path is what makes a recovery request take
the same time whether or not the identifier matched a client.
"""

from __future__ import annotations

import atexit
import collections
import heapq
import itertools
import logging
import secrets
import threading
import time
from email.message import EmailMessage

from .exceptions import DeliveryFailed
from .protocols import Mailer

__all__ = ["BackgroundMailer"]

logger = logging.getLogger("credrecovery")


class BackgroundMailer:
    """Wrap a :class:`Mailer` so that :meth:`send` only queues the message.

    A worker thread delivers queued messages in order. A temporary failure
    (see :attr:`DeliveryFailed.temporary`; any other exception counts as
    temporary) is retried up to ``max_attempts`` times with exponential
    backoff from ``backoff`` seconds, capped at ``max_backoff``, with jitter.
    A permanent failure, or the last attempt, is logged at ERROR.

    The queue holds at most ``max_queue`` messages; :meth:`send` raises
    :class:`DeliveryFailed` when it is full. Call :meth:`flush` to wait for
    the queue to drain and :meth:`close` (or use ``with``) before exiting;
    an open mailer also flushes at interpreter exit.
    """

    def __init__(
        self,
        mailer: Mailer,
        *,
        max_queue: int = 1000,
        max_attempts: int = 5,
        backoff: float = 1.0,
        max_backoff: float = 300.0,
    ) -> None:
        if max_queue < 1 or max_attempts < 1 or backoff < 0 or max_backoff < backoff:
            raise ValueError("invalid queue or retry settings")
        self.mailer = mailer
        self.max_queue = max_queue
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._cond = threading.Condition()
        self._ready: collections.deque[tuple[EmailMessage, int]] = collections.deque()
        self._retries: list[tuple[float, int, EmailMessage, int]] = []
        self._order = itertools.count()
        self._in_flight = 0
        self._closed = False
        self._worker: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"BackgroundMailer({self.mailer!r}, pending={self.pending})"

    def __enter__(self) -> BackgroundMailer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def pending(self) -> int:
        """Messages queued, waiting for a retry, or being sent."""
        with self._cond:
            return len(self._ready) + len(self._retries) + self._in_flight

    def send(self, message: EmailMessage) -> None:
        """Queue ``message``. Raises :class:`DeliveryFailed` if the queue is full or closed."""
        with self._cond:
            if self._closed:
                raise DeliveryFailed("the background mailer is closed", temporary=False)
            if len(self._ready) + len(self._retries) >= self.max_queue:
                raise DeliveryFailed("the delivery queue is full")
            self._ready.append((message, 1))
            if self._worker is None:
                self._worker = threading.Thread(
                    target=self._run, name="credrecovery-delivery", daemon=True
                )
                self._worker.start()
                atexit.register(self.close)
            self._cond.notify_all()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every queued message is delivered or given up; False on timeout."""
        with self._cond:
            return self._cond.wait_for(
                lambda: not self._ready and not self._retries and not self._in_flight,
                timeout,
            )

    def close(self, timeout: float | None = 30.0) -> None:
        """Flush for up to ``timeout`` seconds, then stop the worker.

        Messages still queued after that are logged as dropped.
        """
        atexit.unregister(self.close)
        self.flush(timeout)
        with self._cond:
            self._closed = True
            dropped = len(self._ready) + len(self._retries)
            self._ready.clear()
            self._retries.clear()
            self._cond.notify_all()
        if dropped:
            logger.error("background mailer closed with %d messages undelivered", dropped,
                         extra={"event": "mail_dropped", "count": dropped})
        if self._worker is not None and self._worker is not threading.current_thread():
            self._worker.join(timeout)

    def _next(self) -> tuple[EmailMessage, int] | None:
        with self._cond:
            while True:
                if self._closed:
                    return None
                if self._ready:
                    item = self._ready.popleft()
                    break
                now = time.monotonic()
                if self._retries and self._retries[0][0] <= now:
                    _, _, message, attempt = heapq.heappop(self._retries)
                    item = (message, attempt)
                    break
                self._cond.wait(self._retries[0][0] - now if self._retries else None)
            self._in_flight += 1
            return item

    def _run(self) -> None:
        while (item := self._next()) is not None:
            message, attempt = item
            try:
                self.mailer.send(message)
            except Exception as exc:  # noqa: BLE001 - a host mailer may raise anything
                self._failed(message, attempt, exc)
            else:
                logger.info("mail sent", extra={
                    "event": "mail_sent", "message_id": message["Message-ID"],
                    "attempt": attempt})
            with self._cond:
                self._in_flight -= 1
                self._cond.notify_all()

    def _failed(self, message: EmailMessage, attempt: int, exc: Exception) -> None:
        temporary = exc.temporary if isinstance(exc, DeliveryFailed) else True
        details = {"message_id": message["Message-ID"], "attempt": attempt,
                   "error": type(exc).__name__}
        if not temporary or attempt >= self.max_attempts:
            logger.error("mail delivery failed; giving up",
                         extra={"event": "delivery_failed", **details})
            return
        delay = min(self.max_backoff, self.backoff * 2 ** (attempt - 1))
        delay *= 0.5 + secrets.randbelow(500) / 1000
        logger.warning("mail delivery failed; retrying in %.1f s", delay,
                       extra={"event": "delivery_retry", **details})
        with self._cond:
            heapq.heappush(
                self._retries,
                (time.monotonic() + delay, next(self._order), message, attempt + 1),
            )
