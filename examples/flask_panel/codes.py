"""Recovery by a typed code: the panel's "send me a code" choice and the page to type it.

The recovery form's second button posts to ``/forgot/code``, which asks the
service for a code mail and keeps the ticket it returns in the visitor's
session; ``/recover-code`` then takes the code and confirms it, with the same
outcome as a confirmation link. Registered by :func:`register_routes`, whose
helpers these pages share.
"""

from __future__ import annotations

from flask import Flask, redirect, request, session, url_for
from werkzeug.wrappers import Response as BaseResponse

from credrecovery import InvalidCode, InvalidIdentifier, TokenExpired

from . import Panel, client_ip, identifier_error, language, message_page, page
from .strings import STRINGS

__all__ = ["register_code_routes"]

# The session key of the ticket of the visitor's last code request.
TICKET = "code_ticket"


def register_code_routes(app: Flask, panel: Panel) -> None:
    """Attach ``POST /forgot/code`` and the code page, ``/recover-code``."""

    @app.post("/forgot/code")
    def forgot_code() -> BaseResponse:
        kind = request.form.get("kind", "")
        value = request.form.get("value", "")
        try:
            ticket = panel.service(language()).request_code(kind, value, requester=client_ip())
        except InvalidIdentifier as exc:
            return page(
                "forgot.html",
                exc.http_status,
                kind=kind,
                value=value[:320],
                error=identifier_error(exc),
            )
        # A ticket whether or not a client matched: the next page is the same.
        session[TICKET] = ticket
        return redirect(url_for("recover_code"))

    @app.get("/recover-code")
    def recover_code() -> BaseResponse:
        if not isinstance(session.get(TICKET), str):
            return redirect(url_for("forgot"))
        return page("code.html")

    @app.post("/recover-code")
    def recover_code_post() -> BaseResponse:
        ticket = session.get(TICKET)
        if not isinstance(ticket, str):
            return redirect(url_for("forgot"))
        try:
            panel.service(language()).confirm_code(
                ticket, request.form.get("code", ""), requester=client_ip()
            )
        except TokenExpired as exc:
            session.pop(TICKET, None)
            return message_page(
                "code_expired_title",
                "code_expired_body",
                exc.http_status,
                link="forgot",
                link_text="ask_new_code",
            )
        except InvalidCode as exc:
            # The ticket may have attempts left: the visitor types again.
            return page("code.html", exc.http_status, error=STRINGS[language()]["code_wrong"])
        session.pop(TICKET, None)
        return message_page("done_title", "done_body", 200, link_text="go_to_login")
