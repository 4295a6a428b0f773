"""The exception tree: every error the library raises derives from RecoveryError.

Messages and attributes never carry a token, a key, a hash or a secret.
"""

from __future__ import annotations


class RecoveryError(Exception):
    """Base of every credrecovery error. Never raised directly."""

    #: The HTTP status a web layer would usually answer with.
    http_status: int = 500


class InvalidIdentifier(RecoveryError, ValueError):
    """The identifier kind or value is malformed.

    The message is safe to show on the recovery form. ``kind`` is the kind
    that was asked for, as given, when it was a known kind; else ``None``.
    """

    http_status = 400

    def __init__(self, message: str, *, kind: str | None = None) -> None:
        super().__init__(message)
        self.kind = kind


class InvalidToken(RecoveryError):
    """The confirmation token is forged, tampered, unreadable or no longer usable."""

    http_status = 400


class TokenExpired(InvalidToken):
    """The token's signature is genuine but it is older than ``token_max_age``."""


class TokenAlreadyUsed(InvalidToken):
    """The token was already used, or the account changed since it was issued.

    A confirmation rotates the key hash, so the token that caused it, and every
    token issued before it, stop working.
    """

    http_status = 409


class DeliveryFailed(RecoveryError):
    """A message could not be delivered.

    Raised by :meth:`RecoveryService.confirm` when the credentials mail fails:
    the previous key hash has been put back, so the same token still works.
    Mailers raise it too; ``temporary`` tells whether trying again later may
    succeed (an SMTP 4xx, a timeout) or not (an SMTP 5xx). The underlying
    error is ``__cause__``.

    When an SMTP server refused the message, ``smtp_code`` is its reply code
    (``550``) and ``enhanced_code`` the RFC 3463 enhanced status code that
    opened the reply text (``"5.1.1"``), when it sent one; otherwise both are
    ``None``. The message never quotes the server's own text.
    """

    http_status = 503

    def __init__(self, message: str = "the message could not be delivered", *,
                 temporary: bool = True, smtp_code: int | None = None,
                 enhanced_code: str | None = None) -> None:
        super().__init__(message)
        self.temporary = temporary
        self.smtp_code = smtp_code
        self.enhanced_code = enhanced_code


class DirectoryError(RecoveryError):
    """The client directory failed (database down, locked, misconfigured).

    The directory's exception is ``__cause__``, except for a database error
    whose text may quote a row (a refused value, a constraint's detail): that
    one is raised with no cause, and keeps only its SQLSTATE (``sqlstate``)
    and the constraint's name (``constraint``), when the database gave them.
    No rotation was left half done.
    """

    http_status = 503

    def __init__(self, message: str = "the client directory failed", *,
                 sqlstate: str | None = None, constraint: str | None = None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate
        self.constraint = constraint


class RateLimited(RecoveryError):
    """Too many attempts from one requester.

    ``retry_after`` is the number of seconds after which a new attempt may pass;
    ``limit`` names the limit that was exceeded.
    """

    http_status = 429

    def __init__(self, limit: str, retry_after: float) -> None:
        super().__init__(f"too many attempts; retry after {retry_after:.0f} seconds")
        self.limit = limit
        self.retry_after = retry_after
