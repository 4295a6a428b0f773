"""Confirmation mail delivered by a Celery worker, for hosts with several machines.

Install with ``pip install 'credrecovery[celery]'``. The web process seals
each job with a :class:`~credrecovery.sealing.JobSealer` and publishes it; a
worker unseals it, composes the mail and sends it, retrying through Celery's
own machinery. A broker reader
sees payloads of one size for hits and misses alike, and no link, address or
client number. Publishing returns once the broker holds the job, so a web
process that dies right after :meth:`~credrecovery.RecoveryService.request`
loses nothing.

Build the service in a module that both the web processes and the workers
import, so that both bind the same task to the same settings::

    app = Celery("panel", broker="redis://127.0.0.1:6379/0")
    mailer = SMTPMailer("smtp.example.com", 587, security="starttls", ...)
    service = RecoveryService(directory, mailer, ..., delivery=CeleryDelivery(app, mailer))

and run ``celery -A panel.recovery:app worker``.
"""

from __future__ import annotations

import copy
import logging
import secrets
from typing import Any

try:
    import celery
except ImportError as exc:  # pragma: no cover - exercised with the extra missing
    raise ImportError(
        "credrecovery.celery needs Celery and cryptography: pip install 'credrecovery[celery]'"
    ) from exc

from .composer import Composer
from .delivery import compose, failure_details
from .exceptions import DeliveryFailed
from .jobs import ConfirmationJob
from .protocols import Mailer
from .sealing import JobSealer

__all__ = ["TASK_NAME", "CeleryDelivery"]

logger = logging.getLogger("credrecovery")

#: The name of the Celery task that delivers a sealed job.
TASK_NAME = "credrecovery.deliver_confirmation"


class CeleryDelivery:
    """A :class:`~credrecovery.protocols.DeliveryQueue` that hands jobs to Celery workers.

    ``mailer`` sends on the workers. A temporary failure is retried up to
    ``max_attempts`` times in all, with exponential backoff from ``backoff``
    seconds, capped at ``max_backoff``, with jitter; a permanent one is logged
    and given up at once, as in :class:`~credrecovery.BackgroundMailer`. Each
    job waits a random ``delay`` (seconds, shortest and longest) before a
    worker takes it, so that a worker on the web machine composes and sends at
    times unrelated to the request. ``queue`` routes the task to a queue of
    its own; jobs older than the service's ``token_max_age`` are dropped, as
    their links have expired.

    :meth:`flush` and :meth:`close` have nothing to wait for: every job is
    with the broker once :meth:`submit` returns.
    """

    def __init__(
        self,
        app: celery.Celery,
        mailer: Mailer,
        *,
        max_attempts: int = 5,
        backoff: float = 1.0,
        max_backoff: float = 300.0,
        delay: tuple[float, float] = (0.2, 2.0),
        queue: str | None = None,
    ) -> None:
        if max_attempts < 1 or backoff < 0 or max_backoff < backoff:
            raise ValueError("invalid retry settings")
        if len(delay) != 2 or not 0 <= delay[0] <= delay[1]:
            raise ValueError("delay must be (shortest, longest) seconds, 0 <= shortest <= longest")
        self.app = app
        self.mailer = mailer
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.delay = delay
        self.queue = queue
        self._composer: Composer | None = None
        self._sealer: JobSealer | None = None

        def deliver(task: Any, sealed: str) -> None:
            self._deliver(task, sealed)

        # acks_late: a worker that dies mid-delivery leaves the job to another.
        register: Any = app.task(name=TASK_NAME, bind=True, acks_late=True,
                                 reject_on_worker_lost=True, ignore_result=True, max_retries=None)
        self.task: Any = register(deliver)

    def __repr__(self) -> str:
        return f"CeleryDelivery({self.app.main!r}, {self.mailer!r}, queue={self.queue!r})"

    def bind(self, composer: Composer) -> None:
        """Seal and compose with ``composer``'s keys; the service calls this once."""
        if self._composer is not None and self._composer is not composer:
            raise ValueError("this CeleryDelivery already delivers for another service")
        self._composer = composer
        self._sealer = JobSealer(composer)

    def submit(self, job: ConfirmationJob) -> None:
        """Seal ``job`` and publish it; :class:`DeliveryFailed` if the broker refuses it."""
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
        """Nothing to release: the Celery app is the host's."""

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

    def _deliver(self, task: Any, sealed: str) -> None:
        if self._composer is None:
            logger.error("mail delivery failed; giving up: no service uses this delivery",
                         extra={"event": "delivery_failed",
                                "reason": "no RecoveryService was built with this delivery"})
            return
        try:
            job = self.unseal(sealed)
        except ValueError as exc:
            logger.error("mail delivery failed; giving up: %s", exc,
                         extra={"event": "delivery_failed", "reason": str(exc)})
            return
        message = compose(self._composer, job)
        if message is None or job.decoy:
            return
        attempt = task.request.retries + 1
        try:
            self.mailer.send(copy.deepcopy(message))
        except Exception as exc:  # noqa: BLE001 - a host mailer may raise anything
            details = {"message_id": message["Message-ID"], "attempt": attempt,
                       "client": job.clients[0][0], **failure_details(exc)}
            temporary = exc.temporary if isinstance(exc, DeliveryFailed) else True
            if not temporary or attempt >= self.max_attempts:
                logger.error("mail delivery failed; giving up: %s", details["reason"],
                             extra={"event": "delivery_failed", **details})
                return
            wait = min(self.max_backoff, self.backoff * 2 ** (attempt - 1))
            wait *= 0.5 + secrets.randbelow(500) / 1000
            logger.warning("mail delivery failed; retrying in %.1f s: %s", wait,
                           details["reason"], extra={"event": "delivery_retry", **details})
            raise task.retry(countdown=wait, max_retries=self.max_attempts - 1) from None
        logger.info("mail sent", extra={"event": "mail_sent", "message_id": message["Message-ID"],
                                        "attempt": attempt, "client": job.clients[0][0]})
