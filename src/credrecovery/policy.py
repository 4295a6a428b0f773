"""What a key a client chooses must be: long enough, not their own details, not breached.

Used when ``RecoveryService(key_mode="choose")`` takes the client's new key.
The rules follow NIST SP 800-63B and OWASP ASVS 5.0 (V6.2, password
security): a minimum length (15 by default), a maximum far above it (at least
64 must be allowed), every printable character allowed, spaces and Unicode
included, and no composition rules. A key must not be, or contain, what an
attacker would guess first for this client: its client number, its primary
address or that address's local part, or one of its domains. A host may add a
breached-password check, a callable that answers whether the key is known to
have leaked.
"""

from __future__ import annotations

import dataclasses
import unicodedata
from collections.abc import Callable, Iterable

from .models import Client

__all__ = ["KEY_REASONS", "KeyPolicy"]

#: Every reason a key can be refused for, as :attr:`KeyRejected.reasons` gives them.
KEY_REASONS = (
    "too_short",
    "too_long",
    "bad_characters",
    "contains_client_number",
    "contains_email",
    "contains_domain",
    "breached",
)

# Parts shorter than this are too common to refuse a key for: a client number
# "42" must not outlaw every key with "42" in it.
_SHORTEST_PART = 3


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

    Lengths count Unicode characters after NFC normalization, so a key typed
    with composed or decomposed accents counts alike.
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
        runs only for a key that passes every other rule.
        """
        if not isinstance(key, str):
            raise TypeError("the new key must be a str")
        normalized = unicodedata.normalize("NFC", key)
        found: list[str] = []
        if len(normalized) < self.min_length:
            found.append("too_short")
        if len(normalized) > self.max_length:
            found.append("too_long")
        if any(unicodedata.category(char) in ("Cc", "Cs") for char in normalized):
            found.append("bad_characters")
        folded = normalized.casefold()
        local, _, domain = client.email.partition("@")
        if _contains(folded, [client.number]):
            found.append("contains_client_number")
        if _contains(folded, [client.email, local]):
            found.append("contains_email")
        if _contains(folded, [domain, *client.domains]):
            found.append("contains_domain")
        if not found and self.breached is not None and self.breached(normalized):
            found.append("breached")
        return tuple(found)


def _contains(key: str, parts: Iterable[str]) -> bool:
    for part in parts:
        part = unicodedata.normalize("NFC", part).casefold()
        if len(part) >= _SHORTEST_PART and part in key:
            return True
        # A domain is also refused by its name without the suffix: "ejemploxmundo".
        name = part.split(".")[0]
        if "." in part and len(name) >= _SHORTEST_PART and name in key:
            return True
    return False
