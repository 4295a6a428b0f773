"""Access keys: generating them, preparing them, and the hashing policies that store them.

Pure: no I/O.
"""

from __future__ import annotations

import secrets

from passlib.context import CryptContext

from ._keyprep import prepare_key

__all__ = [
    "KEY_ALPHABET",
    "KEY_LENGTH",
    "cheap_context",
    "default_context",
    "generate_key",
    "prepare_key",
]

# Letters and digits without the ones readers confuse: 0 O 1 l I.
KEY_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789"
# 16 symbols from 57 give log2(57) * 16, about 93 bits.
KEY_LENGTH = 16


def generate_key(length: int = KEY_LENGTH) -> str:
    """Return a new random access key drawn from :data:`KEY_ALPHABET`."""
    if length < KEY_LENGTH:
        raise ValueError(f"an access key needs at least {KEY_LENGTH} characters")
    return "".join(secrets.choice(KEY_ALPHABET) for _ in range(length))


def default_context() -> CryptContext:
    """The production policy: argon2id for new keys; bcrypt hashes still verify."""
    return CryptContext(schemes=["argon2", "bcrypt"], deprecated=["bcrypt"])


def cheap_context() -> CryptContext:
    """A deliberately weak argon2 profile for tests and demos. Never for production."""
    return CryptContext(
        schemes=["argon2", "bcrypt"],
        deprecated=["bcrypt"],
        argon2__memory_cost=8,
        argon2__time_cost=1,
        argon2__parallelism=1,
        bcrypt__rounds=4,
    )
