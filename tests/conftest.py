"""Fixtures shared by the test suite."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from passlib.context import CryptContext

from credrecovery import RecoveryService, cheap_context
from credrecovery.memory import MemoryDirectory, MemoryMailer

SECRET = "test-secret-key-0123456789abcdef"
CONFIRM_URL = "https://panel.example.com/recover/{token}"
SENDER = "Client Panel <panel@example.com>"
OLD_KEY = "Old-Access-Key-2024"


class FakeClock:
    """A settable clock, in seconds since the epoch."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def ctx() -> CryptContext:
    return cheap_context()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def directory(ctx: CryptContext) -> MemoryDirectory:
    d = MemoryDirectory(crypt_context=ctx)
    d.add_client(
        "9000",
        "ejemplo@ejemploxmundo.com.ar",
        key=OLD_KEY,
        domains=["ejemploxmundo.com.ar", "otro-ejemplo.com"],
        name="Ana Example",
    )
    return d


@pytest.fixture
def mailer() -> MemoryMailer:
    return MemoryMailer()


@pytest.fixture
def make_service(
    directory: MemoryDirectory, mailer: MemoryMailer, ctx: CryptContext, clock: FakeClock
) -> Iterator[Callable[..., RecoveryService]]:
    """Build services with test defaults; synchronous delivery and no limits unless asked."""
    made: list[RecoveryService] = []

    def make(**overrides: Any) -> RecoveryService:
        options: dict[str, Any] = {
            "secret_key": SECRET,
            "confirm_url": CONFIRM_URL,
            "sender": SENDER,
            "crypt_context": ctx,
            "clock": clock,
            "delivery": "sync",
            "rate_limits": None,
        }
        options.update(overrides)
        d = options.pop("directory", directory)
        m = options.pop("mailer", mailer)
        service = RecoveryService(d, m, **options)
        made.append(service)
        return service

    yield make
    for service in made:
        service.close()


@pytest.fixture
def service(make_service: Callable[..., RecoveryService]) -> RecoveryService:
    return make_service()


def token_from(message: Any) -> str:
    """Extract the token from a confirmation mail's plain-text link."""
    text = message.get_body(("plain",)).get_content()
    match = re.search(r"/recover/([A-Za-z0-9_.-]+)", text)
    assert match, "no confirmation link in the mail"
    return match.group(1)


def key_from(message: Any) -> str:
    """Extract the new access key from a credentials mail."""
    text = message.get_body(("plain",)).get_content()
    match = re.search(r"(?:Access key|Clave de acceso): (\S+)", text)
    assert match, "no access key in the mail"
    return match.group(1)
