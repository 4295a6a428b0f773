"""The web apps the HTTP timing benchmark serves: one Flask app, one FastAPI app.

Both answer ``POST /forgot`` with a JSON body ``{"kind": ..., "value": ...}``
by calling ``service.request(kind, value, requester=<peer address>)`` and
returning the same page whether or not a client matched, as a panel would;
``POST /forgot-code`` calls ``service.request_code(...)`` instead and returns
a page holding the ticket in a hidden field, as a panel's code form would.
``GET /ready`` answers once the app is loaded. Servers load them by name::

    gunicorn 'benchmarks._http_apps:flask_app()'
    uvicorn --factory benchmarks._http_apps:fastapi_app
    uvicorn --factory benchmarks._http_apps:fastapi_async_app

The last one's endpoint is an ``async def`` on an ``AsyncRecoveryService``.

The service is built from the environment, once per process:

* ``CREDRECOVERY_BENCH_DB``: the SQLite directory file;
* ``CREDRECOVERY_BENCH_SMTP_PORT``: the SMTP server's port on 127.0.0.1;
* ``CREDRECOVERY_BENCH_SECRET``: the signing key;
* ``CREDRECOVERY_BENCH_DELIVERY``: ``background`` (the library's default),
  ``celery`` (the service of :mod:`benchmarks._http_celery_app`) or ``none``
  (:class:`DropEverything`);
* ``CREDRECOVERY_BENCH_MAILER``: ``library`` (the library's
  :class:`~credrecovery.smtp.SMTPMailer`, the default) or ``host``
  (:class:`HostSMTPMailer`, a mailer of the host's own);
* ``CREDRECOVERY_BENCH_DIRECTORY``: ``sqlite`` (the default) or ``postgresql``
  (:mod:`benchmarks._http_pg`: ``SQLAlchemyDirectory`` on psycopg for the
  Flask app and the ``def`` FastAPI app, ``AsyncSQLAlchemyDirectory`` on
  asyncpg for the ``async def`` one).

``GET /ready`` answers a JSON object: ``process_id``, the id of the library's
delivery process or ``null`` when delivery runs in threads of the web
process, and ``host_mailer_sent``, how many mails the host mailer object of
this process has sent (``null`` with the library's mailer).
"""

# No "from __future__ import annotations": FastAPI reads the endpoint's annotations
# at run time, and the request model is local to the factory.
import os
import smtplib
import threading
from email.message import EmailMessage
from typing import Any, Literal

from credrecovery import (
    AsyncRecoveryService,
    InvalidIdentifier,
    RateLimited,
    RateLimits,
    RecoveryService,
)
from credrecovery.protocols import ClientDirectory, DeliveryQueue, Mailer
from credrecovery.smtp import SMTPMailer
from credrecovery.sqlite import SQLiteDirectory

SENT_PAGE = (
    "<!DOCTYPE html><title>Recover access</title><p>If what you typed belongs to a "
    "client, we have mailed a confirmation link to the account's primary address.</p>"
)
HTML = "text/html; charset=utf-8"
CODE_PAGE = (
    "<!DOCTYPE html><title>Type the code</title><p>If what you typed belongs to a "
    "client, we have mailed a code to the account's primary address.</p>"
    '<form method="post" action="/recover-code">'
    '<input type="hidden" name="ticket" value="{ticket}"><input name="code"></form>'
)


def smtp_port() -> int:
    return int(os.environ["CREDRECOVERY_BENCH_SMTP_PORT"])


def service_options() -> dict[str, Any]:
    """What every benchmark service shares: the library's defaults, bar the limits.

    The per-requester limit is raised so that thousands of requests from one
    address are never refused, yet the limiter still runs on every request;
    the other limits keep their defaults, which the benchmark respects by
    naming each client, and each unknown value, once.
    """
    return dict(
        secret_key=os.environ["CREDRECOVERY_BENCH_SECRET"],
        confirm_url="https://panel.example.com/recover/{token}",
        sender="Client Panel <panel@example.com>",
        rate_limits=RateLimits(per_requester="1000000/minute"),
    )


