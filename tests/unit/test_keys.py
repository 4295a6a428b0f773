"""Access key generation and the hashing policies that store keys."""

from __future__ import annotations

import math
from collections.abc import Callable

import bcrypt
import pytest
from passlib.context import CryptContext

from credrecovery import RecoveryService, default_context, generate_key
from credrecovery.identifiers import IdentifierKind
from credrecovery.keys import KEY_ALPHABET, KEY_LENGTH
from credrecovery.memory import MemoryDirectory, MemoryMailer
from helpers import OLD_KEY, key_from, token_from

pytestmark = pytest.mark.shells("sync", "async")

CONFUSABLE = set("0O1lI")


def test_key_length_at_least_16() -> None:
    """Generated keys have at least 16 characters."""
    assert KEY_LENGTH >= 16
    assert len(generate_key()) >= 16
    assert len(generate_key(24)) == 24


def test_shorter_key_refused() -> None:
    """Asking for a key shorter than the minimum raises ValueError."""
    with pytest.raises(ValueError):
        generate_key(KEY_LENGTH - 1)


def test_key_alphabet_excludes_confusable_characters() -> None:
    """Neither the alphabet nor any generated key contains 0 O 1 l I."""
    assert not CONFUSABLE & set(KEY_ALPHABET)
    seen: set[str] = set()
    for _ in range(500):
        key = generate_key()
        assert set(key) <= set(KEY_ALPHABET)
        seen |= set(key)
    assert not CONFUSABLE & seen
    # Nearly the whole alphabet shows up, so keys really draw from all of it.
    assert len(seen) >= len(KEY_ALPHABET) - 2


def test_key_entropy_at_least_80_bits() -> None:
    """A default key carries at least 80 bits of entropy."""
    alphabet = set(KEY_ALPHABET)
    assert len(alphabet) == len(KEY_ALPHABET)
    bits = len(generate_key()) * math.log2(len(alphabet))
    assert bits >= 80


def test_keys_differ_across_calls() -> None:
    """Thousands of generated keys are all distinct."""
    keys = [generate_key() for _ in range(2000)]
    assert len(set(keys)) == len(keys)


@pytest.mark.slow  # real argon2id hashes
def test_default_context_hashes_with_argon2id() -> None:
    """The default policy hashes new keys with argon2id and verifies them."""
    context = default_context()
    key = generate_key()
    hashed = context.hash(key)
    assert hashed.startswith("$argon2id$")
    assert context.verify(key, hashed)
    assert not context.verify(key + "x", hashed)


def test_default_context_verifies_bcrypt_hashes() -> None:
    """bcrypt hashes imported from elsewhere still verify under the default policy."""
    context = default_context()
    hashed = bcrypt.hashpw(OLD_KEY.encode(), bcrypt.gensalt(rounds=4)).decode("ascii")
    assert context.verify(OLD_KEY, hashed)
    assert not context.verify("Wrong-Key-2024", hashed)
    assert context.needs_update(hashed)


def test_cheap_context_is_argon2(ctx: CryptContext) -> None:
    """The test profile still hashes with argon2id."""
    hashed = ctx.hash(OLD_KEY)
    assert hashed.startswith("$argon2id$")
    assert ctx.verify(OLD_KEY, hashed)


def test_host_bcrypt_context_honoured(make_service: Callable[..., RecoveryService]) -> None:
    """A host's own bcrypt CryptContext decides the rotated hash's scheme."""
    host_context = CryptContext(schemes=["bcrypt"], bcrypt__rounds=4)
    directory = MemoryDirectory(crypt_context=host_context)
    directory.add_client("7001", "host@example.com", key=OLD_KEY)
    mailer = MemoryMailer()
    service = make_service(directory=directory, mailer=mailer, crypt_context=host_context)
    service.request("client_number", "7001")
    service.confirm(token_from(mailer.outbox[0]))
    client = directory.find(IdentifierKind.CLIENT_NUMBER, "7001")
    assert client is not None
    assert client.key_hash.startswith("$2b$")
    new_key = key_from(mailer.outbox[1])
    assert host_context.verify(new_key, client.key_hash)
    assert not host_context.verify(OLD_KEY, client.key_hash)
