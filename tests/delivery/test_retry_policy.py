"""RetryPolicy: one retry rule for background and Celery delivery, checked against a real server.

The server answers ``451`` to the first recipients it is given, then accepts:
the mail must arrive after exactly the attempts and waits the policy names,
or be given up when the policy says so.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Iterator
from email.message import EmailMessage
from typing import Any

import pytest
from celery import Celery
from passlib.context import CryptContext

import credrecovery
import credrecovery.delivery
from credrecovery import BackgroundMailer, RecoveryService, RetryPolicy
from credrecovery.celery import CeleryDelivery
from credrecovery.memory import MemoryDirectory
from credrecovery.smtp import SMTPMailer
from helpers import CONFIRM_URL, SECRET, SENDER
from helpers.smtp_server import RecordingHandler, RunningSMTPServer, running_smtp_server

PRIMARY = "ejemplo@ejemploxmundo.com.ar"
BUSY = "451 4.3.0 Try again later"


class BusyThenAccepting(RecordingHandler):
    """Answers the first ``busy`` recipients with a 451, then accepts; notes when each came."""

    def __init__(self, busy: int) -> None:
        super().__init__()
        self.busy = busy
        self.attempts: list[float] = []

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        self.attempts.append(time.monotonic())
        if len(self.attempts) <= self.busy:
            return BUSY
        return await super().handle_RCPT(server, session, envelope, address, rcpt_options)

    def gaps(self) -> list[float]:
        return [b - a for a, b in zip(self.attempts, self.attempts[1:], strict=False)]


@pytest.fixture
def server(request: pytest.FixtureRequest) -> Iterator[RunningSMTPServer]:
    """A server busy for as many recipients as the test's ``busy`` parameter says (2)."""
    busy = getattr(request, "param", 2)
    with running_smtp_server(BusyThenAccepting(busy)) as running:
        yield running


def handler_of(server: RunningSMTPServer) -> BusyThenAccepting:
    assert isinstance(server.handler, BusyThenAccepting)
    return server.handler


def events(caplog: pytest.LogCaptureFixture, name: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "event", None) == name]


def service_with(
    directory: MemoryDirectory, ctx: CryptContext, server: RunningSMTPServer, delivery: Any
) -> RecoveryService:
    return RecoveryService(
        directory,
        SMTPMailer(server.host, server.port, timeout=5),
        secret_key=SECRET,
        confirm_url=CONFIRM_URL,
        sender=SENDER,
        crypt_context=ctx,
        rate_limits=None,
        delivery=delivery,
    )


# --- the policy itself --------------------------------------------------------------------------


def test_defaults_are_the_delivery_defaults_and_names_are_exported() -> None:
    """RetryPolicy() is what delivery did before it existed; both packages export it."""
    policy = RetryPolicy()
    assert (policy.max_attempts, policy.backoff, policy.max_backoff, policy.jitter) == (
        5,
        1.0,
        300.0,
        0.5,
    )
    assert credrecovery.RetryPolicy is credrecovery.delivery.RetryPolicy is RetryPolicy
    assert BackgroundMailer(SMTPMailer("127.0.0.1")).retry == policy
    with pytest.raises(dataclasses.FrozenInstanceError):
        policy.max_attempts = 3  # type: ignore[misc]


def test_waits_double_up_to_the_cap_within_the_jitter() -> None:
    """Each wait is backoff doubled per attempt, capped, times a factor in [1 - jitter, 1]."""
    exact = RetryPolicy(max_attempts=8, backoff=0.5, max_backoff=3.0, jitter=0)
    assert [exact.retry_after(n) for n in range(1, 8)] == [0.5, 1.0, 2.0, 3.0, 3.0, 3.0, 3.0]
    assert exact.retry_after(8) is None
    jittered = RetryPolicy()
    for attempt, full in ((1, 1.0), (2, 2.0), (4, 8.0)):
        waits = [jittered.retry_after(attempt) for _ in range(200)]
        assert all(w is not None and full * 0.5 <= w <= full for w in waits), attempt
        assert len(set(waits)) > 1
    # Far past any float's doubling, the cap still holds.
    assert RetryPolicy(max_attempts=5000, jitter=0).retry_after(4000) == 300.0


def test_permanent_failures_and_the_last_attempt_give_up() -> None:
    """None for a permanent failure and after the last attempt; attempts count from 1."""
    policy = RetryPolicy(max_attempts=3)
    assert policy.retry_after(1, temporary=False) is None
    assert policy.retry_after(2) is not None
    assert policy.retry_after(3) is None
    assert RetryPolicy(max_attempts=1).retry_after(1) is None
    with pytest.raises(ValueError):
        policy.retry_after(0)


@pytest.mark.parametrize(
    "fields",
    [
        {"max_attempts": 0},
        {"backoff": -1.0},
        {"backoff": 10.0, "max_backoff": 1.0},
        {"jitter": -0.1},
        {"jitter": 1.5},
        {"backoff": float("nan")},
    ],
)
def test_nonsense_is_refused(fields: dict[str, Any]) -> None:
    """Settings no delivery could follow are a ValueError at construction."""
    with pytest.raises(ValueError, match="retry settings"):
        RetryPolicy(**fields)