class HostSMTPMailer:
    """A host's own mailer, as a panel might write one: no library class behind it.

    Each message goes over a new ``smtplib.SMTP`` connection to 127.0.0.1:``port``
    (as the library's ``SMTPMailer`` does), from whichever thread calls
    :meth:`send`. :attr:`sent` counts what this object has sent, so that the
    app can show that the host's object, not a copy elsewhere, sent the mail.
    """

    def __init__(self, port: int) -> None:
        self.port = port
        self.sent = 0
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"HostSMTPMailer(port={self.port})"

    def send(self, message: EmailMessage) -> None:
        """Send ``message``; smtplib's errors propagate, and delivery retries them."""
        with smtplib.SMTP("127.0.0.1", self.port, timeout=10) as smtp:
            smtp.send_message(message)
        with self._lock:
            self.sent += 1


def build_mailer() -> Mailer:
    mailer = os.environ.get("CREDRECOVERY_BENCH_MAILER", "library")
    if mailer == "host":
        return HostSMTPMailer(smtp_port())
    if mailer != "library":
        raise ValueError("CREDRECOVERY_BENCH_MAILER must be 'library' or 'host'")
    return SMTPMailer("127.0.0.1", smtp_port())


def postgresql() -> bool:
    directory = os.environ.get("CREDRECOVERY_BENCH_DIRECTORY", "sqlite")
    if directory not in ("sqlite", "postgresql"):
        raise ValueError("CREDRECOVERY_BENCH_DIRECTORY must be 'sqlite' or 'postgresql'")
    return directory == "postgresql"


def build_delivery() -> Literal["background"] | DeliveryQueue:
    delivery = os.environ.get("CREDRECOVERY_BENCH_DELIVERY", "background")
    if delivery not in ("background", "none"):
        raise ValueError("CREDRECOVERY_BENCH_DELIVERY must be 'background', 'celery' or 'none'")
    return DropEverything() if delivery == "none" else "background"


def build_service() -> RecoveryService:
    if os.environ.get("CREDRECOVERY_BENCH_DELIVERY") == "celery":
        from benchmarks._http_celery_app import service

        return service
    directory: ClientDirectory
    if postgresql():
        from benchmarks import _http_pg

        directory = _http_pg.sync_directory()
    else:
        directory = SQLiteDirectory(os.environ["CREDRECOVERY_BENCH_DB"])
    return RecoveryService(
        directory, build_mailer(), delivery=build_delivery(), **service_options()
    )


def build_async_service() -> AsyncRecoveryService:
    """The asyncio service: ``AsyncSQLAlchemyDirectory`` on PostgreSQL, else SQLite."""
    directory: Any
    if postgresql():
        from benchmarks import _http_pg

        directory = _http_pg.async_directory()
    else:
        directory = SQLiteDirectory(os.environ["CREDRECOVERY_BENCH_DB"])
    return AsyncRecoveryService(
        directory, build_mailer(), delivery=build_delivery(), **service_options()
    )


def ready_state(service: RecoveryService | AsyncRecoveryService) -> dict[str, Any]:
    """Where this process's delivery runs, for ``GET /ready``."""
    mailer = service.mailer
    return {
        "process_id": getattr(service.delivery, "process_id", None),
        "host_mailer_sent": mailer.sent if isinstance(mailer, HostSMTPMailer) else None,
    }


class DropEverything:
    """A delivery queue that drops every job: the baseline of a request without mail."""

    def bind(self, composer: object) -> None:
        """Nothing to compose with."""

    def submit(self, job: object) -> None:
        """Drop ``job``."""

    def flush(self, timeout: float | None = None) -> bool:
        """Nothing is queued."""
        return True

    def close(self, timeout: float | None = None) -> None:
        """Nothing to stop."""


