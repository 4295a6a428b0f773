"""A client panel's sign-in and access recovery screens, built on credrecovery's RecoveryService.

Start it with ``python -m examples.flask_panel`` from the repository root;
``README.md`` next to this file lists the environment it reads. Tests build it
with :func:`create_app` and a config dict instead.
"""

from __future__ import annotations

import atexit
import hashlib
import hmac
import math
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

from flask import (
    Flask,
    Response,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_wtf.csrf import CSRFError, CSRFProtect  # type: ignore[import-untyped]
from werkzeug.exceptions import NotFound
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.wrappers import Response as BaseResponse

from credrecovery import (
    DeliveryFailed,
    DirectoryError,
    IdentifierKind,
    InvalidIdentifier,
    InvalidToken,
    KeyRejected,
    Overloaded,
    RateLimited,
    RecoveryError,
    RecoveryService,
    TokenAlreadyUsed,
    TokenExpired,
)
from credrecovery.smtp import SMTPMailer
from credrecovery.sqlite import SQLiteDirectory

from .sessions import SessionEpochs
from .strings import LANGUAGES, STRINGS, pick_language

__all__ = ["ENVIRONMENT", "Panel", "PanelConfigError", "create_app"]

#: The settings read from the environment, and their defaults (``None``: required).
ENVIRONMENT: Mapping[str, str | None] = {
    "CREDRECOVERY_SECRET_KEY": None,
    "PANEL_DB": "clients.sqlite3",
    "PANEL_SMTP_HOST": None,
    "PANEL_SMTP_PORT": "25",
    "PANEL_SMTP_SECURITY": "plain",
    "PANEL_SMTP_USERNAME": "",
    "PANEL_SMTP_PASSWORD": "",
    "PANEL_BASE_URL": "http://127.0.0.1:5000",
    "PANEL_SENDER": None,
    "PANEL_PROXY_HOPS": "0",
}

KINDS = tuple(kind.value for kind in IdentifierKind)

# No JavaScript, no inline style, no framing, forms only to this origin.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)


class PanelConfigError(ValueError):
    """A setting is missing or malformed; the message names it and never quotes a secret."""


@dataclass
class Panel:
    """The recovery services behind the app: one per UI language, so mail speaks it too.

    They share the directory, the mailer and the rate limiter; each has a
    delivery queue of its own.
    """

    directory: SQLiteDirectory
    services: dict[str, RecoveryService]
    #: When each client's sessions stop holding, set by the services' key_changed events.
    epochs: SessionEpochs | None = None

    def service(self, language: str) -> RecoveryService:
        """The service whose mail is in ``language``."""
        return self.services[language]

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every queued confirmation mail has left; False on timeout."""
        return all(service.flush(timeout) for service in self.services.values())

    def close(self) -> None:
        """Deliver what is queued, then stop delivery and close the directory."""
        for service in self.services.values():
            service.close()
        self.directory.close()


def settings_from(config: Mapping[str, Any] | None) -> dict[str, Any]:
    """The environment's settings, overridden by ``config``; raises PanelConfigError."""
    settings: dict[str, Any] = {
        name: os.environ.get(name, default) for name, default in ENVIRONMENT.items()
    }
    settings.update(config or {})
    if not settings["CREDRECOVERY_SECRET_KEY"]:
        raise PanelConfigError(
            "CREDRECOVERY_SECRET_KEY is not set; generate one with 'python -m credrecovery secret'"
        )
    if not settings["PANEL_SMTP_HOST"]:
        raise PanelConfigError(
            "PANEL_SMTP_HOST is not set: the panel mails confirmation links and new keys, so it "
            "needs an SMTP server (for a local try, 'python -m aiosmtpd -n -l 127.0.0.1:1025' "
            "and PANEL_SMTP_HOST=127.0.0.1 PANEL_SMTP_PORT=1025)"
        )
    if not settings["PANEL_SENDER"]:
        raise PanelConfigError(
            "PANEL_SENDER is not set; give the From address, such as "
            "'Client Panel <panel@example.com>'"
        )
    try:
        settings["PANEL_SMTP_PORT"] = int(settings["PANEL_SMTP_PORT"])
    except (TypeError, ValueError):
        raise PanelConfigError("PANEL_SMTP_PORT must be a port number") from None
    base_url = str(settings["PANEL_BASE_URL"]).rstrip("/")
    if not base_url.startswith(("http://", "https://")):
        raise PanelConfigError("PANEL_BASE_URL must start with http:// or https://")
    settings["PANEL_BASE_URL"] = base_url
    hops = str(settings["PANEL_PROXY_HOPS"] or 0)
    if not (hops.isascii() and hops.isdigit()):
        raise PanelConfigError(
            "PANEL_PROXY_HOPS must be the number of reverse proxies in "
            "front of the panel, such as 1 (0: none)"
        )
    settings["PANEL_PROXY_HOPS"] = int(hops)
    return settings


def build_panel(settings: Mapping[str, Any]) -> Panel:
    """The directory, mailer and one RecoveryService per language, from checked settings.

    Besides the environment's settings, tests may pass ``PANEL_CRYPT_CONTEXT``
    (a passlib CryptContext), ``PANEL_RATE_LIMITS`` (a RateLimits),
    ``PANEL_DELIVERY`` (``"background"`` or ``"sync"``) and ``PANEL_CLOCK``
    (the services' clock, a callable returning seconds since the epoch).
    """
    directory = SQLiteDirectory(
        settings["PANEL_DB"], crypt_context=settings.get("PANEL_CRYPT_CONTEXT")
    )
    try:
        mailer = SMTPMailer(
            settings["PANEL_SMTP_HOST"],
            settings["PANEL_SMTP_PORT"],
            security=settings["PANEL_SMTP_SECURITY"],
            username=settings["PANEL_SMTP_USERNAME"] or None,
            password=settings["PANEL_SMTP_PASSWORD"] or None,
        )
    except ValueError as exc:
        directory.close()
        raise PanelConfigError(f"the SMTP settings are not usable: {exc}") from None
    services: dict[str, RecoveryService] = {}
    epochs = SessionEpochs(settings["PANEL_DB"])
    options: dict[str, Any] = {}
    if "PANEL_RATE_LIMITS" in settings:
        options["rate_limits"] = settings["PANEL_RATE_LIMITS"]
    if "PANEL_CLOCK" in settings:
        options["clock"] = settings["PANEL_CLOCK"]
    for language in LANGUAGES:
        services[language] = RecoveryService(
            directory,
            mailer,
            secret_key=settings["CREDRECOVERY_SECRET_KEY"],
            confirm_url=settings["PANEL_BASE_URL"] + "/recover/{token}",
            sender=settings["PANEL_SENDER"],
            crypt_context=settings.get("PANEL_CRYPT_CONTEXT"),
            locale=language,
            delivery=settings.get("PANEL_DELIVERY", "background"),
            on_event=epochs.on_event,
            **options,
        )
    # One set of counters for both languages: switching language must not double a limit.
    first = services[LANGUAGES[0]]
    for service in services.values():
        service.limiter = first.limiter
    return Panel(directory, services, epochs)


def session_secret(secret_key: str | bytes) -> bytes:
    """Flask's session key, derived from the recovery secret so tokens and cookies differ."""
    key = secret_key.encode("utf-8") if isinstance(secret_key, str) else secret_key
    return hmac.new(key, b"examples.flask_panel session cookie", hashlib.sha256).digest()


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the panel app from the environment, with ``config`` overriding any setting.

    Raises :class:`PanelConfigError` when a required setting is missing.
    The app's :class:`Panel` is ``app.extensions["credrecovery_panel"]``.
    """
    settings = settings_from(config)
    app = Flask(__name__)
    app.config.update(settings)
    app.config.update(
        SECRET_KEY=settings.get("SECRET_KEY")
        or session_secret(settings["CREDRECOVERY_SECRET_KEY"]),
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings["PANEL_BASE_URL"].startswith("https://"),
        # Every page sends "Referrer-Policy: no-referrer", so on https the check
        # that the Referer is this site would refuse every form; the token and the
        # SameSite cookie stand without it.
        WTF_CSRF_SSL_STRICT=False,
    )
    CSRFProtect(app)
    if settings["PANEL_PROXY_HOPS"]:
        # remote_addr: what the outermost proxy saw; right only if they are the one way in.
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=settings["PANEL_PROXY_HOPS"], x_proto=0
        )
    panel = build_panel(settings)
    app.extensions["credrecovery_panel"] = panel
    atexit.register(panel.close)  # deliver queued confirmation mails on shutdown
    register_routes(app, panel)
    from .codes import register_code_routes  # imported once this module's helpers exist

    register_code_routes(app, panel)
    return app


def language() -> str:
    """The current request's UI language; a ``?lang=`` choice is remembered in the session."""
    if "language" not in g:
        asked = request.args.get("lang")
        chosen = pick_language(asked, session.get("lang"), request.accept_languages.values())
        if asked == chosen:
            session["lang"] = chosen
        g.language = chosen
    return cast(str, g.language)


def page(template: str, status: int = 200, **context: Any) -> Response:
    """Render ``template`` in the current language with ``status``."""
    return Response(render_template(template, **context), status=status)


def message_page(
    title: str,
    body: str,
    status: int,
    *,
    link: str = "login",
    link_text: str = "back_to_login",
    **values: Any,
) -> Response:
    """A page with one heading, one paragraph and one link, all named by string keys."""
    strings = STRINGS[language()]
    return page(
        "message.html",
        status,
        title=strings[title],
        body=strings[body].format(**values),
        link=url_for(link),
        link_text=strings[link_text],
    )


def client_ip() -> str | None:
    # The client's address behind PANEL_PROXY_HOPS proxies (ProxyFix), else the peer's.
    return request.remote_addr


def session_holds(panel: Panel, number: str, signed_in_at: object) -> bool:
    """Whether a session of client ``number``, signed in at ``signed_in_at``, still holds.

    A change of the client's key (a recovery, or a change in the panel) is a
    ``key_changed`` event, which ends every session signed in before it.
    """
    return (
        isinstance(signed_in_at, int | float)
        and panel.epochs is not None
        and panel.epochs.valid(number, float(signed_in_at))
    )


def register_routes(app: Flask, panel: Panel) -> None:
    """Attach the pages, the error pages and the headers every response carries."""

    @app.context_processor
    def strings() -> dict[str, Any]:
        current = language()
        return {"t": STRINGS[current], "kinds": KINDS, "lang": current}

    @app.get("/")
    def home() -> BaseResponse:
        return redirect(url_for("login"))

    @app.get("/login")
    def login() -> BaseResponse:
        if "client" in session:
            return redirect(url_for("account"))
        return page("login.html", number="")

    @app.post("/login")
    def login_post() -> BaseResponse:
        number = request.form.get("number", "")
        key = request.form.get("key", "")
        # Failed sign-ins are counted per address; over a limit RateLimited
        # reaches recovery_error below: 429 with Retry-After.
        signed_in = panel.service(language()).authenticate(number, key, requester=client_ip())
        if signed_in is None:
            return page("login.html", 401, number=number[:32], failed=True)
        chosen = session.get("lang")
        session.clear()  # a fresh session on every sign-in: nothing carries over from before
        if chosen:
            session["lang"] = chosen
        session["client"] = signed_in.number
        session["since"] = time.time()
        if signed_in.must_change:
            # A key that travelled by mail is replaced before anything else.
            session["must_change"] = True
            return redirect(url_for("change_key"))
        return redirect(url_for("account"))

    def signed_in_client() -> str | None:
        number = session.get("client")
        if not isinstance(number, str) or not session_holds(panel, number, session.get("since")):
            for name in ("client", "since", "must_change"):
                session.pop(name, None)
            return None
        return number

    @app.get("/account")
    def account() -> BaseResponse:
        number = signed_in_client()
        if number is None:
            return redirect(url_for("login"))
        if session.get("must_change"):
            return redirect(url_for("change_key"))
        return page("account.html", number=number)

    @app.get("/change-key")
    def change_key() -> BaseResponse:
        if signed_in_client() is None:
            return redirect(url_for("login"))
        return page("change_key.html")

    @app.post("/change-key")
    def change_key_post() -> BaseResponse:
        number = signed_in_client()
        if number is None:
            return redirect(url_for("login"))
        try:
            changed = panel.service(language()).change_key(
                number,
                request.form.get("current", ""),
                request.form.get("new", ""),
                requester=client_ip(),
            )
        except KeyRejected as exc:
            return page("change_key.html", exc.http_status, error=exc.message_in(language()))
        if changed is None:
            return page("change_key.html", 401, error=STRINGS[language()]["change_wrong_key"])
        session.pop("must_change", None)
        session["since"] = time.time()  # after the change: this session holds, others end
        return redirect(url_for("account"))

    @app.post("/logout")
    def logout() -> BaseResponse:
        session.pop("client", None)
        session.pop("since", None)
        return redirect(url_for("login"))

    @app.get("/forgot")
    def forgot() -> BaseResponse:
        return page("forgot.html", kind=KINDS[0], value="")

    @app.post("/forgot")
    def forgot_post() -> BaseResponse:
        kind = request.form.get("kind", "")
        value = request.form.get("value", "")
        try:
            panel.service(language()).request(kind, value, requester=client_ip())
        except InvalidIdentifier as exc:
            return page(
                "forgot.html",
                exc.http_status,
                kind=kind,
                value=value[:320],
                error=identifier_error(exc),
            )
        # The same page whether or not a client matched.
        return message_page("sent_title", "sent_body", 200)

    @app.get("/recover/<token>")
    def recover(token: str) -> BaseResponse:
        # Mail scanners open links: the GET only checks, the button's POST confirms.
        panel.service(language()).check(token, requester=client_ip())
        return page("confirm.html", token=token)

    @app.post("/recover/<token>")
    def recover_post(token: str) -> BaseResponse:
        panel.service(language()).confirm(token, requester=client_ip())
        return message_page("done_title", "done_body", 200, link_text="go_to_login")

    @app.errorhandler(RecoveryError)
    def recovery_error(exc: RecoveryError) -> BaseResponse:
        return error_page(exc)

    @app.errorhandler(CSRFError)
    def csrf_error(exc: CSRFError) -> BaseResponse:
        return message_page("csrf_title", "csrf_body", 400)

    @app.errorhandler(NotFound)
    def not_found(exc: NotFound) -> BaseResponse:
        return message_page("not_found_title", "not_found_body", 404)

    @app.after_request
    def security_headers(response: Response) -> Response:
        headers = response.headers
        headers["X-Content-Type-Options"] = "nosniff"
        headers["X-Frame-Options"] = "DENY"
        headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
        # The confirmation link carries its token in the path: never pass it on.
        headers["Referrer-Policy"] = "no-referrer"
        if response.mimetype == "text/html":
            headers["Cache-Control"] = "no-store"
        return response


def identifier_error(exc: InvalidIdentifier) -> str:
    """What to show next to the value field: the library's text in the page's language."""
    return exc.message_in(language())


def error_page(exc: RecoveryError) -> Response:
    """The page for an error the service raised, with its HTTP status."""
    if isinstance(exc, Overloaded):
        # Every hashing slot is busy: the server's state, not this requester's doing.
        wait = max(1, math.ceil(exc.retry_after))
        response = message_page("unavailable_title", "limited_body", exc.http_status, seconds=wait)
        response.headers["Retry-After"] = str(wait)
        return response
    if isinstance(exc, RateLimited):
        wait = max(1, math.ceil(exc.retry_after))
        response = message_page(
            "limited_title", "limited_body", 429, link="forgot", link_text="ask_again", seconds=wait
        )
        response.headers["Retry-After"] = str(wait)
        return response
    if isinstance(exc, TokenExpired):
        return message_page(
            "expired_title", "expired_body", exc.http_status, link="forgot", link_text="ask_again"
        )
    if isinstance(exc, TokenAlreadyUsed):
        return message_page(
            "used_title", "used_body", exc.http_status, link="forgot", link_text="ask_again"
        )
    if isinstance(exc, InvalidToken):
        return message_page(
            "invalid_title", "invalid_body", exc.http_status, link="forgot", link_text="ask_again"
        )
    if isinstance(exc, DeliveryFailed):
        body = "delivery_temporary" if exc.temporary else "delivery_permanent"
        return message_page("delivery_title", body, exc.http_status)
    if isinstance(exc, DirectoryError):
        return message_page("unavailable_title", "unavailable_body", exc.http_status)
    return message_page("unavailable_title", "unavailable_body", 500)
