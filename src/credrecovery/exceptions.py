"""The exception tree: every error the library raises derives from RecoveryError.

Messages and attributes never carry a token, a key, a hash or a secret.
"""

from __future__ import annotations

import os


class RecoveryError(Exception):
    """Base of every credrecovery error. Never raised directly."""

    #: The HTTP status a web layer would usually answer with.
    http_status: int = 500


def N_(message: str) -> str:
    """Mark ``message`` for the catalogs without translating it here."""
    return message


#: The English text of each :attr:`InvalidIdentifier.code`; the catalogs
#: translate these message ids.
IDENTIFIER_MESSAGES: dict[str, str] = {
    "unknown_kind": N_("Choose a domain name, a client number or an email address."),
    "not_text": N_("The value must be text."),
    "too_long": N_("The value is too long."),
    "bad_characters": N_("The value contains a line break or a null character."),
    "empty": N_("Type a value."),
    "bad_domain": N_("This is not a valid domain name."),
    "bad_email": N_("This is not a valid email address."),
    "bad_client_number": N_("A client number has 1 to 32 letters, digits, '-' or '_'."),
}


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

    def __init__(self, message: str | None = None, *, kind: str | None = None,
                 code: str = "invalid") -> None:
        if message is None:
            message = IDENTIFIER_MESSAGES.get(code, "The identifier is not valid.")
        super().__init__(message)
        self.kind = kind
        self.code = code

    def message_in(self, language: str | None,
                   catalogs: str | os.PathLike[str] | None = None) -> str:
        """The message in ``language`` (``"es"``, ``"pt-BR"``), for a form.

        ``catalogs`` is a host's own catalog directory, searched first, as
        for ``RecoveryService(catalogs=...)``. The message comes in English
        when no catalog has the language, and as raised when ``code`` has no
        message of the library's.
        """
        from .mail import i18n

        text = IDENTIFIER_MESSAGES.get(self.code)
        if text is None:
            return str(self)
        dirs = i18n.catalog_dirs(catalogs)
        locale = i18n.negotiate([language], i18n.available_languages(dirs))
        return i18n.translations(dirs, locale).gettext(text)


#: The English text of each :attr:`KeyRejected.reasons` code; the catalogs
#: translate these message ids.
KEY_MESSAGES: dict[str, str] = {
    "too_short": N_("The key is too short."),
    "too_long": N_("The key is too long."),
    "bad_characters": N_("The key contains a control character."),
    "contains_client_number": N_("The key must not contain your client number."),
    "contains_email": N_("The key must not contain your email address."),
    "contains_domain": N_("The key must not contain one of your domain names."),
    "breached": N_("This key has appeared in a data breach. Choose another one."),
}


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

    def message_in(self, language: str | None,
                   catalogs: str | os.PathLike[str] | None = None) -> str:
        """The message in ``language``, as :meth:`InvalidIdentifier.message_in` gives its own."""
        from .mail import i18n

        dirs = i18n.catalog_dirs(catalogs)
        locale = i18n.negotiate([language], i18n.available_languages(dirs))
        translations = i18n.translations(dirs, locale)
        return " ".join(translations.gettext(KEY_MESSAGES[code]) if code in KEY_MESSAGES
                        else code for code in self.reasons)


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
