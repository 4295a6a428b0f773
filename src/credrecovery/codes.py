"""Recovery codes: the ticket a visitor's session keeps and the code the mail carries.

Recovery by code is stateless, as links are. :meth:`RecoveryService.request_code`
returns a *ticket*: signed data holding only what the visitor typed (the
identifier's kind and normalized value), a random nonce and the time of issue,
so it tells nobody whether a client matched. The mail carries, for each client
it lists, the *code* ``HMAC(key, nonce, account binding)`` written as eight
symbols of :data:`CODE_ALPHABET`. Checking a code looks the identifier up
again and recomputes each candidate's code, so a rotated key (a new binding)
kills every code issued before, as it kills links. Pure: no I/O.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta

from ._derivation import derive_key
from ._signing import StampSigner
from .exceptions import InvalidCode, TokenExpired
from .tokens import MAX_CLOCK_SKEW_SECONDS, _checked_keys, _parsed

__all__ = [
    "CODE_ALPHABET",
    "CODE_LENGTH",
    "MAX_CODE_ATTEMPTS",
    "CodeSigner",
    "IssuedCode",
    "TicketClaims",
    "format_code",
    "normalize_code",
]

#: The symbols of a code: upper-case letters and digits without the ones read
#: alike (0 O, 1 I, 2 Z, 8 B) and without vowels, so that no code spells a
#: word; the choice django-allauth makes for its codes.
CODE_ALPHABET = "CDFGHJKLMNPQRSTVWXY345679"
#: Symbols in a code, shown as two groups of four: ``WDJH-MJHT``. With 25
#: symbols that is about 37 bits, and a ticket takes :data:`MAX_CODE_ATTEMPTS`
#: guesses at most.
CODE_LENGTH = 8
#: Wrong codes a ticket survives: the next attempt is refused, the right code included.
MAX_CODE_ATTEMPTS = 3
MAX_TICKET_LENGTH = 1024
_SALT = "credrecovery.code-ticket"
_PURPOSE = "codes"
_NONCE_BYTES = 16
# Whatever a visitor may type between the symbols: spaces and the dashes of every keyboard.
_SEPARATORS = frozenset(" \t\u00a0\u202f-\u2010\u2011\u2012\u2013\u2014\u2015\u2212")
_INVALID = "the code is not valid"


def normalize_code(typed: object) -> str | None:
    """``typed`` as a code's eight symbols, or ``None`` when it cannot be one.

    Case, spaces and dashes do not matter: ``"wdjh mjht"`` and ``"WDJH-MJHT"``
    are the same code.
    """
    if not isinstance(typed, str) or len(typed) > 64:
        return None
    symbols = "".join(ch for ch in typed if ch not in _SEPARATORS).upper()
    if len(symbols) != CODE_LENGTH or not all(ch in CODE_ALPHABET for ch in symbols):
        return None
    return symbols


def format_code(code: str) -> str:
    """``code`` as the mail shows it: two groups of four, ``WDJH-MJHT``."""
    half = len(code) // 2
    return f"{code[:half]}-{code[half:]}"


@dataclasses.dataclass(frozen=True)
class TicketClaims:
    """What a genuine, unexpired ticket says: the identifier typed, the nonce and, for a
    ticket issued with one, its own expiry."""

    kind: str
    value: str = dataclasses.field(repr=False)
    nonce: str = dataclasses.field(repr=False)
    issued_at: float
    #: The ticket's own expiry, for one issued with it; ``None``: the signer's.
    max_age: timedelta | None = None


@dataclasses.dataclass(frozen=True)
class IssuedCode:
    """What :meth:`~credrecovery.RecoveryService.issue_code` gives support staff.

    ``code`` is the client's code as the mail shows it (``WDJH-MJHT``), for
    the operator to read to the client; ``ticket`` is the ticket it goes
    with, for whatever takes the code the client types (the host's own page,
    or ``confirm --ticket``). Together they replace the client's key, so
    neither is in the repr.
    """

    ticket: str = dataclasses.field(repr=False)
    code: str = dataclasses.field(repr=False)


class CodeSigner:
    """Issue and read code tickets, and compute the code of a client for a ticket.

    Keys as for :class:`~credrecovery.tokens.TokenSigner`: ``secret_key``
    signs tickets and makes the codes mailed; each of ``fallback_secret_keys``
    still verifies a ticket and still matches the codes it made, so that the
    signing key rotates without killing codes in flight. Tickets are
    HMAC-SHA256 under a salt of their own, codes HMAC-SHA256 under keys
    derived for this one purpose. A ticket verifies from
    ``MAX_CLOCK_SKEW_SECONDS`` before its stamp until ``max_age`` after it
    (its own, for a ticket issued with one).
    """

    def __init__(
        self,
        secret_key: str | bytes,
        fallback_secret_keys: str | bytes | Iterable[str | bytes] = (),
        *,
        max_age: timedelta = timedelta(minutes=15),
        clock: Callable[[], float] = time.time,
    ) -> None:
        keys = _checked_keys(secret_key, fallback_secret_keys)
        if not isinstance(max_age, timedelta) or max_age <= timedelta(0):
            raise ValueError("code_max_age must be a positive timedelta")
        self.max_age = max_age
        self._max_age_seconds = int(max_age.total_seconds())
        self._signer = StampSigner(keys, _SALT, clock)
        # Newest first: the mail's code is made with the first.
        self._code_keys = tuple(derive_key(key, _PURPOSE) for key in reversed(keys))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(max_age={self.max_age!r})"

    @property
    def lifetime(self) -> float:
        """Seconds a ticket may live at most, a stamp from a clock ahead included."""
        return float(self._max_age_seconds + 2 * MAX_CLOCK_SKEW_SECONDS)

    @staticmethod
    def new_nonce() -> str:
        """A fresh random nonce for one ticket: 128 bits, URL-safe base64."""
        return secrets.token_urlsafe(_NONCE_BYTES)

    def issue(self, kind: str, value: str, nonce: str, *, max_age: timedelta | None = None) -> str:
        """A ticket for identifier ``kind:value`` (as normalized) and ``nonce``, stamped now.

        Its length depends on what was typed alone, never on whether a client
        matched. It expires ``max_age`` after its stamp: the signer's, unless
        one is given here, which the ticket then carries, signed (whole
        seconds, at least one; :class:`ValueError` below that).
        """
        claims: list[str | int] = [kind, value, nonce]
        if max_age is not None:
            seconds = int(max_age.total_seconds())
            if seconds < 1:
                raise ValueError("max_age must be a second or more")
            claims.append(seconds)
        payload = json.dumps(claims, separators=(",", ":")).encode("utf-8")
        return self._signer.sign(payload, self._signer.now())

    def read(self, ticket: object) -> TicketClaims:
        """Verify ``ticket`` and return its claims.

        Raises :class:`~credrecovery.TokenExpired` for a genuine ticket past
        ``max_age``, and :class:`~credrecovery.InvalidCode` for anything else
        that does not verify. Nothing is looked up.
        """
        opened = self._signer.unsign(ticket, MAX_TICKET_LENGTH) if isinstance(ticket, str) else None
        if opened is None:
            raise InvalidCode(_INVALID)
        payload = _parsed(opened[0])
        signed_at = opened[1]
        age = self._signer.now() - signed_at
        own = _own_max_age(payload)
        if age < -MAX_CLOCK_SKEW_SECONDS or own is None:
            raise InvalidCode(_INVALID)
        assert isinstance(payload, list)
        max_age = own or self._max_age_seconds
        if age > max_age:
            issued = datetime.fromtimestamp(signed_at, UTC)
            raise TokenExpired(
                "the code has expired",
                issued_at=issued,
                expired_at=issued + timedelta(seconds=max_age),
            )
        return TicketClaims(
            payload[0],
            payload[1],
            payload[2],
            float(signed_at),
            timedelta(seconds=own) if own else None,
        )

    def lifetime_of(self, claims: TicketClaims) -> float:
        """Seconds the ticket of ``claims`` may live at most: :attr:`lifetime`, for its own
        expiry when it carries one."""
        if claims.max_age is None:
            return self.lifetime
        return float(int(claims.max_age.total_seconds()) + 2 * MAX_CLOCK_SKEW_SECONDS)

    def code(self, nonce: str, binding: str) -> str:
        """The code mailed for a ticket's ``nonce`` to the client whose binding is ``binding``.

        ``binding`` is :func:`~credrecovery.tokens.account_binding` of the client.
        """
        return _code(self._code_keys[0], nonce, binding)

    def candidates(self, nonce: str, binding: str) -> tuple[str, ...]:
        """Every code a genuine mail may carry for ``nonce`` and ``binding``: one per key."""
        return tuple(_code(key, nonce, binding) for key in self._code_keys)


def _own_max_age(payload: object) -> int | None:
    """A ticket payload's own expiry in seconds, ``0`` when it has none, ``None`` if malformed.

    Tickets issued before tickets could carry an expiry have three parts.
    """
    if (
        not isinstance(payload, list)
        or len(payload) not in (3, 4)
        or not all(isinstance(part, str) for part in payload[:3])
    ):
        return None
    if len(payload) == 3:
        return 0
    own = payload[3]
    return own if type(own) is int and own >= 1 else None


def _code(key: bytes, nonce: str, binding: str) -> str:
    message = b"\x00".join((b"credrecovery.code", nonce.encode("utf-8"), binding.encode("utf-8")))
    number = int.from_bytes(hmac.new(key, message, hashlib.sha256).digest(), "big")
    # 2**256 against 25**8: the bias of the remainders is far below anything measurable.
    symbols = []
    for _ in range(CODE_LENGTH):
        number, index = divmod(number, len(CODE_ALPHABET))
        symbols.append(CODE_ALPHABET[index])
    return "".join(symbols)
