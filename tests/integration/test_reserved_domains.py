"""Names kept for tests and local networks (RFC 2606, 6761, 6762, .internal) are addresses.

Staging and test setups mail on ``example.test``, ``localhost``, ``.invalid``,
``.local`` and ``.internal``. The library checks syntax and header safety, not
whether a domain is deliverable, so senders, envelope senders and client
addresses on these names reach the host's mailer, here a real SMTP server on
127.0.0.1, while hostile variants on the same names stay refused.
"""

from __future__ import annotations

import re
import smtplib
from collections.abc import Iterator
from email.message import EmailMessage

import pytest

from credrecovery import InvalidIdentifier, RecoveryService, cheap_context, normalize_identifier
from credrecovery.memory import MemoryDirectory
from credrecovery.messages import mailbox
from credrecovery.protocols import Mailer
from credrecovery.smtp import SMTPMailer
from helpers import CONFIRM_URL, SECRET, key_from
from helpers.smtp_server import RunningSMTPServer, running_smtp_server

SENDER = "Soporte <soporte@panel.example.test>"
SENDER_ADDRESS = "soporte@panel.example.test"
# user@localhost is accepted: RFC 6761 fixes what localhost means (this host)
# and every MTA delivers it locally. Other dotless names (a@test, a@intranet)
# stay refused: RFC 5321 wants FQDNs, and they are most often typos.
RESERVED = [
    "ana@example.test",
    "root@localhost",
    "ana@x.invalid",
    "ana@host.local",
    "ana@corp.internal",
    "ana@mail.example",
]
LINK = re.compile(re.escape(CONFIRM_URL.split("{token}")[0]) + r"[A-Za-z0-9_.-]+")


@pytest.fixture
def server() -> Iterator[RunningSMTPServer]:
    with running_smtp_server() as running:
        yield running


