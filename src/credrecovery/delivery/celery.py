"""Confirmation mail delivered by a Celery worker, for hosts with several machines.

Install with ``pip install 'credrecovery[celery]'``. The web process seals
each job with a :class:`~credrecovery.sealing.JobSealer` and publishes it; a
worker unseals it, composes the mail and sends it, retrying through Celery's
own machinery. A broker reader
sees payloads of one size for hits and misses alike, and no link, address or
client number. Publishing returns once the broker holds the job, so a web
process that dies right after :meth:`~credrecovery.RecoveryService.request`
loses nothing. Workers record each job they deliver (see
:class:`RedisDeliveryRecords`), so a job the broker hands out again, or that
someone replays, is mailed once.

Build the service in a module that both the web processes and the workers
import, so that both bind the same task to the same settings::

    app = Celery("panel", broker="redis://127.0.0.1:6379/0")
    mailer = SMTPMailer("smtp.example.com", 587, security="starttls", ...)
    service = RecoveryService(directory, mailer, ..., delivery=CeleryDelivery(app, mailer))

and run ``celery -A panel.recovery:app worker``.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import sys
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

try:
    import celery
except ImportError as exc:  # pragma: no cover - exercised with the extra missing
    raise ImportError(
        "credrecovery.celery needs Celery and cryptography: pip install 'credrecovery[celery]'"
    ) from exc

from .._failures import failure_details
from ..events import EventKind
from ..exceptions import DeliveryFailed
from ..jobs import ConfirmationJob
from ..mail.composer import Composer
from ..mail.headers import message_id
from ..protocols import Mailer
from ._retry import RetrySettings, chosen_policy, next_wait
from .inline import Report, compose, tell
from .records import Claim, DeliveryRecords, RedisDeliveryRecords
from .retry import RetryPolicy
from .sealing import JobSealer

__all__ = ["TASK_NAME", "CeleryDelivery", "Claim", "DeliveryRecords", "RedisDeliveryRecords"]

logger = logging.getLogger("credrecovery")

#: The name of the Celery task that delivers a sealed job.
TASK_NAME = "credrecovery.deliver_confirmation"

# A record outlives the job's links by this much, the clock difference between
# processes that opening a sealed job tolerates.
_CLOCK_SKEW = 60


class CeleryDelivery(RetrySettings):
    """A :class:`~credrecovery.protocols.DeliveryQueue` that hands jobs to Celery workers.

    ``mailer`` sends on the workers. A temporary failure is retried as
    ``retry``, a :class:`~credrecovery.RetryPolicy`, says (by default up to 5
    attempts in all, with exponential backoff from 1 second, capped at 300,
    with jitter), through Celery's own ``retry``; a permanent one is logged
    and given up at once, as in :class:`~credrecovery.BackgroundMailer`. The
    separate ``max_attempts``, ``backoff`` and ``max_backoff`` still set the
    policy's fields of those names; give them or ``retry``, not both.
    Whatever the mailer raises counts: an exception, or a ``BaseException``
    such as a green-thread ``Timeout``; only ``SystemExit`` (Celery's own
    shutdown included), ``KeyboardInterrupt``, ``GeneratorExit`` and
    ``GreenletExit``, which stop the worker or its green thread, pass through.
    Each job waits a random ``delay`` (seconds, shortest and longest) before a
    worker takes it, so that a worker on the web machine composes and sends at
    times unrelated to the request. ``queue`` routes the task to a queue of
    its own; jobs older than the service's ``token_max_age`` are dropped, as
    their links have expired.

    A job is mailed at most once, however often the broker hands it out:
    ``records`` (see :class:`DeliveryRecords`) holds a claim on each job while
    a worker sends it, for ``lease`` seconds, and then marks it done for
    ``token_max_age`` and a minute. ``"broker"`` (the default) keeps them in
    the Redis of the broker, or else of the result backend; when neither is
    Redis it records nothing and logs a ``delivery_records_off`` warning:
    pass a :class:`RedisDeliveryRecords` or another store then. ``None``
    records nothing (a replayed job is then mailed again). ``lease`` must
    exceed the longest send: a worker that dies while sending leaves the job
    to another once it ends.

    :meth:`flush` and :meth:`close` have nothing to wait for: every job is
    with the broker once :meth:`submit` returns. After :meth:`close`,
    :meth:`submit` raises :class:`~credrecovery.DeliveryFailed`, as a closed
    :class:`~credrecovery.BackgroundMailer` does; the workers deliver on.
    Each mail's outcome is reported (see :meth:`report_to`) in the worker
    that sends it, to the worker's own service.
    """

    def __init__(
        self,
        app: celery.Celery,
        mailer: Mailer,
        *,
        retry: RetryPolicy | None = None,
        max_attempts: int | None = None,
        backoff: float | None = None,
        max_backoff: float | None = None,
        delay: tuple[float, float] = (0.2, 2.0),
        queue: str | None = None,
        records: DeliveryRecords | Literal["broker"] | None = "broker",
        lease: float = 300.0,
    ) -> None:
        self.retry = chosen_policy(
            retry, max_attempts=max_attempts, backoff=backoff, max_backoff=max_backoff
        )
        if len(delay) != 2 or not 0 <= delay[0] <= delay[1]:
            raise ValueError("delay must be (shortest, longest) seconds, 0 <= shortest <= longest")
        if not lease > 0:
            raise ValueError("lease must be positive")
        if records == "broker":
            url = _redis_url(app)
            if url is None:
                # Kept working as before the records existed, and said once.
                logger.warning(
                    "delivered jobs are not recorded, so a replayed job is mailed again: "
                    "neither the Celery broker nor its result backend is Redis; pass "
                    "records=RedisDeliveryRecords(...) or another DeliveryRecords",
                    extra={"event": "delivery_records_off"},
                )
            records = None if url is None else RedisDeliveryRecords(url)
        elif records is not None and not isinstance(records, DeliveryRecords):
            raise TypeError("records must be a DeliveryRecords, 'broker' or None")
        self.app = app
        self.mailer = mailer
        self.delay = delay
        self.queue = queue
        self.records: DeliveryRecords | None = records
        self.lease = lease
        self._composer: Composer | None = None
        self._sealer: JobSealer | None = None
        self._closed = False
        self._report: Report | None = None

        def deliver(task: Any, sealed: str, waited: int = 0) -> None:
            self._deliver(task, sealed, waited)

        # acks_late: a worker that dies mid-delivery leaves the job to another.
        register: Any = app.task(
            name=TASK_NAME,
            bind=True,
            acks_late=True,
            reject_on_worker_lost=True,
            ignore_result=True,
            max_retries=None,
        )
        self.task: Any = register(deliver)

    def __repr__(self) -> str:
        return f"CeleryDelivery({self.app.main!r}, {self.mailer!r}, queue={self.queue!r})"

    def bind(self, composer: Composer) -> None:
        """Seal and compose with ``composer``'s keys; the service calls this once."""
        if self._composer is not None and self._composer is not composer:
            raise ValueError("this CeleryDelivery already delivers for another service")
        self._composer = composer
        self._sealer = JobSealer(composer)

    def report_to(self, report: Report | None) -> None:
        """Call ``report`` with each confirmation mail's outcome, in the worker (``None``: stop)."""
        self._report = report

    def submit(self, job: ConfirmationJob) -> None:
        """Seal ``job`` and publish it; :class:`DeliveryFailed` if the broker refuses it.

        Also :class:`DeliveryFailed`, with ``temporary`` false, once closed.
        """
        if self._closed:
            raise DeliveryFailed("the Celery delivery is closed", temporary=False)
        sealed = self.seal(job)
        low, high = self.delay
        countdown = low + (high - low) * secrets.randbelow(1_000_001) / 1_000_000
        try:
            self.task.apply_async((sealed,), countdown=countdown or None, queue=self.queue)
        except Exception as exc:
            raise DeliveryFailed("the task broker did not take the job") from exc

    def flush(self, timeout: float | None = None) -> bool:
        """Every job is with the broker already."""
        return True

    def close(self, timeout: float | None = 30.0) -> None:
        """Refuse later jobs; idempotent. Nothing to release: the Celery app is the host's."""
        self._closed = True

    def seal(self, job: ConfirmationJob) -> str:
        """``job`` sealed as it travels: see :class:`~credrecovery.sealing.JobSealer`."""
        return self._bound().seal(job)

    def unseal(self, sealed: str) -> ConfirmationJob:
        """The job ``sealed`` holds; :class:`ValueError` if forged, tampered or expired."""
        return self._bound().unseal(sealed)

    def _bound(self) -> JobSealer:
        if self._sealer is None:
            raise DeliveryFailed("the Celery delivery is not bound to a service", temporary=False)
        return self._sealer

    def _deliver(self, task: Any, sealed: str, waited: int) -> None:
        if self._composer is None:
            logger.error(
                "mail delivery failed; giving up: no service uses this delivery",
                extra={
                    "event": "delivery_failed",
                    "reason": "no RecoveryService was built with this delivery",
                },
            )
            return
        try:
            job, name = self._bound().open(sealed)
        except ValueError as exc:
            logger.error(
                "mail delivery failed; giving up: %s",
                exc,
                extra={"event": "delivery_failed", "reason": str(exc)},
            )
            return
        # Celery counts every retry; waits for another worker's lease are no attempt.
        attempt = task.request.retries + 1 - waited
        details: dict[str, Any] = {"attempt": attempt, "client": job.clients[0][0]}
        token = self._claim(task, name, waited, details)
        if token is None:
            return
        # Decoys take the same claim and mark as hits, so the records show
        # a reader of the store one key per job, hit or miss alike.
        message = compose(self._composer, job)
        if message is None or job.decoy:
            if message is None:
                tell(self._report, EventKind.DELIVERY_FAILED, job)
            self._finish(name, token)
            return
        details["message_id"] = message_id(message)
        try:
            # Composed for this attempt alone: a retry composes its own.
            self.mailer.send(message)
        except BaseException as exc:  # a mailer may raise anything, a green Timeout included
            if _stops_the_worker(exc):
                self._release(name, token)
                raise
            details.update(failure_details(exc))
            temporary = exc.temporary if isinstance(exc, DeliveryFailed) else True
            wait = next_wait(details, temporary=temporary, attempt=attempt, policy=self.retry)
            if wait is None:
                tell(self._report, EventKind.DELIVERY_FAILED, job)
                self._finish(name, token)
                return
            self._release(name, token)
            # This class counts attempts; Celery's count includes the waits.
            raise task.retry(countdown=wait, max_retries=None) from None
        self._finish(name, token)
        logger.info("mail sent", extra={"event": "mail_sent", **details})
        tell(self._report, EventKind.MAILED, job)

    def _claim(self, task: Any, name: str, waited: int, details: dict[str, Any]) -> str | None:
        """The lease token for job ``name``, or ``None`` once the job needs nothing more.

        Raises Celery's ``Retry`` to come back when another worker's lease ends.
        """
        if self.records is None:
            return ""
        try:
            claim = self.records.claim(name, self.lease)
        except Exception as exc:  # noqa: BLE001 - a host's store may raise anything
            details.update(
                reason=f"the delivery records raised {type(exc).__name__}",
                error=type(exc).__name__,
                smtp_code=None,
                enhanced_code=None,
            )
            wait = next_wait(details, temporary=True, attempt=details["attempt"], policy=self.retry)
            if wait is None:
                return None
            raise task.retry(countdown=wait, max_retries=None) from None
        if claim.token is not None:
            return claim.token
        if claim.done:
            logger.info(
                "mail delivery skipped: the job was delivered already",
                extra={"event": "delivery_duplicate"},
            )
            return None
        # Another worker is sending it, or died doing so: look again once its
        # lease ends.
        wait = claim.wait + secrets.randbelow(500) / 1000
        logger.info(
            "mail delivery deferred %.1f s: another worker holds the job",
            wait,
            extra={"event": "delivery_deferred"},
        )
        raise task.retry(kwargs={"waited": waited + 1}, countdown=wait, max_retries=None) from None

    def _finish(self, name: str, token: str) -> None:
        if self.records is None:
            return
        assert self._composer is not None
        try:
            self.records.finish(name, token, self._composer.max_age.total_seconds() + _CLOCK_SKEW)
        except Exception as exc:  # noqa: BLE001 - a host's store may raise anything
            logger.warning(
                "the delivered job was not recorded; a copy of it may be mailed "
                "again: the delivery records raised %s",
                type(exc).__name__,
                extra={"event": "delivery_unrecorded", "error": type(exc).__name__},
            )

    def _release(self, name: str, token: str) -> None:
        if self.records is None:
            return
        # A lease that stays runs out by itself.
        with contextlib.suppress(Exception):
            self.records.release(name, token)


def _stops_the_worker(exc: BaseException) -> bool:
    """Whether ``exc`` stops the process or its green thread, rather than failing a send."""
    if isinstance(exc, SystemExit | KeyboardInterrupt | GeneratorExit):
        return True
    # Only a program that runs greenlets has the module loaded.
    greenlet = sys.modules.get("greenlet")
    greenlet_exit = getattr(greenlet, "GreenletExit", None)
    return isinstance(greenlet_exit, type) and isinstance(exc, greenlet_exit)


def _redis_url(app: celery.Celery) -> str | None:
    """The URL of the first Redis among ``app``'s broker and result backend, if any."""
    for setting in (app.conf.broker_url, app.conf.result_backend):
        urls = setting if isinstance(setting, list | tuple) else [setting]
        for url in urls:
            if not isinstance(url, str):
                continue
            url = url.split(";")[0].strip()
            parts = urlsplit(url)
            if parts.scheme in ("redis", "rediss", "unix"):
                return url
            if parts.scheme == "redis+socket":
                return urlunsplit(parts._replace(scheme="unix"))
    return None
