"""Key preparation: the one form in which a key is checked, hashed and verified.

A key is prepared with the OpaqueString profile of RFC 8265 (PRECIS), as
NIST SP 800-63B asks of passwords before they are hashed: every non-ASCII
space becomes U+0020, the text is normalized to NFC, and keys holding
characters the profile disallows (controls, invisible and formatting
characters, private-use and unassigned code points) or nothing at all have no
prepared form. So a key typed with composed or decomposed accents, or with a
no-break space, hashes and verifies alike. Letters are not case-folded, and
generated keys, ASCII letters and digits, are their own prepared form.

Hashes stored before keys were prepared hold the key as it was typed; they
still verify, and a successful sign-in replaces them by the hash of the
prepared key (see :func:`verify_key`).
"""

from __future__ import annotations

import precis_i18n
from passlib.context import CryptContext

__all__ = ["hash_key", "prepare_key", "verify_key"]

_OPAQUE_STRING = precis_i18n.get_profile("OpaqueString")


def prepare_key(key: str) -> str:
    """``key`` in its prepared form: RFC 8265's OpaqueString profile.

    Raises :class:`ValueError` for a key the profile refuses: an empty one, or
    one holding a control, invisible, formatting, private-use or unassigned
    character. The message never quotes the key.
    """
    if not isinstance(key, str):
        raise TypeError("a key must be a str")
    try:
        return _OPAQUE_STRING.enforce(key)
    except UnicodeEncodeError:
        # The codec's own message quotes the refused character: a piece of the key.
        raise ValueError("the key holds a character keys cannot use") from None


def _prepared_or_none(key: str) -> str | None:
    try:
        return prepare_key(key)
    except ValueError:
        return None


def hash_key(context: CryptContext, key: str) -> str:
    """The hash ``context`` stores for ``key``: of its prepared form.

    A key with no prepared form is hashed as given; only a key that no key
    policy checked (one a host adds itself) can be such a key.
    """
    prepared = _prepared_or_none(key)
    return str(context.hash(key if prepared is None else prepared))


def verify_key(context: CryptContext, key: str, stored: str) -> tuple[bool, str | None]:
    """Whether ``key`` matches the hash ``stored``, and the hash to store instead, if any.

    The prepared key is tried first. A hash stored before keys were prepared
    holds the key as then typed: when the prepared key fails and differs from
    the typed one, the typed one is tried, and its success gives the hash of
    the prepared key as the one to store.
    """
    prepared = _prepared_or_none(key)
    if prepared is None:
        # No hash of a prepared key can match: only a hash of the key as typed
        # can. One verification, the cost of any other key, so the refusal is
        # not told apart by its timing either.
        valid, upgraded = context.verify_and_update(key, stored)
        return bool(valid), upgraded
    valid, upgraded = context.verify_and_update(prepared, stored)
    if valid or prepared == key:
        return bool(valid), upgraded
    # A second verification, only for a key typed in another form than its
    # prepared one. Whether it runs depends on what was typed alone, never on
    # the account or its hash, so its cost tells an observer nothing they did
    # not already know.
    valid, _ = context.verify_and_update(key, stored)
    if not valid:
        return False, None
    return True, str(context.hash(prepared))
