"""Several clients under one primary address: one mail lists them all, each link rotates one."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from passlib.context import CryptContext

from credrecovery import (
    MAX_CLIENTS_PER_MAIL,
    Client,
    IdentifierKind,
    RecoveryService,
    TokenAlreadyUsed,
)
from credrecovery.memory import MemoryDirectory, MemoryMailer
from credrecovery.sqlite import SQLiteDirectory
from helpers import key_from, token_from

pytestmark = pytest.mark.shells("sync", "async")

SHARED = "agencia@ejemploxmundo.com.ar"
MakeService = Callable[..., RecoveryService]


@pytest.fixture(params=["memory", "sqlite"])
def agency(request: pytest.FixtureRequest, ctx: CryptContext, tmp_path: Path) -> Iterator[Any]:
    """A shipped directory where clients 9000, 9001 and 9002 share one primary address."""
    if request.param == "memory":
        directory: Any = MemoryDirectory(crypt_context=ctx)
    else:
        directory = SQLiteDirectory(tmp_path / "clients.sqlite3", crypt_context=ctx)
    for n, domain in enumerate(["uno.example", "dos.example", "tres.example"]):
        directory.add_client(
            f"900{n}", SHARED, key=f"Key-Of-Client-900{n}", domains=[domain], name="Agencia"
        )
    directory.add_client("7000", "solo@ejemploxmundo.com.ar", key="Key-Of-Client-7000")
    yield directory
    if hasattr(directory, "close"):
        directory.close()


def _links(message: Any) -> dict[str, str]:
    """Client number -> token, from a mail that lists several clients."""
    text = message.get_body(("plain",)).get_content()
    found: dict[str, str] = {}
    number = None
    for line in text.splitlines():
        if line.startswith("Client number "):
            number = line.removeprefix("Client number ").rstrip(":")
        elif "/recover/" in line and number is not None:
            found[number] = line.rsplit("/", 1)[1]
            number = None
    return found


def test_one_mail_lists_every_client_of_the_address(
    make_service: MakeService,
    agency: Any,
    mailer: MemoryMailer,
) -> None:
    """A request by a shared address mails it once, with a link for each client number."""
    service = make_service(directory=agency)
    service.request("email", SHARED.upper())
    [message] = mailer.outbox
    assert [a.addr_spec for a in message["To"].addresses] == [SHARED]
    assert sorted(_links(message)) == ["9000", "9001", "9002"]


def test_each_link_rotates_its_own_client_alone(
    make_service: MakeService,
    agency: Any,
    mailer: MemoryMailer,
    ctx: CryptContext,
) -> None:
    """Confirming one listed link rotates that client only; the others' links still work."""
    service = make_service(directory=agency)
    service.request("email", SHARED)
    links = _links(mailer.outbox[0])
    before = {n: agency.find(IdentifierKind.CLIENT_NUMBER, n).key_hash for n in links}
    assert service.confirm(links["9001"]).number == "9001"
    credentials = mailer.outbox[-1]
    text = credentials.get_body(("plain",)).get_content()
    assert "Client number: 9001" in text and "9000" not in text and "9002" not in text
    after = {n: agency.find(IdentifierKind.CLIENT_NUMBER, n).key_hash for n in links}
    assert after["9000"] == before["9000"] and after["9002"] == before["9002"]
    assert ctx.verify(key_from(credentials), after["9001"])
    with pytest.raises(TokenAlreadyUsed):
        service.confirm(links["9001"])
    assert service.confirm(links["9000"]).number == "9000"


def test_a_domain_or_number_names_one_client_of_a_shared_address(
    make_service: MakeService,
    agency: Any,
    mailer: MemoryMailer,
) -> None:
    """Named by domain or number, a client of a shared address gets a mail of its own."""
    service = make_service(directory=agency)
    service.request("domain", "dos.example")
    service.request("client_number", "9002")
    for message, number in zip(mailer.outbox, ["9001", "9002"], strict=True):
        assert _links(message) == {}
        assert service.check(token_from(message)).number == number


def test_the_list_is_capped(
    make_service: MakeService, ctx: CryptContext, mailer: MemoryMailer
) -> None:
    """Past the cap, the mail lists the first clients and says there are more."""
    directory = MemoryDirectory(crypt_context=ctx)
    for n in range(MAX_CLIENTS_PER_MAIL + 2):
        directory.add_client(f"{5000 + n}", SHARED, key_hash="$argon2id$placeholder")
    make_service(directory=directory).request("email", SHARED)
    [message] = mailer.outbox
    assert len(_links(message)) == MAX_CLIENTS_PER_MAIL
    assert "more client accounts" in message.get_body(("plain",)).get_content()


class FindOnly:
    """A host directory written to the first protocol: find and replace_key_hash alone."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def find(self, kind: IdentifierKind, value: str) -> Client | None:
        found: list[Client] = self.inner.find_all(kind, value)
        return found[0] if found else None

    def replace_key_hash(self, number: str, current: str, new: str) -> bool:
        result: bool = self.inner.replace_key_hash(number, current, new)
        return result


def test_a_directory_without_find_all_keeps_working(
    make_service: MakeService,
    agency: Any,
    mailer: MemoryMailer,
) -> None:
    """With find alone, a shared address gets the one client find returns, as before."""
    service = make_service(directory=FindOnly(agency))
    service.request("email", SHARED)
    [message] = mailer.outbox
    assert service.confirm(token_from(message)).number == "9000"


def test_a_shared_address_answers_as_any_request(
    make_service: MakeService,
    agency: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The caller sees None and one 'requested' event, as for a single client."""
    caplog.set_level(logging.INFO, logger="credrecovery")
    service = make_service(directory=agency)
    assert service.request("email", SHARED) is None
    assert service.request("email", "solo@ejemploxmundo.com.ar") is None
    events = [getattr(r, "event", None) for r in caplog.records]
    assert events.count("requested") == 2
    assert "directory_error" not in events
