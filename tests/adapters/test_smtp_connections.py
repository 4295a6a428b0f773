"""SMTPMailer keeps its connection between mails, against a real SMTP server on 127.0.0.1.

The server counts the connections it sees, so each test checks from the far
end how many were opened and closed, that RSET went between mails, and that
every mail arrived exactly once, whatever happened to the kept connection.
"""

from __future__ import annotations

import os
import pickle
import signal
import socket
import threading
import time
from collections.abc import Iterator
from email.message import EmailMessage

import pytest

from credrecovery.exceptions import DeliveryFailed
from credrecovery.smtp import SMTPMailer
from helpers.smtp_server import RunningSMTPServer
from helpers.smtp_sessions import (
    SessionCounter,
    ThreadsSince,
    counter,
    counting_smtp_server,
    eventually,
    received_ids,
    turn_counting_proxy,
)
from helpers.smtp_sessions import numbered_message as make_message

PASSWORD = "s3cr3t-SMTP-passw0rd"
IDLE_THREAD = "credrecovery-smtp-idle"


@pytest.fixture(params=[False, True], ids=["one-by-one", "pipelining"])
def server(request: pytest.FixtureRequest) -> Iterator[RunningSMTPServer]:
    """A server without PIPELINING, and one with (RSET then goes with the next mail)."""
    with counting_smtp_server(SessionCounter(pipelining=request.param)) as running:
        yield running


_threads = ThreadsSince()


@pytest.fixture(autouse=True)
def earlier_threads() -> None:
    global _threads
    _threads = ThreadsSince()


def idle_threads() -> list[threading.Thread]:
    """The mailers' threads of that name this test started and that still run."""
    return _threads.named(IDLE_THREAD)


def test_mails_share_one_connection_with_rset_between(server: RunningSMTPServer) -> None:
    """Five mails go over one connection, each once, with RSET between them."""
    mailer = SMTPMailer(server.host, server.port)
    messages = [make_message(n) for n in range(5)]
    for message in messages:
        mailer.send(message)
    handler = counter(server)
    assert handler.opened == 1
    assert handler.rsets >= 4
    assert received_ids(server) == [str(m["Message-ID"]) for m in messages]
    mailer.close()
    assert eventually(lambda: handler.closed == 1)
    assert handler.quits == 1


def test_a_server_offering_pipelining_costs_two_round_trips_a_mail(
    server: RunningSMTPServer,
) -> None:
    """With PIPELINING, RSET, MAIL FROM, RCPT TO and DATA go as one write, then the message:
    two round trips a mail where one command at a time takes five."""

    def turns(mails: int) -> int:
        with turn_counting_proxy(server.port) as proxy:
            mailer = SMTPMailer(proxy.host, proxy.port)
            for n in range(mails):
                mailer.send(make_message(n))
            mailer.close()
            return proxy.join()

    assert turns(6) - turns(2) == 4 * (2 if server.handler.pipelining else 5)
    assert len(server.received) == 8


def test_the_mailer_tells_once_a_message_is_written_and_before_its_reply(
    server: RunningSMTPServer,
) -> None:
    """The private callback background delivery composes on: once a mail, after the
    message went and before the server accepted it; never for a mail refused before."""
    seen: list[int] = []
    mailer = SMTPMailer(server.host, server.port)
    mailer._when_written(lambda: seen.append(len(server.received)))
    server.handler.stall("DATA", 0.3)
    mailer.send(make_message(1))
    mailer.send(make_message(2))
    assert seen == [0, 1]
    counter(server).once("RCPT", "550 5.1.1 No such user here")
    with pytest.raises(DeliveryFailed):
        mailer.send(make_message(3))
    assert seen == [0, 1]
    mailer.close()


def test_per_mail_setting_opens_a_connection_for_each_mail(server: RunningSMTPServer) -> None:
    """reuse_connections=False: one connection per mail, closed with QUIT, as before."""
    mailer = SMTPMailer(server.host, server.port, reuse_connections=False)
    for n in range(3):
        mailer.send(make_message(n))
    handler = counter(server)
    assert eventually(lambda: handler.closed == 3)
    assert (handler.opened, handler.quits, handler.rsets) == (3, 3, 0)
    assert len(server.received) == 3
    assert idle_threads() == []
    assert "reuse_connections=False" in repr(mailer)


def test_a_connection_the_server_dropped_is_replaced(server: RunningSMTPServer) -> None:
    """The server hangs up between mails: the next mail goes once, over a new connection."""
    mailer = SMTPMailer(server.host, server.port)
    first, second = make_message(1), make_message(2)
    mailer.send(first)
    counter(server).drop_all()
    mailer.send(second)
    assert received_ids(server) == [str(first["Message-ID"]), str(second["Message-ID"])]
    assert counter(server).opened == 2
    mailer.close()


