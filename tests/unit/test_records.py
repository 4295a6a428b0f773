"""Records a directory returns that the service cannot use are misses, logged, never errors."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest

from credrecovery import Client, IdentifierKind, InvalidToken, RecoveryService
from credrecovery.memory import MemoryMailer

pytestmark = pytest.mark.shells("sync", "async")

MakeService = Callable[..., RecoveryService]
GOOD_HASH = "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo"


class Returns:
    """A host directory that returns one record, whatever it is, for client number 4242."""

    def __init__(self, record: Any) -> None:
        self.record = record

    def find(self, kind: IdentifierKind, value: str) -> Any:
        return self.record if value == "4242" else None

    def replace_key_hash(self, number: str, current: str, new: str) -> bool:
        raise AssertionError("an unusable record must never be rotated")


UNUSABLE = {
    "email is None": Client("4242", None, GOOD_HASH),  # type: ignore[arg-type]
    "key hash is None": Client("4242", "a@example.com", None),  # type: ignore[arg-type]
    "empty key hash": Client("4242", "a@example.com", ""),
    "number not text": Client(4242, "a@example.com", GOOD_HASH),  # type: ignore[arg-type]
    "name not text": Client("4242", "a@example.com", GOOD_HASH, name=b"Ana"),  # type: ignore[arg-type]
    "locale not text": Client("4242", "a@example.com", GOOD_HASH, locale=5),  # type: ignore[arg-type]
    "undecodable email": Client("4242", "a\udcff@example.com", GOOD_HASH),
    "control characters": Client("4242", "a@example.com\x00", GOOD_HASH),
    "not a Client": {"number": "4242", "email": "a@example.com", "key_hash": GOOD_HASH},
}


@pytest.mark.parametrize("record", UNUSABLE.values(), ids=UNUSABLE.keys())
def test_an_unusable_record_is_a_miss(
    record: Any,
    make_service: MakeService,
    mailer: MemoryMailer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """request() answers as for a miss and logs at ERROR what is wrong; nothing is mailed."""
    caplog.set_level(logging.INFO, logger="credrecovery")
    service = make_service(directory=Returns(record))
    assert service.request("client_number", "4242") is None
    assert service.request("client_number", "4343") is None
    assert mailer.outbox == []
    unusable = [r for r in caplog.records if getattr(r, "event", None) == "unusable_record"]
    assert len(unusable) == 1 and unusable[0].levelno == logging.ERROR
    assert getattr(unusable[0], "reason", "")
    number = getattr(record, "number", None)
    assert getattr(unusable[0], "client", None) == (number if isinstance(number, str) else None)
    outcomes = [
        getattr(r, "event", None)
        for r in caplog.records
        if getattr(r, "event", None) != "unusable_record"
    ]
    assert outcomes == ["unknown_identifier", "unknown_identifier"]


@pytest.mark.parametrize("record", UNUSABLE.values(), ids=UNUSABLE.keys())
def test_a_token_for_an_unusable_record_is_invalid(
    record: Any,
    make_service: MakeService,
) -> None:
    """confirm() and check() refuse a genuine token whose record cannot be used."""
    service = make_service(directory=Returns(record))
    token = service.tokens.issue_for("4242", "binding")
    for action in (service.check, service.confirm):
        with pytest.raises(InvalidToken) as excinfo:
            action(token)
        assert type(excinfo.value) is InvalidToken
