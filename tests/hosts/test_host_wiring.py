"""A host's wiring mistakes fail when the service is built, naming what is missing."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from credrecovery import AsyncRecoveryService, RecoveryService
from hosts.host_app import (
    CONFIRM_URL,
    SECRET,
    SENDER,
    AsyncDictDirectory,
    AsyncOutboxMailer,
    CustomersDirectory,
    OutboxMailer,
)

SETTINGS: dict[str, Any] = {"secret_key": SECRET, "confirm_url": CONFIRM_URL, "sender": SENDER}


class FindOnlyDirectory:
    """A directory whose author forgot the compare-and-set."""

    def find(self, kind: object, value: str) -> None:
        return None


class PostOffice:
    """A mailer whose method has another name than ``send``."""

    def deliver(self, message: object) -> None:
        pass


def build(shell: str, directory: object, mailer: object) -> object:
    """Construct the service as a host does: the sync one directly, the async one in a loop."""
    if shell == "sync":
        return RecoveryService(directory, mailer, **SETTINGS)  # type: ignore[arg-type]

    async def construct() -> object:
        return AsyncRecoveryService(directory, mailer, **SETTINGS)  # type: ignore[arg-type]

    return asyncio.run(construct())


def good_parts(shell: str, tmp_path: Any) -> tuple[object, object]:
    if shell == "sync":
        return CustomersDirectory(str(tmp_path / "unused.sqlite3")), OutboxMailer()
    return AsyncDictDirectory(), AsyncOutboxMailer()


@pytest.mark.parametrize("shell", ["sync", "async"])
def test_an_object_that_is_no_directory_fails_at_construction(shell: str, tmp_path: Any) -> None:
    """RecoveryService(object(), mailer, ...) raises TypeError naming find and replace_key_hash."""
    _, mailer = good_parts(shell, tmp_path)
    with pytest.raises(TypeError, match=r"find\(\).*replace_key_hash\(\)"):
        build(shell, object(), mailer)


@pytest.mark.parametrize("shell", ["sync", "async"])
def test_a_directory_without_replace_key_hash_fails_at_construction(
    shell: str,
    tmp_path: Any,
) -> None:
    """A directory lacking replace_key_hash raises TypeError naming it, before any request."""
    _, mailer = good_parts(shell, tmp_path)
    with pytest.raises(TypeError, match=r"replace_key_hash") as caught:
        build(shell, FindOnlyDirectory(), mailer)
    assert "find()" not in str(caught.value)


@pytest.mark.parametrize("shell", ["sync", "async"])
def test_a_mailer_without_send_fails_at_construction(shell: str, tmp_path: Any) -> None:
    """A mailer lacking send raises TypeError naming send, before any mail is due."""
    directory, _ = good_parts(shell, tmp_path)
    with pytest.raises(TypeError, match=r"send"):
        build(shell, directory, PostOffice())
