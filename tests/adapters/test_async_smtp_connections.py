"""AsyncSMTPMailer keeps its connections between mails, against a real SMTP server on 127.0.0.1.

Connections live on the event loop that opened them: the tests run each
scenario in one :func:`asyncio.run`, and check from the server's side how
many connections were opened and closed and that every mail arrived once.
Delivery threads send through the mailer's own loop (``send_from_thread``).
"""

from __future__ import annotations

import asyncio
import pickle
import threading
from collections.abc import Iterator
from email.message import EmailMessage

import pytest

from credrecovery import BackgroundMailer
from credrecovery.async_smtp import AsyncSMTPMailer
from credrecovery.exceptions import DeliveryFailed
from helpers.smtp_server import RunningSMTPServer
from helpers.smtp_sessions import (
    ThreadsSince,
    counter,
    counting_smtp_server,
    eventually,
    received_ids,
)
from helpers.smtp_sessions import numbered_message as make_message

LOOP_THREAD = "credrecovery-smtp-loop"


@pytest.fixture
def server() -> Iterator[RunningSMTPServer]:
    with counting_smtp_server() as running:
        yield running


_threads = ThreadsSince()


@pytest.fixture(autouse=True)
def earlier_threads() -> None:
    global _threads
    _threads = ThreadsSince()


def loop_threads() -> list[threading.Thread]:
    """The mailers' threads of that name this test started and that still run."""
    return _threads.named(LOOP_THREAD)


def test_mails_of_one_loop_share_one_connection(server: RunningSMTPServer) -> None:
    """Five mails in a row on one loop take one connection, with RSET between them."""
    mailer = AsyncSMTPMailer(server.host, server.port)
    messages = [make_message(n) for n in range(5)]

    async def scenario() -> None:
        for message in messages:
            await mailer.send(message)
        await mailer.aclose()

    asyncio.run(scenario())
    handler = counter(server)
    assert handler.opened == 1
    assert handler.rsets == 4
    assert received_ids(server) == [str(m["Message-ID"]) for m in messages]
    assert eventually(lambda: handler.closed == 1)
    assert handler.quits == 1


def test_tasks_at_once_each_mail_once(server: RunningSMTPServer) -> None:
    """Many tasks of one loop sending at once: every mail arrives once, over few connections."""
    mailer = AsyncSMTPMailer(server.host, server.port)
    messages = [make_message(n) for n in range(20)]

    async def scenario() -> None:
        for start in range(0, 20, 4):
            await asyncio.gather(*(mailer.send(m) for m in messages[start : start + 4]))

    asyncio.run(scenario())
    assert sorted(received_ids(server)) == sorted(str(m["Message-ID"]) for m in messages)
    handler = counter(server)
    assert 1 <= handler.opened <= 4
    # asyncio.run's end closed what the loop kept.
    assert eventually(lambda: handler.closed == handler.opened)


def test_the_end_of_the_loop_closes_its_connections(server: RunningSMTPServer) -> None:
    """A connection kept on a loop that ends is closed with it, and the next loop opens anew."""
    mailer = AsyncSMTPMailer(server.host, server.port)
    asyncio.run(mailer.send(make_message(1)))
    handler = counter(server)
    assert eventually(lambda: handler.closed == 1)
    asyncio.run(mailer.send(make_message(2)))
    assert handler.opened == 2
    assert len(server.received) == 2


def test_a_connection_the_server_dropped_is_replaced(server: RunningSMTPServer) -> None:
    """The server hangs up between mails: the next mail goes once, over a new connection."""
    mailer = AsyncSMTPMailer(server.host, server.port)
    first, second = make_message(1), make_message(2)

    async def scenario() -> None:
        await mailer.send(first)
        await asyncio.to_thread(counter(server).drop_all)
        await mailer.send(second)
        await mailer.aclose()

    asyncio.run(scenario())
    assert received_ids(server) == [str(first["Message-ID"]), str(second["Message-ID"])]
    assert counter(server).opened == 2


def test_421_at_mail_from_on_a_kept_connection_is_sent_once_over_a_new_one(
    server: RunningSMTPServer,
) -> None:
    mailer = AsyncSMTPMailer(server.host, server.port)
    second = make_message(2)

    async def scenario() -> None:
        await mailer.send(make_message(1))
        counter(server).once("MAIL", "421 4.3.2 Service shutting down")
        await mailer.send(second)
        await mailer.aclose()

    asyncio.run(scenario())
    assert received_ids(server)[1:] == [str(second["Message-ID"])]
    assert counter(server).opened == 2


