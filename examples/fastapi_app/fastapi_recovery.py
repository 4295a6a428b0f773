"""A FastAPI front end for credrecovery on asyncio: AsyncRecoveryService, aiosqlite, aiosmtplib.

Run it (see README.md beside this file)::

    uvicorn --no-proxy-headers --app-dir examples/fastapi_app fastapi_recovery:app

Settings come from the environment when uvicorn loads ``app``: CREDRECOVERY_SECRET_KEY,
CREDRECOVERY_CONFIRM_URL, CREDRECOVERY_SENDER, CREDRECOVERY_DB, SMTP_HOST,
SMTP_PORT, SMTP_SECURITY, SMTP_USERNAME, SMTP_PASSWORD, CREDRECOVERY_TRUSTED_PROXIES.
Without one of the first two, or with a malformed one, it prints which and exits with
status 2. Requests carry their fields as JSON or as an urlencoded form, and get JSON or
HTML back in kind; a form carries the token of the page it came from (web_security.py).
"""

from __future__ import annotations

import dataclasses
import html
import ipaddress
import json
import math
import os
import re
import sys
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware
from web_security import FIELD, SECURITY_HEADERS, CrossSiteRequest, FormTokens, from_this_site

from credrecovery import (
    AsyncRecoveryService,
    DeliveryFailed,
    InvalidIdentifier,
    InvalidToken,
    RateLimited,
    RecoveryError,
    TokenAlreadyUsed,
    TokenExpired,
)
from credrecovery.async_smtp import AsyncSMTPMailer
from credrecovery.async_sqlite import AsyncSQLiteDirectory
from credrecovery.smtp import Security

SENT = (
    "If what you typed belongs to a client, we have mailed a confirmation link to the "
    "account's primary email address. It works once and expires soon."
)
DONE = "Your client number and a new access key are on their way to your primary address."
REFUSED = "This form has expired, or it was sent from another site. Reload the page and try again."
# Every form here is a few short fields.
MAX_BODY = 4096


