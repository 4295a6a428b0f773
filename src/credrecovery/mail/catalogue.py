"""The form messages: the English text of each error code, and its translation.

The texts are gettext message ids, marked with :func:`N_` so that ``pybabel
extract`` finds them, and translated through the same catalogs as the mails
(:mod:`credrecovery.mail.i18n`). This module imports nothing heavy: Babel and
the catalogs are loaded only when a message is asked for in a language, so the
exception tree can import it eagerly.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable

__all__ = [
    "IDENTIFIER_MESSAGES",
    "KEY_MESSAGES",
    "N_",
    "gettext_in",
    "identifier_message",
    "key_message",
]


def N_(message: str) -> str:
    """Mark ``message`` for the catalogs without translating it here."""
    return message


#: The English text of each :attr:`~credrecovery.InvalidIdentifier.code`; the
#: catalogs translate these message ids.
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

#: The English text of each :attr:`~credrecovery.KeyRejected.reasons` code; the
#: catalogs translate these message ids.
KEY_MESSAGES: dict[str, str] = {
    "too_short": N_("The key is too short."),
    "too_long": N_("The key is too long."),
    "bad_characters": N_("The key contains a control character."),
    "unusable_characters": N_(
        "The key contains a character that cannot be used in a key: an invisible or "
        "formatting one (some emoji include one), a private-use one or an unassigned one."
    ),
    "invisible": N_("The key has nothing visible in it: only spaces or invisible characters."),
    "contains_client_number": N_("The key must not contain your client number."),
    "contains_email": N_("The key must not contain your email address."),
    "contains_domain": N_("The key must not contain one of your domain names."),
    "breached": N_("This key has appeared in a data breach. Choose another one."),
}


def gettext_in(
    language: str | None, catalogs: str | os.PathLike[str] | None = None
) -> Callable[[str], str]:
    """The ``gettext`` of the catalogs' closest match to ``language``.

    ``catalogs`` is a host's own catalog directory, searched first, as for
    ``RecoveryService(catalogs=...)``. English when no catalog has the
    language.
    """
    from . import i18n

    dirs = i18n.catalog_dirs(catalogs)
    locale = i18n.negotiate([language], i18n.available_languages(dirs))
    return i18n.translations(dirs, locale).gettext


def identifier_message(
    code: str, language: str | None, catalogs: str | os.PathLike[str] | None = None
) -> str | None:
    """The message of identifier error ``code`` in ``language``; ``None`` for an unknown code."""
    text = IDENTIFIER_MESSAGES.get(code)
    if text is None:
        return None
    return gettext_in(language, catalogs)(text)


def key_message(
    reasons: Iterable[str], language: str | None, catalogs: str | os.PathLike[str] | None = None
) -> str:
    """The texts of key refusal ``reasons`` in ``language``, an unknown code as itself."""
    gettext = gettext_in(language, catalogs)
    return " ".join(
        gettext(KEY_MESSAGES[code]) if code in KEY_MESSAGES else code for code in reasons
    )
