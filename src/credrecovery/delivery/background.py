"""Delivery of confirmation mails, off the request path.

The request path hands every request, a hit or a miss, to delivery as one
plain :class:`~credrecovery.jobs.ConfirmationJob`: a miss as a *decoy* that
is composed like any other and then dropped. :class:`BackgroundMailer` does
this in worker threads of this process or, for a mailer the library can
rebuild from its settings, in a delivery process of its own, each job after a
random delay, so that neither the composing nor the SMTP conversation lands
inside the response of the request that asked for it.
"""

from __future__ import annotations

import atexit
import logging
import secrets
import threading
import time
from collections.abc import Callable
from email.message import EmailMessage
from typing import Any, Literal

from .._failures import failure_details
from ..events import EventKind
from ..exceptions import DeliveryFailed
from ..jobs import ConfirmationJob
from ..mail.composer import Composer
from ..mail.headers import message_id
from ..protocols import AsyncMailer, Mailer
from ._crossing import _CannotCross, _crossing, _rebuilt_from_settings
from ._process import DeliveryProcess
from ._queue import Item, TimedQueue
from ._retry import RetrySettings, attempt_message, chosen_policy, next_wait
from .inline import InlineDelivery, Report, compose, send_now, tell
from .retry import RetryPolicy

# InlineDelivery, compose and send_now live in .inline, and stay importable from here.
__all__ = ["BackgroundMailer", "InlineDelivery", "compose", "failure_details", "send_now"]

logger = logging.getLogger("credrecovery")


