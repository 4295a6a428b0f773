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
    InvalidCode,
    InvalidIdentifier,
    InvalidToken,
    IssuedCode,
    RecoveryService,
    TokenAlreadyUsed,
    TokenExpired,
    UnknownClient,
    cheap_context,
)
from credrecovery.codes import MAX_CODE_ATTEMPTS, CodeSigner
from credrecovery.memory import MemoryDirectory, MemoryMailer
from credrecovery.sqlite import SQLiteDirectory
from credrecovery.tokens import TokenSigner
from helpers import (
    CONFIRM_URL,
    OLD_KEY,
    SECRET,
    FakeClock,
    code_from,
    key_from,
    pg,
    token_from,
)

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
            made = stack.enter_context(
                SQLiteDirectory(tmp_path / "clients.sqlite3", crypt_context=cheap_context())
            )
        else:
            from credrecovery.sqlalchemy import SQLAlchemyDirectory

            schema = stack.enter_context(pg.fresh_schema())
            made = SQLAlchemyDirectory(
                schema.engine, crypt_context=cheap_context(), create_schema=True
            )
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


def test_support_mails_a_link_that_confirms(
    make_service: MakeService, clients: Any, mailer: MemoryMailer
) -> None:
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


def test_a_link_not_mailed_is_only_returned(
    make_service: MakeService, clients: Any, mailer: MemoryMailer
) -> None:
    """send=False mails nothing; the link works all the same, for the operator to pass on."""
    service = make_service(directory=clients)
    link = service.issue_link(NUMBER, send=False)
    assert mailer.outbox == []
    assert service.confirm(link.rsplit("/", 1)[1]).number == NUMBER


def test_a_link_keeps_the_expiry_it_was_given(
    make_service: MakeService, clock: FakeClock, mailer: MemoryMailer
) -> None:
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


def test_unknown_and_closed_clients_are_said_plainly(
    make_service: MakeService, clients: Any, mailer: MemoryMailer
) -> None:
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
    make_service: MakeService, caplog: pytest.LogCaptureFixture
) -> None:
    """link_issued names the client and the operator, and never the link."""
    seen = Seen()
    service = make_service(on_event=seen)
    with caplog.at_level(logging.INFO, logger="credrecovery"):
        link = service.issue_link(NUMBER, operator="support-ana", send=False)
    [record] = [r for r in caplog.records if getattr(r, "event", None) == "link_issued"]
    assert (record.client, record.operator) == (NUMBER, "support-ana")  # type: ignore[attr-defined]
    token = link.rsplit("/", 1)[1]
    assert all(token not in r.getMessage() and token not in str(vars(r)) for r in caplog.records)
    assert service.flush(10)
    [issued] = seen
    assert (issued.kind, issued.reason, issued.number, issued.operator) == (
        EventKind.ISSUED,
        "not_mailed",
        NUMBER,
        "support-ana",
    )


def test_a_key_change_kills_an_issued_link(
    make_service: MakeService, directory: MemoryDirectory
) -> None:
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


# --- codes issued by support -------------------------------------------------------------


def _wrong(code: str) -> str:
    """Another code of the same shape."""
    return ("C" if code[0] != "C" else "D") + code[1:]


@pytest.mark.key_modes("generate", "choose")
def test_support_mails_a_code_that_confirms(
    make_service: MakeService, clients: Any, mailer: MemoryMailer
) -> None:
    """The code returned is the one mailed to the primary address; with its ticket it checks
    and confirms once, in either key mode; the record's repr shows neither."""
    service = make_service(directory=clients)
    issued = service.issue_code(" 9000 ", operator="support-ana")
    assert isinstance(issued, IssuedCode)
    assert repr(issued) == "IssuedCode()"
    [mail] = mailer.outbox
    assert mail["To"].addresses[0].addr_spec == EMAIL
    assert code_from(mail) == issued.code
    assert service.check_code(issued.ticket, issued.code.lower().replace("-", " ")).number == (
        NUMBER
    )
    assert service.authenticate(NUMBER, OLD_KEY) is not None
    assert service.confirm_code(issued.ticket, issued.code).number == NUMBER
    new_key = key_from(mailer.outbox[-1])
    assert service.authenticate(NUMBER, new_key) is not None
    assert service.authenticate(NUMBER, OLD_KEY) is None
    with pytest.raises(InvalidCode):
        service.confirm_code(issued.ticket, issued.code)