class HostMailer:
    """A mailer as a host writes one: smtplib straight to its relay."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port

    def send(self, message: EmailMessage) -> None:
        with smtplib.SMTP(self.host, self.port, timeout=10) as relay:
            relay.send_message(message)


def _service(mailer: Mailer, address: str, key_mode: str) -> RecoveryService:
    directory = MemoryDirectory(crypt_context=cheap_context())
    directory.add_client("9000", address, key="Old-Access-Key-2024", name="Ana")
    return RecoveryService(
        directory,
        mailer,
        secret_key=SECRET,
        confirm_url=CONFIRM_URL,
        sender=SENDER,
        crypt_context=cheap_context(),
        delivery="sync",
        rate_limits=None,
        key_mode=key_mode,
    )


@pytest.mark.parametrize("key_mode", ["generate", "choose"])
@pytest.mark.parametrize("mailer_kind", ["SMTPMailer", "host"])
@pytest.mark.parametrize("address", RESERVED)
def test_reserved_names_are_mailed_through_smtp(
    server: RunningSMTPServer, address: str, mailer_kind: str, key_mode: str
) -> None:
    """A sender and a client on a reserved name get the confirmation and credentials mails."""
    mailer: Mailer = (
        SMTPMailer(server.host, server.port)
        if mailer_kind == "SMTPMailer"
        else HostMailer(server.host, server.port)
    )
    service = _service(mailer, address, key_mode)
    try:
        assert service.sender == SENDER
        service.request("email", address.upper())
        [confirmation] = server.received
        assert confirmation.rcpt_tos == (address,)
        assert confirmation.mail_from == SENDER_ADDRESS
        assert [a.addr_spec for a in confirmation.message["To"].addresses] == [address]
        # The link is whole, on a line of its own, in what the server received.
        link = LINK.search(confirmation.message.get_body(("plain",)).get_content())
        assert link is not None
        assert link.group(0) in confirmation.content.decode("utf-8").splitlines()
        token = link.group(0).rsplit("/", 1)[1]
        chosen = "correct horse battery staple 42"
        if key_mode == "choose":
            result = service.confirm(token, new_key=chosen)
        else:
            result = service.confirm(token)
        assert result.number == "9000"
        assert len(server.received) == 2
        second = server.received[1]
        assert second.rcpt_tos == (address,)
        assert second.mail_from == SENDER_ADDRESS
        if key_mode == "generate":
            key = key_from(second.message)
            assert service.authenticate("9000", key)
        else:
            assert service.authenticate("9000", chosen)
    finally:
        service.close()


@pytest.mark.parametrize("address", RESERVED)
def test_reserved_names_normalize_and_make_a_mailbox(address: str) -> None:
    """Identifiers, mailbox() and the sender check agree: reserved names pass all three."""
    assert normalize_identifier("email", address.upper()) == address
    assert mailbox(address, "Ana").addr_spec == address
    assert str(mailbox(address, "Ana")) == f"Ana <{address}>"
    service = RecoveryService(
        MemoryDirectory(crypt_context=cheap_context()),
        SMTPMailer("x.test"),
        secret_key=SECRET,
        confirm_url=CONFIRM_URL,
        sender=f"Panel <{address}>",
        rate_limits=None,
        delivery="sync",
    )
    assert service.sender == f"Panel <{address}>"
    service.close()


@pytest.mark.parametrize(
    "address",
    [SENDER_ADDRESS, "bounces@localhost", "b@x.invalid", "b@host.local", "b@corp.internal"],
)
def test_envelope_sender_on_a_reserved_name(server: RunningSMTPServer, address: str) -> None:
    """SMTPMailer(envelope_sender=...) on a reserved name is MAIL FROM as given."""
    message = EmailMessage()
    message["From"] = SENDER
    message["To"] = "ana@example.test"
    message["Subject"] = "Hola"
    message.set_content("Hola\n")
    SMTPMailer(server.host, server.port, envelope_sender=address).send(message)
    assert server.received[0].mail_from == address
    assert server.received[0].rcpt_tos == ("ana@example.test",)


HOSTILE = [
    "ana@example.test\r\nBcc: victim@evil.example",
    "ana@example.test\nBcc: victim@evil.example",
    "ana@x.invalid\r",
    "an\x00a@host.local",
    "ana@corp.internal\x00victim@evil.example",
    "ana@example.test, victim@evil.example",
    "ana@example.test victim@evil.example",
    '"ana victim"@example.test',
    '"ana@evil.example"@example.test',
    "ana@[127.0.0.1]",
    "ana@-bad-.test",
    "ana@example..test",
    "ana@.example.test",
    "ana@example.test.",
    "ana@" + "a" * 64 + ".test",
    "a" * 64 + "@" + ".".join(["b" * 60] * 4) + ".test",
    "ana@test",
    "ana@local",
    "ana@example",
    "ana@x.onion",
    "ana@exa\u202emple.test",
    "ana@example.te\u00adst",
    "ana@example.\uff54est\u2028",
]


@pytest.mark.parametrize("address", HOSTILE)
def test_hostile_addresses_on_reserved_names_are_refused(address: str) -> None:
    """Control characters, extra recipients, quoting, literals and bad lengths stay refused."""
    with pytest.raises(InvalidIdentifier):
        normalize_identifier("email", address)
    with pytest.raises(ValueError, match="not a valid email address"):
        mailbox(address)
    with pytest.raises(ValueError, match="sender"):
        RecoveryService(
            MemoryDirectory(),
            SMTPMailer("x.test"),
            secret_key=SECRET,
            confirm_url=CONFIRM_URL,
            sender=address,
            rate_limits=None,
        )
    with pytest.raises(ValueError, match="envelope_sender"):
        SMTPMailer("x.test", envelope_sender=address)


@pytest.mark.parametrize(
    ("address", "sender"),
    [("Ana <ana@example.test>", "Ana <ana@example.test>"), ("<ana@localhost>", "ana@localhost")],
)
def test_a_named_address_is_a_sender_but_no_bare_address(address: str, sender: str) -> None:
    """Angle brackets make a sender; as a client address or envelope sender they are refused."""
    with pytest.raises(InvalidIdentifier):
        normalize_identifier("email", address)
    with pytest.raises(ValueError, match="not a valid email address"):
        mailbox(address)
    with pytest.raises(ValueError, match="envelope_sender"):
        SMTPMailer("x.test", envelope_sender=address)
    service = RecoveryService(
        MemoryDirectory(),
        SMTPMailer("x.test"),
        secret_key=SECRET,
        confirm_url=CONFIRM_URL,
        sender=address,
        rate_limits=None,
    )
    assert service.sender == sender
    service.close()


def test_only_ascii_local_parts_where_they_were_required() -> None:
    """Identifiers and mail keep a local part outside ASCII; envelope and sender refuse it."""
    assert normalize_identifier("email", "José@Example.TEST") == "josé@example.test"
    assert mailbox("josé@example.test").username == "josé"
    with pytest.raises(ValueError, match="envelope_sender"):
        SMTPMailer("x.test", envelope_sender="josé@example.test")
    with pytest.raises(ValueError, match="sender"):
        RecoveryService(
            MemoryDirectory(),
            SMTPMailer("x.test"),
            secret_key=SECRET,
            confirm_url=CONFIRM_URL,
            sender="josé@example.test",
            rate_limits=None,
        )


def test_internationalized_reserved_domain_goes_as_a_label(server: RunningSMTPServer) -> None:
    """An IDN under a reserved name is checked as IDNA and mailed as its A-label."""
    service = _service(SMTPMailer(server.host, server.port), "ana@münchen.test", "generate")
    try:
        service.request("email", "ana@MÜNCHEN.test")
        assert server.received[0].rcpt_tos == ("ana@xn--mnchen-3ya.test",)
    finally:
        service.close()
