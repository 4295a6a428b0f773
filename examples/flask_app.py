"""A small Flask front end for credrecovery: the recovery form and the confirmation link.

Flask is not a dependency of credrecovery; install it next to it to try this::

    pip install flask
    export CREDRECOVERY_SECRET_KEY="$(python -m credrecovery secret)"
    export CREDRECOVERY_DB=clients.sqlite3
    export CREDRECOVERY_CONFIRM_URL="http://127.0.0.1:5000/recover/{token}"
    export CREDRECOVERY_SENDER="Client Panel <panel@example.com>"
    export SMTP_HOST=localhost SMTP_PORT=1025
    python -m credrecovery add-client --db clients.sqlite3 --create 9000 ana@example.com
    flask --app examples/flask_app.py run

Also read, when set: SMTP_SECURITY ("plain", "starttls" or "tls"), SMTP_USERNAME,
SMTP_PASSWORD, CREDRECOVERY_FALLBACK_KEYS (old signing keys, space-separated) and
CREDRECOVERY_PROXY_HOPS (how many reverse proxies stand in front of the app: their
X-Forwarded-For then names the client; 0, the default, believes no such header).
Without CREDRECOVERY_SECRET_KEY, CREDRECOVERY_CONFIRM_URL or CREDRECOVERY_SENDER,
``flask run`` says which is missing and exits with status 2.
In production the link template is an https URL, and it never comes from the request.
"""

from __future__ import annotations

import atexit
import math
import os
from collections.abc import Mapping
from typing import Any

import click
from flask import Flask, Response, render_template_string, request
from werkzeug.middleware.proxy_fix import ProxyFix

from credrecovery import (
    DeliveryFailed,
    DirectoryError,
    InvalidIdentifier,
    InvalidToken,
    RateLimited,
    RecoveryError,
    RecoveryService,
    TokenAlreadyUsed,
    TokenExpired,
)
from credrecovery.smtp import SMTPMailer
from credrecovery.sqlite import SQLiteDirectory

PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Recover your access details</title></head><body>
{% if form %}
  <h1>Forgot your client number or key?</h1>
  {% if error %}<p role="alert">{{ error }}</p>{% endif %}
  <form method="post">
    <select name="kind">
      <option value="domain">Domain name</option>
      <option value="client_number">Client number</option>
      <option value="email">Primary email address</option>
    </select>
    <input name="value" value="{{ value }}" required maxlength="320">
    <button>Send</button>
  </form>
{% elif confirm %}
  <h1>Send my access details</h1>
  <p>Press the button to get your client number and a new access key by mail.
     Your current key stops working when you do.</p>
  <form method="post"><button>Confirm</button></form>
{% else %}
  <p>{{ message }}</p>
  <p><a href="/forgot">Start again</a></p>
{% endif %}
</body></html>"""

SENT = (
    "If what you typed belongs to a client, we have mailed a confirmation link to "
    "the account's primary email address. It works once and expires soon."
)


class SettingsError(click.ClickException):
    """A setting is missing or malformed: ``flask run`` prints its name and exits with 2."""

    exit_code = 2


#: The settings without a default, and how to get a value.
REQUIRED = {
    "CREDRECOVERY_SECRET_KEY": "generate one with 'python -m credrecovery secret'",
    "CREDRECOVERY_CONFIRM_URL": (
        "give the link template, such as 'http://127.0.0.1:5000/recover/{token}'"
    ),
    "CREDRECOVERY_SENDER": "give the From address, such as 'Client Panel <panel@example.com>'",
}


def proxy_hops() -> int:
    """CREDRECOVERY_PROXY_HOPS: how many reverse proxies stand in front of the app."""
    try:
        hops = int(os.environ.get("CREDRECOVERY_PROXY_HOPS") or "0")
    except ValueError:
        hops = -1
    if hops < 0:
        raise SettingsError(
            "CREDRECOVERY_PROXY_HOPS must be the number of reverse proxies "
            "in front of the app, such as 1 (0: none)"
        )
    return hops


def build_service(options: Mapping[str, Any] | None = None) -> RecoveryService:
    env = os.environ
    for name, hint in REQUIRED.items():
        if not env.get(name):
            raise SettingsError(f"{name} is not set; {hint}")
    try:
        port = int(env.get("SMTP_PORT", "25"))
    except ValueError:
        raise SettingsError("SMTP_PORT must be a port number") from None
    security = env.get("SMTP_SECURITY", "plain")
    if security not in ("plain", "starttls", "tls"):
        raise SettingsError("SMTP_SECURITY must be plain, starttls or tls")
    try:
        mailer = SMTPMailer(
            env.get("SMTP_HOST", "localhost"),
            port,
            security=security,  # type: ignore[arg-type]
            username=env.get("SMTP_USERNAME") or None,
            password=env.get("SMTP_PASSWORD") or None,
        )
        return RecoveryService(
            SQLiteDirectory(env.get("CREDRECOVERY_DB", "clients.sqlite3")),
            mailer,
            secret_key=env["CREDRECOVERY_SECRET_KEY"],
            fallback_secret_keys=env.get("CREDRECOVERY_FALLBACK_KEYS", "").split(),
            confirm_url=env["CREDRECOVERY_CONFIRM_URL"],
            sender=env["CREDRECOVERY_SENDER"],
            **(options or {}),
        )
    except ValueError as exc:
        # The library's messages name the setting and never quote a secret.
        raise SettingsError(str(exc)) from None


def end_panel_sessions(number: str) -> None:
    """Sign client ``number`` out everywhere; sessions belong to the panel, not to credrecovery."""


def page(status: int = 200, **context: object) -> Response:
    return Response(render_template_string(PAGE, **context), status=status)


def error_page(exc: RecoveryError) -> Response:
    if isinstance(exc, RateLimited):
        wait = math.ceil(exc.retry_after)
        response = page(exc.http_status, message=f"Too many attempts. Try again in {wait} s.")
        response.headers["Retry-After"] = str(wait)
        return response
    if isinstance(exc, TokenExpired):
        message = "This link has expired. Ask for a new one."
    elif isinstance(exc, TokenAlreadyUsed):
        message = (
            "This link was already used, or your access details changed since it "
            "was sent. Ask for a new one if you still need it."
        )
    elif isinstance(exc, InvalidToken):
        message = "This link is not valid. Copy it from the mail in full, or ask for a new one."
    elif isinstance(exc, DeliveryFailed):
        message = "We could not mail your new access details. " + (
            "Try the same link again in a few minutes." if exc.temporary else "Contact support."
        )
    elif isinstance(exc, DirectoryError):
        message = "The service is unavailable. Try again in a few minutes."
    else:
        message = "Something went wrong. Try again later."
    return page(exc.http_status, message=message)


def create_app(service_options: Mapping[str, Any] | None = None) -> Flask:
    """The app; ``service_options`` are more RecoveryService keyword arguments (for tests)."""
    app = Flask(__name__)
    hops = proxy_hops()
    if hops:
        # request.remote_addr becomes the address that the outermost of the ``hops``
        # proxies saw: right only if those proxies are the one way in.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=0)  # type: ignore[method-assign]
    service = build_service(service_options)
    app.extensions["credrecovery"] = service
    atexit.register(service.close)  # deliver queued confirmation mails on shutdown

    @app.get("/forgot")
    def forgot_form() -> Response:
        return page(form=True, value="")

    @app.post("/forgot")
    def forgot() -> Response:
        kind = request.form.get("kind", "")
        value = request.form.get("value", "")
        try:
            service.request(kind, value, requester=request.remote_addr)
        except InvalidIdentifier as exc:
            return page(exc.http_status, form=True, error=str(exc), value=value)
        return page(message=SENT)  # the same page whether or not a client matched

    @app.get("/recover/<token>")
    def confirm_form(token: str) -> Response:
        # Mail scanners open links: the GET only checks, the button's POST confirms.
        service.check(token, requester=request.remote_addr)
        return page(confirm=True)

    @app.post("/recover/<token>")
    def confirm(token: str) -> Response:
        confirmation = service.confirm(token, requester=request.remote_addr)
        end_panel_sessions(confirmation.number)  # the old key is dead: so are its sessions
        return page(
            message="Done. Your client number and a new access key are on their "
            "way to your primary email address."
        )

    app.register_error_handler(RecoveryError, error_page)

    @app.after_request
    def headers(response: Response) -> Response:
        # The confirmation link carries the token in its path: never send it on.
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["Cache-Control"] = "no-store"
        return response

    return app
