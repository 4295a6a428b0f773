"""Recovery started by support: ``issue_link`` on the directories a panel keeps its clients in."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from credrecovery import (
    DeliveryFailed,
    Event,
    EventKind,
    IdentifierKind,
    InvalidIdentifier,
    InvalidToken,
    RecoveryService,
    TokenAlreadyUsed,
    TokenExpired,
    UnknownClient,
    cheap_context,
)
from credrecovery.memory import MemoryDirectory, MemoryMailer
from credrecovery.sqlite import SQLiteDirectory
from credrecovery.tokens import TokenSigner
from helpers import CONFIRM_URL, OLD_KEY, SECRET, FakeClock, key_from, pg, token_from

pytestmark = pytest.mark.shells("sync", "async")

MakeService = Callable[..., RecoveryService]
NUMBER = "9000"
EMAIL = "ana@example.com"


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def clients(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """A directory holding client 9000 (open) and 9001 (closed): in memory, a SQLite
    file, or the directory's own tables on the test PostgreSQL server."""
    with contextlib.ExitStack() as stack:
        made: Any
        if request.param == "memory":
            made = MemoryDirectory(crypt_context=cheap_context())
        elif request.param == "sqlite":
            made = stack.enter_context(SQLiteDirectory(tmp_path / "clients.sqlite3",
                                                       crypt_context=cheap_context()))
        else:
            from credrecovery.sqlalchemy import SQLAlchemyDirectory

            schema = stack.enter_context(pg.fresh_schema())
            made = SQLAlchemyDirectory(schema.engine, crypt_context=cheap_context(),
                                       create_schema=True)
        made.add_client(NUMBER, EMAIL, key=OLD_KEY, domains=["example.com"], name="Ana")
        made.add_client("9001", "bo@example.com", key=OLD_KEY, active=False)
        yield made


class Seen(list[Event]):
    def __call__(self, event: Event) -> None:
        self.append(event)


class RefusingMailer:
    def __init__(self, error: Exception) -> None:
        self.error = error

    def send(self, message: EmailMessage) -> None:
        raise self.error


def test_support_mails_a_link_that_confirms(make_service: MakeService, clients: Any,
                                            mailer: MemoryMailer) -> None:
    """The link returned is the one mailed to the primary address; it confirms once."""
    service = make_service(directory=clients)
    link = service.issue_link(" 9000 ", operator="support-ana")
    assert link.startswith(CONFIRM_URL.replace("{token}", ""))
    [mail] = mailer.outbox
    assert mail["To"].addresses[0].addr_spec == EMAIL
    assert token_from(mail) == link.rsplit("/", 1)[1]
    assert service.check(link.rsplit("/", 1)[1]).number == NUMBER
    assert service.confirm(token_from(mail)).number == NUMBER
    new_key = key_from(mailer.outbox[-1])
    assert service.authenticate(NUMBER, new_key) is not None
    with pytest.raises(TokenAlreadyUsed):
        service.confirm(token_from(mail))


def test_a_link_not_mailed_is_only_returned(make_service: MakeService, clients: Any,
                                            mailer: MemoryMailer) -> None:
    """send=False mails nothing; the link works all the same, for the operator to pass on."""
    service = make_service(directory=clients)
    link = service.issue_link(NUMBER, send=False)
    assert mailer.outbox == []
    assert service.confirm(link.rsplit("/", 1)[1]).number == NUMBER


def test_a_link_keeps_the_expiry_it_was_given(make_service: MakeService, clock: FakeClock,
                                              mailer: MemoryMailer) -> None:
    """max_age, longer or shorter than token_max_age, is the link's own: carried, signed."""
    service = make_service()
    week = service.issue_link(NUMBER, max_age=timedelta(days=7), send=False)
    minutes = service.issue_link(NUMBER, max_age=timedelta(minutes=5))
    assert "5 minutes" in mailer.outbox[-1].get_body(("plain",)).get_content()
    usual = service.issue_link(NUMBER, send=False)
    clock.advance(600)
    with pytest.raises(TokenExpired) as expired:
        service.check(minutes.rsplit("/", 1)[1])
    assert expired.value.expired_at is not None
    assert expired.value.expired_at.timestamp() == int(clock.start) + 300
    assert service.check(usual.rsplit("/", 1)[1]).number == NUMBER
    clock.advance(2 * 86400)
    with pytest.raises(TokenExpired):
        service.check(usual.rsplit("/", 1)[1])
    assert service.confirm(week.rsplit("/", 1)[1]).number == NUMBER
    with pytest.raises(ValueError, match="a second or more"):
        service.issue_link(NUMBER, max_age=timedelta(milliseconds=10))


