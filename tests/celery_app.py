"""One Celery app and one service, built alike by a test and by the worker it starts.

The worker imports this module (``celery -A celery_app:app worker``) with its
settings in ``CREDRECOVERY_CELERY_*`` environment variables; a test calls
:func:`build` with the same settings for its web side.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from celery import Celery

from credrecovery import RecoveryService, cheap_context
from credrecovery.celery import CeleryDelivery
from credrecovery.smtp import SMTPMailer
from credrecovery.sqlite import SQLiteDirectory

CONFIRM_URL = "https://panel.example.com/recover/{token}"
SENDER = "Client Panel <panel@example.com>"


def build(settings: Mapping[str, str]) -> tuple[Celery, RecoveryService]:
    """The app and the service that ``settings`` (the environment variables) describe."""
    app = Celery("credrecovery-tests", broker=settings["CREDRECOVERY_CELERY_BROKER"])
    app.conf.update(broker_connection_retry_on_startup=True, worker_hijack_root_logger=False)
    mailer = SMTPMailer("127.0.0.1", int(settings["CREDRECOVERY_CELERY_SMTP_PORT"]), timeout=5)
    delivery = CeleryDelivery(app, mailer, delay=(0.0, 0.0), backoff=0.2, max_attempts=3,
                              queue=settings["CREDRECOVERY_CELERY_QUEUE"])
    context = cheap_context()
    service = RecoveryService(
        SQLiteDirectory(settings["CREDRECOVERY_CELERY_DB"], crypt_context=context), mailer,
        secret_key=settings["CREDRECOVERY_CELERY_SECRET"],
        fallback_secret_keys=settings.get("CREDRECOVERY_CELERY_FALLBACK", ()),
        confirm_url=CONFIRM_URL,
        sender=SENDER, crypt_context=context, rate_limits=None, delivery=delivery,
    )
    return app, service


if "CREDRECOVERY_CELERY_BROKER" in os.environ:
    app, service = build(os.environ)