class BackgroundMailer(RetrySettings):
    """Deliver off the request path: confirmation jobs, and messages given to :meth:`send`.

    ``isolation`` says where, and the rule is that the mailer a host passes
    stays the host's object:

    * ``"auto"`` (the default): a child Python process that the mailer starts
      and stops itself, so that the work never holds the web process's
      interpreter lock, when ``mailer`` is one of the library's own
      :class:`~credrecovery.smtp.SMTPMailer` or
      :class:`~credrecovery.async_smtp.AsyncSMTPMailer` (plain settings, which the
      child rebuilds) and the service's composer pickles; worker threads of
      this process for any other mailer, so that the host's object sends every
      mail itself (its outbox, counters and connections are the ones it reads);
    * ``"thread"``: worker threads of this process, whatever the mailer;
    * ``"process"``: the host's explicit request for a child process. The
      child unpickles a *copy* of ``mailer`` and sends from it, so the object
      passed here sees none of those mails: for a mailer defined by settings
      alone. Raises :class:`ValueError` at :meth:`bind` if it cannot cross.

    Where delivery stays in threads for another reason than the host's
    choice, a ``delivery_in_thread`` log event says why. The child logs
    through this process's ``credrecovery`` logger.

    :meth:`submit` queues a confirmation job; the worker takes it after a
    random delay between ``delay[0]`` and ``delay[1]`` seconds, composes it
    with the service's :class:`~credrecovery.composer.Composer`, and sends it
    through ``mailer`` (a decoy is composed, then dropped). :meth:`send`
    queues a finished message, to go out at once.

    A temporary failure (see :attr:`DeliveryFailed.temporary`; any other
    exception, a ``BaseException`` such as a green-thread ``Timeout``
    included, counts as temporary) is retried as ``retry``, a
    :class:`~credrecovery.RetryPolicy`, says: by default up to 5 attempts,
    with exponential backoff from 1 second, capped at 300, with jitter. The
    separate ``max_attempts``, ``backoff`` and ``max_backoff`` still set the
    policy's fields of those names, the others keeping their defaults; give
    them or ``retry``, not both (:class:`TypeError`). Each attempt that
    another may follow hands a host's ``mailer`` a copy of the message, so a
    mailer may change the one it is given (the library's SMTP mailers, which
    never do, get the message itself). A permanent failure, or the last
    attempt, is logged at ERROR with its reason. No worker is lost to what a
    mailer raises, and one that ends anyway is replaced at the next job.

    ``workers`` threads deliver at once, so that one slow server does not
    hold the others up, and one more composes the jobs due next while they
    wait on the server (at most one per worker), so that a worker goes from
    one mail to the next without composing in between. The queue holds at
    most ``max_queue`` jobs and messages, those composed ahead included;
    :meth:`submit` and :meth:`send` raise :class:`DeliveryFailed` when it is
    full. Call :meth:`flush` to wait for the queue to drain and :meth:`close`
    (or use ``with``) before exiting; an open mailer also flushes at
    interpreter exit.
    Once closed, it is closed for good: :meth:`submit` and :meth:`send` raise
    :class:`DeliveryFailed` (``temporary`` false), and :meth:`flush` has
    nothing left to wait for.

    Delays and backoff count on ``clock``, ``time.monotonic`` by default. A
    test clock keeps delivery in threads; moving it does not wake the
    workers, so call :meth:`flush` after moving it.

    The outcome of each confirmation mail (sent, or given up) goes to the
    function :meth:`report_to` names, which a service with ``on_event``
    sets: from the worker threads or, with a delivery process, from the
    thread of this process that reads what the child reports.
    """

    def __init__(
        self,
        mailer: Mailer | AsyncMailer,
        *,
        max_queue: int = 10_000,
        retry: RetryPolicy | None = None,
        max_attempts: int | None = None,
        backoff: float | None = None,
        max_backoff: float | None = None,
        delay: tuple[float, float] = (0.2, 2.0),
        workers: int = 4,
        isolation: Literal["auto", "process", "thread"] = "auto",
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.retry = chosen_policy(
            retry, max_attempts=max_attempts, backoff=backoff, max_backoff=max_backoff
        )
        if max_queue < 1 or workers < 1:
            raise ValueError("invalid queue, retry or worker settings")
        if isolation not in ("auto", "process", "thread"):
            raise ValueError("isolation must be 'auto', 'process' or 'thread'")
        if len(delay) != 2 or not 0 <= delay[0] <= delay[1]:
            raise ValueError("delay must be (shortest, longest) seconds, 0 <= shortest <= longest")
        self.mailer = mailer
        self.max_queue = max_queue
        self.delay = delay
        self.workers = workers
        self.isolation = isolation
        if clock is not None and isolation == "process":
            raise ValueError("a delivery process cannot share a clock given by the host")
        self._clock = clock if clock is not None else time.monotonic
        self._custom_clock = clock is not None
        self._process: DeliveryProcess | None = None
        self._composer: Composer | None = None
        self._queue = TimedQueue(self._clock, max_queue, workers)
        self._closed = False
        self._threads_lock = threading.Lock()
        self._composing: threading.Thread | None = None
        self._threads: list[threading.Thread] = []
        self._report: Report | None = None

    def __repr__(self) -> str:
        return f"BackgroundMailer({self.mailer!r}, pending={self.pending})"

    def __enter__(self) -> BackgroundMailer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def pending(self) -> int:
        """Jobs and messages queued, waiting for a retry, or being sent."""
        if self._process is not None:
            # A closed process is not asked: asking would start another.
            return 0 if self._closed else self._process.pending()
        return self._queue.pending

    @property
    def process_id(self) -> int | None:
        """The delivery process's id, or ``None`` when delivery runs in threads."""
        return self._process.pid if self._process is not None else None

    def report_to(self, report: Report | None) -> None:
        """Call ``report`` with each confirmation mail's outcome (``None``: stop)."""
        self._report = report

    def _reported(self, kind: EventKind, number: str | None, reason: str) -> None:
        if self._report is not None:
            self._report(kind, number, reason)

    def bind(self, composer: Composer) -> None:
        """Compose submitted jobs with ``composer``; the service calls this once.

        Starts the delivery process where ``isolation`` calls for one. Raises
        :class:`ValueError` if the mailer already serves another service, or
        if ``"process"`` was asked for and the mailer or the composer cannot
        cross to another process.
        """
        if self._composer is not None and self._composer is not composer:
            raise ValueError("this BackgroundMailer already delivers for another service")
        self._composer = composer
        if (
            self.isolation == "thread"
            or self._custom_clock
            or self._process is not None
            or self._closed
        ):
            return
        if self.isolation == "auto" and not _rebuilt_from_settings(self.mailer):
            logger.info(
                "confirmation mails are delivered from threads of this process: %s is the "
                "host's own mailer, which stays where the host put it",
                type(self.mailer).__name__,
                extra={"event": "delivery_in_thread", "reason": "the host's own mailer"},
            )
            return
        options = {
            "max_queue": self.max_queue,
            "retry": self.retry,
            "delay": self.delay,
            "workers": self.workers,
        }
        try:
            config = _crossing({"mailer": self.mailer, "composer": composer, "options": options})
        except _CannotCross as exc:
            if self.isolation == "process":
                raise ValueError(
                    f"{exc.reason}, so it cannot cross to a delivery process"
                ) from exc.__cause__
            logger.warning(
                "confirmation mails are delivered from threads of this process: %s",
                exc.reason,
                extra={"event": "delivery_in_thread", "reason": exc.reason},
            )
            return
        self._process = DeliveryProcess(config, report=self._reported)
        atexit.register(self.close)

    def submit(self, job: ConfirmationJob) -> None:
        """Queue ``job``. Raises :class:`DeliveryFailed` if the queue is full or closed."""
        if self._composer is None:
            raise DeliveryFailed("the background mailer is not bound to a service", temporary=False)
        if self._process is not None:
            self._check_open()
            self._process.submit(job)
            return
        low, high = self.delay
        wait = low + (high - low) * secrets.randbelow(1_000_001) / 1_000_000
        self._put(Item(job, None), wait)

    def send(self, message: EmailMessage) -> None:
        """Queue ``message``. Raises :class:`DeliveryFailed` if the queue is full or closed."""
        if self._process is not None:
            self._check_open()
            self._process.send(message)
            return
        self._put(Item(None, message), 0.0)

    def flush(self, timeout: float | None = None) -> bool:
        """Deliver every queued job now, and wait until all are sent or given up.

        Jobs still inside their random delay go at once; retries keep their
        backoff. Returns ``False`` on timeout, and ``True`` at once once closed.
        """
        if self._process is not None:
            return True if self._closed else self._process.flush(timeout)
        return self._queue.flush(timeout)

    def close(self, timeout: float | None = 30.0) -> None:
        """Flush for up to ``timeout`` seconds, then stop the worker; idempotent.

        Jobs and messages still queued after that are logged as dropped.
        Later calls of :meth:`submit` and :meth:`send` raise
        :class:`DeliveryFailed` with ``temporary`` false.
        """
        atexit.unregister(self.close)
        if self._process is not None:
            self._process.close(timeout)
            self._closed = True
            _close_kept(self.mailer)
            return
        self.flush(timeout)
        self._closed = True
        self._dropped(self._queue.close())
        for thread in [*self._threads, self._composing]:
            if thread is not None and thread is not threading.current_thread():
                thread.join(timeout)
        _close_kept(self.mailer)

    def _check_open(self) -> None:
        if self._closed:
            raise DeliveryFailed("the background mailer is closed", temporary=False)

    def _put(self, item: Item, wait: float) -> None:
        self._queue.put(item, wait)
        with self._threads_lock:
            if not self._threads:
                atexit.register(self.close)
            alive = [thread for thread in self._threads if thread.is_alive()]
            for n in range(len(alive), self.workers):
                thread = threading.Thread(
                    target=self._run, name=f"credrecovery-delivery-{n}", daemon=True
                )
                thread.start()
                alive.append(thread)
            self._threads = alive
            if self._composing is None or not self._composing.is_alive():
                self._composing = threading.Thread(
                    target=self._compose_ahead, name="credrecovery-delivery-compose", daemon=True
                )
                self._composing.start()

    def _mailer_is_own_copy(self) -> None:
        """The delivery process's: its mailer is its own copy, which may tell when a
        message is written. The next mail is then composed while the server takes its
        time over that one, rather than while a worker's commands go back and forth."""
        when_written = getattr(self.mailer, "_when_written", None)
        # A host's subclass may send its own way and never call back.
        if when_written is not None and _rebuilt_from_settings(self.mailer):
            when_written(self._queue.room_to_compose)
            self._queue.compose_on_take = False

    def _compose_ahead(self) -> None:
        # Composing here, while the workers wait on the server, takes it off
        # their path from one mail to the next; a worker composes for itself
        # whatever is due when nothing waits composed.
        prepare = getattr(self.mailer, "_prepare", None)
        if not _rebuilt_from_settings(self.mailer):
            prepare = None
        while (item := self._queue.take_to_compose()) is not None:
            composed = False
            try:
                composed = self._composed(item)
                if composed and prepare is not None:
                    prepare(item.message)
            except BaseException as exc:  # noqa: BLE001 - the thread must outlive any one job
                self._gave_up(item, exc)
            finally:
                late = self._queue.composed(item, composed)
            if late:
                self._dropped([item])

    def _run(self) -> None:
        while (item := self._queue.take()) is not None:
            sent = False
            try:
                sent = self._deliver(item)
            except BaseException as exc:  # noqa: BLE001 - the worker must outlive any one job
                self._gave_up(item, exc)
            finally:
                self._queue.done(sent)

    def _dropped(self, left: list[Item]) -> None:
        """Report ``left``, still undelivered at close, as given up, and log how many."""
        for item in left:
            tell(self._report, EventKind.DELIVERY_FAILED, item.job)
        dropped = sum(1 for item in left if item.job is None or not item.job.decoy)
        if dropped:
            logger.error(
                "background mailer closed with %d messages undelivered",
                dropped,
                extra={
                    "event": "mail_dropped",
                    "count": dropped,
                    "reason": "the background mailer was closed",
                },
            )

    def _gave_up(self, item: Item, exc: BaseException) -> None:
        logger.error(
            "mail delivery failed; giving up: %s",
            type(exc).__name__,
            extra={"event": "delivery_failed", **failure_details(exc), **_clients(item.job)},
        )
        tell(self._report, EventKind.DELIVERY_FAILED, item.job)

    def _composed(self, item: Item) -> bool:
        """Compose ``item``'s mail if it has none yet; whether there is a mail to send."""
        if item.message is None:
            assert item.job is not None and self._composer is not None
            item.message = compose(self._composer, item.job)
            if item.message is None:
                tell(self._report, EventKind.DELIVERY_FAILED, item.job)
            if item.message is None or item.job.decoy:
                return False
        return True

    def _deliver(self, item: Item) -> bool:
        """Send ``item``'s mail, composing it first if need be; whether it went."""
        if not self._composed(item):
            return False
        assert item.message is not None
        message = item.message
        try:
            send_now(
                self.mailer,
                attempt_message(self.mailer, message, attempt=item.attempt, policy=self.retry),
            )
        except BaseException as exc:  # noqa: BLE001 - a mailer may raise anything, Timeout included
            self._failed(item, exc)
            return False
        logger.info(
            "mail sent",
            extra={
                "event": "mail_sent",
                "message_id": message_id(message),
                "attempt": item.attempt,
                **_clients(item.job),
            },
        )
        tell(self._report, EventKind.MAILED, item.job)
        return True

    def _failed(self, item: Item, exc: BaseException) -> None:
        assert item.message is not None
        details = {
            "message_id": message_id(item.message),
            "attempt": item.attempt,
            **failure_details(exc),
            **_clients(item.job),
        }
        temporary = exc.temporary if isinstance(exc, DeliveryFailed) else True
        # The backoff counts from the failure, not from when the retry is queued.
        failed_at = self._clock()
        wait = next_wait(details, temporary=temporary, attempt=item.attempt, policy=self.retry)
        if wait is None:
            tell(self._report, EventKind.DELIVERY_FAILED, item.job)
            return
        item.attempt += 1
        self._queue.retry(item, failed_at + wait)


def _close_kept(mailer: object) -> None:
    """Close the connections one of the library's SMTP mailers keeps; it stays usable.

    A host's own mailer is the host's to close.
    """
    close = getattr(mailer, "close", None)
    if _rebuilt_from_settings(mailer) and callable(close):
        close()


def _clients(job: ConfirmationJob | None) -> dict[str, Any]:
    return {} if job is None else {"client": job.clients[0][0]}
