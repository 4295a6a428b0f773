"""Confirmation tokens: signed, expiring, bound to the account's current state.

A token carries the client number and a digest of the client's key hash and
primary email. Confirming rotates the key hash, so the digest no longer
matches and the token, with every older one, is dead: single use without any
token storage. Pure: no I/O.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import json
import math
import re
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from json.encoder import encode_basestring_ascii

from ._signing import StampSigner
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
_SALT = "credrecovery.confirm-recovery"
_INVALID = "the confirmation link is not valid"
_BINDING = hashlib.sha256(b"credrecovery.binding\x00")
_DECODER = json.JSONDecoder()


def account_binding(client: Client) -> str:
    """Digest of what a confirmation must find unchanged: key hash and primary email.

    The key hash is salted and secret, so the digest reveals neither it nor
    the email address.
    """
    key_hash = client.key_hash.encode("utf-8")
    email = client.email.encode("utf-8")
    h = _BINDING.copy()
    h.update(len(key_hash).to_bytes(4, "big") + key_hash + len(email).to_bytes(4, "big") + email)
    # 16 bytes are 22 base64 characters and two of padding.
    return base64.urlsafe_b64encode(h.digest()[:16])[:22].decode("ascii")


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
        keys = _checked_keys(secret_key, fallback_secret_keys)
        if max_age <= timedelta(0):
            raise ValueError("max_age must be positive")
        self.max_age = max_age
        self._max_age_seconds = int(max_age.total_seconds())
        # As in itsdangerous: the last key signs, every one verifies.
        self._signer = StampSigner(keys, _SALT, clock)

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
        if max_age is None:
            payload = f"[{encode_basestring_ascii(number)},{encode_basestring_ascii(binding)}]"
        else:
            seconds = int(max_age.total_seconds())
            if seconds < 1:
                raise ValueError("max_age must be a second or more")
            payload = (
                f"[{encode_basestring_ascii(number)},{encode_basestring_ascii(binding)},{seconds}]"
            )
        if issued_at is None:
            timestamp = self._signer.now()
        else:
            if isinstance(issued_at, bool) or not isinstance(issued_at, (int, float)):
                raise TypeError("issued_at must be a number of seconds since the epoch")
            if not math.isfinite(issued_at) or not 0 <= issued_at <= _MAX_TIMESTAMP:
                raise ValueError("issued_at must be a finite, non-negative time")
            timestamp = int(issued_at)
        # The JSON that json.dumps(claims, separators=(",", ":")) writes, ASCII only:
        # the payload of every release so far.
        return self._signer.sign(payload.encode("ascii"), timestamp)

    def read(self, token: object) -> TokenClaims:
        """Verify ``token`` and return its claims.

        Raises :class:`TokenExpired`, with the token's ``issued_at`` and
        ``expired_at``, for a genuine token past ``max_age`` (its own, for a
        token issued with one) and
        :class:`InvalidToken` for anything else that does not verify, a token
        stamped more than ``MAX_CLOCK_SKEW_SECONDS`` in the future included.
        Nothing is looked up, so a forgery costs a few HMACs at most, and
        nothing shaped otherwise than a token not even one.
        """
        opened = self._signer.unsign(token, MAX_TOKEN_LENGTH) if isinstance(token, str) else None
        if opened is None:
            raise InvalidToken(_INVALID)
        payload = _parsed(opened[0])
        signed_at = opened[1]
        age = self._signer.now() - signed_at
        max_age = _own_max_age(payload, self._max_age_seconds)
        if age < -MAX_CLOCK_SKEW_SECONDS or max_age is None:
            raise InvalidToken(_INVALID)
        assert isinstance(payload, list)
        if age > max_age:
            issued = datetime.fromtimestamp(signed_at, UTC)
            raise TokenExpired(
                "the confirmation link has expired",
                issued_at=issued,
                expired_at=issued + timedelta(seconds=max_age),
            )
        return TokenClaims(payload[0], payload[1], float(signed_at))


def _parsed(payload: bytes) -> object:
    """``payload`` as JSON, or ``None``; no error escapes, so none is chained to ours."""
    try:
        # What the signer writes, ASCII and nothing around it, in one C call.
        text = payload.decode("ascii")
        parsed, end = _DECODER.raw_decode(text)
        if end == len(text):
            return parsed
    except ValueError:
        pass
    try:
        return json.loads(payload)
    except (ValueError, RecursionError):
        return None


def _own_max_age(payload: object, default: int) -> int | None:
    """The seconds a payload stays valid: its own, or ``default``; ``None`` if malformed."""
    if (
        type(payload) is not list
        or len(payload) not in (2, 3)
        or not isinstance(payload[0], str)
        or not isinstance(payload[1], str)
    ):
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


def _checked_keys(secret_key: object, fallback_secret_keys: object) -> list[str | bytes]:
    """The keys oldest first, the signing key last; :class:`TypeError` or :class:`ValueError`
    for one that cannot be a key."""
    keys: list[str | bytes] = []
    for key in [*_fallback_keys(fallback_secret_keys), secret_key]:
        if not isinstance(key, (str, bytes)):
            raise TypeError(f"secret keys must be str or bytes, not {type(key).__name__}")
        if not key:
            raise ValueError("secret keys must be non-empty")
        keys.append(key)
    return keys
