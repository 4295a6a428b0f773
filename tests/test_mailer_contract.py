"""One Mailer contract, run against every mailer the library ships.

MemoryMailer, SMTPMailer and AsyncSMTPMailer talking to a real SMTP server on
127.0.0.1, and a BackgroundMailer around each of them. A factory gives the
mailer, what reached the other end, and, when the mailer can fail, a way to
make its next delivery attempt fail. An asyncio mailer is driven through
:class:`RunToCompletion`, so that the same test bodies call it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

import pytest

import credrecovery
from credrecovery import AsyncMailer, BackgroundMailer, DeliveryFailed
from credrecovery.async_smtp import AsyncSMTPMailer
from credrecovery.memory import MemoryMailer
from credrecovery.smtp import SMTPMailer
from smtp_server import RecordingHandler, running_smtp_server

SENDER = "panel@example.com"
RECIPIENT = "ana.munoz@example.org"
CC = "copia@example.net"
BCC = "oculta@example.net"
TEXT = "Hola Ana Muñoz,\n\nSu número de cliente: 1001\nClave: Kq7mZr2WxPd9HtNa\n"
HTML = "<p>Hola Ana Muñoz,</p>\n<p>Su número de cliente: <b>1001</b></p>\n"

#: What the failure modes answer, and whether each is worth trying again.
FAILURES = {
    "permanent": ("550 5.1.1 No such user here", False),
    "temporary": ("451 4.3.0 Try again later", True),
}


class OneShotHandler(RecordingHandler):
    """A RecordingHandler whose replacement replies apply to one command only."""

    async def _intercept(self, command: str) -> str | None:
        reply = await super()._intercept(command)
        self.replies.pop(command, None)
        return reply


@dataclasses.dataclass
class MailerUnderTest:
    """A mailer, what the far end received, and how to make it fail.

    ``delivered`` returns the messages that arrived, after waiting for a
    background mailer to drain; ``envelope_recipients`` the SMTP ``RCPT TO``
    addresses of each, where there is an envelope; ``fail_next(kind)``, where
    the mailer can fail, makes the next delivery attempt fail ``"permanent"``-ly
    or ``"temporary"``-ly.
    """

    mailer: credrecovery.Mailer
    delivered: Callable[[], list[EmailMessage]]
    envelope_recipients: Callable[[], list[tuple[str, ...]]] | None = None
    fail_next: Callable[[str], None] | None = None
    #: The asyncio mailer that ``mailer`` drives, if any.
    async_mailer: AsyncMailer | None = None

    @property
    def background(self) -> bool:
        return isinstance(self.mailer, BackgroundMailer)


@contextlib.contextmanager
def memory_mailer() -> Iterator[MailerUnderTest]:
    mailer = MemoryMailer()
    yield MailerUnderTest(mailer, lambda: list(mailer.outbox))


@contextlib.contextmanager
def smtp_mailer() -> Iterator[MailerUnderTest]:
    handler = OneShotHandler()
    with running_smtp_server(handler) as server:

        def fail_next(kind: str) -> None:
            handler.answer("RCPT", FAILURES[kind][0])

        yield MailerUnderTest(
            SMTPMailer(server.host, server.port, timeout=5),
            lambda: [mail.message for mail in server.received],
            lambda: [mail.rcpt_tos for mail in server.received],
            fail_next,
        )


class RunToCompletion:
    """A Mailer that runs an AsyncMailer's ``send`` to completion on an event loop of its own."""

    def __init__(self, mailer: AsyncMailer, runner: asyncio.Runner) -> None:
        self._mailer = mailer
        self._runner = runner

    def send(self, message: EmailMessage) -> None:
        self._runner.run(self._mailer.send(message))


@contextlib.contextmanager
def async_smtp_mailer() -> Iterator[MailerUnderTest]:
    handler = OneShotHandler()
    with running_smtp_server(handler) as server, asyncio.Runner() as runner:

        def fail_next(kind: str) -> None:
            handler.answer("RCPT", FAILURES[kind][0])

        mailer = AsyncSMTPMailer(server.host, server.port, timeout=5)
        yield MailerUnderTest(
            RunToCompletion(mailer, runner),
            lambda: [mail.message for mail in server.received],
            lambda: [mail.rcpt_tos for mail in server.received],
            fail_next,
            async_mailer=mailer,
        )


def in_background(
    inner: Callable[[], contextlib.AbstractContextManager[MailerUnderTest]],
) -> Callable[[], contextlib.AbstractContextManager[MailerUnderTest]]:
    @contextlib.contextmanager
    def factory() -> Iterator[MailerUnderTest]:
        with inner() as wrapped, BackgroundMailer(
            # An asyncio mailer is handed over as it is: the delivery threads run it.
            wrapped.async_mailer or wrapped.mailer, max_attempts=3, backoff=0.05, max_backoff=0.1
        ) as mailer:

            def delivered() -> list[EmailMessage]:
                assert mailer.flush(10), "the background mailer did not drain"
                return wrapped.delivered()

            yield MailerUnderTest(mailer, delivered, wrapped.envelope_recipients,
                                  wrapped.fail_next, wrapped.async_mailer)

    return factory


