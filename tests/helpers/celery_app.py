"""One Celery app and one service, built alike by a test and by the worker it starts.

The worker imports this module (``celery -A helpers.celery_app:app worker``,
run in the ``tests`` folder) with its
settings in ``CREDRECOVERY_CELERY_*`` environment variables; a test calls
:func:`build` with the same settings for its web side. Optional settings:

* ``..._RAISE_FIRST``: the mailer raises :class:`GreenTimeout` (a
  ``BaseException``, as gevent's and eventlet's ``Timeout`` are) on that many
  first sends of the process, then sends;
* ``..._CRASH_MARK``: a file; the first send of any worker that does not
  find it creates it and ends the process at once, without a word to the
  broker, as a killed worker would;
* ``..._EVENTS``: a file that receives each ``credrecovery`` log event as
  one JSON line;
* ``..._HOOK``: a file that the service's ``on_event`` hook appends each
  event to, one JSON line with the process id;
* ``..._LEASE``, ``..._MAX_AGE``: ``CeleryDelivery``'s lease and the
  service's ``token_max_age``, in seconds;
* ``..._VISIBILITY``: the Redis transport's visibility timeout, in seconds,
  after which a job a dead worker held goes back to the queue.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path

from celery import Celery

from credrecovery import Event, RecoveryService, cheap_context
from credrecovery.celery import CeleryDelivery
from credrecovery.smtp import SMTPMailer
from credrecovery.sqlite import SQLiteDirectory
from helpers.constants import CONFIRM_URL, SENDER


class GreenTimeout(BaseException):
    """Stands for gevent's or eventlet's ``Timeout``, which derive from ``BaseException``."""


class HostMailer:
    """A host's own mailer around an :class:`SMTPMailer`, failing or crashing as told."""

    def __init__(self, inner: SMTPMailer, *, raise_first: int, crash_mark: str | None) -> None:
        self.inner = inner
        self.raise_first = raise_first
        self.crash_mark = crash_mark
        self.sends = 0

    def send(self, message: EmailMessage) -> None:
        """Raise, end the process, or send, as the settings say."""
        self.sends += 1
        if self.crash_mark is not None and not Path(self.crash_mark).exists():
            Path(self.crash_mark).touch()
            os._exit(70)
        if self.sends <= self.raise_first:
            raise GreenTimeout("10 seconds")
        self.inner.send(message)


class JSONLines(logging.Handler):
    """Append each record's event fields to a file, one JSON object a line."""

    def __init__(self, path: str) -> None:
        super().__init__(logging.INFO)
        self.path = path

    def emit(self, record: logging.LogRecord) -> None:
        """Write the record's event, reason, error and attempt, and the message."""
        fields = {
            name: getattr(record, name, None)
            for name in ("event", "reason", "error", "attempt", "client")
        }
        with open(self.path, "a", encoding="utf-8") as out:
            out.write(json.dumps({**fields, "message": record.getMessage()}) + "\n")


class EventLines:
    """An ``on_event`` hook appending each event, and the process it reached, to a file."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __call__(self, event: Event) -> None:
        line = {
            "pid": os.getpid(),
            "kind": event.kind.value,
            "reason": event.reason,
            "number": event.number,
        }
        with open(self.path, "a", encoding="utf-8") as out:
            out.write(json.dumps(line) + "\n")


def build(settings: Mapping[str, str]) -> tuple[Celery, RecoveryService]:
    """The app and the service that ``settings`` (the environment variables) describe."""
    app = Celery("credrecovery-tests", broker=settings["CREDRECOVERY_CELERY_BROKER"])
    app.conf.update(broker_connection_retry_on_startup=True, worker_hijack_root_logger=False)
    if "CREDRECOVERY_CELERY_VISIBILITY" in settings:
        app.conf.broker_transport_options = {
            "visibility_timeout": float(settings["CREDRECOVERY_CELERY_VISIBILITY"]),
            "unacked_restore_interval": 1,
            "unacked_restore_throttle": 1,
        }
    smtp = SMTPMailer("127.0.0.1", int(settings["CREDRECOVERY_CELERY_SMTP_PORT"]), timeout=5)
    mailer: SMTPMailer | HostMailer = smtp
    raise_first = int(settings.get("CREDRECOVERY_CELERY_RAISE_FIRST", 0))
    crash_mark = settings.get("CREDRECOVERY_CELERY_CRASH_MARK")
    if raise_first or crash_mark:
        mailer = HostMailer(smtp, raise_first=raise_first, crash_mark=crash_mark)
    lease = (
        {"lease": float(settings["CREDRECOVERY_CELERY_LEASE"])}
        if "CREDRECOVERY_CELERY_LEASE" in settings
        else {}
    )
    delivery = CeleryDelivery(
        app,
        mailer,
        delay=(0.0, 0.0),
        backoff=0.2,
        max_attempts=3,
        queue=settings["CREDRECOVERY_CELERY_QUEUE"],
        **lease,
    )
    context = cheap_context()
    service = RecoveryService(
        SQLiteDirectory(settings["CREDRECOVERY_CELERY_DB"], crypt_context=context),
        smtp,
        secret_key=settings["CREDRECOVERY_CELERY_SECRET"],
        fallback_secret_keys=settings.get("CREDRECOVERY_CELERY_FALLBACK", ()),
        token_max_age=timedelta(seconds=float(settings.get("CREDRECOVERY_CELERY_MAX_AGE", 3600))),
        confirm_url=CONFIRM_URL,
        sender=SENDER,
        crypt_context=context,
        rate_limits=None,
        delivery=delivery,
        on_event=(
            EventLines(settings["CREDRECOVERY_CELERY_HOOK"])
            if "CREDRECOVERY_CELERY_HOOK" in settings
            else None
        ),
    )
    return app, service


if "CREDRECOVERY_CELERY_BROKER" in os.environ:
    app, service = build(os.environ)
    if "CREDRECOVERY_CELERY_EVENTS" in os.environ:
        events = logging.getLogger("credrecovery")
        events.addHandler(JSONLines(os.environ["CREDRECOVERY_CELERY_EVENTS"]))
        events.setLevel(logging.INFO)