@dataclasses.dataclass(frozen=True)
class Settings:
    """Where clients live, how mail leaves, and the service's settings.

    ``service_options`` are more :class:`AsyncRecoveryService` keyword
    arguments (``rate_limits``, ``token_max_age``, ``crypt_context``...).
    ``trusted_proxies`` are the addresses or networks of the reverse proxies
    whose ``X-Forwarded-For`` names the client; none by default.
    """

    secret_key: str = dataclasses.field(repr=False)
    confirm_url: str
    sender: str
    database: str = "clients.sqlite3"
    smtp_host: str = "localhost"
    smtp_port: int = 25
    smtp_security: Security = "plain"
    smtp_username: str | None = None
    smtp_password: str | None = dataclasses.field(default=None, repr=False)
    service_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    trusted_proxies: tuple[str, ...] = ()

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Settings:
        """The settings from ``env``; :class:`SettingsError` names one missing or malformed."""
        for name, hint in REQUIRED.items():
            if not env.get(name):
                raise SettingsError(f"{name} is not set; {hint}")
        security = env.get("SMTP_SECURITY", "plain")
        if security not in ("plain", "starttls", "tls"):
            raise SettingsError("SMTP_SECURITY must be plain, starttls or tls")
        try:
            port = int(env.get("SMTP_PORT", "25"))
        except ValueError:
            raise SettingsError("SMTP_PORT must be a port number") from None
        listed = env.get("CREDRECOVERY_TRUSTED_PROXIES", "")
        proxies = tuple(filter(None, re.split(r"[,\s]+", listed)))
        try:
            for proxy in proxies:
                ipaddress.ip_network(proxy, strict=False)
        except ValueError:
            raise SettingsError(
                "CREDRECOVERY_TRUSTED_PROXIES must list IP addresses or "
                "networks, such as 127.0.0.1 or 10.0.0.0/8"
            ) from None
        return cls(
            secret_key=env["CREDRECOVERY_SECRET_KEY"],
            confirm_url=env["CREDRECOVERY_CONFIRM_URL"],
            sender=env.get("CREDRECOVERY_SENDER", "Client Panel <panel@example.com>"),
            database=env.get("CREDRECOVERY_DB", "clients.sqlite3"),
            smtp_host=env.get("SMTP_HOST", "localhost"),
            smtp_port=port,
            smtp_security=security,  # type: ignore[arg-type]
            smtp_username=env.get("SMTP_USERNAME") or None,
            smtp_password=env.get("SMTP_PASSWORD") or None,
            trusted_proxies=proxies,
        )


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names it and never quotes a secret."""


#: The settings without a default, and how to get a value.
REQUIRED = {
    "CREDRECOVERY_SECRET_KEY": "generate one with 'python -m credrecovery secret'",
    "CREDRECOVERY_CONFIRM_URL": (
        "give the link template, such as 'http://127.0.0.1:8000/recover/{token}'"
    ),
}


def create_app(settings: Settings | None = None) -> FastAPI:
    """The app; ``settings`` default to :meth:`Settings.from_env`, read as this is called."""
    config = settings if settings is not None else Settings.from_env()
    forms = FormTokens(config.secret_key, secure=config.confirm_url.startswith("https://"))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        directory = AsyncSQLiteDirectory(config.database)
        mailer = AsyncSMTPMailer(
            config.smtp_host,
            config.smtp_port,
            security=config.smtp_security,
            username=config.smtp_username,
            password=config.smtp_password,
        )
        service = AsyncRecoveryService(
            directory,
            mailer,
            secret_key=config.secret_key,
            confirm_url=config.confirm_url,
            sender=config.sender,
            **config.service_options,
        )
        async with directory, service:  # closed in reverse: queued mail first
            app.state.recovery = service
            yield

    # No /docs nor /redoc: their pages load scripts from a CDN, which the CSP forbids.
    app = FastAPI(lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.forms = forms

    @app.middleware("http")
    async def guard(
        request: Request,
        call_next: Callable[[Request], Awaitable[Response]],
    ) -> Response:
        if from_this_site(request):
            response = await call_next(request)
        else:
            response = answer(request, REFUSED, 403)
        response.headers.update(SECURITY_HEADERS)
        return response

    if config.trusted_proxies:
        # Outermost: the guard and the routes see the client's address.
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=list(config.trusted_proxies))

    @app.exception_handler(RecoveryError)
    async def recovery_error(request: Request, exc: RecoveryError) -> Response:
        status, text, headers = explain(exc)
        return answer(request, text, status, headers)

    @app.get("/forgot")
    async def forgot_form(request: Request) -> Response:
        return forms.respond(request, form_page)

    @app.post("/forgot")
    async def forgot(request: Request) -> Response:
        fields = await form_fields(request)
        kind, value = fields.get("kind", ""), fields.get("value", "")
        try:
            await service_of(request).request(kind, value, requester=client_ip(request))
        except InvalidIdentifier as exc:
            error = str(exc)
            if wants_json(request):
                return JSONResponse({"detail": error}, exc.http_status)
            return forms.respond(
                request, lambda token: form_page(token, error, value), exc.http_status
            )
        return answer(request, SENT)  # the same answer whether or not a client matched

    @app.get("/recover/{token}")
    async def confirm_form(request: Request, token: str) -> Response:
        # Mail scanners open links: the GET only checks, the button's POST confirms.
        await service_of(request).check(token, requester=client_ip(request))
        return forms.respond(request, confirm_page)

    @app.post("/recover/{token}")
    async def confirm(request: Request, token: str) -> Response:
        await form_fields(request)
        confirmation = await service_of(request).confirm(token, requester=client_ip(request))
        await end_panel_sessions(confirmation.number)
        return answer(request, DONE)

    @app.post("/login")
    async def login(request: Request) -> Response:
        fields = await form_fields(request)
        signed_in = await service_of(request).authenticate(
            fields.get("number", ""), fields.get("key", ""), requester=client_ip(request)
        )
        if signed_in is None:
            return answer(request, "Wrong client number or access key.", 401)
        # A real panel starts its session here.
        if wants_json(request):
            return JSONResponse({"number": signed_in.number})
        return HTMLResponse(page(f"Signed in as client {signed_in.number}."))

    return app


def __getattr__(name: str) -> Any:
    # "uvicorn fastapi_recovery:app" reads the environment here, as it loads the
    # app: a missing setting stops it with its name and exit status 2, as
    # examples/flask_panel does, rather than with a traceback at startup.
    if name != "app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"fastapi_recovery: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    app = globals()["app"] = create_app(settings)
    return app


def service_of(request: Request) -> AsyncRecoveryService:
    service: AsyncRecoveryService = request.app.state.recovery
    return service


def client_ip(request: Request) -> str | None:
    # The peer's address, or, from a trusted proxy, the client's that it forwarded
    # (Settings.trusted_proxies, applied by ProxyHeadersMiddleware).
    return request.client.host if request.client else None


async def end_panel_sessions(number: str) -> None:
    """Sign client ``number`` out everywhere: the old key is dead, so are its sessions."""


def wants_json(request: Request) -> bool:
    media_type = request.headers.get("content-type", "").split(";")[0]
    return media_type.strip().lower() == "application/json"


class BadForm(RecoveryError):
    """The request's body is not a small JSON object or urlencoded form of strings."""

    http_status = 400


