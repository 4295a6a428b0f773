"""Stamped signatures for link tokens and code tickets: itsdangerous's format, made once.

A signed value is ``payload.stamp.signature``, exactly what
:class:`itsdangerous.TimestampSigner` (HMAC-SHA256, its default key
derivation) writes and reads, so every token and ticket issued by earlier
releases still verifies. itsdangerous derives the keys and computes the
HMACs (compared in constant time); what its signers would redo on every call
(deriving the keys, parsing through layers of checks, building a datetime,
raising and catching their own errors) is done here once per signer, or only when needed.
Pure: no I/O.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import re
from collections.abc import Callable, Sequence

import itsdangerous

from ._derivation import secret_bytes

__all__ = ["StampSigner"]

_B64 = "[A-Za-z0-9_-]"
# The last character of a signature's 43: one of those that leave base64's two
# spare low bits clear, so that no two spellings of a signature decode alike. The
# other two segments need no such rule: the HMAC covers their text as written.
_LAST_OF_43 = "[AEIMQUYcgkosw048]"
# A stamp is a whole second packed big-endian in one to eight bytes (2 to 11
# characters); a signature is the 32 bytes of HMAC-SHA256.
_SHAPE = re.compile(rf"({_B64}{{2,}})\.({_B64}{{2,11}})\.{_B64}{{42}}{_LAST_OF_43}")
_SIGNATURE_CHARS = 43
_TO_URLSAFE = bytes.maketrans(b"+/", b"-_")
_FROM_URLSAFE = bytes.maketrans(b"-_", b"+/")
_PADDING = (b"", b"", b"==", b"=")


class StampSigner:
    """Sign payloads with a time stamp and verify them, with keys in itsdangerous's scheme.

    ``keys`` are oldest first, as itsdangerous takes them: the last signs,
    every one verifies, the last tried first. ``salt`` separates purposes.
    """

    __slots__ = ("_clock", "_keys", "_sign", "_stamp")

    def __init__(self, keys: Sequence[str | bytes], salt: str, clock: Callable[[], float]) -> None:
        signer = itsdangerous.TimestampSigner(
            [secret_bytes(key) for key in keys], salt=salt, digest_method=hashlib.sha256
        )
        # Newest first: a genuine current token costs one HMAC; a fallback only
        # runs after the current key's signature did not match.
        self._keys = tuple(signer.derive_key(key) for key in reversed(signer.secret_keys))
        self._sign: Callable[[bytes, bytes], bytes] = signer.algorithm.get_signature
        self._clock = clock
        # The last stamp written, with its text: tokens issued within one second share it.
        self._stamp: tuple[int, bytes] = (-1, b"")

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def now(self) -> int:
        """The clock's time, in whole seconds."""
        return int(self._clock())

    def sign(self, payload: bytes, timestamp: int) -> str:
        """``payload`` (raw bytes) signed and stamped ``timestamp`` (0 to 2**64 - 1)."""
        cached, stamp = self._stamp
        if cached != timestamp:
            stamp = _encode(timestamp.to_bytes((timestamp.bit_length() + 7) // 8, "big"))
            self._stamp = (timestamp, stamp)
        value = _encode(payload) + b"." + stamp
        return (value + b"." + _encode(self._sign(self._keys[0], value))).decode("ascii")

    def unsign(self, signed: str, max_length: int) -> tuple[bytes, int] | None:
        """The payload and stamp of ``signed``, or ``None`` unless one of the keys signed it.

        Anything not shaped like a signed value of at most ``max_length``
        characters is refused before any HMAC is computed.
        """
        if len(signed) > max_length:
            return None
        shape = _SHAPE.fullmatch(signed)
        if shape is None:
            return None
        value = signed[: -_SIGNATURE_CHARS - 1].encode("ascii")
        signature = _decode(signed[-_SIGNATURE_CHARS:])
        for key in self._keys:
            if hmac.compare_digest(self._sign(key, value), signature):
                break
        else:
            return None
        try:
            payload = _decode(shape.group(1))
            stamp = int.from_bytes(_decode(shape.group(2)), "big")
        except (binascii.Error, ValueError):
            # Signed, yet not base64: nothing this module writes.
            return None
        return payload, stamp


# base64.urlsafe_b64encode and _b64decode, without their layers of argument checks.
def _encode(data: bytes) -> bytes:
    return binascii.b2a_base64(data, newline=False).translate(_TO_URLSAFE).rstrip(b"=")


def _decode(text: str) -> bytes:
    # A length of 1 modulo 4 gets no padding, and binascii refuses it.
    data = text.encode("ascii").translate(_FROM_URLSAFE)
    return binascii.a2b_base64(data + _PADDING[len(data) % 4])
