"""A real SMTP server on 127.0.0.1 that counts its connections, for tests of kept connections.

Typical use::

    with counting_smtp_server() as server:
        mailer.send(first)
        mailer.send(second)
    assert server.handler.opened == 1
    assert server.handler.rsets >= 1

``session_timeout`` closes a connection idle for that long, as a real
server's timeout does; :meth:`SessionCounter.drop_all` hangs up on every
open connection, as a restarting server would; :meth:`SessionCounter.once`
answers the next ``command`` with a reply, then goes back to accepting.

:func:`turn_counting_proxy` stands between a client and a server and counts
the client's turns: how often it spoke again after the server had, which is
the number of round trips it waited for.
"""

from __future__ import annotations

import asyncio
import contextlib
import selectors
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from helpers.smtp_server import (
    LOOPBACK,
    RecordingHandler,
    RunningSMTPServer,
    _LoopbackController,
    started,
)

__all__ = [
    "SessionCounter",
    "ThreadsSince",
    "counter",
    "counting_smtp_server",
    "eventually",
    "numbered_message",
    "received_ids",
    "turn_counting_proxy",
]


@dataclass
class SessionCounter(RecordingHandler):
    """A RecordingHandler that also counts connections opened and closed, RSETs and QUITs."""

    opened: int = 0
    closed: int = 0
    rsets: int = 0
    quits: int = 0
    #: Replies for the next command of that name only.
    once_replies: dict[str, str] = field(default_factory=dict)
    sessions: list[SMTP] = field(default_factory=list)
    loop: asyncio.AbstractEventLoop | None = None

    def once(self, command: str, reply: str) -> None:
        """Answer the next ``command`` (``RSET``, ``MAIL``, ``RCPT``, ``DATA``) with ``reply``."""
        self.once_replies[command.upper()] = reply

    async def _intercept(self, command: str) -> str | None:
        reply = self.once_replies.pop(command, None)
        return reply if reply is not None else await super()._intercept(command)

    async def handle_RSET(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.rsets += 1
        return self.once_replies.pop("RSET", "250 OK")

    async def handle_QUIT(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.quits += 1
        return "221 Bye"

    def drop_all(self) -> None:
        """Hang up on every open connection, and wait until the server has."""
        assert self.loop is not None
        done = threading.Event()

        def hang_up() -> None:
            for session in self.sessions:
                if isinstance(session.transport, asyncio.Transport):
                    session.transport.close()
            self.loop.call_soon(done.set)  # type: ignore[union-attr]

        self.loop.call_soon_threadsafe(hang_up)
        assert done.wait(5)
        assert eventually(lambda: self.closed == self.opened)


class _CountingSession(SMTP):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        handler: SessionCounter = self.event_handler
        handler.opened += 1
        handler.sessions.append(self)

    def connection_lost(self, error: Exception | None) -> None:
        super().connection_lost(error)
        handler: SessionCounter = self.event_handler
        handler.closed += 1
        handler.sessions.remove(self)


@contextmanager
def counting_smtp_server(
    handler: SessionCounter | None = None, *, session_timeout: float | None = None
) -> Iterator[RunningSMTPServer]:
    """Run a counting SMTP server on 127.0.0.1 and a free port for the ``with`` block."""
    handler = handler if handler is not None else SessionCounter()
    kwargs: dict[str, Any] = {}
    if session_timeout is not None:
        kwargs["timeout"] = session_timeout
    controller = _LoopbackController(
        handler, hostname=LOOPBACK, port=0, server_hostname="localhost", **kwargs
    )
    controller.session_class = _CountingSession
    handler.loop = controller.loop
    with started(controller):
        # The controller's own probe of the port is no client's connection.
        assert eventually(lambda: handler.opened and handler.closed == handler.opened)
        handler.opened = handler.closed = 0
        yield RunningSMTPServer(LOOPBACK, controller.port, handler)


def eventually(check: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Whether ``check()`` holds within ``timeout`` seconds, asked every 10 ms."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def numbered_message(n: int = 0) -> EmailMessage:
    """A small message to ``client<n>@example.com`` with a Message-ID of its own."""
    message = EmailMessage()
    message["From"] = "noreply@hosting.example"
    message["To"] = f"client{n}@example.com"
    message["Subject"] = f"Mail {n}"
    message["Date"] = format_datetime(datetime.now(UTC))
    message["Message-ID"] = make_msgid(domain="hosting.example")
    message.set_content(f"Mail number {n}\n")
    return message


def received_ids(server: RunningSMTPServer) -> list[str]:
    """The Message-IDs of what ``server`` accepted, in order."""
    return [str(mail.message["Message-ID"]) for mail in server.received]


def counter(server: RunningSMTPServer) -> SessionCounter:
    """The counting handler of a server that :func:`counting_smtp_server` started."""
    assert isinstance(server.handler, SessionCounter)
    return server.handler


class ThreadsSince:
    """The threads started since this was made, by name: those of another test left out."""

    def __init__(self) -> None:
        self._earlier = set(threading.enumerate())

    def named(self, name: str) -> list[threading.Thread]:
        """The threads called ``name`` started since, still running."""
        return [t for t in threading.enumerate() if t.name == name and t not in self._earlier]


class TurnCounter:
    """A one-connection TCP proxy on 127.0.0.1 that counts the client's turns.

    A turn is a client write that follows data from the server: a client that
    waits for each reply before its next command takes one per command, one
    that pipelines takes one per group.
    """

    def __init__(self, port: int) -> None:
        self._target = port
        self._listener = socket.create_server((LOOPBACK, 0))
        self.host = LOOPBACK
        self.port: int = self._listener.getsockname()[1]
        self.turns = 0
        self._thread = threading.Thread(target=self._serve, name="turn-counting-proxy")
        self._thread.start()

    def _serve(self) -> None:
        with self._listener:
            client, _address = self._listener.accept()
        server = socket.create_connection((LOOPBACK, self._target))
        other = {client: server, server: client}
        last = server
        with client, server, selectors.DefaultSelector() as selector:
            for end in other:
                selector.register(end, selectors.EVENT_READ)
            while True:
                for key, _events in selector.select():
                    end: socket.socket = key.fileobj  # type: ignore[assignment]
                    try:
                        data = end.recv(65536)
                    except ConnectionResetError:
                        # A client that closes with a reply unread resets.
                        return
                    if not data:
                        return
                    if end is client and last is server:
                        self.turns += 1
                    last = end
                    other[end].sendall(data)

    def join(self) -> int:
        """The client's turns, once one side has hung up."""
        self._thread.join(10)
        assert not self._thread.is_alive()
        return self.turns


@contextmanager
def turn_counting_proxy(port: int) -> Iterator[TurnCounter]:
    """A :class:`TurnCounter` in front of the server on ``port``, for one connection."""
    proxy = TurnCounter(port)
    try:
        yield proxy
    finally:
        if proxy._thread.is_alive():
            # Nobody connected: a connection of our own lets the thread end.
            with contextlib.suppress(OSError):
                socket.create_connection((LOOPBACK, proxy.port)).close()
            proxy._thread.join(10)
