"""Keys for each purpose, derived from the service's secret key."""

from __future__ import annotations

import hashlib

__all__ = ["derive_key", "secret_bytes"]


def secret_bytes(secret: str | bytes) -> bytes:
    """``secret`` as bytes: UTF-8 for a str."""
    return secret if isinstance(secret, bytes) else secret.encode("utf-8")


def derive_key(secret: str | bytes, purpose: str) -> bytes:
    """A 32-byte key for ``purpose`` alone: SHA-256 of ``credrecovery.<purpose>``, NUL, ``secret``.

    The bytes must never change for a purpose in use: Redis rate-limit keys
    (``"ratelimit"``) and sealed delivery jobs (``"jobs"``) depend on them.
    """
    label = b"credrecovery." + purpose.encode("ascii") + b"\x00"
    return hashlib.sha256(label + secret_bytes(secret)).digest()
