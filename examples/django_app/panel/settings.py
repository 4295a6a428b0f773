"""Settings of the example panel: the least Django needs, plus ``CREDRECOVERY``.

Secrets come from the environment. ``DJANGO_DEBUG=1`` turns on debug mode,
prints mail on the console instead of sending it, and allows a throw-away
``SECRET_KEY`` when ``DJANGO_SECRET_KEY`` is unset.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
DEBUG = os.environ.get("DJANGO_DEBUG") == "1"
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY") or (secrets.token_urlsafe(50) if DEBUG else "")
ALLOWED_HOSTS = os.environ.get("DJANGO_ALLOWED_HOSTS", "127.0.0.1 localhost").split()

INSTALLED_APPS = ["recovery"]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
ROOT_URLCONF = "panel.urls"
TEMPLATES = [{"BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": True}]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("PANEL_DB", str(BASE_DIR / "panel.sqlite3")),
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True

EMAIL_BACKEND = (
    "django.core.mail.backends.console.EmailBackend"
    if DEBUG
    else "django.core.mail.backends.smtp.EmailBackend"
)
EMAIL_HOST = os.environ.get("SMTP_HOST", "localhost")
EMAIL_PORT = int(os.environ.get("SMTP_PORT", "25"))

# The reverse proxies whose X-Forwarded-For names the client: addresses or networks,
# such as "127.0.0.1" or "10.0.0.0/8". None by default: REMOTE_ADDR is the client.
# Read by recovery.client_address.client_ip().
CREDRECOVERY_TRUSTED_PROXIES = (
    os.environ.get("CREDRECOVERY_TRUSTED_PROXIES", "").replace(",", " ").split()
)

# Read by recovery.service.get_service(), once, on first use.
CREDRECOVERY = {
    "SECRET_KEY": os.environ.get("CREDRECOVERY_SECRET_KEY", ""),
    "FALLBACK_SECRET_KEYS": os.environ.get("CREDRECOVERY_FALLBACK_KEYS", "").split(),
    # Links are built from this template alone, never from the request's Host.
    "CONFIRM_URL": os.environ.get(
        "CREDRECOVERY_CONFIRM_URL", "http://127.0.0.1:8000/recover/{token}"
    ),
    "SENDER": os.environ.get("CREDRECOVERY_SENDER", "Client Panel <panel@example.com>"),
    # "django": through EMAIL_BACKEND above; "smtp": credrecovery's own SMTPMailer.
    "MAILER": os.environ.get("CREDRECOVERY_MAILER", "django"),
    "SMTP_HOST": EMAIL_HOST,
    "SMTP_PORT": EMAIL_PORT,
    # "thread": confirmation mails leave from a thread of this process; "sync": within
    # the request (for tests and the command line only: a hit is then slower than a miss).
    "DELIVERY": "thread",
    # "default" (argon2) or "cheap" (a weak profile, for tests only).
    "HASHING": "default",
    # Any other RecoveryService keyword argument: token_max_age, rate_limits, locale...
    "OPTIONS": {},
}
