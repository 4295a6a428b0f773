"""Delivery workers keep their SMTP connection between mails, against a real server on 127.0.0.1.

The delivery process, background threads and a Celery worker each send a row
of confirmation mails; the server counts the connections they took. The
mailer each attempt receives is the composed message itself for the
library's SMTP mailers, and a copy for a host's mailer that a retry may follow.
"""

from __future__ import annotations

import time
from email.message import EmailMessage
from typing import Literal

import pytest

from credrecovery import BackgroundMailer, ConfirmationJob, RecoveryService, RetryPolicy
from credrecovery.delivery._retry import attempt_message
from credrecovery.memory import MemoryDirectory, MemoryMailer
from credrecovery.smtp import SMTPMailer
from helpers.celery_app import build
from helpers.celery_worker import PRIMARY, StartWorker, settings, start_worker, wait_for
from helpers.constants import CONFIRM_URL, SECRET, SENDER
from helpers.redis_server import redis_url
from helpers.smtp_sessions import SessionCounter, counter, counting_smtp_server, eventually

__all__ = ["redis_url", "settings", "start_worker"]


def jobs(count: int) -> list[ConfirmationJob]:
    return [
        ConfirmationJob(
            recipient=f"client{n}@example.com",
            name=f"Client {n}",
            language="en",
            sender=SENDER,
            clients=((str(5000 + n), "b" * 22),),
            issued_at=time.time(),
        )
        for n in range(count)
    ]


def service(mailer: SMTPMailer, delivery: BackgroundMailer) -> RecoveryService:
    return RecoveryService(
        MemoryDirectory(),
        mailer,
        secret_key=SECRET,
        confirm_url=CONFIRM_URL,
        sender=SENDER,
        rate_limits=None,
        delivery=delivery,
    )


@pytest.mark.slow  # starts the delivery process
@pytest.mark.parametrize("isolation", ["auto", "thread"])
def test_a_delivery_worker_keeps_one_connection_and_close_ends_it(
    isolation: Literal["auto", "thread"],
) -> None:
    """Six confirmation mails through one worker take one connection; close() says QUIT."""
    with counting_smtp_server() as server:
        mailer = SMTPMailer(server.host, server.port)
        delivery = BackgroundMailer(mailer, delay=(0.0, 0.0), workers=1, isolation=isolation)
        with service(mailer, delivery):
            assert (delivery.process_id is not None) is (isolation == "auto")
            for job in jobs(6):
                delivery.submit(job)
            assert delivery.flush(30)
            assert eventually(lambda: len(server.received) == 6)
            handler = counter(server)
            assert handler.opened == 1
            assert handler.rsets >= 5
            assert sorted(mail.rcpt_tos[0] for mail in server.received) == sorted(
                f"client{n}@example.com" for n in range(6)
            )
        assert eventually(lambda: handler.closed == 1)
        assert handler.quits == 1


@pytest.mark.slow  # starts the delivery process
def test_the_delivery_process_reconnects_once_the_server_dropped_it() -> None:
    """A dropped connection between mails costs the delivery process no mail, and no double."""
    with counting_smtp_server() as server:
        mailer = SMTPMailer(server.host, server.port)
        delivery = BackgroundMailer(mailer, delay=(0.0, 0.0), workers=1)
        with service(mailer, delivery):
            first, second = jobs(2)
            delivery.submit(first)
            assert delivery.flush(30)
            counter(server).drop_all()
            delivery.submit(second)
            assert delivery.flush(30)
        assert [mail.rcpt_tos for mail in server.received] == [
            ("client0@example.com",),
            ("client1@example.com",),
        ]
        assert counter(server).opened == 2


class ChangingMailer(MemoryMailer):
    """A host's mailer that scribbles on each message it is given."""

    def send(self, message: EmailMessage) -> None:
        super().send(message)
        message.replace_header("Subject", "changed by the mailer")


def test_an_attempt_hands_over_the_message_or_a_copy_a_retry_needs() -> None:
    """The library's SMTP mailers get the message itself; a host's mailer a copy, until the last."""
    message = EmailMessage()
    message["Subject"] = "composed"
    policy = RetryPolicy(max_attempts=3)
    smtp = SMTPMailer("127.0.0.1")
    assert attempt_message(smtp, message, attempt=1, policy=policy) is message
    host = ChangingMailer()
    copied = attempt_message(host, message, attempt=1, policy=policy)
    assert copied is not message
    assert copied.as_bytes() == message.as_bytes()
    assert attempt_message(host, message, attempt=3, policy=policy) is message
    assert attempt_message(host, message, attempt=1, policy=RetryPolicy(max_attempts=1)) is message


@pytest.mark.slow  # starts a Celery worker
@pytest.mark.redis
def test_a_celery_worker_keeps_one_connection(
    settings: dict[str, str], start_worker: StartWorker
) -> None:
    """Three jobs through one Celery worker process go over one SMTP connection."""
    with counting_smtp_server() as server:
        start_worker(server)
        _, recovery = build(settings)
        for _ in range(3):
            recovery.request("email", PRIMARY)
        assert wait_for(lambda: len(server.received) >= 3)
        assert counter(server).opened == 1
        assert [mail.rcpt_tos for mail in server.received] == [(PRIMARY,)] * 3


@pytest.mark.slow  # starts the delivery process
def test_the_delivery_process_pipelines_and_refusals_leave_the_rest_going() -> None:
    """To a server offering PIPELINING, the delivery process sends every mail it may over
    kept connections, two recipients refused on the way, and its queue ends empty."""
    handler = SessionCounter(pipelining=True)
    handler.refuse("client1@example.com", "550 5.1.1 No such user here")
    handler.refuse("client4@example.com", "550 5.1.1 No such user here")
    with counting_smtp_server(handler) as server:
        mailer = SMTPMailer(server.host, server.port)
        delivery = BackgroundMailer(mailer, delay=(0.0, 0.0))
        recovery = service(mailer, delivery)
        assert delivery.process_id is not None
        for job in jobs(12):
            delivery.submit(job)
        assert recovery.flush(timeout=20)
        assert delivery.pending == 0
        delivered = sorted(mail.rcpt_tos[0] for mail in server.received)
        assert delivered == sorted(f"client{n}@example.com" for n in range(12) if n not in (1, 4))
        # The refused mails' connections are not kept; the others carry on.
        assert counter(server).opened <= 4 + 2
        recovery.close()
