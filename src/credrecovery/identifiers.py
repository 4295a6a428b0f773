"""The three identifiers a client can recover with, and their canonical forms.

Pure functions: no I/O. Hosts call :func:`normalize_identifier` when they
store values so that lookups by the service match what they stored.
"""

from __future__ import annotations

import enum
import re

import email_validator
import idna

from .exceptions import InvalidIdentifier

__all__ = ["IdentifierKind", "normalize_identifier", "parse_kind"]

# Longest raw input looked at. An email address is at most 254 octets, a domain
# 253; anything longer is refused before any parser spends time on it.
MAX_INPUT_LENGTH = 320
_FORBIDDEN = re.compile(r"[\r\n\x00]")
_CLIENT_NUMBER = re.compile(r"[A-Za-z0-9_-]{1,32}")


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
        checked = email_validator.validate_email(value, check_deliverability=False)
    except email_validator.EmailNotValidError as exc:
        raise InvalidIdentifier(kind="email", code="bad_email") from exc
    return checked.normalized.lower()
