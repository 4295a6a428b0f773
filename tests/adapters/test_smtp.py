"""SMTPMailer against a real SMTP server on 127.0.0.1."""

from __future__ import annotations

import smtplib
import socket
import ssl
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

import pytest

from credrecovery.exceptions import DeliveryFailed, RecoveryError
from credrecovery.protocols import Mailer
from credrecovery.smtp import SMTPMailer
from helpers.smtp_server import (
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


@pytest.fixture(params=[False, True], ids=["one-by-one", "pipelining"])
def server(request: pytest.FixtureRequest) -> Iterator[RunningSMTPServer]:
    """A server without PIPELINING, and one with: each mail goes one way or the other."""
    with running_smtp_server(RecordingHandler(pipelining=request.param)) as running:
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
        mailer = SMTPMailer(
            server.host, server.port, security="starttls", ssl_context=certificate.client_context()
        )
        mailer.send(make_message())
    [mail] = server.received
    assert mail.tls
    assert mail.rcpt_tos == (TO,)


def test_implicit_tls_delivery(certificate: LocalCertificate) -> None:
    """security='tls' speaks TLS from the first byte."""
    with running_smtp_server(implicit_tls=certificate.server_context()) as server:
        mailer = SMTPMailer(
            server.host, server.port, security="tls", ssl_context=certificate.client_context()
        )
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
    with running_smtp_server(
        starttls=certificate.server_context(), users={"panel": PASSWORD}
    ) as server:
        mailer = SMTPMailer(
            server.host,
            server.port,
            security="starttls",
            ssl_context=certificate.client_context(),
            username="panel",
            password=PASSWORD,
        )
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
        SMTPMailer(
            server.host, server.port, username="panel", password=PASSWORD, allow_plain_login=True
        ).send(make_message())
    assert server.received[0].login == "panel"


def test_wrong_password_is_permanent_and_not_shown(certificate: LocalCertificate) -> None:
    """A rejected login fails permanently, and no password appears in the error chain."""
    with running_smtp_server(
        starttls=certificate.server_context(), users={"panel": "the-right-one"}
    ) as server:
        mailer = SMTPMailer(
            server.host,
            server.port,
            security="starttls",
            ssl_context=certificate.client_context(),
            username="panel",
            password=PASSWORD,
        )
        exc = send_failing(mailer)
        assert server.received == []
    assert exc.temporary is False
    assert str(exc) == "SMTP login failed (535 5.7.8)"
    assert (exc.smtp_code, exc.enhanced_code) == (535, "5.7.8")
    assert_no_secret(exc)


def test_login_without_server_auth_is_permanent(server: RunningSMTPServer) -> None:
    """A username for a server that offers no AUTH fails permanently."""
    mailer = SMTPMailer(
        server.host, server.port, username="panel", password=PASSWORD, allow_plain_login=True
    )
    exc = send_failing(mailer)
    assert exc.temporary is False
    assert "AUTH" in str(exc)
    assert_no_secret(exc)


# Server replies and network failures


@pytest.mark.parametrize(
    ("command", "reply", "temporary"),
    [
        ("MAIL", "421 4.3.2 Service shutting down", True),
        ("RCPT", "421 4.3.2 Service shutting down", True),
        ("RCPT", "451 4.3.0 Try again later", True),
        ("RCPT", "550 5.1.1 No such user", False),
        ("DATA", "451 4.3.0 Local error in processing", True),
        ("DATA", "554 5.7.1 Message rejected", False),
    ],
)
def test_server_reply_decides_temporary(
    server: RunningSMTPServer, command: str, reply: str, temporary: bool
) -> None:
    """A 4xx reply makes a temporary failure, a 5xx a permanent one, quoting only the codes."""
    server.handler.answer(command, reply)
    exc = send_failing(SMTPMailer(server.host, server.port))
    code, enhanced, free_text = reply.split(maxsplit=2)
    assert exc.temporary is temporary
    assert exc.smtp_code == int(code)
    assert exc.enhanced_code == enhanced
    assert f"({code} {enhanced})" in str(exc)
    assert free_text not in str(exc)
    assert_no_secret(exc)
    assert server.received == []


def test_partly_refused_recipients_fail(server: RunningSMTPServer) -> None:
    """If the server refuses one of several To addresses, the send still fails."""
    server.handler.refuse("second@example.net", "550 5.1.1 No such user")
    exc = send_failing(SMTPMailer(server.host, server.port), make_message(TO, "second@example.net"))
    assert exc.temporary is False
    assert str(exc) == "SMTP server refused the recipient (550 5.1.1)"
    assert (exc.smtp_code, exc.enhanced_code) == (550, "5.1.1")


def test_mixed_refusals_report_the_permanent_code(server: RunningSMTPServer) -> None:
    """With one recipient deferred (4xx) and one refused (5xx), the 5xx is the code reported."""
    server.handler.refuse(TO, "451 4.2.1 Mailbox busy")
    server.handler.refuse("second@example.net", "550 5.1.1 No such user")
    exc = send_failing(SMTPMailer(server.host, server.port), make_message(TO, "second@example.net"))
    assert exc.temporary is False
    assert (exc.smtp_code, exc.enhanced_code) == (550, "5.1.1")
    assert str(exc) == "SMTP server refused the recipient (550 5.1.1)"


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
    mailer = SMTPMailer(
        "smtp.hosting.example", 587, security="starttls", username="panel", password=PASSWORD
    )
    text = repr(mailer)
    assert "smtp.hosting.example" in text
    assert "587" in text
    assert "starttls" in text
    assert "auth=True" in text
    assert PASSWORD not in text
    assert PASSWORD not in repr(vars(mailer))
    assert "auth=False" in repr(SMTPMailer("smtp.hosting.example"))


@pytest.mark.parametrize(
    "kwargs",
    [
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
    ],
)
def test_invalid_settings_are_rejected(kwargs: dict[str, object]) -> None:
    """Bad settings fail at construction with a ValueError that shows no password."""
    with pytest.raises(ValueError) as caught:
        SMTPMailer("smtp.hosting.example", **kwargs)  # type: ignore[arg-type]
    assert PASSWORD not in str(caught.value)


# DSN: a bounce never carries the body


def test_dsn_server_gets_ret_hdrs_for_every_mail() -> None:
    """A server offering DSN gets MAIL FROM with RET=HDRS on every message."""
    with running_smtp_server(dsn=True) as server:
        mailer = SMTPMailer(server.host, server.port)
        mailer.send(make_message())
        mailer.send(make_message("second@example.net"))
    assert len(server.received) == 2
    for mail in server.received:
        assert "RET=HDRS" in mail.mail_options


def test_server_without_dsn_gets_no_ret(server: RunningSMTPServer) -> None:
    """A server that does not offer DSN gets no RET parameter (it would refuse an unknown one)."""
    SMTPMailer(server.host, server.port).send(make_message())
    [mail] = server.received
    assert not any(option.startswith("RET=") for option in mail.mail_options)


def test_dsn_offered_after_starttls_is_used(certificate: LocalCertificate) -> None:
    """DSN is looked up again after STARTTLS, where the server announces it anew."""
    with running_smtp_server(starttls=certificate.server_context(), dsn=True) as server:
        SMTPMailer(
            server.host, server.port, security="starttls", ssl_context=certificate.client_context()
        ).send(make_message())
    [mail] = server.received
    assert mail.tls
    assert "RET=HDRS" in mail.mail_options


def test_dsn_with_smtputf8_keeps_both_parameters() -> None:
    """A mailbox outside ASCII gets SMTPUTF8 and still RET=HDRS."""
    with running_smtp_server(dsn=True, smtputf8=True) as server:
        message = make_message()
        del message["To"]
        message["To"] = Address("José", username="josé", domain="ejemplo.com")
        SMTPMailer(server.host, server.port).send(message)
    [mail] = server.received
    assert mail.rcpt_tos == ("josé@ejemplo.com",)
    assert {"SMTPUTF8", "RET=HDRS"} <= set(mail.mail_options)


# Envelope sender: where bounces go


def test_envelope_sender_is_mail_from_and_from_is_unchanged(server: RunningSMTPServer) -> None:
    """envelope_sender is MAIL FROM; the From header is unchanged and no Return-Path is added."""
    message = make_message()
    SMTPMailer(server.host, server.port, envelope_sender="bounces@hosting.example").send(message)
    [mail] = server.received
    assert mail.mail_from == "bounces@hosting.example"
    assert mail.message["From"] == message["From"]
    assert mail.message["Return-Path"] is None
    assert mail.rcpt_tos == (TO,)


def test_envelope_sender_domain_goes_as_a_label(server: RunningSMTPServer) -> None:
    """An internationalized envelope domain is sent in ASCII, so no SMTPUTF8 is needed."""
    SMTPMailer(server.host, server.port, envelope_sender="rebotes@correo.ñandú.example").send(
        make_message()
    )
    assert server.received[0].mail_from == "rebotes@correo.xn--and-6ma2c.example"


@pytest.mark.parametrize(
    "value",
    [
        "",
        "bounces",
        "bounces@",
        "Panel <bounces@hosting.example>",
        "bounces@hosting.example, other@hosting.example",
        "bounces@hosting.example\r\nRCPT TO:<victim@example.org>",
        "bounces@hosting.example\n",
        "boun\x00ces@hosting.example",
        " bounces@hosting.example",
        "ñandú@hosting.example",
        "a@b@hosting.example",
        '"two words"@hosting.example',
        "bounces@[127.0.0.1]",
        "bounces@-bad-.example",
        b"bounces@hosting.example",
    ],
)
def test_invalid_envelope_sender_is_rejected(value: object) -> None:
    """Anything but one bare address with an ASCII local part fails at construction."""
    with pytest.raises(ValueError, match="envelope_sender"):
        SMTPMailer("smtp.hosting.example", envelope_sender=value)  # type: ignore[arg-type]


# Failure reasons an operator can act on


@pytest.mark.parametrize(
    ("command", "reply", "message", "codes"),
    [
        (
            "MAIL",
            "553 5.1.8 Sender domain example.org does not exist",
            "SMTP server refused the sender (553 5.1.8)",
            (553, "5.1.8"),
        ),
        (
            "RCPT",
            "550 5.1.1 <client@example.com> No such user",
            "SMTP server refused the recipient (550 5.1.1)",
            (550, "5.1.1"),
        ),
        (
            "DATA",
            "552 5.3.4 Message too big for system",
            "SMTP server refused the message (552 5.3.4)",
            (552, "5.3.4"),
        ),
        (
            "RCPT",
            "450 Mailbox busy, try later",
            "SMTP server refused the recipient (450)",
            (450, None),
        ),
        (
            "RCPT",
            "550 4.1.1 Class mismatch",
            "SMTP server refused the recipient (550)",
            (550, None),
        ),
        (
            "DATA",
            "550 5.7.26 Unauthenticated mail from example.org is not accepted",
            "SMTP server refused the message (550 5.7.26)",
            (550, "5.7.26"),
        ),
    ],
)
def test_refusal_names_the_step_and_codes_only(
    server: RunningSMTPServer, command: str, reply: str, message: str, codes: tuple[int, str | None]
) -> None:
    """A refusal says which step failed and quotes its codes, never the server's text."""
    server.handler.answer(command, reply)
    exc = send_failing(SMTPMailer(server.host, server.port))
    assert str(exc) == message
    assert (exc.smtp_code, exc.enhanced_code) == codes
    assert exc.temporary is (codes[0] < 500)
    assert isinstance(exc.__cause__, smtplib.SMTPException)


def test_security_refusal_without_login_suggests_a_login(server: RunningSMTPServer) -> None:
    """A 5.7.x refusal to a mailer with no login says the server may want one."""
    server.handler.answer("RCPT", "550 5.7.1 Relaying denied")
    exc = send_failing(SMTPMailer(server.host, server.port))
    assert isinstance(exc, DeliveryFailed)
    assert exc.temporary is False
    assert (exc.smtp_code, exc.enhanced_code) == (550, "5.7.1")
    assert str(exc) == (
        "SMTP server refused the recipient (550 5.7.1); "
        "the server may require a login: set username and password"
    )
    assert "Relaying denied" not in str(exc)


def test_security_refusal_with_login_gives_no_login_hint(certificate: LocalCertificate) -> None:
    """A mailer that already logs in is not told to set a login."""
    with running_smtp_server(
        starttls=certificate.server_context(), users={"panel": PASSWORD}
    ) as server:
        server.handler.answer("RCPT", "550 5.7.1 Relaying denied")
        exc = send_failing(
            SMTPMailer(
                server.host,
                server.port,
                security="starttls",
                ssl_context=certificate.client_context(),
                username="panel",
                password=PASSWORD,
            )
        )
    assert str(exc) == "SMTP server refused the recipient (550 5.7.1)"
    assert (exc.smtp_code, exc.enhanced_code) == (550, "5.7.1")
    assert_no_secret(exc)


def test_530_over_plain_suggests_starttls(server: RunningSMTPServer) -> None:
    """A 530 on a connection without TLS says STARTTLS may be needed."""
    server.handler.answer("MAIL", "530 5.7.0 Must issue a STARTTLS command first")
    exc = send_failing(SMTPMailer(server.host, server.port))
    assert exc.temporary is False
    assert (exc.smtp_code, exc.enhanced_code) == (530, "5.7.0")
    assert str(exc) == (
        "SMTP server refused the sender (530 5.7.0); "
        "the server may require STARTTLS: use security='starttls'"
    )
    assert "Must issue" not in str(exc)


def test_530_after_starttls_suggests_a_login(certificate: LocalCertificate) -> None:
    """A 530 once STARTTLS is on, to a mailer with no login, says a login may be needed."""
    with running_smtp_server(starttls=certificate.server_context()) as server:
        server.handler.answer("MAIL", "530 Authentication required")
        exc = send_failing(
            SMTPMailer(
                server.host,
                server.port,
                security="starttls",
                ssl_context=certificate.client_context(),
            )
        )
    assert (exc.smtp_code, exc.enhanced_code) == (530, None)
    assert str(exc) == (
        "SMTP server refused the sender (530); "
        "the server may require a login: set username and password"
    )


def test_tls_against_a_plain_smtp_port_is_permanent(server: RunningSMTPServer) -> None:
    """security='tls' aimed at a port that greets in clear text fails for good, naming the fix."""
    exc = send_failing(SMTPMailer(server.host, server.port, security="tls"))
    assert exc.temporary is False
    assert (exc.smtp_code, exc.enhanced_code) == (None, None)
    assert str(exc) == (
        f"TLS handshake with port {server.port} failed: the server may expect "
        "STARTTLS; use security='starttls'"
    )
    assert isinstance(exc.__cause__, ssl.SSLError)
    assert server.received == []


def test_starttls_against_implicit_tls_times_out_before_greeting(
    certificate: LocalCertificate,
) -> None:
    """A plain greeting never comes from an implicit-TLS port: temporary, and said so."""
    with running_smtp_server(implicit_tls=certificate.server_context()) as server:
        exc = send_failing(
            SMTPMailer(
                server.host,
                server.port,
                security="starttls",
                ssl_context=certificate.client_context(),
                timeout=0.3,
            )
        )
        assert server.received == []
    assert exc.temporary is True
    assert str(exc) == "SMTP server timed out before its greeting"


def test_starttls_against_port_465_names_the_mismatch(certificate: LocalCertificate) -> None:
    """On port 465, a greeting that never comes points to implicit TLS."""
    with ExitStack() as stack:
        try:
            server = stack.enter_context(
                running_smtp_server(implicit_tls=certificate.server_context(), port=465)
            )
        except OSError as bind_error:
            pytest.skip(f"cannot listen on port 465 here: {bind_error.strerror}")
        exc = send_failing(
            SMTPMailer(
                server.host,
                465,
                security="starttls",
                ssl_context=certificate.client_context(),
                timeout=0.3,
            )
        )
    assert exc.temporary is True
    assert str(exc) == (
        "SMTP server timed out before its greeting: port 465 usually expects "
        "TLS from the first byte; use security='tls'"
    )


def test_delivery_failed_codes_default_to_none() -> None:
    """DeliveryFailed built the old way still works, with no SMTP codes."""
    exc = DeliveryFailed("the delivery queue is full")
    assert isinstance(exc, RecoveryError)
    assert exc.temporary is True
    assert (exc.smtp_code, exc.enhanced_code) == (None, None)
    coded = DeliveryFailed("refused", temporary=False, smtp_code=550, enhanced_code="5.1.1")
    assert (coded.smtp_code, coded.enhanced_code, coded.temporary) == (550, "5.1.1", False)


# 8bit text parts (RFC 6152)


class _No8BitMime(RecordingHandler):
    """A server that does not offer 8BITMIME, as some old relays do not."""

    async def handle_EHLO(self, server, session, envelope, hostname, responses):  # type: ignore[no-untyped-def]
        responses = await super().handle_EHLO(server, session, envelope, hostname, responses)
        return [line for line in responses if "8BITMIME" not in line.upper()]


def _utf8_message() -> EmailMessage:
    message = make_message()
    message.set_content(
        "Clave de acceso: ñandú\nhttps://panel.example.com/recover?token=a.b\n", cte="8bit"
    )
    return message


def test_8bit_body_is_declared_to_a_server_with_8bitmime(server: RunningSMTPServer) -> None:
    """A message with an 8bit part goes with BODY=8BITMIME, its text byte for byte."""
    SMTPMailer(server.host, server.port).send(_utf8_message())
    [mail] = server.received
    assert "BODY=8BITMIME" in mail.mail_options
    assert "Clave de acceso: ñandú".encode() in mail.content
    assert b"https://panel.example.com/recover?token=a.b" in mail.content.splitlines()


def test_ascii_body_gets_no_body_parameter(server: RunningSMTPServer) -> None:
    """A 7bit message is sent without a BODY parameter, as before."""
    SMTPMailer(server.host, server.port).send(make_message())
    assert not any(o.startswith("BODY=") for o in server.received[0].mail_options)


def test_8bit_body_is_reencoded_for_a_server_without_8bitmime() -> None:
    """Without 8BITMIME the server gets 7-bit quoted-printable and the same text."""
    with running_smtp_server(_No8BitMime()) as running:
        message = _utf8_message()
        SMTPMailer(running.host, running.port).send(message)
        [mail] = running.received
    assert mail.content.isascii()
    assert not any(o.startswith("BODY=") for o in mail.mail_options)
    assert mail.message.get_content().splitlines() == message.get_content().splitlines()
    assert message["Content-Transfer-Encoding"] == "8bit"


def test_smtputf8_with_8bit_body_declares_body_once() -> None:
    """An SMTPUTF8 message with an 8bit body declares BODY=8BITMIME once, with SMTPUTF8."""
    with running_smtp_server(smtputf8=True) as running:
        message = _utf8_message()
        del message["To"]
        message["To"] = "josé@example.com"
        SMTPMailer(running.host, running.port).send(message)
        [mail] = running.received
    assert mail.rcpt_tos == ("josé@example.com",)
    assert [o for o in mail.mail_options if o.startswith("BODY=")] == ["BODY=8BITMIME"]
    assert "SMTPUTF8" in mail.mail_options


@pytest.mark.parametrize("offers_8bitmime", [True, False])
def test_async_mailer_sends_8bit_bodies_as_the_server_allows(offers_8bitmime: bool) -> None:
    """AsyncSMTPMailer declares BODY=8BITMIME, or re-encodes to 7-bit for a server without it."""
    import asyncio

    from credrecovery.async_smtp import AsyncSMTPMailer

    handler = RecordingHandler() if offers_8bitmime else _No8BitMime()
    with running_smtp_server(handler) as running:
        message = _utf8_message()
        asyncio.run(AsyncSMTPMailer(running.host, running.port).send(message))
        [mail] = running.received
    assert ("BODY=8BITMIME" in mail.mail_options) == offers_8bitmime
    assert mail.content.isascii() != offers_8bitmime
    assert mail.message.get_content().splitlines() == message.get_content().splitlines()


# Flattened ahead: background delivery prepares a composed mail while its workers wait


def _with_bcc() -> EmailMessage:
    message = make_message()
    message["Bcc"] = "audit@hosting.example"
    return message


def _with_sender() -> EmailMessage:
    message = make_message()
    message["Sender"] = "relay@hosting.example"
    return message


def _resent() -> EmailMessage:
    message = make_message()
    message["Resent-Date"] = format_datetime(datetime(2026, 1, 2, tzinfo=UTC))
    message["Resent-From"] = "forwarder@hosting.example"
    message["Resent-Bcc"] = "hidden@hosting.example"
    return message


def _international() -> EmailMessage:
    message = _utf8_message()
    del message["To"]
    message["To"] = "josé@example.com"
    return message


@pytest.mark.parametrize(
    "build", [make_message, _utf8_message, _with_bcc, _with_sender, _resent, _international]
)
@pytest.mark.parametrize("server_kind", ["plain", "no-8bitmime", "smtputf8"])
@pytest.mark.parametrize("envelope_sender", [None, "bounces@hosting.example"])
def test_a_message_flattened_ahead_goes_out_as_one_that_was_not(
    build: Callable[[], EmailMessage], server_kind: str, envelope_sender: str | None
) -> None:
    """The envelope, MAIL parameters and bytes match whether the mail was prepared or not."""
    handler = _No8BitMime() if server_kind == "no-8bitmime" else RecordingHandler()
    with running_smtp_server(handler, smtputf8=server_kind == "smtputf8") as running:
        message = build()
        plain = SMTPMailer(running.host, running.port, envelope_sender=envelope_sender)
        prepared = SMTPMailer(running.host, running.port, envelope_sender=envelope_sender)
        prepared._prepare(message)
        assert message in prepared._flattened
        outcomes = []
        for mailer in (plain, prepared):
            try:
                mailer.send(message)
            except DeliveryFailed as exc:
                outcomes.append((str(exc), exc.temporary))
            else:
                outcomes.append(None)
            mailer.close()
        assert outcomes[0] == outcomes[1]
        if outcomes[0] is None:
            first, second = running.received
            assert (second.mail_from, second.rcpt_tos) == (first.mail_from, first.rcpt_tos)
            assert second.mail_options == first.mail_options
            assert second.content == first.content
            assert b"Bcc" not in first.content


def _dotted() -> EmailMessage:
    message = make_message()
    message.set_content(".\n..two\n.three\nend.\n", cte="7bit")
    return message


@pytest.mark.parametrize(
    "build",
    [make_message, _utf8_message, _with_bcc, _with_sender, _resent, _international, _dotted],
)
@pytest.mark.parametrize("dsn", [False, True])
@pytest.mark.parametrize("envelope_sender", [None, "bounces@hosting.example"])
def test_a_pipelined_mail_arrives_as_one_sent_a_command_at_a_time(
    build: Callable[[], EmailMessage], dsn: bool, envelope_sender: str | None
) -> None:
    """To a server offering PIPELINING, the envelope, MAIL parameters and bytes are the same,
    and the bytes are those plain smtplib delivers."""
    message = build()
    received = []
    for pipelining in (False, True):
        handler = RecordingHandler(pipelining=pipelining)
        with running_smtp_server(handler, dsn=dsn, smtputf8=True) as running:
            mailer = SMTPMailer(running.host, running.port, envelope_sender=envelope_sender)
            mailer.send(message)
            mailer.send(message)
            mailer.close()
            received.extend(running.received)
    with running_smtp_server(smtputf8=True) as running, smtplib.SMTP(*running_at(running)) as plain:
        to = [address.addr_spec for address in message["To"].addresses]
        plain.send_message(message, from_addr=envelope_sender, to_addrs=to)
        [by_smtplib] = running.received
    assert len(received) == 4
    for mail in received[1:]:
        assert (mail.mail_from, mail.rcpt_tos) == (received[0].mail_from, received[0].rcpt_tos)
        assert mail.mail_options == received[0].mail_options
        assert mail.content == received[0].content
    assert by_smtplib.content == received[0].content
    assert (by_smtplib.mail_from, by_smtplib.rcpt_tos) == (received[0].mail_from, tuple(to))


def running_at(running: RunningSMTPServer) -> tuple[str, int]:
    return running.host, running.port