def test_separate_settings_still_work_and_set_the_policy() -> None:
    """max_attempts, backoff and max_backoff build the policy, read it and replace it."""
    smtp = SMTPMailer("127.0.0.1")
    mailer = BackgroundMailer(smtp, max_attempts=8, backoff=2.0)
    assert mailer.retry == RetryPolicy(max_attempts=8, backoff=2.0)
    assert (mailer.max_attempts, mailer.backoff, mailer.max_backoff) == (8, 2.0, 300.0)
    mailer.max_backoff = 60.0
    assert mailer.retry == RetryPolicy(max_attempts=8, backoff=2.0, max_backoff=60.0)
    with pytest.raises(ValueError):
        mailer.max_attempts = 0
    with pytest.raises(TypeError, match="not both"):
        BackgroundMailer(smtp, retry=RetryPolicy(), max_attempts=3)
    with pytest.raises(TypeError):
        BackgroundMailer(smtp, retry=5)  # type: ignore[arg-type]
    app = Celery("retry-settings", broker="memory://")
    celery = CeleryDelivery(app, smtp, backoff=0.5, records=None)
    assert celery.retry == RetryPolicy(backoff=0.5)
    with pytest.raises(TypeError, match="not both"):
        CeleryDelivery(app, smtp, retry=RetryPolicy(), backoff=0.5, records=None)


# --- background delivery, in threads and in the delivery process --------------------------------


def test_background_mailer_waits_as_the_policy_says(server: RunningSMTPServer) -> None:
    """Two 451s, then success: three attempts, 0.2 s then 0.4 s apart, one mail."""
    handler = handler_of(server)
    policy = RetryPolicy(max_attempts=3, backoff=0.2, jitter=0)
    smtp = SMTPMailer(server.host, server.port, timeout=5)
    with BackgroundMailer(smtp, retry=policy, workers=1) as mailer:
        mailer.send(compose_plain())
        assert mailer.flush(timeout=20)
    assert [mail.rcpt_tos for mail in server.received] == [(PRIMARY,)]
    assert len(handler.attempts) == 3
    first, second = handler.gaps()
    assert 0.2 <= first < 0.2 + 0.5
    assert 0.4 <= second < 0.4 + 0.5


@pytest.mark.parametrize("server", [5], indirect=True)
def test_background_mailer_gives_up_after_max_attempts(
    server: RunningSMTPServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A server still busy after the last attempt: given up, logged once, nothing received."""
    caplog.set_level(logging.INFO, logger="credrecovery")
    policy = RetryPolicy(max_attempts=2, backoff=0.05, jitter=0)
    smtp = SMTPMailer(server.host, server.port, timeout=5)
    with BackgroundMailer(smtp, retry=policy, workers=1) as mailer:
        mailer.send(compose_plain())
        assert mailer.flush(timeout=20)
    assert server.received == []
    assert len(handler_of(server).attempts) == 2
    [failed] = events(caplog, "delivery_failed")
    assert getattr(failed, "smtp_code", None) == 451
    assert len(events(caplog, "delivery_retry")) == 1


@pytest.mark.slow  # starts a delivery process
def test_the_policy_crosses_to_the_delivery_process(
    server: RunningSMTPServer,
    directory: MemoryDirectory,
    ctx: CryptContext,
) -> None:
    """In a delivery process of its own, a confirmation mail is retried by the same policy."""
    handler = handler_of(server)
    smtp = SMTPMailer(server.host, server.port, timeout=5)
    delivery = BackgroundMailer(
        smtp,
        retry=RetryPolicy(max_attempts=3, backoff=0.2, jitter=0),
        delay=(0.0, 0.0),
        isolation="process",
    )
    with service_with(directory, ctx, server, delivery) as service:
        assert delivery.process_id is not None
        service.request("client_number", "9000")
        assert service.flush(timeout=20)
    assert [mail.rcpt_tos for mail in server.received] == [(PRIMARY,)]
    assert len(handler.attempts) == 3
    first, second = handler.gaps()
    assert 0.2 <= first < 0.2 + 0.5
    assert 0.4 <= second < 0.4 + 0.5


# --- Celery ----------------------------------------------------------------------------------


def eager_app() -> Celery:
    """An app that runs each task, and each retry, at once in this process (no worker)."""
    app = Celery("retry-policy", broker="memory://")
    app.conf.task_always_eager = True
    return app


@pytest.mark.parametrize(
    ("server", "max_attempts", "received"), [(2, 3, 1), (2, 2, 0)], indirect=["server"]
)
def test_celery_delivery_counts_attempts_by_the_policy(
    server: RunningSMTPServer,
    directory: MemoryDirectory,
    ctx: CryptContext,
    max_attempts: int,
    received: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Two 451s: delivered on the third attempt when allowed, given up after two otherwise."""
    caplog.set_level(logging.INFO, logger="credrecovery")
    smtp = SMTPMailer(server.host, server.port, timeout=5)
    policy = RetryPolicy(max_attempts=max_attempts, backoff=0.0, jitter=0)
    delivery = CeleryDelivery(eager_app(), smtp, retry=policy, delay=(0.0, 0.0), records=None)
    with service_with(directory, ctx, server, delivery) as service:
        service.request("client_number", "9000")
    assert len(server.received) == received
    assert len(handler_of(server).attempts) == min(max_attempts, 3)
    assert len(events(caplog, "delivery_failed")) == 1 - received


def compose_plain() -> EmailMessage:
    message = EmailMessage()
    message["From"] = "panel@example.com"
    message["To"] = PRIMARY
    message["Subject"] = "retry"
    message["Message-ID"] = "<retry@panel.example.com>"
    message.set_content("body")
    return message
