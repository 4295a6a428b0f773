"""The mailer contract: what every mailer does with a message and its failures."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import inspect
import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any, ClassVar

import pytest

from ..delivery.background import BackgroundMailer
from ..delivery.retry import RetryPolicy
from ..exceptions import DeliveryFailed
from ..protocols import (
    AsyncMailer,
    Mailer,
)

# --- mailers --------------------------------------------------------------------------------


_FROM = "panel@example.com"
_RECIPIENT = "ana.munoz@example.org"
_CC = "copia@example.net"
_BCC = "oculta@example.net"
_TEXT = "Hola Ana Muñoz,\n\nSu número de cliente: 1001\nClave: Kq7mZr2WxPd9HtNa\n"
_HTML = "<p>Hola Ana Muñoz,</p>\n<p>Su número de cliente: <b>1001</b></p>\n"

#: Whether each failure kind is worth trying again.
_TEMPORARY = {"permanent": False, "temporary": True}


@dataclasses.dataclass
class MailerUnderTest:
    """What a mailer contract test works on, built by the contract from your fixture.

    :param mailer: the mailer, with a synchronous ``send``; for an asyncio
        mailer, a face that runs its ``send`` to completion; in the background
        variants, the :class:`~credrecovery.BackgroundMailer` around yours.
    :param delivered: the messages that arrived at the far end, once a
        background mailer has drained.
    :param envelope_recipients: the envelope recipients of each message that
        arrived, where there is an envelope.
    :param fail_next: makes the next delivery attempt fail, ``"permanent"``-ly
        or ``"temporary"``-ly; ``None`` where the mailer cannot fail.
    :param async_mailer: the asyncio mailer that ``mailer`` drives, if any.
    """

    mailer: Mailer
    delivered: Callable[[], list[EmailMessage]]
    envelope_recipients: Callable[[], list[tuple[str, ...]]] | None = None
    fail_next: Callable[[str], None] | None = None
    async_mailer: AsyncMailer | None = None

    @property
    def background(self) -> bool:
        """Whether a :class:`~credrecovery.BackgroundMailer` stands in front of the mailer."""
        return isinstance(self.mailer, BackgroundMailer)


def _build_message() -> EmailMessage:
    """A complete message as the service hands it over, plus Cc and Bcc to ignore."""
    message = EmailMessage()
    message["From"] = f"Client Panel <{_FROM}>"
    message["To"] = f"Ana Muñoz <{_RECIPIENT}>"
    message["Cc"] = _CC
    message["Bcc"] = _BCC
    message["Subject"] = "Sus datos de acceso al panel de clientes"
    message["Date"] = format_datetime(datetime(2027, 1, 15, 10, 30, tzinfo=UTC))
    message["Message-ID"] = make_msgid(domain="panel.example.com")
    message.set_content(_TEXT)
    message.add_alternative(_HTML, subtype="html")
    return message


def _lines(text: str) -> list[str]:
    return text.replace("\r\n", "\n").split("\n")


def _events(caplog: pytest.LogCaptureFixture, name: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "event", None) == name]


class _AsyncSend:
    """A Mailer that runs an AsyncMailer's ``send`` to completion on the contract's loop."""

    def __init__(self, mailer: AsyncMailer, runner: asyncio.Runner) -> None:
        self._mailer = mailer
        self._runner = runner

    def send(self, message: EmailMessage) -> None:
        self._runner.run(self._mailer.send(message))


class _MailerTests:
    """The tests of the mailer contract, on the ``mailer_under_test`` fixture, and its hooks."""

    background: ClassVar[bool] = False
    """Run the tests through a :class:`~credrecovery.BackgroundMailer` around your mailer.

    Three attempts, short backoffs; the service sends confirmation mail that way
    by default."""

    def delivered(self, mailer: Any) -> list[EmailMessage]:
        """Return every message that arrived at the far end so far, oldest first.

        Read them where your mailer delivers: a test SMTP server, a fake API,
        a spool directory. This hook is required.

        :param mailer: what your ``mailer`` fixture returned.
        :returns: the messages, parsed.
        """
        raise NotImplementedError("override delivered() to say what reached the far end")

    def envelope_recipients(self, mailer: Any) -> list[tuple[str, ...]] | None:
        """Return the envelope recipients of each message that arrived, if there is an envelope.

        By default ``None``: the check of envelope recipients is left out.

        :param mailer: what your ``mailer`` fixture returned.
        :returns: one tuple of addresses for each delivered message, or ``None``.
        """
        return None

    def fail_next(self, mailer: Any, kind: str) -> None:
        """Make the next delivery attempt fail, and only that one.

        ``"permanent"`` is a failure not worth trying again (a 5xx reply),
        ``"temporary"`` one that is (a 4xx reply); the mailer must then raise
        :class:`~credrecovery.DeliveryFailed` with ``temporary`` set to match.
        By default the failure tests are skipped.

        :param mailer: what your ``mailer`` fixture returned.
        :param kind: ``"permanent"`` or ``"temporary"``.
        """
        pytest.skip("this mailer has no failure mode")

    def _has_failure_mode(self) -> bool:
        return type(self).fail_next is not _MailerTests.fail_next

    @contextlib.contextmanager
    def _under_test(
        self, mailer: Any, face: Mailer, async_mailer: AsyncMailer | None
    ) -> Iterator[MailerUnderTest]:
        def fail_next(kind: str) -> None:
            self.fail_next(mailer, kind)

        def envelope() -> list[tuple[str, ...]]:
            recipients = self.envelope_recipients(mailer)
            assert recipients is not None
            return recipients

        has_envelope = self.envelope_recipients(mailer) is not None
        failing = fail_next if self._has_failure_mode() else None
        if not self.background:
            yield MailerUnderTest(
                face,
                lambda: self.delivered(mailer),
                envelope if has_envelope else None,
                failing,
                async_mailer,
            )
            return
        # An asyncio mailer is handed over as it is: the delivery threads run it.
        retry = RetryPolicy(max_attempts=3, backoff=0.05, max_backoff=0.1)
        with BackgroundMailer(async_mailer or face, retry=retry) as background:

            def delivered() -> list[EmailMessage]:
                assert background.flush(10), "the background mailer did not drain"
                return self.delivered(mailer)

            yield MailerUnderTest(
                background, delivered, envelope if has_envelope else None, failing, async_mailer
            )

    def test_is_a_mailer(self, mailer_under_test: MailerUnderTest) -> None:
        """The mailer meets its protocol: Mailer, or AsyncMailer for an asyncio one."""
        assert isinstance(mailer_under_test.mailer, Mailer)
        if mailer_under_test.async_mailer is not None:
            assert isinstance(mailer_under_test.async_mailer, AsyncMailer)
            assert inspect.iscoroutinefunction(mailer_under_test.async_mailer.send)

    def test_delivers_once_with_headers_and_both_parts(
        self,
        mailer_under_test: MailerUnderTest,
    ) -> None:
        """One message arrives, its headers and both parts as sent."""
        sent = _build_message()
        mailer_under_test.mailer.send(sent)
        [received] = mailer_under_test.delivered()
        for header in ("From", "To", "Subject", "Date", "Message-ID"):
            assert str(received[header]) == str(sent[header]), header
        assert received.get_content_type() == "multipart/alternative"
        plain = received.get_body(("plain",))
        html = received.get_body(("html",))
        assert plain is not None and html is not None
        # SMTP carries lines ending in CRLF, and the parser keeps them.
        assert _lines(plain.get_content()) == _lines(_TEXT)
        assert _lines(html.get_content()) == _lines(_HTML)

    def test_recipients_are_exactly_the_to_address(
        self,
        mailer_under_test: MailerUnderTest,
    ) -> None:
        """Only the To address receives the message; Cc and Bcc headers add nobody."""
        mailer_under_test.mailer.send(_build_message())
        [received] = mailer_under_test.delivered()
        assert [a.addr_spec for a in received["To"].addresses] == [_RECIPIENT]
        if mailer_under_test.envelope_recipients is not None:
            assert mailer_under_test.envelope_recipients() == [(_RECIPIENT,)]

    @pytest.mark.parametrize("kind", list(_TEMPORARY))
    def test_failure(
        self,
        mailer_under_test: MailerUnderTest,
        kind: str,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """A direct mailer raises; a background one logs and, if worth it, tries again."""
        subject = mailer_under_test
        if subject.fail_next is None:
            pytest.skip("this mailer has no failure mode")
        caplog.set_level(logging.INFO, logger="credrecovery")
        temporary = _TEMPORARY[kind]
        subject.fail_next(kind)
        message = _build_message()

        if not subject.background:
            with pytest.raises(DeliveryFailed) as caught:
                subject.mailer.send(message)
            assert caught.value.temporary is temporary
            assert caught.value.__cause__ is not None
            assert subject.delivered() == []
            # The failure was the message's, not the mailer's: the next one goes through.
            subject.mailer.send(message)
            assert len(subject.delivered()) == 1
            return

        subject.mailer.send(message)  # only queues: never raises for a delivery failure
        delivered = subject.delivered()
        failed = _events(caplog, "delivery_failed")
        if temporary:
            # Retried after a backoff, and then delivered once.
            assert len(delivered) == 1
            assert failed == []
            assert len(_events(caplog, "delivery_retry")) == 1
        else:
            assert delivered == []
            [record] = failed
            assert record.levelno == logging.ERROR
            assert getattr(record, "message_id", None) == message["Message-ID"]
            assert getattr(record, "error", None) == "DeliveryFailed"
            assert _events(caplog, "delivery_retry") == []


class MailerContract(_MailerTests):
    """The :class:`~credrecovery.Mailer` contract, for a mailer of your own.

    Subclass it as ``Test...``, define a pytest fixture named ``mailer`` that
    returns (or yields, then cleans up) your mailer, and override
    :meth:`delivered` to return what reached the far end. Override
    :meth:`fail_next` to check failures (the mailer must raise
    :class:`~credrecovery.DeliveryFailed` with the right ``temporary``, and
    :class:`~credrecovery.BackgroundMailer` must retry a temporary one), and
    :meth:`envelope_recipients` where the transport has an envelope. Set
    :attr:`background` in a second subclass to run the same tests through a
    ``BackgroundMailer``.
    """

    @pytest.fixture
    def mailer_under_test(self, mailer: Mailer) -> Iterator[MailerUnderTest]:
        """Your ``mailer``, with the hooks the tests use."""
        with self._under_test(mailer, mailer, None) as subject:
            yield subject


class AsyncMailerContract(_MailerTests):
    """The :class:`~credrecovery.AsyncMailer` contract, for an asyncio mailer of your own.

    The same tests and hooks as :class:`MailerContract`; the ``mailer``
    fixture returns an asyncio mailer, whose ``send`` the contract runs to
    completion on an event loop of its own (or, with :attr:`background`, on
    the delivery threads of a :class:`~credrecovery.BackgroundMailer`).
    """

    @pytest.fixture
    def mailer_under_test(self, mailer: AsyncMailer) -> Iterator[MailerUnderTest]:
        """Your asyncio ``mailer`` behind a synchronous ``send``."""
        with (
            asyncio.Runner() as runner,
            self._under_test(
                mailer,
                _AsyncSend(mailer, runner),
                mailer,
            ) as subject,
        ):
            yield subject
