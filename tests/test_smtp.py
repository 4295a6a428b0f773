"""SMTPMailer against a real SMTP server on 127.0.0.1."""

from __future__ import annotations

import socket
import ssl
import threading
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

import pytest

from credrecovery.exceptions import DeliveryFailed
from credrecovery.protocols import Mailer
from credrecovery.smtp import SMTPMailer
from smtp_server import (
    LocalCertificate,
    RecordingHandler,
    RunningSMTPServer,
    make_certificate,
    running_smtp_server,
)

PASSWORD = "s3cr3t-SMTP-passw0rd"
BODY_SECRET = "k3y-7f3a9c-ACCESS"
TO = "client@example.com"


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    """Every server thread a test starts is gone when it ends."""
    before = set(threading.enumerate())
    yield
    leaked = [thread for thread in threading.enumerate() if thread not in before]
    assert leaked == []


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> LocalCertificate:
    return make_certificate(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def server() -> Iterator[RunningSMTPServer]:
    with running_smtp_server() as running:
        yield running


def make_message(*to: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = Address("Example Hosting", addr_spec="noreply@hosting.example")
    message["To"] = [Address("Client Name", addr_spec=addr) for addr in (to or (TO,))]
    message["Subject"] = "Your new access key"
    message["Date"] = format_datetime(datetime.now(UTC))
    message["Message-ID"] = make_msgid(domain="hosting.example")
    message.set_content(f"Client number: 10042\nAccess key: {BODY_SECRET}\n")
    return message


@contextmanager
def closed_port() -> Iterator[int]:
    # A bound socket that never listens answers connects with a reset, reliably.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def send_failing(mailer: SMTPMailer, message: EmailMessage | None = None) -> DeliveryFailed:
    with pytest.raises(DeliveryFailed) as caught:
        mailer.send(message if message is not None else make_message())
    return caught.value


def assert_no_secret(exc: BaseException) -> None:
    text = "".join(traceback.format_exception(exc))
    assert PASSWORD not in text
    assert BODY_SECRET not in text


# Delivery


def test_is_a_mailer() -> None:
    """SMTPMailer satisfies the Mailer protocol."""
    assert isinstance(SMTPMailer("127.0.0.1"), Mailer)


def test_plain_delivery_keeps_headers_and_body(server: RunningSMTPServer) -> None:
    """A plain delivery arrives with its headers and body unchanged."""
    message = make_message()
    SMTPMailer(server.host, server.port).send(message)

    [mail] = server.received
    assert mail.mail_from == "noreply@hosting.example"
    assert mail.rcpt_tos == (TO,)
    assert not mail.tls
    received = mail.message
    for header in ("From", "To", "Subject", "Date", "Message-ID"):
        assert received[header] == message[header]
    assert received.get_content().splitlines() == message.get_content().splitlines()


def test_envelope_ignores_cc_and_bcc(server: RunningSMTPServer) -> None:
    """Only the To address is a recipient; Cc and Bcc headers add none, and Bcc is not sent."""
    message = make_message()
    message["Cc"] = "copy@example.org"
    message["Bcc"] = "hidden@example.org"
    SMTPMailer(server.host, server.port).send(message)

    [mail] = server.received
    assert mail.rcpt_tos == (TO,)
    assert mail.message["Bcc"] is None


def test_every_to_address_is_a_recipient_once(server: RunningSMTPServer) -> None:
    """Each distinct address of the To header becomes one envelope recipient."""
    message = make_message(TO, "second@example.net", TO)
    SMTPMailer(server.host, server.port).send(message)

    assert server.received[0].rcpt_tos == (TO, "second@example.net")


def test_message_without_to_is_refused_before_connecting() -> None:
    """A message with no To address fails permanently without opening a connection."""
    message = make_message()
    del message["To"]
    message["Bcc"] = "hidden@example.org"
    with closed_port() as port:
        exc = send_failing(SMTPMailer("127.0.0.1", port), message)
    assert exc.temporary is False
    assert exc.__cause__ is None


def test_local_hostname_is_announced(server: RunningSMTPServer) -> None:
    """The given local_hostname is the name the client greets the server with."""
    SMTPMailer(server.host, server.port, local_hostname="panel.hosting.example").send(
        make_message()
    )
    assert server.received[0].helo == "panel.hosting.example"


# TLS


def test_starttls_delivery(certificate: LocalCertificate) -> None:
    """STARTTLS upgrades the connection and verifies the server against the given context."""
    with running_smtp_server(starttls=certificate.server_context()) as server:
        mailer = SMTPMailer(server.host, server.port, security="starttls",
                            ssl_context=certificate.client_context())
        mailer.send(make_message())
    [mail] = server.received
    assert mail.tls
    assert mail.rcpt_tos == (TO,)


def test_implicit_tls_delivery(certificate: LocalCertificate) -> None:
    """security='tls' speaks TLS from the first byte."""
    with running_smtp_server(implicit_tls=certificate.server_context()) as server:
        mailer = SMTPMailer(server.host, server.port, security="tls",
                            ssl_context=certificate.client_context())
        mailer.send(make_message())
    [mail] = server.received
    assert mail.rcpt_tos == (TO,)


def test_untrusted_certificate_is_permanent(certificate: LocalCertificate) -> None:
    """The default context rejects an unknown CA, and retrying would not help."""
    with running_smtp_server(starttls=certificate.server_context()) as server:
        exc = send_failing(SMTPMailer(server.host, server.port, security="starttls"))
        assert server.received == []
    assert exc.temporary is False
    assert isinstance(exc.__cause__, ssl.SSLCertVerificationError)
    assert "certificate" in str(exc)


def test_starttls_not_offered_is_permanent(server: RunningSMTPServer) -> None:
    """Asking for STARTTLS from a server that does not offer it never falls back to plain."""
    exc = send_failing(SMTPMailer(server.host, server.port, security="starttls"))
    assert exc.temporary is False
    assert "STARTTLS" in str(exc)
    assert server.received == []


# Login


def test_login_over_starttls(certificate: LocalCertificate) -> None:
    """With a username the client logs in after STARTTLS and then delivers."""
    with running_smtp_server(starttls=certificate.server_context(),
                             users={"panel": PASSWORD}) as server:
        mailer = SMTPMailer(server.host, server.port, security="starttls",
                            ssl_context=certificate.client_context(),
                            username="panel", password=PASSWORD)
        mailer.send(make_message())
    [mail] = server.received
    assert mail.login == "panel"
    assert mail.tls


def test_login_over_plain_needs_explicit_consent() -> None:
    """Login without TLS is refused unless allow_plain_login=True, then works."""
    with pytest.raises(ValueError, match="in clear") as info:
        SMTPMailer("127.0.0.1", 25, username="panel", password=PASSWORD)
    assert PASSWORD not in str(info.value)
    with running_smtp_server(users={"panel": PASSWORD}, auth_require_tls=False) as server:
        SMTPMailer(server.host, server.port, username="panel", password=PASSWORD,
                   allow_plain_login=True).send(make_message())
    assert server.received[0].login == "panel"


def test_wrong_password_is_permanent_and_not_shown(certificate: LocalCertificate) -> None:
    """A rejected login fails permanently, and no password appears in the error chain."""
    with running_smtp_server(starttls=certificate.server_context(),
                             users={"panel": "the-right-one"}) as server:
        mailer = SMTPMailer(server.host, server.port, security="starttls",
                            ssl_context=certificate.client_context(),
                            username="panel", password=PASSWORD)
        exc = send_failing(mailer)
        assert server.received == []
    assert exc.temporary is False
    assert "535" in str(exc)
    assert_no_secret(exc)


def test_login_without_server_auth_is_permanent(server: RunningSMTPServer) -> None:
    """A username for a server that offers no AUTH fails permanently."""
    mailer = SMTPMailer(server.host, server.port, username="panel", password=PASSWORD,
                        allow_plain_login=True)
    exc = send_failing(mailer)
    assert exc.temporary is False
    assert "AUTH" in str(exc)
    assert_no_secret(exc)


# Server replies and network failures


@pytest.mark.parametrize(("command", "reply", "temporary"), [
    ("MAIL", "421 4.3.2 Service shutting down", True),
    ("RCPT", "421 4.3.2 Service shutting down", True),
    ("RCPT", "451 4.3.0 Try again later", True),
    ("RCPT", "550 5.1.1 No such user", False),
    ("DATA", "451 4.3.0 Local error in processing", True),
    ("DATA", "554 5.7.1 Message rejected", False),
])
def test_server_reply_decides_temporary(server: RunningSMTPServer, command: str, reply: str,
                                        temporary: bool) -> None:
    """A 4xx reply makes a temporary failure, a 5xx a permanent one, quoting only the code."""
    server.handler.answer(command, reply)
    exc = send_failing(SMTPMailer(server.host, server.port))
    code = reply.split()[0]
    assert exc.temporary is temporary
    assert code in str(exc)
    assert reply.split(maxsplit=1)[1] not in str(exc)
    assert_no_secret(exc)
    assert server.received == []


def test_partly_refused_recipients_fail(server: RunningSMTPServer) -> None:
    """If the server refuses one of several To addresses, the send still fails."""
    server.handler.refuse("second@example.net", "550 5.1.1 No such user")
    exc = send_failing(SMTPMailer(server.host, server.port),
                       make_message(TO, "second@example.net"))
    assert exc.temporary is False
    assert "550" in str(exc)


def test_connection_refused_is_temporary() -> None:
    """No server listening is a temporary failure."""
    with closed_port() as port:
        exc = send_failing(SMTPMailer("127.0.0.1", port))
    assert exc.temporary is True
    assert isinstance(exc.__cause__, ConnectionRefusedError)


@pytest.mark.parametrize("command", ["EHLO", "DATA"])
def test_stalled_server_times_out_quickly(command: str) -> None:
    """A server slower than the timeout fails temporarily, in about the timeout."""
    handler = RecordingHandler()
    handler.stall(command, 2.0)
    with running_smtp_server(handler) as server:
        started = time.monotonic()
        exc = send_failing(SMTPMailer(server.host, server.port, timeout=0.3))
        elapsed = time.monotonic() - started
    assert exc.temporary is True
    assert "timed out" in str(exc)
    assert elapsed < 1.5


# Configuration and secrecy


def test_repr_shows_settings_but_no_password() -> None:
    """repr names host, port, security and whether login is on, never the password."""
    mailer = SMTPMailer("smtp.hosting.example", 587, security="starttls",
                        username="panel", password=PASSWORD)
    text = repr(mailer)
    assert "smtp.hosting.example" in text
    assert "587" in text
    assert "starttls" in text
    assert "auth=True" in text
    assert PASSWORD not in text
    assert PASSWORD not in repr(vars(mailer))
    assert "auth=False" in repr(SMTPMailer("smtp.hosting.example"))


@pytest.mark.parametrize("kwargs", [
    {"security": "ssl"},
    {"username": "panel"},
    {"password": PASSWORD},
    {"username": "", "password": PASSWORD},
    {"username": "panel", "password": "pässword-" + PASSWORD},
    {"port": 0},
    {"port": 70000},
    {"timeout": 0},
    {"timeout": float("inf")},
    {"ssl_context": ssl.create_default_context()},
])
def test_invalid_settings_are_rejected(kwargs: dict[str, object]) -> None:
    """Bad settings fail at construction with a ValueError that shows no password."""
    with pytest.raises(ValueError) as caught:
        SMTPMailer("smtp.hosting.example", **kwargs)  # type: ignore[arg-type]
    assert PASSWORD not in str(caught.value)