def test_unknown_and_closed_clients_are_said_plainly(make_service: MakeService, clients: Any,
                                                     mailer: MemoryMailer) -> None:
    """Support is told which: no such number, or a closed account; nothing is mailed."""
    service = make_service(directory=clients)
    with pytest.raises(UnknownClient, match="no client has the number 9999") as unknown:
        service.issue_link("9999")
    assert unknown.value.number == "9999" and unknown.value.http_status == 404
    assert isinstance(unknown.value, LookupError)
    with pytest.raises(UnknownClient, match="client 9001 is closed"):
        service.issue_link("9001")
    with pytest.raises(InvalidIdentifier):
        service.issue_link("not a number")
    assert mailer.outbox == []


def test_a_mail_that_fails_raises_and_returns_no_link(make_service: MakeService) -> None:
    """When the mail does not leave, support hears DeliveryFailed, with the server's codes."""
    refused = DeliveryFailed("refused", temporary=False, smtp_code=550, enhanced_code="5.1.1")
    seen = Seen()
    service = make_service(mailer=RefusingMailer(refused), on_event=seen)
    with pytest.raises(DeliveryFailed) as caught:
        service.issue_link(NUMBER, operator="support-ana")
    assert (caught.value.temporary, caught.value.smtp_code) == (False, 550)
    assert caught.value.__cause__ is refused
    assert service.flush(10)
    assert [(e.kind, e.reason) for e in seen] == [(EventKind.DELIVERY_FAILED, "confirmation")]


def test_issuing_is_logged_and_evented_with_the_operator(
        make_service: MakeService, caplog: pytest.LogCaptureFixture) -> None:
    """link_issued names the client and the operator, and never the link."""
    seen = Seen()
    service = make_service(on_event=seen)
    with caplog.at_level(logging.INFO, logger="credrecovery"):
        link = service.issue_link(NUMBER, operator="support-ana", send=False)
    [record] = [r for r in caplog.records if getattr(r, "event", None) == "link_issued"]
    assert (record.client, record.operator) == (NUMBER, "support-ana")  # type: ignore[attr-defined]
    token = link.rsplit("/", 1)[1]
    assert all(token not in r.getMessage() and token not in str(vars(r))
               for r in caplog.records)
    assert service.flush(10)
    [issued] = seen
    assert (issued.kind, issued.reason, issued.number, issued.operator) == (
        EventKind.ISSUED, "not_mailed", NUMBER, "support-ana")


def test_a_key_change_kills_an_issued_link(make_service: MakeService,
                                           directory: MemoryDirectory) -> None:
    """Bound to the account's state, the link dies once the key changes, as a mailed one does."""
    service = make_service()
    link = service.issue_link(NUMBER, max_age=timedelta(days=3), send=False)
    assert service.change_key(NUMBER, OLD_KEY, "a brand new key of my own") is not None
    with pytest.raises(TokenAlreadyUsed):
        service.check(link.rsplit("/", 1)[1])
    assert directory.find(IdentifierKind.CLIENT_NUMBER, NUMBER) is not None


@pytest.mark.shells("sync")
def test_a_token_expiry_is_signed_with_it() -> None:
    """The expiry a token carries is under the signature: altering it makes the token
    invalid; an older reader's two-part tokens keep the signer's expiry."""
    import base64
    import json

    clock = FakeClock()
    signer = TokenSigner(SECRET, max_age=timedelta(hours=1), clock=clock)
    token = signer.issue_for(NUMBER, "binding", max_age=timedelta(days=2))
    payload, stamp, signature = token.split(".")
    data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert data == [NUMBER, "binding", 172800]
    longer = base64.urlsafe_b64encode(json.dumps([NUMBER, "binding", 9999999]).encode())
    with pytest.raises(InvalidToken):
        signer.read(".".join([longer.decode().rstrip("="), stamp, signature]))
    clock.advance(86400)
    assert signer.read(token).number == NUMBER
    plain = signer.issue_for(NUMBER, "binding")
    clock.advance(3601)
    with pytest.raises(TokenExpired):
        signer.read(plain)
    with pytest.raises(ValueError):
        signer.issue_for(NUMBER, "binding", max_age=timedelta(0))