async def form_fields(request: Request) -> dict[str, str]:
    """A POST's fields; a form's only with the token of the page it came from.

    Raises :class:`BadForm`, or :class:`CrossSiteRequest` for a form without a
    valid token. JSON needs none: no browser sends it to another origin
    without a CORS preflight, which this app never grants.
    """
    fields = await read_fields(request)
    if not wants_json(request):
        forms: FormTokens = request.app.state.forms
        forms.check(request, fields.get(FIELD, ""))
    return fields


async def read_fields(request: Request) -> dict[str, str]:
    """The request's string fields, from JSON or an urlencoded form; raises :class:`BadForm`."""
    body = await request.body()
    if len(body) > MAX_BODY:
        raise BadForm("the request is too large")
    try:
        if wants_json(request):
            data = json.loads(body or b"{}")
            if not isinstance(data, dict):
                raise BadForm("send a JSON object")
            return {name: value for name, value in data.items() if isinstance(value, str)}
        parsed = urllib.parse.parse_qs(body.decode("utf-8"), max_num_fields=10)
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadForm("the request's fields could not be read") from exc
    return {name: values[0] for name, values in parsed.items()}


def explain(exc: RecoveryError) -> tuple[int, str, dict[str, str]]:
    """The status, the text and the extra headers of the answer that reports ``exc``."""
    if isinstance(exc, RateLimited):
        wait = math.ceil(exc.retry_after)
        # Overloaded, a RateLimited, answers 503: the server is busy, not the client.
        return (
            exc.http_status,
            f"Too many attempts. Try again in {wait} seconds.",
            {"Retry-After": str(wait)},
        )
    # The subclasses first: both are InvalidTokens.
    if isinstance(exc, TokenExpired):
        return 410, "This link has expired. Ask for a new one.", {}
    if isinstance(exc, TokenAlreadyUsed):
        return (
            409,
            (
                "This link was already used, or your access details changed since it "
                "was sent. Ask for a new one if you still need it."
            ),
            {},
        )
    if isinstance(exc, InvalidToken):
        return (
            400,
            ("This link is not valid. Copy it from the mail in full, or ask for a new one."),
            {},
        )
    if isinstance(exc, BadForm):
        return 400, "The request could not be read.", {}
    if isinstance(exc, CrossSiteRequest):
        return 403, REFUSED, {}
    if isinstance(exc, DeliveryFailed):
        return (
            exc.http_status,
            "We could not mail your new access details. "
            + (
                "Try the same link again in a few minutes." if exc.temporary else "Contact support."
            ),
            {},
        )
    return exc.http_status, "The service is unavailable. Try again in a few minutes.", {}


def answer(
    request: Request, text: str, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    """``text`` as JSON for a JSON request, else as a page."""
    if wants_json(request):
        return JSONResponse({"detail": text}, status, headers=dict(headers or {}))
    return HTMLResponse(page(text), status, headers=dict(headers or {}))


def page(text: str) -> str:
    return (
        f'<!DOCTYPE html><html lang="en"><meta charset="utf-8"><title>Recover access</title>'
        f'<p>{html.escape(text)}</p><p><a href="/forgot">Start again</a></p></html>'
    )


def form_page(form_token: str, error: str = "", value: str = "") -> str:
    alert = f'<p role="alert">{html.escape(error)}</p>' if error else ""
    return f"""<!DOCTYPE html><html lang="en"><meta charset="utf-8"><title>Recover access</title>
<h1>Forgot your client number or key?</h1>{alert}
<form method="post">
  <input type="hidden" name="{FIELD}" value="{html.escape(form_token)}">
  <select name="kind"><option value="domain">Domain name</option>
    <option value="client_number">Client number</option>
    <option value="email">Primary email address</option></select>
  <input name="value" value="{html.escape(value)}" required maxlength="320">
  <button>Send</button>
</form></html>"""


def confirm_page(form_token: str) -> str:
    # No action: the form posts back to the link itself.
    return f"""<!DOCTYPE html><html lang="en"><meta charset="utf-8"><title>Recover access</title>
<h1>Send my access details</h1>
<p>Press the button to receive your client number and a new access key by mail.
Your current key stops working when you do.</p>
<form method="post"><input type="hidden" name="{FIELD}" value="{html.escape(form_token)}">
<button>Confirm</button></form></html>"""