FACTORIES: dict[str, Callable[[], contextlib.AbstractContextManager[MailerUnderTest]]] = {
    "memory": memory_mailer,
    "smtp": smtp_mailer,
    "background-memory": in_background(memory_mailer),
    "background-smtp": in_background(smtp_mailer),
    "async-smtp": async_smtp_mailer,
    "background-async-smtp": in_background(async_smtp_mailer),
}


@pytest.fixture(params=list(FACTORIES))
def under_test(request: pytest.FixtureRequest) -> Iterator[MailerUnderTest]:
    with FACTORIES[request.param]() as under_test:
        yield under_test


def build_message() -> EmailMessage:
    """A complete message as the service hands it over, plus Cc and Bcc to ignore."""
    message = EmailMessage()
    message["From"] = f"Client Panel <{SENDER}>"
    message["To"] = f"Ana Muñoz <{RECIPIENT}>"
    message["Cc"] = CC
    message["Bcc"] = BCC
    message["Subject"] = "Sus datos de acceso al panel de clientes"
    message["Date"] = format_datetime(datetime(2027, 1, 15, 10, 30, tzinfo=UTC))
    message["Message-ID"] = make_msgid(domain="panel.example.com")
    message.set_content(TEXT)
    message.add_alternative(HTML, subtype="html")
    return message


def lines(text: str) -> list[str]:
    return text.replace("\r\n", "\n").split("\n")


def events(caplog: pytest.LogCaptureFixture, name: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "event", None) == name]


# --- the contract ---------------------------------------------------------------------------


def test_is_a_mailer(under_test: MailerUnderTest) -> None:
    """Each mailer meets its protocol: Mailer, or AsyncMailer for an asyncio one."""
    assert isinstance(under_test.mailer, credrecovery.Mailer)
    if under_test.async_mailer is not None:
        assert isinstance(under_test.async_mailer, AsyncMailer)
        assert asyncio.iscoroutinefunction(under_test.async_mailer.send)


def test_delivers_once_with_headers_and_both_parts(under_test: MailerUnderTest) -> None:
    sent = build_message()
    under_test.mailer.send(sent)
    [received] = under_test.delivered()
    for header in ("From", "To", "Subject", "Date", "Message-ID"):
        assert str(received[header]) == str(sent[header]), header
    assert received.get_content_type() == "multipart/alternative"
    plain = received.get_body(("plain",))
    html = received.get_body(("html",))
    assert plain is not None and html is not None
    # SMTP carries lines ending in CRLF, and the parser keeps them.
    assert lines(plain.get_content()) == lines(TEXT)
    assert lines(html.get_content()) == lines(HTML)


def test_recipients_are_exactly_the_to_address(under_test: MailerUnderTest) -> None:
    """Only the To address receives the message; Cc and Bcc headers add nobody."""
    under_test.mailer.send(build_message())
    [received] = under_test.delivered()
    assert [a.addr_spec for a in received["To"].addresses] == [RECIPIENT]
    if under_test.envelope_recipients is not None:
        assert under_test.envelope_recipients() == [(RECIPIENT,)]


@pytest.mark.parametrize("kind", list(FAILURES))
def test_failure(
    under_test: MailerUnderTest, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A direct mailer raises; a background one logs and, if worth it, tries again."""
    if under_test.fail_next is None:
        pytest.skip("MemoryMailer has no failure mode")
    caplog.set_level(logging.INFO, logger="credrecovery")
    temporary = FAILURES[kind][1]
    under_test.fail_next(kind)
    message = build_message()

    if not under_test.background:
        with pytest.raises(DeliveryFailed) as caught:
            under_test.mailer.send(message)
        assert caught.value.temporary is temporary
        assert caught.value.__cause__ is not None
        assert under_test.delivered() == []
        # The failure was the message's, not the mailer's: the next one goes through.
        under_test.mailer.send(message)
        assert len(under_test.delivered()) == 1
        return

    under_test.mailer.send(message)  # only queues: never raises for a delivery failure
    delivered = under_test.delivered()
    failed = events(caplog, "delivery_failed")
    if temporary:
        # Retried after a backoff, and then delivered once.
        assert len(delivered) == 1
        assert failed == []
        assert len(events(caplog, "delivery_retry")) == 1
    else:
        assert delivered == []
        [record] = failed
        assert record.levelno == logging.ERROR
        assert record.message_id == message["Message-ID"]
        assert record.error == "DeliveryFailed"
        assert events(caplog, "delivery_retry") == []
