"""Sending a confirmation job's mail: composing it, sending it now, and telling its outcome.

:class:`InlineDelivery` does all of it within the request, for command lines
and tests; :class:`~credrecovery.BackgroundMailer` and the Celery delivery use
:func:`compose`, :func:`send_now` and :func:`tell` off the request path.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from email.message import EmailMessage

from .._failures import failure_details
from ..events import EventKind
from ..exceptions import DeliveryFailed
from ..jobs import ConfirmationJob
from ..mail.composer import Composer
from ..mail.headers import message_id
from ..protocols import AsyncMailer, Mailer
from ._crossing import _rebuilt_from_settings

__all__ = ["InlineDelivery", "Report", "compose", "send_now", "tell"]

logger = logging.getLogger("credrecovery")

#: What a delivery calls with each confirmation mail's outcome: the kind
#: (``mailed`` or ``delivery_failed``), the client number and which mail.
Report = Callable[[EventKind, str | None, str], None]


def tell(report: Report | None, kind: EventKind, job: ConfirmationJob | None) -> None:
    """Hand ``report`` the outcome of ``job``'s mail: a decoy has none, and no failure
    to report reaches delivery."""
    if report is None or job is None or job.decoy:
        return
    try:
        report(kind, job.clients[0][0], "confirmation")
    except Exception as exc:  # noqa: BLE001 - the mail's outcome stands whatever this does
        logger.error(
            "a delivery outcome was not reported: %s",
            type(exc).__name__,
            extra={"event": "hook_failed", "error": type(exc).__name__},
        )


def compose(composer: Composer, job: ConfirmationJob) -> EmailMessage | None:
    """``job``'s mail, or ``None`` (logged) when its address cannot be mailed."""
    try:
        return composer.confirmation(job)
    except ValueError:
        if not job.decoy:
            logger.error(
                "client's primary address cannot be mailed",
                extra={
                    "event": "bad_address",
                    "client": job.clients[0][0],
                    "reason": "the primary address is not a valid email address",
                },
            )
        return None


class InlineDelivery:
    """Compose and send each job within the request: for command lines and tests.

    A request then takes longer when a client matched; never use it behind a
    public form. Failures are logged, not raised, as in the background.
    Once :meth:`close` has been called, :meth:`submit` raises
    :class:`DeliveryFailed`, as a closed :class:`BackgroundMailer` does.
    """

    def __init__(self, mailer: Mailer | AsyncMailer) -> None:
        self.mailer = mailer
        self._composer: Composer | None = None
        self._closed = False
        self._report: Report | None = None

    def __repr__(self) -> str:
        return f"InlineDelivery({self.mailer!r})"

    def bind(self, composer: Composer) -> None:
        """Compose jobs with ``composer``."""
        self._composer = composer

    def report_to(self, report: Report | None) -> None:
        """Call ``report`` with each confirmation mail's outcome (``None``: stop)."""
        self._report = report

    def submit(self, job: ConfirmationJob) -> None:
        """Compose ``job`` and, unless it is a decoy, send it now.

        Raises :class:`DeliveryFailed` (``temporary`` false) once closed.
        """
        if self._closed:
            raise DeliveryFailed("the inline delivery is closed", temporary=False)
        assert self._composer is not None
        message = compose(self._composer, job)
        if message is None:
            tell(self._report, EventKind.DELIVERY_FAILED, job)
        if message is None or job.decoy:
            return
        try:
            send_now(self.mailer, message)
        except Exception as exc:  # noqa: BLE001 - never reveal that the client exists
            details = failure_details(exc)
            logger.error(
                "confirmation mail not sent: %s",
                details["reason"],
                extra={"event": "delivery_failed", "client": job.clients[0][0], **details},
            )
            tell(self._report, EventKind.DELIVERY_FAILED, job)
            return
        logger.info(
            "mail sent",
            extra={
                "event": "mail_sent",
                "client": job.clients[0][0],
                "message_id": message_id(message),
            },
        )
        tell(self._report, EventKind.MAILED, job)

    def flush(self, timeout: float | None = None) -> bool:
        """Nothing is ever queued."""
        return True

    def close(self, timeout: float | None = None) -> None:
        """Refuse later jobs; nothing is queued, so nothing waits. Idempotent."""
        self._closed = True


def send_now(mailer: Mailer | AsyncMailer, message: EmailMessage) -> None:
    """Send through ``mailer``, awaiting it on an event loop of its own if it is async.

    Called from delivery threads and the delivery process, never from a
    running event loop. The library's asyncio SMTP mailer sends on a loop of
    its own instead, which keeps its connections open between mails.
    """
    if _rebuilt_from_settings(mailer):
        relay = getattr(mailer, "send_from_thread", None)
        if relay is not None:
            relay(message)
            return
    pending = mailer.send(message)
    if inspect.isawaitable(pending):
        asyncio.run(_awaited(pending))


async def _awaited(pending: Awaitable[None]) -> None:
    await pending
