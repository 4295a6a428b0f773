"""close() on every delivery: it delivers what it holds, may be called twice, then refuses.

A refused job is logged as ``mail_dropped`` by the service, which answers as
usual; a direct ``submit`` or ``send`` raises ``DeliveryFailed`` with
``temporary`` false.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from email.message import EmailMessage
from typing import Any

import pytest
import redis
from celery import Celery
from passlib.context import CryptContext

from credrecovery import BackgroundMailer, ConfirmationJob, DeliveryFailed, RecoveryService
from credrecovery.celery import CeleryDelivery, RedisDeliveryRecords
from credrecovery.delivery import InlineDelivery
from credrecovery.memory import MemoryDirectory, MemoryMailer
from credrecovery.smtp import SMTPMailer
from helpers import CONFIRM_URL, SECRET, SENDER
from helpers.redis_server import redis_url
from helpers.smtp_server import RunningSMTPServer, running_smtp_server

__all__ = ["redis_url"]

PRIMARY = "ejemplo@ejemploxmundo.com.ar"


@pytest.fixture
def server() -> Iterator[RunningSMTPServer]:
    with running_smtp_server() as running:
        yield running


def service_with(
    directory: MemoryDirectory, ctx: CryptContext, mailer: Any, delivery: Any
) -> RecoveryService:
    return RecoveryService(
        directory,
        mailer,
        secret_key=SECRET,
        confirm_url=CONFIRM_URL,
        sender=SENDER,
        crypt_context=ctx,
        rate_limits=None,
        delivery=delivery,
    )


def dropped(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        str(getattr(r, "reason", ""))
        for r in caplog.records
        if getattr(r, "event", None) == "mail_dropped"
    ]


def a_message() -> EmailMessage:
    message = EmailMessage()
    message["From"] = "panel@example.com"
    message["To"] = PRIMARY
    message["Subject"] = "after close"
    message["Message-ID"] = "<close@panel.example.com>"
    message.set_content("body")
    return message


def a_job() -> ConfirmationJob:
    return ConfirmationJob(
        recipient=PRIMARY,
        name="",
        language="en",
        sender=SENDER,
        clients=(("9000", "binding"),),
        issued_at=0.0,
    )


def test_a_closed_delivery_process_stays_closed(
    server: RunningSMTPServer,
    directory: MemoryDirectory,
    ctx: CryptContext,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """After close(), flush and pending start no new process; requests and sends are refused."""
    caplog.set_level(logging.INFO, logger="credrecovery")
    smtp = SMTPMailer(server.host, server.port, timeout=5)
    delivery = BackgroundMailer(smtp, delay=(0.0, 0.0), isolation="process")
    service = service_with(directory, ctx, smtp, delivery)
    assert delivery.process_id is not None
    service.request("client_number", "9000")
    service.close()
    assert [mail.rcpt_tos for mail in server.received] == [(PRIMARY,)]
    service.close()
    assert delivery.flush(timeout=5) is True
    assert delivery.pending == 0
    assert delivery.process_id is None
    with pytest.raises(DeliveryFailed) as refused:
        delivery.send(a_message())
    assert refused.value.temporary is False
    service.request("client_number", "9000")
    assert dropped(caplog) == ["the background mailer is closed"]
    assert delivery.process_id is None
    assert len(server.received) == 1


def test_a_closed_thread_mailer_may_be_closed_again() -> None:
    """In threads: close() twice is fine, and the second has nothing to deliver."""
    inner = MemoryMailer()
    mailer = BackgroundMailer(inner, isolation="thread")
    mailer.send(a_message())
    mailer.close(timeout=5)
    mailer.close(timeout=5)
    assert len(inner.outbox) == 1
    assert mailer.flush(timeout=1) is True
    with pytest.raises(DeliveryFailed, match="closed"):
        mailer.send(a_message())


def test_inline_delivery_refuses_after_close(
    directory: MemoryDirectory,
    ctx: CryptContext,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """delivery="sync" sends within request() until close(), then drops and says why."""
    caplog.set_level(logging.INFO, logger="credrecovery")
    mailer = MemoryMailer()
    service = service_with(directory, ctx, mailer, "sync")
    service.request("client_number", "9000")
    assert len(mailer.outbox) == 1
    service.close()
    service.close()
    service.request("client_number", "9000")
    assert len(mailer.outbox) == 1
    assert dropped(caplog) == ["the inline delivery is closed"]
    inline = InlineDelivery(mailer)
    inline.close()
    with pytest.raises(DeliveryFailed) as refused:
        inline.submit(a_job())
    assert refused.value.temporary is False


def test_celery_delivery_refuses_after_close(
    server: RunningSMTPServer,
    directory: MemoryDirectory,
    ctx: CryptContext,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A closed CeleryDelivery publishes nothing more; the service logs the drop."""
    caplog.set_level(logging.INFO, logger="credrecovery")
    app = Celery("close-test", broker="memory://")
    app.conf.task_always_eager = True  # each published job runs here at once
    smtp = SMTPMailer(server.host, server.port, timeout=5)
    delivery = CeleryDelivery(app, smtp, delay=(0.0, 0.0), records=None)
    service = service_with(directory, ctx, smtp, delivery)
    service.request("client_number", "9000")
    assert len(server.received) == 1
    service.close()
    service.close()
    service.request("client_number", "9000")
    assert len(server.received) == 1
    assert dropped(caplog) == ["the Celery delivery is closed"]
    assert delivery.flush() is True


@pytest.mark.redis
def test_redis_records_close_the_connection_they_made(redis_url: str) -> None:
    """From a URL: close() ends its server connection; a host's client stays open."""
    admin = redis.Redis.from_url(redis_url)
    records = RedisDeliveryRecords(redis_url)
    assert records.claim("a" * 32, 5.0).token is not None
    connection_id = records.client.client_id()
    assert admin.execute_command("CLIENT", "LIST", "ID", connection_id)
    records.close()
    records.close()
    deadline = time.monotonic() + 5
    while admin.execute_command("CLIENT", "LIST", "ID", connection_id):
        assert time.monotonic() < deadline, "the records' connection is still open"
        time.sleep(0.05)
    with pytest.raises(DeliveryFailed, match="closed"):
        records.claim("b" * 32, 5.0)
    hosts = redis.Redis.from_url(redis_url)
    theirs = RedisDeliveryRecords(hosts)
    assert theirs.claim("c" * 32, 5.0).token is not None
    theirs.close()
    assert hosts.ping()
    with pytest.raises(DeliveryFailed, match="closed"):
        theirs.finish("c" * 32, "token", 5.0)
    hosts.close()
    admin.close()
