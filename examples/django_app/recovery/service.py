"""One RecoveryService per process, built from ``settings.CREDRECOVERY`` on first use."""

from __future__ import annotations

import atexit
import functools
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from credrecovery import BackgroundMailer, Mailer, RecoveryService, cheap_context, default_context
from credrecovery.smtp import SMTPMailer

from .directory import DjangoDirectory
from .mailer import DjangoMailer


@functools.cache
def get_service() -> RecoveryService:
    """The service ``settings.CREDRECOVERY`` describes; ``get_service.cache_clear()`` forgets it."""
    config: dict[str, Any] = settings.CREDRECOVERY
    if not config.get("SECRET_KEY"):
        raise ImproperlyConfigured(
            "CREDRECOVERY['SECRET_KEY'] is empty: set "
            "CREDRECOVERY_SECRET_KEY (python -m credrecovery secret)"
        )
    mailer: Mailer = (
        SMTPMailer(config["SMTP_HOST"], config["SMTP_PORT"])
        if config.get("MAILER") == "smtp"
        else DjangoMailer()
    )
    context = cheap_context() if config.get("HASHING") == "cheap" else default_context()
    # Threads, not the library's delivery process: Django's mail backends and
    # settings live in this process.
    delivery = (
        "sync" if config.get("DELIVERY") == "sync" else BackgroundMailer(mailer, isolation="thread")
    )
    service = RecoveryService(
        DjangoDirectory(crypt_context=context),
        mailer,
        secret_key=config["SECRET_KEY"],
        fallback_secret_keys=config.get("FALLBACK_SECRET_KEYS", ()),
        confirm_url=config["CONFIRM_URL"],
        sender=config["SENDER"],
        crypt_context=context,
        delivery=delivery,
        **config.get("OPTIONS", {}),
    )
    atexit.register(service.close)  # deliver queued mail when the process exits
    return service
