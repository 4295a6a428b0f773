"""The three identifiers a client can recover with, and their canonical forms.

Pure functions: no I/O. Hosts call :func:`normalize_identifier` when they
store values so that lookups by the service match what they stored.
"""

from __future__ import annotations

import dataclasses
import enum
import re
import unicodedata

import email_validator
import idna

from .exceptions import InvalidIdentifier

__all__ = ["IdentifierKind", "normalize_identifier", "parse_kind"]

# Longest raw input looked at. An email address is at most 254 octets, a domain
# 253; anything longer is refused before any parser spends time on it.
MAX_INPUT_LENGTH = 320
_FORBIDDEN = re.compile(r"[\r\n\x00]")
_CLIENT_NUMBER = re.compile(r"[A-Za-z0-9_-]{1,32}")
# Top-level names kept for tests, documentation and local networks (RFC 2606,
# RFC 6761, RFC 6762 and ICANN's .internal). Staging and test setups mail on
# them; whether a domain is deliverable is the host's mail server's business.
# .onion and .arpa stay refused: no mail server delivers there.
_LOCAL_USE_NAMES = frozenset({"example", "test", "invalid", "localhost", "local", "internal"})


class IdentifierKind(enum.StrEnum):
    """Which identifier the client typed. The values are what a form posts."""

    DOMAIN = "domain"
    CLIENT_NUMBER = "client_number"
    EMAIL = "email"


def parse_kind(kind: IdentifierKind | str) -> IdentifierKind:
    """Return ``kind`` as an :class:`IdentifierKind`, accepting its plain value."""
    if isinstance(kind, IdentifierKind):
        return kind
    if isinstance(kind, str):
        try:
            return IdentifierKind(kind)
        except ValueError:
            pass
    raise InvalidIdentifier(code="unknown_kind")


def normalize_identifier(kind: IdentifierKind | str, value: str) -> str:
    """Return the canonical form of ``value`` for ``kind``.

    * domain: lower-case IDNA 2008 A-label (UTS 46 mapping), no trailing dot;
    * email: syntax checked by email-validator without DNS (which gives an
      internationalized domain in Unicode), then lower-cased;
    * client number: stripped, then 1 to 32 letters, digits, ``-`` or ``_``.

    Raises :class:`InvalidIdentifier` with a message fit for the form, in
    English, and a ``code`` saying what is wrong;
    :meth:`InvalidIdentifier.message_in` gives the message in another language.
    """
    kind = parse_kind(kind)
    if not isinstance(value, str):
        raise InvalidIdentifier(kind=kind.value, code="not_text")
    if len(value) > MAX_INPUT_LENGTH:
        raise InvalidIdentifier(kind=kind.value, code="too_long")
    if _FORBIDDEN.search(value):
        raise InvalidIdentifier(kind=kind.value, code="bad_characters")
    value = value.strip()
    if not value:
        raise InvalidIdentifier(kind=kind.value, code="empty")
    if kind is IdentifierKind.DOMAIN:
        return _normalize_domain(value)
    if kind is IdentifierKind.EMAIL:
        return _normalize_email(value)
    if not _CLIENT_NUMBER.fullmatch(value):
        raise InvalidIdentifier(kind=kind.value, code="bad_client_number")
    return value


def _normalize_domain(value: str) -> str:
    try:
        # The trailing dot is dropped after the UTS 46 mapping, which turns
        # full-width and ideographic full stops into ".".
        ascii_name = idna.encode(value, uts46=True).decode("ascii").removesuffix(".")
    except (idna.IDNAError, UnicodeError) as exc:
        raise InvalidIdentifier(kind="domain", code="bad_domain") from exc
    if "." not in ascii_name or len(ascii_name) > 253:
        raise InvalidIdentifier(kind="domain", code="bad_domain")
    return ascii_name.lower()


def _normalize_email(value: str) -> str:
    try:
        checked = check_address(value)
    except ValueError as exc:
        raise InvalidIdentifier(kind="email", code="bad_email") from exc
    # Lowercasing can undo NFC (a Greek capital with a diaeresis and a grave
    # accent lowers to letter and marks that compose), so NFC comes last.
    return unicodedata.normalize("NFC", checked.normalized.lower())


@dataclasses.dataclass(frozen=True)
class CheckedAddress:
    """An address that :func:`check_address` accepted, in its normalized parts."""

    #: The part before the ``@``, NFC normalized; outside ASCII only if allowed.
    local_part: str
    #: The domain in Unicode, for display and identifiers.
    domain: str
    #: The domain as A-labels, as it goes on the wire.
    ascii_domain: str

    @property
    def normalized(self) -> str:
        """``local_part@domain``."""
        return f"{self.local_part}@{self.domain}"

    @property
    def ascii_email(self) -> str | None:
        """``local_part@ascii_domain`` when the local part is ASCII, else ``None``."""
        return f"{self.local_part}@{self.ascii_domain}" if self.local_part.isascii() else None


def check_address(address: object, *, smtputf8: bool = True) -> CheckedAddress:
    """``address`` as one bare address, checked for syntax only; :class:`ValueError` otherwise.

    The one check behind client addresses, senders, envelope senders and the
    ``To`` of every mail. email-validator checks the syntax without DNS: no
    display name, quoted local part or IP literal, the RFC 5321 lengths, a
    valid IDNA domain. A local part outside ASCII passes only with
    ``smtputf8``. The domain needs a dot, except ``localhost``, and a last
    label ending in a letter. Unlike email-validator's defaults, the names
    kept for tests and local networks (``example.test``, ``x.invalid``,
    ``host.local``, ``corp.internal``, ``localhost``) are addresses like any
    other. The error's text is the validator's reason, which names characters
    but never the address.
    """
    if not isinstance(address, str):
        raise ValueError("an email address must be a string")
    local, at, domain = address.rpartition("@")
    reserved = domain.rpartition(".")[2]
    # The validator refuses these names in every mode but one (.test), so it
    # checks an ASCII stand-in of the same length, which passes exactly the
    # checks the name would have: lengths, characters, IDNA of the other labels.
    stand_in = bool(at) and reserved.isascii() and reserved.lower() in _LOCAL_USE_NAMES
    if stand_in:
        address = f"{local}@{domain[: len(domain) - len(reserved)]}{'x' * len(reserved)}"
    try:
        checked = email_validator.validate_email(
            address, check_deliverability=False, allow_smtputf8=smtputf8, globally_deliverable=False
        )
    except (email_validator.EmailNotValidError, UnicodeError) as exc:
        raise ValueError(str(exc)) from None
    unicode_domain, ascii_domain = checked.domain, checked.ascii_domain
    if stand_in:
        name = reserved.lower()
        unicode_domain = unicode_domain[: len(unicode_domain) - len(name)] + name
        ascii_domain = ascii_domain[: len(ascii_domain) - len(name)] + name
    # What globally_deliverable=True would check, save for localhost: a
    # dotless name is most often a typo (ana@gmailcom), and RFC 5321 wants FQDNs.
    if "." not in ascii_domain and ascii_domain != "localhost":
        raise ValueError("The part after the @-sign should have a period.")
    if not ascii_domain[-1].isascii() or not ascii_domain[-1].isalpha():
        raise ValueError("The part after the @-sign is not within a valid top-level domain.")
    return CheckedAddress(
        local_part=checked.local_part, domain=unicode_domain, ascii_domain=ascii_domain
    )
