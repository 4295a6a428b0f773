"""What the FastAPI example does against a hostile page open in the visitor's browser.

* **Forms carry a token bound to a cookie** (a signed double-submit cookie). A page
  with a form sets ``recovery-form`` (``__Host-recovery-form`` on https), a random
  value, and puts a signature of that value, from the app's secret, in the form's
  ``csrf_token`` field. A form POST needs both, matching: another site can make
  the browser post, but it can read neither the cookie nor the page.
* **Fetch Metadata.** A POST that the browser says another site started
  (``Sec-Fetch-Site: cross-site`` or ``same-site``) is refused before any route
  runs, JSON ones too: every form here posts back to its own origin.
* **JSON needs no token.** A browser sends ``Content-Type: application/json`` to
  another origin only after a CORS preflight, which this app never grants.
* **Headers on every response**: no framing, no script, no sniffing, no Referer
  (the confirmation link carries its token in the path) and no caching.

The form token is not ``Origin`` checking: under ``Referrer-Policy: no-referrer`` a
browser posts forms with ``Origin: null``, even to their own origin.
"""

from __future__ import annotations

import hmac
import re
import secrets
from collections.abc import Callable

from fastapi import Request
from fastapi.responses import HTMLResponse
from itsdangerous import BadData, URLSafeTimedSerializer

from credrecovery import RecoveryError

__all__ = ["FIELD", "SECURITY_HEADERS", "CrossSiteRequest", "FormTokens", "from_this_site"]

#: The form field that carries the token.
FIELD = "csrf_token"
# No JavaScript, no style, no framing, forms only to this origin.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
#: Sent with every response.
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    # The confirmation link carries its token in the path: never hand it to
    # another site in a Referer header, nor to a cache.
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# What secrets.token_urlsafe(32) makes: anything else in the cookie is replaced.
NONCE = re.compile(r"[A-Za-z0-9_-]{43}")


class CrossSiteRequest(RecoveryError):
    """A POST another site started, or a form without a valid token for its cookie."""

    http_status = 403


def from_this_site(request: Request) -> bool:
    """False for a state-changing request that the browser says another site started."""
    if request.method in SAFE_METHODS:
        return True
    # Absent from clients that are not browsers, and from older browsers: the
    # form token covers those.
    return request.headers.get("sec-fetch-site", "same-origin") in ("same-origin", "none")


class FormTokens:
    """Issues the form token and its cookie, and checks them on a form POST.

    ``secure`` (an https site) marks the cookie ``Secure`` and names it with the
    ``__Host-`` prefix, which a sibling subdomain cannot set. A token lasts
    ``max_age`` seconds: a page left open longer asks for a reload.
    """

    def __init__(self, secret_key: str, *, secure: bool, max_age: int = 12 * 3600) -> None:
        self._signer = URLSafeTimedSerializer(secret_key, salt="fastapi_recovery form token")
        self.secure = secure
        self.cookie = "__Host-recovery-form" if secure else "recovery-form"
        self.max_age = max_age

    def __repr__(self) -> str:
        return f"FormTokens(cookie={self.cookie!r}, max_age={self.max_age})"

    def _nonce(self, request: Request) -> str | None:
        nonce = request.cookies.get(self.cookie, "")
        return nonce if NONCE.fullmatch(nonce) else None

    def respond(
        self, request: Request, render: Callable[[str], str], status: int = 200
    ) -> HTMLResponse:
        """The page ``render(token)`` builds; it sets the cookie when the browser has none."""
        nonce = self._nonce(request)
        fresh = nonce is None
        if nonce is None:
            nonce = secrets.token_urlsafe(32)
        response = HTMLResponse(render(self._signer.dumps(nonce)), status)
        if fresh:
            response.set_cookie(
                self.cookie, nonce, path="/", secure=self.secure, httponly=True, samesite="strict"
            )
        return response

    def check(self, request: Request, token: str) -> None:
        """Raise :class:`CrossSiteRequest` unless ``token`` was issued for the request's cookie."""
        nonce = self._nonce(request)
        if nonce is None or not token:
            raise CrossSiteRequest("the form's token or its cookie is missing")
        try:
            signed = self._signer.loads(token, max_age=self.max_age)
        except BadData:
            raise CrossSiteRequest("the form's token is not valid") from None
        if not (isinstance(signed, str) and hmac.compare_digest(signed, nonce)):
            raise CrossSiteRequest("the form's token belongs to another cookie")
