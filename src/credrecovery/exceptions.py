"""The exception tree: every error the library raises derives from RecoveryError.

Messages and attributes never carry a token, a key, a hash or a secret. The
form messages' texts live in :mod:`credrecovery.mail.catalogue`; their names
are importable from here too.
"""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any

from .mail.catalogue import IDENTIFIER_MESSAGES as IDENTIFIER_MESSAGES
from .mail.catalogue import KEY_MESSAGES as KEY_MESSAGES
from .mail.catalogue import N_ as N_
from .mail.catalogue import identifier_message, key_message


def _restore(cls: type[RecoveryError], args: tuple[object, ...]) -> RecoveryError:
    # Rebuilt without calling __init__: the attributes come back from the
    # pickled state, whatever the constructor's signature.
    return cls.__new__(cls, *args)


class RecoveryError(Exception):
    """Base of every credrecovery error. Never raised directly.

    Every one pickles with its attributes (a task queue may carry it to
    another process).
    """

    #: The HTTP status a web layer would usually answer with.
    http_status: int = 500

    def __reduce__(self) -> tuple[Any, ...]:
        return _restore, (type(self), self.args), self.__dict__


class InvalidIdentifier(RecoveryError, ValueError):
    """The identifier kind or value is malformed.

    The message is safe to show on the recovery form. ``kind`` is the kind
    that was asked for, as given, when it was a known kind; else ``None``.
    ``code`` says what is wrong, for a program: one of ``unknown_kind``,
    ``not_text``, ``too_long``, ``bad_characters``, ``empty``, ``bad_domain``,
    ``bad_email`` and ``bad_client_number`` (see :data:`IDENTIFIER_MESSAGES`),
    or ``invalid`` when raised without one.
    """

    http_status = 400

    def __init__(
        self, message: str | None = None, *, kind: str | None = None, code: str = "invalid"
    ) -> None:
        if message is None:
            message = IDENTIFIER_MESSAGES.get(code, "The identifier is not valid.")
        super().__init__(message)
        self.kind = kind
        self.code = code

    def message_in(
        self, language: str | None, catalogs: str | os.PathLike[str] | None = None
    ) -> str:
        """The message in ``language`` (``"es"``, ``"pt-BR"``), for a form.

        ``catalogs`` is a host's own catalog directory, searched first, as
        for ``RecoveryService(catalogs=...)``. The message comes in English
        when no catalog has the language, and as raised when ``code`` has no
        message of the library's.
        """
        message = identifier_message(self.code, language, catalogs)
        return str(self) if message is None else message


class KeyRejected(RecoveryError, ValueError):
    """The key a client chose breaks the key policy; the token is still unused.

    ``reasons`` holds a code of :data:`KEY_MESSAGES` for each rule broken
    (see :class:`~credrecovery.policy.KeyPolicy`). The message is the
    reasons' texts in the service's language, fit for the form; the key is
    never part of it.
    """

    http_status = 422

    def __init__(self, reasons: tuple[str, ...], message: str | None = None) -> None:
        if message is None:
            message = " ".join(KEY_MESSAGES.get(code, code) for code in reasons)
        super().__init__(message)
        self.reasons = tuple(reasons)

    def message_in(
        self, language: str | None, catalogs: str | os.PathLike[str] | None = None
    ) -> str:
        """The message in ``language``, as :meth:`InvalidIdentifier.message_in` gives its own."""
        return key_message(self.reasons, language, catalogs)


class InvalidToken(RecoveryError):
    """The confirmation token is forged, tampered, unreadable or no longer usable."""

    http_status = 400


class TokenExpired(InvalidToken):
    """The token's signature is genuine but it is older than ``token_max_age``.

    ``issued_at`` is when the token was signed and ``expired_at`` when it
    stopped working (``issued_at`` plus ``token_max_age``), both aware UTC
    datetimes to the second, for a page that says "this link expired at
    ...". Both are ``None`` on an error built without them.
    """

    def __init__(
        self, *args: object, issued_at: datetime | None = None, expired_at: datetime | None = None
    ) -> None:
        super().__init__(*args)
        self.issued_at = issued_at
        self.expired_at = expired_at


class TokenAlreadyUsed(InvalidToken):
    """The token was already used, or the account changed since it was issued.

    A confirmation rotates the key hash, so the token that caused it, and every
    token issued before it, stop working.
    """

    http_status = 409


class InvalidCode(InvalidToken):
    """A recovery code was refused: wrong, from another ticket, or its ticket is forged or spent.

    Raised by :meth:`~credrecovery.RecoveryService.check_code` and
    :meth:`~credrecovery.RecoveryService.confirm_code` with one message in
    every case (a wrong code, a code already used, a ticket out of attempts,
    a ticket whose identifier matched nobody), so that the answer tells
    nothing about the account. An expired ticket raises :class:`TokenExpired`
    instead.
    """


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

    def __init__(
        self,
        message: str = "the message could not be delivered",
        *,
        temporary: bool = True,
        smtp_code: int | None = None,
        enhanced_code: str | None = None,
    ) -> None:
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

    def __init__(
        self,
        message: str = "the client directory failed",
        *,
        sqlstate: str | None = None,
        constraint: str | None = None,
    ) -> None:
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


class Overloaded(RateLimited):
    """Every key-hashing slot of the process stayed busy for the whole wait.

    Raised by :meth:`~credrecovery.RecoveryService.authenticate`,
    :meth:`~credrecovery.RecoveryService.change_key` and
    :meth:`~credrecovery.RecoveryService.confirm` before any hashing starts,
    at the same point for a known client and an unknown one, and before
    anything was changed: the key and the token stay as they were. See
    :func:`~credrecovery.set_hashing_limit`. A :class:`RateLimited`, so that
    a host answering that with ``Retry-After`` answers this too; ``limit`` is
    ``"hashing"`` and ``retry_after`` a second or so. Its own status is 503:
    the server is busy, not the requester at fault.
    """

    http_status = 503

    def __init__(self, retry_after: float = 1.0, limit: str = "hashing") -> None:
        super().__init__(limit, retry_after)
        self.args = (f"the server is busy; retry after {retry_after:.0f} seconds",)


class UnknownClient(RecoveryError, LookupError):
    """No open client has the number support asked for.

    Raised by :meth:`~credrecovery.RecoveryService.issue_link`, a support
    tool's call, never by what an anonymous visitor reaches: the message says
    whether the number is unknown or its account closed (or its record
    unusable). ``number`` is the number as normalized.
    """

    http_status = 404

    def __init__(self, message: str, *, number: str | None = None) -> None:
        super().__init__(message)
        self.number = number
