"""Confirmation tokens: signed, expiring, bound to the account's current state.

A token carries the client number and a digest of the client's key hash and
primary email. Confirming rotates the key hash, so the digest no longer
matches and the token, with every older one, is dead: single use without any
token storage. Pure: no I/O.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import math
import re
import time
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Any

import itsdangerous
from itsdangerous.encoding import base64_decode, base64_encode, int_to_bytes, want_bytes

from .exceptions import InvalidToken, TokenExpired
from .models import Client

__all__ = ["TokenClaims", "TokenSigner"]

MAX_TOKEN_LENGTH = 512
#: How far ahead of the reader's clock, in seconds, a token's stamp may be and
#: still verify: workers' clocks drift apart, and a link mailed by one whose
#: clock runs ahead must not be dead on arrival. A stamp further ahead is
#: :class:`InvalidToken` (no honest signer made it), never :class:`TokenExpired`.
MAX_CLOCK_SKEW_SECONDS = 60
# Timestamps are packed as unsigned 64-bit integers.
_MAX_TIMESTAMP = 2**64 - 1
#: A token in a confirmation link ``.../recover/<token>``, as the mails and the
#: examples write it: group 1 is the token, URL-safe base64 parts and their dots.
TOKEN_IN_LINK = re.compile(r"/recover/([A-Za-z0-9_.-]+)")
_SHAPE = re.compile(r"[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]{2,}")
_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
# Index by segment length modulo 4: the low bits the last character must leave
# clear, or None where no canonical encoding has that length.
_SPARE_BITS = (0, None, 0b1111, 0b11)
_SALT = "credrecovery.confirm-recovery"


def account_binding(client: Client) -> str:
    """Digest of what a confirmation must find unchanged: key hash and primary email.

    The key hash is salted and secret, so the digest reveals neither it nor
    the email address.
    """
    h = hashlib.sha256(b"credrecovery.binding\x00")
    for part in (client.key_hash, client.email):
        data = part.encode("utf-8")
        h.update(len(data).to_bytes(4, "big") + data)
    return base64_encode(h.digest()[:16]).decode("ascii")


@dataclasses.dataclass(frozen=True)
class TokenClaims:
    """What a genuine, unexpired token says."""

    number: str
    binding: str = dataclasses.field(repr=False)
    issued_at: float

    def matches(self, client: Client) -> bool:
        """Whether ``client`` is still in the state the token was issued for."""
        return client.number == self.number and hmac.compare_digest(
            self.binding, account_binding(client)
        )


class _Signer(itsdangerous.TimestampSigner):
    """A timestamp signer with an injectable clock and its derived keys cached."""

    def __init__(self, *args: Any, clock: Callable[[], float], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._clock = clock
        derive = super().derive_key
        self._derived = {key: derive(key) for key in self.secret_keys}

    def get_timestamp(self) -> int:
        return int(self._clock())

    def sign_at(self, value: bytes, timestamp: int) -> bytes:
        """What :meth:`sign` returns when its clock reads ``timestamp``."""
        stamped = value + want_bytes(self.sep) + base64_encode(int_to_bytes(timestamp))
        return itsdangerous.Signer.sign(self, stamped)

    def derive_key(self, secret_key: str | bytes | None = None) -> bytes:
        if secret_key is None:
            return self._derived[self.secret_keys[-1]]
        return self._derived[want_bytes(secret_key)]


class TokenSigner:
    """Issue and read confirmation tokens.

    ``secret_key`` signs and verifies; each of ``fallback_secret_keys`` only
    verifies, so a signing key can be rotated without killing tokens in flight.
    As in itsdangerous, a single ``str`` or ``bytes`` given as
    ``fallback_secret_keys`` is one key, not a sequence of one-character keys.
    A key that is not ``str`` or ``bytes`` is :class:`TypeError`; an empty one
    is :class:`ValueError`. HMAC-SHA256, salted for this one purpose.

    A token verifies from ``MAX_CLOCK_SKEW_SECONDS`` before its stamp (a signer
    whose clock runs ahead) until ``max_age`` after it.
    """

    def __init__(
        self,
        secret_key: str | bytes,
        fallback_secret_keys: str | bytes | Iterable[str | bytes] = (),
        *,
        max_age: timedelta = timedelta(hours=1),
        clock: Callable[[], float] = time.time,
    ) -> None:
        keys = [*_fallback_keys(fallback_secret_keys), secret_key]
        for key in keys:
            if not isinstance(key, (str, bytes)):
                raise TypeError(f"secret keys must be str or bytes, not {type(key).__name__}")
            if not key:
                raise ValueError("secret keys must be non-empty")
        if max_age <= timedelta(0):
            raise ValueError("max_age must be positive")
        self.max_age = max_age
        self._max_age_seconds = int(max_age.total_seconds())
        # itsdangerous signs with the last key and verifies with every one.
        self._signer = _Signer(keys, salt=_SALT, digest_method=hashlib.sha256, clock=clock)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(max_age={self.max_age!r})"

    def issue(self, client: Client) -> str:
        """Return a URL-safe token for ``client`` in its current state, stamped now."""
        return self.issue_for(client.number, account_binding(client))

    def issue_for(
        self,
        number: str,
        binding: str,
        *,
        issued_at: float | None = None,
        max_age: timedelta | None = None,
    ) -> str:
        """Return a URL-safe token for client ``number`` whose state digests to ``binding``.

        ``binding`` is :func:`account_binding` of the client. The token is
        stamped ``issued_at`` (seconds since the epoch, truncated to a whole
        second) or, when ``None``, the signer's clock; it expires ``max_age``
        after that stamp: the signer's own, unless one is given here, which
        the token then carries, signed (whole seconds, at least one). For the
        same inputs and second, the token is the one :meth:`issue` gives.
        Raises :class:`TypeError` for a ``number`` or ``binding`` that is not
        a ``str`` or an ``issued_at`` that is not a number, and
        :class:`ValueError` for a negative or non-finite one or a ``max_age``
        under a second.
        """
        if not isinstance(number, str) or not isinstance(binding, str):
            raise TypeError("number and binding must be str")
        claims: list[str | int] = [number, binding]
        if max_age is not None:
            if int(max_age.total_seconds()) < 1:
                raise ValueError("max_age must be a second or more")
            claims.append(int(max_age.total_seconds()))
        if issued_at is None:
            timestamp = self._signer.get_timestamp()
        else:
            if isinstance(issued_at, bool) or not isinstance(issued_at, (int, float)):
                raise TypeError("issued_at must be a number of seconds since the epoch")
            if not math.isfinite(issued_at) or not 0 <= issued_at <= _MAX_TIMESTAMP:
                raise ValueError("issued_at must be a finite, non-negative time")
            timestamp = int(issued_at)
        payload = json.dumps(claims, separators=(",", ":")).encode("utf-8")
        return self._signer.sign_at(base64_encode(payload), timestamp).decode("ascii")

    def read(self, token: object) -> TokenClaims:
        """Verify ``token`` and return its claims.

        Raises :class:`TokenExpired`, with the token's ``issued_at`` and
        ``expired_at``, for a genuine token past ``max_age`` (its own, for a
        token issued with one) and
        :class:`InvalidToken` for anything else that does not verify, a token
        stamped more than ``MAX_CLOCK_SKEW_SECONDS`` in the future included.
        Nothing is looked up, so a forgery costs a few HMACs at most.
        """
        if (
            not isinstance(token, str)
            or len(token) > MAX_TOKEN_LENGTH
            or not _SHAPE.fullmatch(token)
            or not _is_canonical(token)
        ):
            raise InvalidToken("the confirmation link is not valid")
        payload: object = None
        age = 0
        try:
            # The age is checked here rather than by itsdangerous, which calls a
            # stamp from the future expired.
            encoded, signed_at = self._signer.unsign(token, return_timestamp=True)
            age = self._signer.get_timestamp() - int(signed_at.timestamp())
            payload = json.loads(base64_decode(encoded))
        except (itsdangerous.BadData, ValueError, OverflowError, OSError):
            payload = None
        # Raised outside the handler so no itsdangerous error, which holds the
        # token's parts, is chained to ours.
        max_age = _own_max_age(payload, self._max_age_seconds)
        if age < -MAX_CLOCK_SKEW_SECONDS or max_age is None:
            raise InvalidToken("the confirmation link is not valid")
        assert isinstance(payload, list)
        if age > max_age:
            # signed_at is what itsdangerous's SignatureExpired.date_signed holds.
            raise TokenExpired(
                "the confirmation link has expired",
                issued_at=signed_at,
                expired_at=signed_at + timedelta(seconds=max_age),
            )
        return TokenClaims(payload[0], payload[1], signed_at.timestamp())


def _own_max_age(payload: object, default: int) -> int | None:
    """The seconds a payload stays valid: its own, or ``default``; ``None`` if malformed."""
    if not isinstance(payload, list) or len(payload) not in (2, 3):
        return None
    if not all(isinstance(part, str) for part in payload[:2]):
        return None
    if len(payload) == 2:
        return default
    own = payload[2]
    return own if type(own) is int and own >= 1 else None


def _fallback_keys(keys: object) -> list[object]:
    # A str or bytes is one key: iterating it would make a key of each character.
    if isinstance(keys, (str, bytes)):
        return [keys]
    if not isinstance(keys, Iterable):
        raise TypeError(
            "fallback_secret_keys must be a str, bytes or an iterable of them, "
            f"not {type(keys).__name__}"
        )
    return list(keys)


def _is_canonical(token: str) -> bool:
    # Base64 ignores the spare low bits of a segment's last character, so two
    # spellings can decode alike. Only the canonical one is accepted, so that
    # every one-character change is refused.
    for segment in token.split("."):
        spare_bits = _SPARE_BITS[len(segment) % 4]
        if spare_bits is None or _B64.index(segment[-1]) & spare_bits:
            return False
    return True