def test_a_connection_past_the_server_timeout_is_replaced() -> None:
    """The server closes a connection idle past its own timeout: the next mail reconnects."""
    with counting_smtp_server(session_timeout=0.3) as server:
        mailer = SMTPMailer(server.host, server.port)
        mailer.send(make_message(1))
        handler = counter(server)
        assert eventually(lambda: handler.closed == 1)
        mailer.send(make_message(2))
        assert len(server.received) == 2
        assert handler.opened == 2
        mailer.close()


def test_421_at_mail_from_on_a_kept_connection_is_sent_once_over_a_new_one(
    server: RunningSMTPServer,
) -> None:
    """A server closing down (421 to MAIL FROM) took nothing: a new connection sends it."""
    mailer = SMTPMailer(server.host, server.port)
    mailer.send(make_message(1))
    counter(server).once("MAIL", "421 4.3.2 Service shutting down")
    second = make_message(2)
    mailer.send(second)
    assert received_ids(server)[1:] == [str(second["Message-ID"])]
    assert counter(server).opened == 2
    mailer.close()


def test_a_kept_connection_that_refuses_rset_is_replaced(server: RunningSMTPServer) -> None:
    """RSET refused between mails: the connection is not used again, and the next mail
    goes once, over a new one (with PIPELINING, after MAIL FROM went behind the RSET)."""
    mailer = SMTPMailer(server.host, server.port)
    # Without PIPELINING the RSET goes as the first mail is through, its answer read later.
    counter(server).once("RSET", "554 5.5.0 Transaction failed")
    mailer.send(make_message(1))
    second = make_message(2)
    mailer.send(second)
    assert received_ids(server)[1:] == [str(second["Message-ID"])]
    assert counter(server).opened == 2
    mailer.close()


@pytest.mark.parametrize(
    ("command", "reply", "temporary"),
    [
        ("RCPT", "550 5.1.1 No such user here", False),
        ("RCPT", "451 4.3.0 Try again later", True),
        ("DATA", "451 4.3.0 Try again later", True),
        ("DATA", "554 5.6.0 Message refused", False),
    ],
)
def test_refusals_on_a_kept_connection_fail_as_before(
    server: RunningSMTPServer, command: str, reply: str, temporary: bool
) -> None:
    """A refusal over a kept connection is the same DeliveryFailed, and is not sent again."""
    mailer = SMTPMailer(server.host, server.port)
    mailer.send(make_message(1))
    counter(server).once(command, reply)
    with pytest.raises(DeliveryFailed) as caught:
        mailer.send(make_message(2))
    assert caught.value.temporary is temporary
    assert caught.value.smtp_code == int(reply[:3])
    assert len(server.received) == 1
    assert counter(server).opened == 1
    # The connection of a failed mail is not kept: the next mail opens another.
    mailer.send(make_message(3))
    assert counter(server).opened == 2
    mailer.close()


def test_a_server_gone_for_good_fails_temporarily() -> None:
    """A kept connection whose server has stopped: the new connection fails, as before."""
    with counting_smtp_server() as server:
        mailer = SMTPMailer(server.host, server.port, timeout=2)
        mailer.send(make_message(1))
    with pytest.raises(DeliveryFailed) as caught:
        mailer.send(make_message(2))
    assert caught.value.temporary is True
    assert "could not reach the SMTP server" in str(caught.value)
    mailer.close()


def test_an_idle_connection_is_closed_after_idle_timeout(server: RunningSMTPServer) -> None:
    """After idle_timeout without a mail the mailer closes its connection, and its thread ends."""
    mailer = SMTPMailer(server.host, server.port, idle_timeout=0.3)
    mailer.send(make_message(1))
    handler = counter(server)
    assert handler.closed == 0
    assert eventually(lambda: handler.closed == 1)
    assert handler.quits == 1
    assert eventually(lambda: idle_threads() == [])
    mailer.send(make_message(2))
    assert handler.opened == 2
    mailer.close()


def test_an_old_connection_is_not_used_again(server: RunningSMTPServer) -> None:
    """A connection opened max_connection_age ago serves no further mail."""
    mailer = SMTPMailer(server.host, server.port, max_connection_age=0.2)
    mailer.send(make_message(1))
    time.sleep(0.3)
    mailer.send(make_message(2))
    assert counter(server).opened == 2
    assert len(server.received) == 2
    mailer.close()