def test_a_code_not_mailed_is_only_returned(
    make_service: MakeService, clients: Any, mailer: MemoryMailer
) -> None:
    """send=False mails nothing; the code works all the same, for the operator to read out."""
    service = make_service(directory=clients)
    issued = service.issue_code(NUMBER, send=False)
    assert mailer.outbox == []
    assert service.confirm_code(issued.ticket, issued.code).number == NUMBER


def test_a_code_keeps_the_expiry_it_was_given(
    make_service: MakeService, clock: FakeClock, mailer: MemoryMailer
) -> None:
    """max_age, longer or shorter than code_max_age, is the ticket's own: carried, signed,
    and told in the mail."""
    service = make_service()
    week = service.issue_code(NUMBER, max_age=timedelta(days=7), send=False)
    minutes = service.issue_code(NUMBER, max_age=timedelta(minutes=5))
    assert "5 minutes" in mailer.outbox[-1].get_body(("plain",)).get_content()
    usual = service.issue_code(NUMBER, send=False)
    clock.advance(600)
    with pytest.raises(TokenExpired) as expired:
        service.check_code(minutes.ticket, minutes.code)
    assert expired.value.expired_at is not None
    assert expired.value.expired_at.timestamp() == int(clock.start) + 300
    assert service.check_code(usual.ticket, usual.code).number == NUMBER
    clock.advance(2 * 86400)
    with pytest.raises(TokenExpired):
        service.check_code(usual.ticket, usual.code)
    assert service.confirm_code(week.ticket, week.code).number == NUMBER
    with pytest.raises(ValueError, match="a second or more"):
        service.issue_code(NUMBER, max_age=timedelta(milliseconds=10))


def test_a_long_lived_code_keeps_its_attempts_spent(
    make_service: MakeService, clock: FakeClock
) -> None:
    """Wrong codes spent on a ticket that outlives code_max_age stay spent for its whole
    life: no window of the default length hands it new attempts."""
    service = make_service()
    issued = service.issue_code(NUMBER, max_age=timedelta(days=1), send=False)
    for _ in range(MAX_CODE_ATTEMPTS):
        with pytest.raises(InvalidCode):
            service.check_code(issued.ticket, _wrong(issued.code))
    clock.advance(3600)
    with pytest.raises(InvalidCode):
        service.confirm_code(issued.ticket, issued.code)
    assert service.authenticate(NUMBER, OLD_KEY) is not None


def test_codes_for_unknown_and_closed_clients_are_refused_plainly(
    make_service: MakeService, clients: Any, mailer: MemoryMailer
) -> None:
    """As for a link: no such number, a closed account, a malformed number; nothing mailed."""
    service = make_service(directory=clients)
    with pytest.raises(UnknownClient, match="no client has the number 9999"):
        service.issue_code("9999")
    with pytest.raises(UnknownClient, match="client 9001 is closed"):
        service.issue_code("9001")
    with pytest.raises(InvalidIdentifier):
        service.issue_code("not a number")
    assert mailer.outbox == []


