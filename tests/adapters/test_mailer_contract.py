"""The Mailer contract of :mod:`credrecovery.testing`, run on every shipped mailer.

MemoryMailer, SMTPMailer and AsyncSMTPMailer talking to a real SMTP server on
127.0.0.1, and a BackgroundMailer around each of them. Each class here only
builds its mailer and says what reached the far end and how to make the next
delivery fail; the tests are the contract's.
"""

from __future__ import annotations

from collections.abc import Iterator
from email.message import EmailMessage
from typing import Any

import pytest

from credrecovery.async_smtp import AsyncSMTPMailer
from credrecovery.memory import MemoryMailer
from credrecovery.smtp import SMTPMailer
from credrecovery.testing import AsyncMailerContract, MailerContract
from helpers.smtp_server import RecordingHandler, RunningSMTPServer, running_smtp_server

#: What the server answers for each failure kind.
REPLIES = {
    "permanent": "550 5.1.1 No such user here",
    "temporary": "451 4.3.0 Try again later",
}


class OneShotHandler(RecordingHandler):
    """A RecordingHandler whose replacement replies apply to one command only."""

    async def _intercept(self, command: str) -> str | None:
        reply = await super()._intercept(command)
        self.replies.pop(command, None)
        return reply


class TestMemoryMailer(MailerContract):
    @pytest.fixture
    def mailer(self) -> MemoryMailer:
        return MemoryMailer()

    def delivered(self, mailer: MemoryMailer) -> list[EmailMessage]:
        return list(mailer.outbox)


class TestMemoryMailerInBackground(TestMemoryMailer):
    background = True


class ThroughSMTPServer:
    """Hooks for a mailer that talks to the test SMTP server the fixture starts."""

    server: RunningSMTPServer

    @pytest.fixture
    def server(self) -> Iterator[RunningSMTPServer]:
        with running_smtp_server(OneShotHandler()) as server:
            self.server = server
            yield server

    def delivered(self, mailer: Any) -> list[EmailMessage]:
        return [mail.message for mail in self.server.received]

    def envelope_recipients(self, mailer: Any) -> list[tuple[str, ...]]:
        return [mail.rcpt_tos for mail in self.server.received]

    def fail_next(self, mailer: Any, kind: str) -> None:
        self.server.handler.answer("RCPT", REPLIES[kind])


class TestSMTPMailer(ThroughSMTPServer, MailerContract):
    @pytest.fixture
    def mailer(self, server: RunningSMTPServer) -> SMTPMailer:
        return SMTPMailer(server.host, server.port, timeout=5)


class TestSMTPMailerInBackground(TestSMTPMailer):
    background = True


class TestAsyncSMTPMailer(ThroughSMTPServer, AsyncMailerContract):
    @pytest.fixture
    def mailer(self, server: RunningSMTPServer) -> AsyncSMTPMailer:
        return AsyncSMTPMailer(server.host, server.port, timeout=5)


class TestAsyncSMTPMailerInBackground(TestAsyncSMTPMailer):
    background = True