@pytest.mark.parametrize(
    ("command", "reply", "temporary"),
    [("RCPT", "550 5.1.1 No such user here", False), ("DATA", "451 4.3.0 Try again later", True)],
)
def test_refusals_on_a_kept_connection_fail_as_before(
    server: RunningSMTPServer, command: str, reply: str, temporary: bool
) -> None:
    """A refusal over a kept connection is the same DeliveryFailed, and is not sent again."""
    mailer = AsyncSMTPMailer(server.host, server.port)

    async def scenario() -> DeliveryFailed:
        await mailer.send(make_message(1))
        counter(server).once(command, reply)
        with pytest.raises(DeliveryFailed) as caught:
            await mailer.send(make_message(2))
        await mailer.aclose()
        return caught.value

    failure = asyncio.run(scenario())
    assert (failure.temporary, failure.smtp_code) == (temporary, int(reply[:3]))
    assert len(server.received) == 1
    assert counter(server).opened == 1


def test_an_idle_connection_is_closed_after_idle_timeout(server: RunningSMTPServer) -> None:
    """A task of the loop closes a connection idle for idle_timeout, with QUIT."""
    mailer = AsyncSMTPMailer(server.host, server.port, idle_timeout=0.3)
    handler = counter(server)

    async def scenario() -> None:
        await mailer.send(make_message(1))
        for _ in range(100):
            if handler.closed:
                break
            await asyncio.sleep(0.02)
        await mailer.send(make_message(2))
        await mailer.aclose()

    asyncio.run(scenario())
    assert handler.quits == 2
    assert handler.opened == 2


def test_per_mail_setting_opens_a_connection_for_each_mail(server: RunningSMTPServer) -> None:
    mailer = AsyncSMTPMailer(server.host, server.port, reuse_connections=False)

    async def scenario() -> None:
        for n in range(3):
            await mailer.send(make_message(n))

    asyncio.run(scenario())
    handler = counter(server)
    assert eventually(lambda: handler.closed == 3)
    assert (handler.opened, handler.quits, handler.rsets) == (3, 3, 0)


def test_delivery_threads_share_the_mailer_loop_and_close_stops_it(
    server: RunningSMTPServer,
) -> None:
    """A BackgroundMailer's threads send over the mailer's kept connection; close() ends it."""
    mailer = AsyncSMTPMailer(server.host, server.port)
    messages = [make_message(n) for n in range(6)]
    with BackgroundMailer(mailer, isolation="thread", workers=1) as delivery:
        for message in messages:
            delivery.send(message)
        assert delivery.flush(10)
        assert len(loop_threads()) == 1
    handler = counter(server)
    assert handler.opened == 1
    assert received_ids(server) == [str(m["Message-ID"]) for m in messages]
    assert eventually(lambda: handler.closed == 1)
    assert handler.quits == 1
    assert loop_threads() == []


def test_a_pickled_mailer_carries_settings_only(server: RunningSMTPServer) -> None:
    mailer = AsyncSMTPMailer(server.host, server.port)
    mailer.send_from_thread(make_message(1))
    copy = pickle.loads(pickle.dumps(mailer))
    assert repr(copy) == repr(mailer)
    copy.send_from_thread(make_message(2))
    assert counter(server).opened == 2
    copy.close()
    mailer.close()
    assert loop_threads() == []


def test_messages_left_unchanged(server: RunningSMTPServer) -> None:
    mailer = AsyncSMTPMailer(server.host, server.port)
    message: EmailMessage = make_message(1)
    message.add_alternative("<p>Número 1</p>", subtype="html")
    before = message.as_bytes()
    mailer.send_from_thread(message)
    mailer.send_from_thread(message)
    mailer.close()
    assert message.as_bytes() == before
    assert len(server.received) == 2


def test_a_cancelled_mail_leaves_no_connection_behind(server: RunningSMTPServer) -> None:
    """A task cancelled in the middle of a mail drops its connection; the next opens anew."""
    mailer = AsyncSMTPMailer(server.host, server.port)
    handler = counter(server)
    third = make_message(3)

    async def scenario() -> None:
        await mailer.send(make_message(1))
        handler.stall("DATA", 1.0)
        task = asyncio.create_task(mailer.send(make_message(2)))
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        handler.delays.clear()
        await mailer.send(third)
        await mailer.aclose()

    asyncio.run(scenario())
    assert handler.opened == 2
    assert str(third["Message-ID"]) in received_ids(server)
    assert eventually(lambda: handler.closed == 2)
