"""The recovery pages: the form, the link's Confirm page, and what either may answer."""

from __future__ import annotations

import math

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from credrecovery import (
    DeliveryFailed,
    InvalidIdentifier,
    InvalidToken,
    RateLimited,
    RecoveryError,
    TokenAlreadyUsed,
    TokenExpired,
)

from .client_address import client_ip
from .service import get_service

SENT = (
    "If what you typed belongs to a client, we have mailed a confirmation link to the "
    "account's primary email address. It works once and expires soon."
)
DONE = "Your client number and a new access key are on their way to your primary address."
# The link carries the token in its path: its pages must not hand it to other
# sites in a Referer header, nor to caches.
LINK_HEADERS = {"Referrer-Policy": "no-referrer", "Cache-Control": "no-store"}


def message(request: HttpRequest, text: str, status: int = 200) -> HttpResponse:
    return render(request, "recovery/message.html", {"text": text}, status=status)


def error_page(request: HttpRequest, exc: RecoveryError) -> HttpResponse:
    """The page that reports ``exc``: never the token, the address or the client number."""
    if isinstance(exc, RateLimited):
        wait = math.ceil(exc.retry_after)
        response = message(request, f"Too many attempts. Try again in {wait} seconds.", 429)
        response["Retry-After"] = str(wait)
        return response
    # The subclasses first: both are InvalidTokens.
    if isinstance(exc, TokenExpired):
        return render(request, "recovery/expired.html", status=410)
    if isinstance(exc, TokenAlreadyUsed):
        return render(request, "recovery/used.html", status=409)
    if isinstance(exc, InvalidToken):
        return message(
            request,
            "This link is not valid. Copy it from the mail in full, or ask for a new one.",
            400,
        )
    if isinstance(exc, DeliveryFailed):
        return message(
            request,
            "We could not mail your new access details. "
            + (
                "Try the same link again in a few minutes." if exc.temporary else "Contact support."
            ),
            exc.http_status,
        )
    return message(
        request, "The service is unavailable. Try again in a few minutes.", exc.http_status
    )


@require_http_methods(["GET", "POST"])
def forgot(request: HttpRequest) -> HttpResponse:
    """GET: the form. POST: ask for a link; the same page whether or not a client matched."""
    if request.method == "GET":
        return render(request, "recovery/forgot.html")
    value = request.POST.get("value", "")
    try:
        get_service().request(request.POST.get("kind", ""), value, requester=client_ip(request))
    except InvalidIdentifier as exc:
        return render(
            request,
            "recovery/forgot.html",
            {"error": str(exc), "value": value},
            status=exc.http_status,
        )
    except RecoveryError as exc:
        return error_page(request, exc)
    return message(request, SENT)


# With Referrer-Policy: no-referrer the browser posts the Confirm form with
# "Origin: null", which Django's CSRF check refuses. A forged POST would need the
# token, whose holder can confirm anyway, and the key only goes to the client's
# own address. The recovery form keeps its CSRF protection.
@csrf_exempt
@require_http_methods(["GET", "POST"])
def recover(request: HttpRequest, token: str) -> HttpResponse:
    """GET: check the link and show a Confirm button. POST: rotate the key and mail it."""
    service = get_service()
    try:
        if request.method == "GET":
            # Mail scanners open links: only the button's POST confirms.
            service.check(token, requester=client_ip(request))
            response = render(request, "recovery/confirm.html")
        else:
            confirmation = service.confirm(token, requester=client_ip(request))
            end_panel_sessions(confirmation.number)
            response = message(request, DONE)
    except RecoveryError as exc:
        response = error_page(request, exc)
    for name, value in LINK_HEADERS.items():
        response[name] = value
    return response


def end_panel_sessions(number: str) -> None:
    """Sign client ``number`` out everywhere: the old key is dead, so are its sessions."""
