"""The web apps the HTTP timing benchmark serves: one Flask app, one FastAPI app.

Both answer ``POST /forgot`` with a JSON body ``{"kind": ..., "value": ...}``
by calling ``service.request(kind, value, requester=<peer address>)`` and
returning the same page whether or not a client matched, as a panel would.
``GET /ready`` answers once the app is loaded. Servers load them by name::

    gunicorn 'benchmarks._http_apps:flask_app()'
    uvicorn --factory benchmarks._http_apps:fastapi_app

The service is built from the environment, once per process:

* ``CREDRECOVERY_BENCH_DB``: the SQLite directory file;
* ``CREDRECOVERY_BENCH_SMTP_PORT``: the SMTP server's port on 127.0.0.1;
* ``CREDRECOVERY_BENCH_SECRET``: the signing key;
* ``CREDRECOVERY_BENCH_DELIVERY``: ``background`` (the library's default) or
  ``celery`` (the service of :mod:`benchmarks._http_celery_app`).
"""

# No "from __future__ import annotations": FastAPI reads the endpoint's annotations
# at run time, and the request model is local to the factory.
import os
from typing import Any

from credrecovery import InvalidIdentifier, RateLimited, RateLimits, RecoveryService
from credrecovery.smtp import SMTPMailer
from credrecovery.sqlite import SQLiteDirectory

SENT_PAGE = ("<!DOCTYPE html><title>Recover access</title><p>If what you typed belongs to a "
             "client, we have mailed a confirmation link to the account's primary address.</p>")
HTML = "text/html; charset=utf-8"


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


def build_service() -> RecoveryService:
    delivery = os.environ.get("CREDRECOVERY_BENCH_DELIVERY", "background")
    if delivery == "celery":
        from benchmarks._http_celery_app import service

        return service
    if delivery not in ("background", "none"):
        raise ValueError("CREDRECOVERY_BENCH_DELIVERY must be 'background', 'celery' or 'none'")
    return RecoveryService(
        SQLiteDirectory(os.environ["CREDRECOVERY_BENCH_DB"]),
        SMTPMailer("127.0.0.1", smtp_port()),
        delivery=DropEverything() if delivery == "none" else "background",
        **service_options(),
    )


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
    from flask import Flask, Response, request

    service = build_service()
    app = Flask("credrecovery_bench")

    @app.get("/ready")
    def ready() -> Response:
        return Response("ready", mimetype="text/plain")

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

    return app


def fastapi_app() -> Any:
    """The FastAPI app, for uvicorn; its endpoint is a plain ``def``, run in the thread pool."""
    from fastapi import FastAPI, Request
    from fastapi.responses import HTMLResponse, PlainTextResponse, Response
    from pydantic import BaseModel

    class Forgot(BaseModel):
        kind: str
        value: str

    service = build_service()
    app = FastAPI()

    @app.get("/ready")
    def ready() -> Response:
        return PlainTextResponse("ready")

    @app.post("/forgot")
    def forgot(body: Forgot, request: Request) -> Response:
        peer = request.client.host if request.client is not None else None
        try:
            service.request(body.kind, body.value, requester=peer)
        except InvalidIdentifier as exc:
            return PlainTextResponse(str(exc), status_code=exc.http_status)
        except RateLimited as exc:
            return PlainTextResponse("too many attempts", status_code=exc.http_status)
        return HTMLResponse(SENT_PAGE)

    return app