def test_a_code_mail_that_fails_raises_and_returns_no_code(make_service: MakeService) -> None:
    """When the code mail does not leave, support hears DeliveryFailed, with the server's codes."""
    refused = DeliveryFailed("refused", temporary=False, smtp_code=550, enhanced_code="5.1.1")
    seen = Seen()
    service = make_service(mailer=RefusingMailer(refused), on_event=seen)
    with pytest.raises(DeliveryFailed) as caught:
        service.issue_code(NUMBER, operator="support-ana")
    assert (caught.value.temporary, caught.value.smtp_code) == (False, 550)
    assert caught.value.__cause__ is refused
    assert service.flush(10)
    assert [(e.kind, e.reason) for e in seen] == [(EventKind.DELIVERY_FAILED, "confirmation")]


def test_issuing_a_code_is_logged_and_evented_without_it(
    make_service: MakeService, caplog: pytest.LogCaptureFixture
) -> None:
    """code_issued names the client and the operator; no log record and no event holds the
    code or its ticket; the event's reason tells a code from a link, and mailed or not."""
    seen = Seen()
    service = make_service(on_event=seen)
    with caplog.at_level(logging.INFO, logger="credrecovery"):
        handed = service.issue_code(NUMBER, operator="support-ana", send=False)
        mailed = service.issue_code(NUMBER, operator="support-bo")
        service.issue_link(NUMBER, operator="support-ana", send=False)
    records = [r for r in caplog.records if getattr(r, "event", None) == "code_issued"]
    assert [(r.client, r.operator, r.mailed) for r in records] == [  # type: ignore[attr-defined]
        (NUMBER, "support-ana", False),
        (NUMBER, "support-bo", True),
    ]
    assert service.flush(10)
    secrets = [
        handed.code,
        handed.ticket,
        mailed.code,
        mailed.ticket,
        handed.code.replace("-", ""),
        mailed.code.replace("-", ""),
    ]
    for secret in secrets:
        assert all(
            secret not in r.getMessage() and secret not in str(vars(r)) for r in caplog.records
        )
        assert all(secret not in repr(event) for event in seen)
    issued = [(e.reason, e.number, e.operator) for e in seen if e.kind is EventKind.ISSUED]
    assert issued == [
        ("code_not_mailed", NUMBER, "support-ana"),
        ("code_mailed", NUMBER, "support-bo"),
        ("not_mailed", NUMBER, "support-ana"),
    ]


def test_a_key_change_kills_an_issued_code(make_service: MakeService) -> None:
    """Bound to the account's state, the code dies once the key changes, as a mailed one does."""
    service = make_service()
    issued = service.issue_code(NUMBER, max_age=timedelta(days=3), send=False)
    assert service.change_key(NUMBER, OLD_KEY, "a brand new key of my own") is not None
    with pytest.raises(InvalidCode):
        service.check_code(issued.ticket, issued.code)


@pytest.mark.shells("sync")
def test_a_ticket_expiry_is_signed_with_it() -> None:
    """The expiry a ticket carries is under the signature: altering it makes the ticket
    invalid; tickets of three parts, as request_code issues them, keep the signer's."""
    import base64
    import json

    clock = FakeClock()
    signer = CodeSigner(SECRET, max_age=timedelta(minutes=15), clock=clock)
    ticket = signer.issue("client_number", NUMBER, "nonce", max_age=timedelta(days=2))
    payload, stamp, signature = ticket.split(".")
    data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert data == ["client_number", NUMBER, "nonce", 172800]
    longer = base64.urlsafe_b64encode(
        json.dumps(["client_number", NUMBER, "nonce", 9999999]).encode()
    )
    with pytest.raises(InvalidCode):
        signer.read(".".join([longer.decode().rstrip("="), stamp, signature]))
    clock.advance(86400)
    claims = signer.read(ticket)
    assert (claims.value, claims.max_age) == (NUMBER, timedelta(days=2))
    plain = signer.issue("client_number", NUMBER, "nonce")
    assert signer.read(plain).max_age is None
    clock.advance(901)
    with pytest.raises(TokenExpired):
        signer.read(plain)
    with pytest.raises(ValueError):
        signer.issue("client_number", NUMBER, "nonce", max_age=timedelta(0))
