"""What a key a client chooses must be: long enough, visible, not their own details, not breached.

Used when ``RecoveryService(key_mode="choose")`` takes the client's new key.
The rules follow NIST SP 800-63B and OWASP ASVS 5.0 (V6.2, password
security): a minimum length (15 by default), a maximum far above it (at least
64 must be allowed), every printable character allowed, spaces and Unicode
included, and no composition rules. A key must not be, or contain, what an
attacker would guess first for this client: its client number, its primary
address or that address's local part, or one of its domains. A host may add a
breached-password check, a callable that answers whether the key is known to
have leaked.

Every rule applies to the prepared key, the form that is hashed (RFC 8265's
OpaqueString profile; see :func:`credrecovery.keys.prepare_key`), and counts
what a person sees: combining marks drawn over a letter are not characters of
their own, and a key made only of spaces or invisible characters is refused.
"""

from __future__ import annotations

import dataclasses
import unicodedata
from collections.abc import Callable, Iterable

import precis_i18n.unicode

from ._keyprep import prepare_key
from .models import Client

__all__ = ["KEY_REASONS", "KeyPolicy"]

#: Every reason a key can be refused for, as :attr:`KeyRejected.reasons` gives them.
KEY_REASONS = (
    "too_short",
    "too_long",
    "bad_characters",
    "unusable_characters",
    "invisible",
    "contains_client_number",
    "contains_email",
    "contains_domain",
    "breached",
)

# Parts shorter than this are too common to refuse a key for: a client number
# "42" must not outlaw every key with "42" in it.
_SHORTEST_PART = 3

# Characters a person does not see as a character of the key: controls,
# formatting and invisible characters, private-use and unassigned code points,
# and spaces (which only count beside something visible).
_UNSEEN = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zs", "Zl", "Zp"})
# Marks drawn on the character before them: nonspacing and enclosing. Spacing
# marks (Mc) take a place of their own on the line, so they count.
_DRAWN_ON = frozenset({"Mn", "Me"})
# Unicode data as the preparation reads it, for Default_Ignorable_Code_Point.
_UCD = precis_i18n.unicode.UnicodeData()


@dataclasses.dataclass(frozen=True)
class KeyPolicy:
    """The rules a chosen key is checked against; see the module's docstring.

    :param min_length: fewest characters, 15 by default, the length ASVS 5.0
        V6.2 recommends.
    :param max_length: most characters; at least 64, which V6.2 requires be
        allowed.
    :param breached: ``breached(key) -> bool``, true when the key is known to
        have leaked; see the operations guide for one over a local
        k-anonymity range file. It must not send the key anywhere in clear.

    Every rule reads the prepared key (:func:`credrecovery.keys.prepare_key`),
    so a key typed with composed or decomposed accents counts alike. The
    minimum counts the characters a person sees: nonspacing and enclosing
    combining marks, invisible and formatting characters are not counted;
    spaces are. The maximum counts every code point, so marks cannot pad a
    key past it.
    """

    min_length: int = 15
    max_length: int = 128
    breached: Callable[[str], bool] | None = None

    def __post_init__(self) -> None:
        if self.min_length < 1:
            raise ValueError("min_length must be at least 1")
        if self.max_length < max(64, self.min_length):
            raise ValueError("max_length must allow at least 64 characters")

    def reasons(self, key: str, client: Client) -> tuple[str, ...]:
        """Why ``key`` cannot be ``client``'s key, as codes of :data:`KEY_REASONS`; empty if it can.

        Raises :class:`TypeError` if ``key`` is not a str. The breached check
        runs only for a key that passes every other rule, and is given the
        prepared key.
        """
        if not isinstance(key, str):
            raise TypeError("the new key must be a str")
        try:
            prepared: str | None = prepare_key(key)
        except ValueError:
            prepared = None
        # A key with no prepared form is still read, in NFC, so that the
        # refusal names every rule it breaks.
        text = unicodedata.normalize("NFC", key) if prepared is None else prepared
        invisible = bool(text) and all(_unseen(char) for char in text)
        found: list[str] = []
        if not invisible and sum(map(_counted, text)) < self.min_length:
            found.append("too_short")
        if len(text) > self.max_length:
            found.append("too_long")
        if any(unicodedata.category(char) in ("Cc", "Cs") for char in text):
            found.append("bad_characters")
        if prepared is None and not invisible and _unusable_besides_controls(text):
            found.append("unusable_characters")
        if invisible:
            found.append("invisible")
        folded = _folded(text)
        local, _, domain = client.email.partition("@")
        if _contains(folded, [client.number]):
            found.append("contains_client_number")
        if _contains(folded, [client.email, local]):
            found.append("contains_email")
        if _contains(folded, [domain, *client.domains]):
            found.append("contains_domain")
        if not found and self.breached is not None:
            assert prepared is not None  # every key with no prepared form broke a rule above
            if self.breached(prepared):
                found.append("breached")
        return tuple(found)


def _unseen(char: str) -> bool:
    return unicodedata.category(char) in _UNSEEN or _UCD.default_ignorable(ord(char))


def _counted(char: str) -> bool:
    """Whether ``char`` counts toward the minimum length."""
    category = unicodedata.category(char)
    if category in _DRAWN_ON:
        return False
    # A space is seen, between other characters; a key of spaces alone is refused apart.
    return category == "Zs" or not _unseen(char)


def _unusable_besides_controls(text: str) -> bool:
    """Whether ``text`` holds a character the preparation refuses that is not a control."""
    rest = "".join(char for char in text if unicodedata.category(char) not in ("Cc", "Cs"))
    if not rest:
        return False
    try:
        prepare_key(rest)
    except ValueError:
        return True
    return False


def _folded(text: str) -> str:
    """``text`` compatibility-folded: full-width digits read as ASCII ones, and so on."""
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())


def _contains(key: str, parts: Iterable[str]) -> bool:
    for part in parts:
        part = _folded(part)
        if len(part) >= _SHORTEST_PART and part in key:
            return True
        # A domain is also refused by its name without the suffix: "ejemploxmundo".
        name = part.split(".")[0]
        if "." in part and len(name) >= _SHORTEST_PART and name in key:
            return True
    return False
