"""authenticate(): the login check every panel shares, against the library's hashing policy."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest
from passlib.context import CryptContext

from credrecovery import IdentifierKind, Login, RecoveryService
from credrecovery.memory import MemoryDirectory, MemoryMailer
from helpers import OLD_KEY, key_from, token_from

pytestmark = pytest.mark.shells("sync", "async")

MakeService = Callable[..., RecoveryService]


def test_the_new_key_logs_in_and_the_old_one_no_longer_does(
    service: RecoveryService,
    mailer: MemoryMailer,
) -> None:
    """After a recovery, the mailed key signs in and the previous key is refused."""
    assert service.authenticate("9000", OLD_KEY) == Login("9000", "ejemplo@ejemploxmundo.com.ar")
    service.request("client_number", "9000")
    service.confirm(token_from(mailer.outbox[0]))
    new_key = key_from(mailer.outbox[1])
    assert service.authenticate(" 9000 ", new_key) is not None
    assert service.authenticate("9000", OLD_KEY) is None


@pytest.mark.parametrize(
    "number, key",
    [
        ("9000", "wrong-key"),
        ("9001", OLD_KEY),
        ("not a number!", OLD_KEY),
        ("", ""),
        ("9000", ""),
        ("x" * 500, OLD_KEY),
    ],
)
def test_wrong_or_malformed_credentials_are_refused(
    number: str,
    key: str,
    service: RecoveryService,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An unknown or malformed number, or a wrong key, gives None and logs no secret."""
    caplog.set_level(logging.INFO, logger="credrecovery")
    assert service.authenticate(number, key) is None
    assert all(OLD_KEY not in r.getMessage() for r in caplog.records)


def test_a_deprecated_hash_is_upgraded_at_login(
    make_service: MakeService,
    ctx: CryptContext,
) -> None:
    """A bcrypt hash that verifies is replaced by one of the current scheme."""
    directory = MemoryDirectory(crypt_context=ctx)
    bcrypt_hash = ctx.handler("bcrypt").hash(OLD_KEY)
    directory.add_client("7000", "old@example.com", key_hash=bcrypt_hash)
    service = make_service(directory=directory)
    assert service.authenticate("7000", OLD_KEY) is not None
    stored = directory.find(IdentifierKind.CLIENT_NUMBER, "7000")
    assert stored is not None and stored.key_hash.startswith("$argon2")
    assert service.authenticate("7000", OLD_KEY) is not None