def flask_app() -> Any:
    """The Flask app, for gunicorn's sync and gthread workers."""
    from flask import Flask, Response, jsonify, request

    service = build_service()
    app = Flask("credrecovery_bench")

    @app.get("/ready")
    def ready() -> Response:
        return jsonify(ready_state(service))

    @app.post("/forgot")
    def forgot() -> Response:
        data = request.get_json(force=True)
        try:
            service.request(str(data["kind"]), str(data["value"]), requester=request.remote_addr)
        except InvalidIdentifier as exc:
            return Response(str(exc), status=exc.http_status, mimetype="text/plain")
        except RateLimited as exc:
            return Response("too many attempts", status=exc.http_status, mimetype="text/plain")
        return Response(SENT_PAGE, content_type=HTML)

    @app.post("/forgot-code")
    def forgot_code() -> Response:
        data = request.get_json(force=True)
        try:
            ticket = service.request_code(
                str(data["kind"]), str(data["value"]), requester=request.remote_addr
            )
        except InvalidIdentifier as exc:
            return Response(str(exc), status=exc.http_status, mimetype="text/plain")
        except RateLimited as exc:
            return Response("too many attempts", status=exc.http_status, mimetype="text/plain")
        return Response(CODE_PAGE.format(ticket=ticket), content_type=HTML)

    return app


def fastapi_app() -> Any:
    """The FastAPI app, for uvicorn; its endpoint is a plain ``def``, run in the thread pool."""
    return _fastapi(build_service(), asynchronous=False)


def fastapi_async_app() -> Any:
    """The FastAPI app whose endpoint is an ``async def`` awaiting an ``AsyncRecoveryService``."""
    return _fastapi(build_async_service(), asynchronous=True)


def _fastapi(service: Any, *, asynchronous: bool) -> Any:
    from fastapi import FastAPI, Request
    from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
    from pydantic import BaseModel

    class Forgot(BaseModel):
        kind: str
        value: str

    def page(error: Exception | None) -> Response:
        if isinstance(error, InvalidIdentifier):
            return PlainTextResponse(str(error), status_code=error.http_status)
        if isinstance(error, RateLimited):
            return PlainTextResponse("too many attempts", status_code=error.http_status)
        return HTMLResponse(SENT_PAGE)

    app = FastAPI()

    @app.get("/ready")
    def ready() -> Response:
        return JSONResponse(ready_state(service))

    if asynchronous:

        @app.post("/forgot")
        async def forgot_async(body: Forgot, request: Request) -> Response:
            peer = request.client.host if request.client is not None else None
            try:
                await service.request(body.kind, body.value, requester=peer)
            except (InvalidIdentifier, RateLimited) as exc:
                return page(exc)
            return page(None)

        @app.post("/forgot-code")
        async def forgot_code_async(body: Forgot, request: Request) -> Response:
            peer = request.client.host if request.client is not None else None
            try:
                ticket = await service.request_code(body.kind, body.value, requester=peer)
            except (InvalidIdentifier, RateLimited) as exc:
                return page(exc)
            return HTMLResponse(CODE_PAGE.format(ticket=ticket))
    else:

        @app.post("/forgot")
        def forgot(body: Forgot, request: Request) -> Response:
            peer = request.client.host if request.client is not None else None
            try:
                service.request(body.kind, body.value, requester=peer)
            except (InvalidIdentifier, RateLimited) as exc:
                return page(exc)
            return page(None)

        @app.post("/forgot-code")
        def forgot_code(body: Forgot, request: Request) -> Response:
            peer = request.client.host if request.client is not None else None
            try:
                ticket = service.request_code(body.kind, body.value, requester=peer)
            except (InvalidIdentifier, RateLimited) as exc:
                return page(exc)
            return HTMLResponse(CODE_PAGE.format(ticket=ticket))

    return app