def test_close_closes_the_kept_connection_and_the_mailer_stays_usable(
    server: RunningSMTPServer,
) -> None:
    """close() says QUIT on the kept connection and ends the idle thread; sending goes on."""
    mailer = SMTPMailer(server.host, server.port)
    mailer.send(make_message(1))
    assert len(idle_threads()) == 1
    mailer.close()
    handler = counter(server)
    assert eventually(lambda: handler.closed == 1)
    assert handler.quits == 1
    assert idle_threads() == []
    mailer.close()
    mailer.send(make_message(2))
    assert handler.opened == 2
    mailer.close()


def test_threads_share_a_mailer_each_mail_once(server: RunningSMTPServer) -> None:
    """Four threads sending at once use at most four connections; every mail arrives once."""
    mailer = SMTPMailer(server.host, server.port)
    messages = [make_message(n) for n in range(40)]
    failures: list[BaseException] = []

    def send(part: list[EmailMessage]) -> None:
        try:
            for message in part:
                mailer.send(message)
        except BaseException as exc:  # noqa: BLE001 - reported below
            failures.append(exc)

    threads = [threading.Thread(target=send, args=(messages[n::4],)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert sorted(received_ids(server)) == sorted(str(m["Message-ID"]) for m in messages)
    assert 1 <= counter(server).opened <= 4
    mailer.close()
    assert eventually(lambda: counter(server).closed == counter(server).opened)


def test_a_pickled_mailer_carries_settings_and_no_connection(server: RunningSMTPServer) -> None:
    """Pickling a mailer with a kept connection takes its settings only; the copy connects anew."""
    mailer = SMTPMailer(server.host, server.port)
    mailer.send(make_message(1))
    copy = pickle.loads(pickle.dumps(mailer))
    assert repr(copy) == repr(mailer)
    copy.send(make_message(2))
    assert counter(server).opened == 2
    copy.close()
    mailer.close()


def test_repr_and_vars_show_no_password() -> None:
    """The connection settings add nothing secret to repr."""
    mailer = SMTPMailer(
        "smtp.hosting.example",
        587,
        security="starttls",
        username="panel",
        password=PASSWORD,
        idle_timeout=5,
    )
    assert PASSWORD not in repr(mailer)
    assert PASSWORD not in repr(vars(mailer))


def test_the_local_host_name_is_looked_up_once(
    server: RunningSMTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without local_hostname, this machine's name is looked up once, not per connection."""
    lookups: list[str] = []
    real = socket.getfqdn

    def counted(name: str = "") -> str:
        lookups.append(name)
        return real(name)

    monkeypatch.setattr(socket, "getfqdn", counted)
    mailer = SMTPMailer(server.host, server.port, reuse_connections=False)
    for n in range(3):
        mailer.send(make_message(n))
    assert len(lookups) == 1
    helos = {mail.helo for mail in server.received}
    assert len(helos) == 1


@pytest.mark.parametrize(
    "kwargs",
    [
        {"idle_timeout": 0},
        {"idle_timeout": float("inf")},
        {"max_connection_age": -1},
        {"max_connection_age": True},
        {"reuse_connections": "yes"},
    ],
)
def test_bad_connection_settings_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        SMTPMailer("smtp.hosting.example", **kwargs)  # type: ignore[arg-type]


def test_the_message_is_left_unchanged(server: RunningSMTPServer) -> None:
    """SMTPMailer never changes the message it is given, so delivery need not copy it."""
    mailer = SMTPMailer(server.host, server.port)
    message = make_message(1)
    message.add_alternative("<p>Número 1</p>", subtype="html")
    before = message.as_bytes()
    mailer.send(message)
    mailer.send(message)
    assert message.as_bytes() == before
    assert len(server.received) == 2
    mailer.close()


class Interrupted(BaseException):
    """Stands for a green thread's Timeout or an interrupt, which derive from BaseException."""


def test_an_interrupted_mail_leaves_no_connection_behind(server: RunningSMTPServer) -> None:
    """A BaseException in the middle of a mail drops its connection; the next mail opens anew."""
    mailer = SMTPMailer(server.host, server.port)
    mailer.send(make_message(1))
    handler = counter(server)
    handler.stall("DATA", 1.0)

    def interrupt(signum: int, frame: object) -> None:
        raise Interrupted

    previous = signal.signal(signal.SIGUSR1, interrupt)
    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGUSR1))
    try:
        timer.start()
        with pytest.raises(Interrupted):
            mailer.send(make_message(2))
    finally:
        timer.cancel()
        signal.signal(signal.SIGUSR1, previous)
    handler.delays.clear()
    third = make_message(3)
    mailer.send(third)
    assert handler.opened == 2
    assert str(third["Message-ID"]) in received_ids(server)
    mailer.close()
    assert eventually(lambda: handler.closed == 2)
    assert idle_threads() == []
