"""BackgroundMailer: queueing, retries with backoff, bounded queue, flush and close."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from typing import Any

import pytest
from passlib.context import CryptContext

from credrecovery import (
    BackgroundMailer,
    Composer,
    ConfirmationJob,
    RateLimits,
    RecoveryService,
)
from credrecovery.exceptions import DeliveryFailed
from credrecovery.memory import MemoryDirectory, MemoryMailer
from credrecovery.smtp import SMTPMailer
from helpers import CONFIRM_URL, SECRET, SENDER, FakeClock, token_from
from helpers.smtp_server import running_smtp_server

pytestmark = pytest.mark.shells("sync", "async")

ServiceFactory = Callable[..., RecoveryService]


# --- mailers a host might write -----------------------------------------------------------


class RecordingMailer:
    """Delivers into :attr:`outbox` after ``delay`` seconds; records every attempt."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.outbox: list[EmailMessage] = []
        self.attempts: list[float] = []
        self._lock = threading.Lock()

    def send(self, message: EmailMessage) -> None:
        with self._lock:
            self.attempts.append(time.monotonic())
        self.fail(len(self.attempts))
        if self.delay:
            time.sleep(self.delay)
        with self._lock:
            self.outbox.append(message)

    def fail(self, attempt: int) -> None:
        """Raise to make attempt number ``attempt`` fail; subclasses override."""


class FlakyMailer(RecordingMailer):
    """Raises ``error`` on the first ``failures`` attempts, then delivers."""

    def __init__(self, error: Exception, failures: int) -> None:
        super().__init__()
        self.error = error
        self.failures = failures

    def fail(self, attempt: int) -> None:
        if attempt <= self.failures:
            raise self.error


class BlockedMailer(RecordingMailer):
    """Waits on :attr:`release` before each delivery; :attr:`entered` tells it is waiting."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.release = threading.Event()

    def fail(self, attempt: int) -> None:
        self.entered.set()
        assert self.release.wait(10), "the test never released the mailer"


def message(n: int) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "panel@example.com"
    msg["To"] = "ejemplo@ejemploxmundo.com.ar"
    msg["Subject"] = f"message {n}"
    msg["Message-ID"] = f"<{n}@panel.example.com>"
    msg.set_content(f"body {n}")
    return msg


def subjects(messages: list[EmailMessage]) -> list[str]:
    return [str(m["Subject"]) for m in messages]


@pytest.fixture
def background() -> Iterator[Callable[..., BackgroundMailer]]:
    """Build background mailers with short backoff; each is closed after the test."""
    made: list[BackgroundMailer] = []

    def make(inner: Any, **options: Any) -> BackgroundMailer:
        options.setdefault("backoff", 0.01)
        options.setdefault("workers", 1)
        mailer = BackgroundMailer(inner, **options)
        made.append(mailer)
        return mailer

    yield make
    for mailer in made:
        if isinstance(mailer.mailer, BlockedMailer):
            mailer.mailer.release.set()
        mailer.close(timeout=5)


def events(caplog: pytest.LogCaptureFixture, name: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "event", None) == name]


# --- queueing -----------------------------------------------------------------------------


def test_send_returns_before_a_slow_delivery(
    background: Callable[..., BackgroundMailer],
) -> None:
    """send() only queues: it returns at once, and flush() waits for the delivery."""
    inner = RecordingMailer(delay=0.3)
    mailer = background(inner)
    started = time.perf_counter()
    mailer.send(message(1))
    # Well before the 0.3 s the delivery takes; starting the threads on a loaded
    # machine has taken over 50 ms.
    assert time.perf_counter() - started < 0.15
    assert inner.outbox == []
    assert mailer.pending == 1
    assert mailer.flush(timeout=5) is True
    assert subjects(inner.outbox) == ["message 1"]
    assert mailer.pending == 0


def test_messages_are_delivered_in_order(background: Callable[..., BackgroundMailer]) -> None:
    """With one worker, messages leave in the order they were queued."""
    inner = RecordingMailer(delay=0.001)
    mailer = background(inner)
    for n in range(25):
        mailer.send(message(n))
    assert mailer.flush(timeout=5)
    assert subjects(inner.outbox) == [f"message {n}" for n in range(25)]


def test_invalid_settings_are_refused() -> None:
    """Nonsense queue, retry or worker settings are a ValueError."""
    inner = RecordingMailer()
    for options in [
        {"max_queue": 0},
        {"max_attempts": 0},
        {"backoff": -1.0},
        {"backoff": 10.0, "max_backoff": 1.0},
        {"workers": 0},
    ]:
        with pytest.raises(ValueError):
            BackgroundMailer(inner, **options)


# --- retries ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "error",
    [
        DeliveryFailed("421 try later", temporary=True),
        OSError("connection reset"),
        RuntimeError("a host mailer bug"),
    ],
    ids=["temporary-DeliveryFailed", "OSError", "other-exception"],
)
def test_temporary_failures_are_retried_until_delivered(
    background: Callable[..., BackgroundMailer],
    caplog: pytest.LogCaptureFixture,
    error: Exception,
) -> None:
    """A temporary failure, or any exception but a permanent DeliveryFailed, is retried."""
    caplog.set_level(logging.INFO, logger="credrecovery")
    inner = FlakyMailer(error, failures=3)
    mailer = background(inner, max_attempts=5)
    mailer.send(message(1))
    assert mailer.flush(timeout=5)
    assert len(inner.attempts) == 4
    assert subjects(inner.outbox) == ["message 1"]
    retries = events(caplog, "delivery_retry")
    assert [getattr(r, "attempt", None) for r in retries] == [1, 2, 3]
    assert all(r.levelno == logging.WARNING for r in retries)
    assert {getattr(r, "error", None) for r in retries} == {type(error).__name__}
    assert [getattr(r, "attempt", None) for r in events(caplog, "mail_sent")] == [4]
    assert events(caplog, "delivery_failed") == []


def test_a_permanent_failure_is_not_retried(
    background: Callable[..., BackgroundMailer],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """DeliveryFailed(temporary=False) is given up at once and logged at ERROR."""
    caplog.set_level(logging.INFO, logger="credrecovery")
    inner = FlakyMailer(DeliveryFailed("550 no such user", temporary=False), failures=10)
    mailer = background(inner, max_attempts=5)
    mailer.send(message(1))
    # flush() waits for retries too, so a wrongly scheduled one would have run.
    assert mailer.flush(timeout=5)
    assert len(inner.attempts) == 1
    assert inner.outbox == []
    assert events(caplog, "delivery_retry") == []
    [failed] = events(caplog, "delivery_failed")
    assert failed.levelno == logging.ERROR
    assert getattr(failed, "attempt", None) == 1
    assert getattr(failed, "message_id", None) == "<1@panel.example.com>"
    assert mailer.pending == 0


def test_gives_up_after_max_attempts(
    background: Callable[..., BackgroundMailer],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A message that keeps failing is tried max_attempts times, then logged at ERROR."""
    caplog.set_level(logging.INFO, logger="credrecovery")
    inner = FlakyMailer(OSError("connection refused"), failures=100)
    mailer = background(inner, max_attempts=3)
    mailer.send(message(1))
    mailer.send(message(2))
    assert mailer.flush(timeout=5)
    assert len(inner.attempts) == 6
    assert inner.outbox == []
    failed = events(caplog, "delivery_failed")
    assert sorted(getattr(r, "message_id", "") for r in failed) == [
        "<1@panel.example.com>",
        "<2@panel.example.com>",
    ]
    assert all(r.levelno == logging.ERROR and getattr(r, "attempt", None) == 3 for r in failed)
    assert mailer.pending == 0


def _until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 5
    while not condition():
        assert time.monotonic() < deadline, "the worker never got there"
        time.sleep(0.005)


def test_retry_backoff_doubles(clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    """The wait before each retry doubles, with jitter between 0.5 and 1 times the step,
    and no retry leaves before its wait is over."""
    caplog.set_level(logging.INFO, logger="credrecovery")
    inner = FlakyMailer(OSError("busy"), failures=4)
    with BackgroundMailer(inner, clock=clock, backoff=1.0, max_attempts=5, workers=1) as mailer:
        mailer.send(message(1))
        for k in range(4):
            _until(lambda k=k: len(events(caplog, "delivery_retry")) == k + 1)
            wait = events(caplog, "delivery_retry")[k].args[0]  # type: ignore[index]
            step = 2.0**k
            assert 0.5 * step <= wait <= step, (k, wait)
            clock.advance(wait - 0.01)
            mailer.flush(timeout=0.01)  # wakes the worker, which must not go yet
            assert len(inner.attempts) == k + 1
            clock.advance(0.02)
            mailer.flush(timeout=0.01)
            _until(lambda k=k: len(inner.attempts) == k + 2)
        assert mailer.flush(timeout=5)
    assert subjects(inner.outbox) == ["message 1"]


def test_retry_backoff_is_capped(background: Callable[..., BackgroundMailer]) -> None:
    """No wait exceeds max_backoff, however many attempts failed."""
    inner = FlakyMailer(OSError("busy"), failures=5)
    mailer = background(inner, backoff=0.02, max_backoff=0.04, max_attempts=6)
    mailer.send(message(1))
    assert mailer.flush(timeout=5)
    gaps = [b - a for a, b in zip(inner.attempts, inner.attempts[1:], strict=False)]
    assert len(gaps) == 5
    assert all(gap <= 0.04 + 0.15 for gap in gaps), gaps
    assert all(gap >= 0.02 - 0.005 for gap in gaps[2:]), gaps


def test_a_retry_does_not_hold_up_the_queue(
    background: Callable[..., BackgroundMailer],
) -> None:
    """While one message waits for its retry, the next ones are delivered."""
    inner = FlakyMailer(OSError("busy"), failures=1)
    mailer = background(inner, backoff=0.2)
    mailer.send(message(1))
    mailer.send(message(2))
    mailer.send(message(3))
    assert mailer.flush(timeout=5)
    assert subjects(inner.outbox) == ["message 2", "message 3", "message 1"]


# --- the bounded queue --------------------------------------------------------------------


def test_a_full_queue_refuses_send(background: Callable[..., BackgroundMailer]) -> None:
    """With the worker stuck on one message, max_queue more are queued and the next refused."""
    inner = BlockedMailer()
    mailer = background(inner, max_queue=3)
    mailer.send(message(0))
    assert inner.entered.wait(5)
    for n in range(1, 4):
        mailer.send(message(n))
    assert mailer.pending == 4
    with pytest.raises(DeliveryFailed) as excinfo:
        mailer.send(message(4))
    assert excinfo.value.temporary is True
    inner.release.set()
    assert mailer.flush(timeout=5)
    assert subjects(inner.outbox) == [f"message {n}" for n in range(4)]
    mailer.send(message(5))
    assert mailer.flush(timeout=5)
    assert len(inner.outbox) == 5


class SmallQueue(BackgroundMailer):
    """The service's background mailer, with a queue of two and no delay."""

    def __init__(self, mailer: Any, **options: Any) -> None:
        super().__init__(mailer, max_queue=2, backoff=0.01, workers=1, delay=(0.0, 0.0), **options)


def test_the_service_answers_the_same_when_the_queue_is_full(
    make_service: ServiceFactory,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A full queue drops the mail and logs it; the caller sees None either way."""
    caplog.set_level(logging.INFO, logger="credrecovery")
    monkeypatch.setattr("credrecovery.service.BackgroundMailer", SmallQueue)
    inner = BlockedMailer()
    service = make_service(mailer=inner, delivery="background")
    try:
        assert service.request("domain", "ejemploxmundo.com.ar") is None
        assert inner.entered.wait(5)
        assert service.request("client_number", "9000") is None
        assert service.request("email", "ejemplo@ejemploxmundo.com.ar") is None
        caplog.clear()
        assert service.request("domain", "otro-ejemplo.com") is None
        assert service.request("domain", "nadie-aqui.com.ar") is None
    finally:
        inner.release.set()
    assert service.flush(timeout=5)
    assert len(inner.outbox) == 3
    dropped = events(caplog, "mail_dropped")
    assert [getattr(r, "client", None) for r in dropped] == ["9000", None]
    assert all(r.levelno == logging.ERROR for r in dropped)
    assert all(getattr(r, "error", None) == "DeliveryFailed" for r in dropped)
    assert dropped[0].getMessage() == dropped[1].getMessage()
    assert events(caplog, "requested") == []
    assert len(events(caplog, "unknown_identifier")) == 1


# --- flush and close ----------------------------------------------------------------------


def test_flush_reports_whether_the_queue_drained(
    background: Callable[..., BackgroundMailer],
) -> None:
    """flush(timeout) is False while a delivery is stuck, True once everything left."""
    inner = BlockedMailer()
    mailer = background(inner)
    assert mailer.flush(timeout=0.01) is True  # nothing queued yet
    mailer.send(message(1))
    mailer.send(message(2))
    started = time.perf_counter()
    assert mailer.flush(timeout=0.1) is False
    assert 0.09 <= time.perf_counter() - started < 1.0
    inner.release.set()
    assert mailer.flush(timeout=5) is True
    assert mailer.pending == 0
    assert len(inner.outbox) == 2


def test_close_delivers_what_is_queued_then_refuses(
    background: Callable[..., BackgroundMailer],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """close() delivers the queue, stops the worker, and later sends raise DeliveryFailed."""
    caplog.set_level(logging.INFO, logger="credrecovery")
    inner = RecordingMailer(delay=0.05)
    mailer = background(inner)
    for n in range(3):
        mailer.send(message(n))
    mailer.close()
    assert subjects(inner.outbox) == ["message 0", "message 1", "message 2"]
    assert events(caplog, "mail_dropped") == []
    with pytest.raises(DeliveryFailed) as excinfo:
        mailer.send(message(3))
    assert excinfo.value.temporary is False
    assert len(inner.outbox) == 3


def test_close_logs_what_it_could_not_deliver(
    background: Callable[..., BackgroundMailer],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Messages still queued when close() times out are logged as dropped."""
    caplog.set_level(logging.INFO, logger="credrecovery")
    inner = BlockedMailer()
    mailer = background(inner)
    for n in range(3):
        mailer.send(message(n))
    assert inner.entered.wait(5)
    closer = threading.Thread(target=mailer.close, kwargs={"timeout": 0.1})
    closer.start()
    deadline = time.monotonic() + 5
    while not events(caplog, "mail_dropped") and time.monotonic() < deadline:
        time.sleep(0.01)
    inner.release.set()
    closer.join(5)
    assert not closer.is_alive()
    assert mailer.flush(timeout=5)  # the message in flight when close() gave up
    [dropped] = events(caplog, "mail_dropped")
    assert dropped.levelno == logging.ERROR
    assert getattr(dropped, "count", None) == 2
    assert subjects(inner.outbox) == ["message 0"]


def test_with_block_closes_the_mailer() -> None:
    """Leaving a ``with`` block delivers the queue and closes the mailer."""
    inner = RecordingMailer(delay=0.1)
    with BackgroundMailer(inner, backoff=0.01) as mailer:
        mailer.send(message(1))
    assert subjects(inner.outbox) == ["message 1"]
    with pytest.raises(DeliveryFailed):
        mailer.send(message(2))


# --- the service with background delivery -------------------------------------------------


def test_the_service_flushes_when_its_with_block_ends(
    make_service: ServiceFactory,
) -> None:
    """A service used as a context manager delivers queued mail on exit."""
    inner = RecordingMailer(delay=0.2)
    with make_service(mailer=inner, delivery="background") as service:
        service.request("domain", "ejemploxmundo.com.ar")
        assert inner.outbox == []
    assert len(inner.outbox) == 1
    assert inner.outbox[0]["To"].addresses[0].addr_spec == "ejemplo@ejemploxmundo.com.ar"


def test_default_delivery_queues_requests_and_confirms_synchronously(
    directory: MemoryDirectory,
    ctx: CryptContext,
    clock: FakeClock,
) -> None:
    """By default the confirmation mail is queued; the credentials mail is sent in confirm()."""
    inner = RecordingMailer(delay=0.1)
    service = RecoveryService(
        directory,
        inner,
        secret_key=SECRET,
        confirm_url=CONFIRM_URL,
        sender=SENDER,
        crypt_context=ctx,
        clock=clock,
    )
    with service:
        assert service.request("domain", "ejemploxmundo.com.ar") is None
        assert inner.outbox == []
        assert service.flush(timeout=5) is True
        assert len(inner.outbox) == 1
        confirmation = service.confirm(token_from(inner.outbox[0]))
        assert confirmation.number == "9000"
        assert len(inner.outbox) == 2
        assert "9000" in inner.outbox[1].get_body(("plain",)).get_content()


def test_sync_delivery_sends_during_the_request(
    make_service: ServiceFactory,
    mailer: MemoryMailer,
) -> None:
    """With delivery='sync' the mail is in the outbox when request() returns."""
    service = make_service(delivery="sync")
    service.request("domain", "ejemploxmundo.com.ar")
    assert len(mailer.outbox) == 1
    assert service.flush(timeout=0) is True


# --- jobs: one plain job per request, decoys, delays --------------------------------------


class RecordingQueue:
    """A DeliveryQueue of a host's: keeps the jobs it is handed, composes them on demand."""

    def __init__(self) -> None:
        self.jobs: list[ConfirmationJob] = []
        self.composer: Composer | None = None

    def bind(self, composer: Composer) -> None:
        self.composer = composer

    def submit(self, job: ConfirmationJob) -> None:
        self.jobs.append(job)

    def flush(self, timeout: float | None = None) -> bool:
        return True

    def close(self, timeout: float | None = 30.0) -> None:
        pass


def test_every_request_hands_delivery_one_plain_job(make_service: ServiceFactory) -> None:
    """A hit, a miss and a throttled hit each give one job that survives JSON unchanged."""
    queue = RecordingQueue()
    service = make_service(delivery=queue, rate_limits=RateLimits(per_identifier="1/hour"))
    service.request("domain", "ejemploxmundo.com.ar")
    service.request("domain", "nadie-aqui.com.ar")
    service.request("domain", "ejemploxmundo.com.ar")
    assert [job.decoy for job in queue.jobs] == [False, True, True]
    for job in queue.jobs:
        assert ConfirmationJob.from_dict(json.loads(json.dumps(job.to_dict()))) == job
        assert sorted(job.to_dict()) == sorted(queue.jobs[0].to_dict())
    assert queue.jobs[0].recipient == "ejemplo@ejemploxmundo.com.ar"
    assert [number for number, _ in queue.jobs[0].clients] == ["9000"]
    assert queue.jobs[1].recipient != "ejemplo@ejemploxmundo.com.ar"


def test_a_decoy_composes_a_full_mail_as_a_hit_does(make_service: ServiceFactory) -> None:
    """The delivery side composes a decoy into a whole mail, so a miss costs it what a hit does."""
    queue = RecordingQueue()
    service = make_service(delivery=queue)
    service.request("domain", "ejemploxmundo.com.ar")
    service.request("domain", "nadie-aqui.com.ar")
    assert queue.composer is service.composer
    hit, miss = (service.composer.confirmation(job) for job in queue.jobs)
    for message in (hit, miss):
        assert message.get_body(("plain",)) is not None
        assert message.get_body(("html",)) is not None
        assert "/recover/" in message.get_body(("plain",)).get_content()
    assert len(hit.as_bytes()) > 1000 and len(miss.as_bytes()) > 1000


def test_decoys_are_never_sent(make_service: ServiceFactory) -> None:
    """Misses and withheld requests reach no mailer, in the background or inline."""
    for delivery in ("background", "sync"):
        inner = RecordingMailer()
        service = make_service(
            mailer=inner, delivery=delivery, rate_limits=RateLimits(per_identifier="1/hour")
        )
        service.request("domain", "nadie-aqui.com.ar")
        service.request("client_number", "9000")
        service.request("client_number", "9000")
        assert service.flush(timeout=5)
        assert len(inner.outbox) == 1, delivery


def test_a_job_waits_its_random_delay(make_service: ServiceFactory) -> None:
    """A confirmation job leaves no sooner than the shortest delay, and flush() sends it now."""
    inner = RecordingMailer()
    service = make_service(mailer=inner, delivery=BackgroundMailer(inner, delay=(0.3, 0.3)))
    started = time.monotonic()
    service.request("domain", "ejemploxmundo.com.ar")
    deadline = started + 5
    while not inner.attempts and time.monotonic() < deadline:
        time.sleep(0.01)
    assert inner.attempts and inner.attempts[0] - started >= 0.3
    slow = BackgroundMailer(inner, delay=(60.0, 60.0))
    service = make_service(mailer=inner, delivery=slow)
    service.request("domain", "ejemploxmundo.com.ar")
    assert slow.pending == 1
    assert service.flush(timeout=5)
    assert len(inner.outbox) == 2


class RendezvousMailer(RecordingMailer):
    """Each delivery waits until ``parties`` deliveries are under way at once."""

    def __init__(self, parties: int) -> None:
        super().__init__()
        self.barrier = threading.Barrier(parties, timeout=5)

    def fail(self, attempt: int) -> None:
        self.barrier.wait()


def test_workers_deliver_side_by_side(background: Callable[..., BackgroundMailer]) -> None:
    """With four workers, four slow deliveries are under way at the same time."""
    inner = RendezvousMailer(parties=4)
    mailer = background(inner, workers=4)
    for n in range(8):
        mailer.send(message(n))
    assert mailer.flush(timeout=10)
    assert len(inner.outbox) == 8


def test_invalid_delays_are_refused() -> None:
    """A negative or inverted delay range raises ValueError."""
    for delay in ((-1.0, 1.0), (2.0, 1.0)):
        with pytest.raises(ValueError):
            BackgroundMailer(MemoryMailer(), delay=delay)


def test_one_background_mailer_serves_one_service(make_service: ServiceFactory) -> None:
    """Binding a BackgroundMailer to a second service raises ValueError."""
    shared = BackgroundMailer(MemoryMailer())
    make_service(delivery=shared)
    with pytest.raises(ValueError):
        make_service(delivery=shared)


class ReplyToMailer(FlakyMailer):
    """A host's wrapper: adds Reply-To to the message it is given, then delivers."""

    def send(self, message: EmailMessage) -> None:
        message["Reply-To"] = "support@panel.example.com"
        super().send(message)


def test_every_attempt_gets_a_fresh_message(
    background: Callable[..., BackgroundMailer],
) -> None:
    """A mailer that edits its message still succeeds on a retry: each attempt has a copy."""
    inner = ReplyToMailer(DeliveryFailed("try later", temporary=True), failures=2)
    mailer = background(inner)
    original = message(1)
    mailer.send(original)
    assert mailer.flush(timeout=5)
    assert len(inner.attempts) == 3
    [sent] = inner.outbox
    assert sent.get_all("Reply-To") == ["support@panel.example.com"]
    assert original.get_all("Reply-To") is None


def test_delivery_events_carry_the_reason(
    background: Callable[..., BackgroundMailer],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """delivery_retry and delivery_failed name the reason and the SMTP codes, in text and extra."""
    caplog.set_level(logging.INFO, logger="credrecovery")
    with running_smtp_server() as server:
        server.handler.answer("RCPT", "451 4.3.0 Mailbox busy, come back")
        mailer = background(SMTPMailer(server.host, server.port, timeout=5), max_attempts=2)
        mailer.send(message(1))
        assert mailer.flush(timeout=10)
    [retry] = events(caplog, "delivery_retry")
    [failed] = events(caplog, "delivery_failed")
    for record in (retry, failed):
        assert getattr(record, "smtp_code", None) == 451
        assert getattr(record, "enhanced_code", None) == "4.3.0"
        assert "451" in getattr(record, "reason", "")
        assert getattr(record, "reason", "") in record.getMessage()
        assert "Mailbox busy" not in record.getMessage()


def test_a_dropped_mail_says_why(
    make_service: ServiceFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A job the closed queue refuses is logged as mail_dropped with its reason."""
    caplog.set_level(logging.INFO, logger="credrecovery")
    service = make_service(delivery="background")
    service.close()
    service.request("domain", "ejemploxmundo.com.ar")
    [dropped] = events(caplog, "mail_dropped")
    assert getattr(dropped, "reason", None) == "the background mailer is closed"
    assert "closed" in dropped.getMessage()


def test_a_queue_is_refused_as_the_mailer(directory: MemoryDirectory) -> None:
    """A queueing mailer passed as mailer raises ValueError: credentials must leave at once."""
    with pytest.raises(ValueError, match="delivery="):
        RecoveryService(
            directory,
            BackgroundMailer(MemoryMailer()),
            secret_key=SECRET,
            confirm_url=CONFIRM_URL,
            sender=SENDER,
        )


# --- the test clock -------------------------------------------------------------------------


def test_retries_wait_on_the_mailers_clock(
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """On a test clock a retry is due only once the clock has moved past its backoff."""
    caplog.set_level(logging.INFO, logger="credrecovery")
    inner = FlakyMailer(OSError("busy"), failures=1)
    with BackgroundMailer(inner, clock=clock, backoff=10.0, workers=1) as mailer:
        mailer.send(message(1))
        deadline = time.monotonic() + 5
        while not events(caplog, "delivery_retry") and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(inner.attempts) == 1
        assert mailer.pending == 1
        assert mailer.flush(timeout=0.05) is False  # ten seconds that have not passed
        clock.advance(10.0)
        assert mailer.flush(timeout=5)
    assert subjects(inner.outbox) == ["message 1"]


def test_a_test_clock_keeps_delivery_in_threads(
    make_service: ServiceFactory,
    clock: FakeClock,
) -> None:
    """A delivery process cannot share the host's clock: "auto" stays in threads."""
    smtp = SMTPMailer("127.0.0.1", 1)  # picklable, so "auto" would pick a process
    service = make_service(mailer=smtp, delivery=BackgroundMailer(smtp, clock=clock))
    assert service.delivery.process_id is None  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="clock"):
        BackgroundMailer(smtp, clock=clock, isolation="process")


class MinuteDelay(BackgroundMailer):
    """The service's background mailer, holding each job a minute."""

    def __init__(self, mailer: Any, **options: Any) -> None:
        super().__init__(mailer, delay=(60.0, 60.0), workers=1, **options)


def test_the_services_clock_times_its_background_delay(
    make_service: ServiceFactory,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The mailer the service builds counts its random delay on the service's clock."""
    monkeypatch.setattr("credrecovery.service.BackgroundMailer", MinuteDelay)
    inner = RecordingMailer()
    service = make_service(mailer=inner, delivery="background")
    service.request("domain", "ejemploxmundo.com.ar")
    clock.advance(60.0)
    service.delivery.send(message(1))  # due at once; it also wakes the worker
    deadline = time.monotonic() + 5
    while len(inner.outbox) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert "message 1" in subjects(inner.outbox)
    assert len(inner.outbox) == 2  # the job's minute passed on the service's clock


# --- what a mailer raises -----------------------------------------------------------------


class GreenTimeout(BaseException):
    """Stands for gevent's or eventlet's ``Timeout``, which is no ``Exception``."""


class DoomedMailer(RecordingMailer):
    """Raises :class:`GreenTimeout` for every message whose subject starts with "doomed"."""

    def send(self, message: EmailMessage) -> None:
        if str(message["Subject"]).startswith("doomed"):
            raise GreenTimeout
        super().send(message)


def test_a_base_exception_is_retried_like_any_failure(
    background: Callable[..., BackgroundMailer],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A mailer raising a BaseException on its first sends gets them retried, then delivered."""
    caplog.set_level(logging.WARNING, logger="credrecovery")
    inner = FlakyMailer(GreenTimeout(), failures=6)  # type: ignore[arg-type]
    mailer = background(inner, workers=2, max_attempts=10)
    for n in range(3):
        mailer.send(message(n))
    assert mailer.flush(timeout=10)
    assert sorted(subjects(inner.outbox)) == ["message 0", "message 1", "message 2"]
    assert {r.reason for r in events(caplog, "delivery_retry")} == {  # type: ignore[attr-defined]
        "the mailer raised GreenTimeout"
    }


def test_no_worker_is_lost_to_what_a_mailer_raises(
    background: Callable[..., BackgroundMailer],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """More BaseExceptions than workers: each is given up with a reason, and later mail leaves."""
    caplog.set_level(logging.ERROR, logger="credrecovery")
    inner = DoomedMailer()
    mailer = background(inner, workers=2, max_attempts=1)
    doomed = [message(n) for n in range(6)]
    for msg in doomed:
        msg.replace_header("Subject", f"doomed {msg['Subject']}")
        mailer.send(msg)
    assert mailer.flush(timeout=10)
    mailer.send(message(7))
    mailer.send(message(8))
    assert mailer.flush(timeout=10)
    assert subjects(inner.outbox) == ["message 7", "message 8"]
    failed = events(caplog, "delivery_failed")
    assert len(failed) == 6
    assert {r.reason for r in failed} == {"the mailer raised GreenTimeout"}  # type: ignore[attr-defined]


def test_a_worker_that_ends_anyway_is_replaced(
    background: Callable[..., BackgroundMailer],
) -> None:
    """A worker thread that ends for a reason outside any job is replaced at the next job."""
    inner = RecordingMailer()
    mailer = background(inner, workers=2)
    mailer.send(message(1))
    assert mailer.flush(timeout=5)
    first = [*mailer._threads, mailer._composing]
    queue = mailer._queue
    with queue._cond:
        queue._closed = True
        queue._cond.notify_all()
        queue._compose_wake.notify()
    for thread in first:
        assert thread is not None
        thread.join(5)
        assert not thread.is_alive()
    queue._closed = False
    mailer.send(message(2))
    assert mailer.flush(timeout=5)
    assert subjects(inner.outbox) == ["message 1", "message 2"]
    assert all(thread.is_alive() for thread in mailer._threads)
    assert mailer._composing is not None and mailer._composing.is_alive()


# --- composing ahead -----------------------------------------------------------------------


def counted_compositions(service: RecoveryService) -> list[ConfirmationJob]:
    """The jobs ``service``'s composer turns into mails from now on, in order."""
    composed: list[ConfirmationJob] = []
    confirmation = service.composer.confirmation

    def counting(job: ConfirmationJob) -> EmailMessage:
        message = confirmation(job)
        composed.append(job)
        return message

    service.composer.confirmation = counting  # type: ignore[method-assign,assignment]
    return composed


def stuck_with_one_composed_ahead(
    make_service: ServiceFactory, requests: int, **options: Any
) -> tuple[BlockedMailer, BackgroundMailer, RecoveryService, list[ConfirmationJob]]:
    """A one-worker background mailer stuck in its first mail, once the next is composed."""
    inner = BlockedMailer()
    delivery = BackgroundMailer(inner, delay=(0.0, 0.0), workers=1)
    service = make_service(mailer=inner, delivery=delivery, **options)
    composed = counted_compositions(service)
    for _ in range(requests):
        service.request("client_number", "9000")
    assert inner.entered.wait(5)
    deadline = time.monotonic() + 10
    while len(composed) < 2 and time.monotonic() < deadline:
        time.sleep(0.005)
    return inner, delivery, service, composed


def test_the_next_mail_is_composed_while_the_workers_wait(make_service: ServiceFactory) -> None:
    """While its one worker waits on the server, the next due job is composed, and no
    more: the queue behind it stays jobs until the worker takes that mail."""
    inner, delivery, service, composed = stuck_with_one_composed_ahead(make_service, 4)
    time.sleep(0.1)
    assert len(composed) == 2
    assert delivery.pending == 4
    inner.release.set()
    assert service.flush(timeout=5)
    assert len(inner.outbox) == 4 and len(composed) == 4
    assert delivery.pending == 0


def test_close_reports_a_mail_composed_ahead_as_dropped(
    make_service: ServiceFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """A mail composed ahead but not sent when close() gives up is dropped like a queued
    job: counted in the log, and reported to on_event as a failed delivery."""
    caplog.set_level(logging.INFO, logger="credrecovery")
    outcomes: list[str] = []
    inner, delivery, _, _ = stuck_with_one_composed_ahead(
        make_service, 3, on_event=lambda event: outcomes.append(event.kind.value)
    )
    deadline = time.monotonic() + 10
    closer = threading.Thread(target=delivery.close, kwargs={"timeout": 0.1})
    closer.start()
    while not events(caplog, "mail_dropped") and time.monotonic() < deadline:
        time.sleep(0.01)
    inner.release.set()
    closer.join(5)
    assert not closer.is_alive()
    while len([o for o in outcomes if o != "requested"]) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    # Two log lines if the second mail was still being composed when close() gave up.
    assert sum(getattr(record, "count", 0) for record in events(caplog, "mail_dropped")) == 2
    assert len(inner.outbox) == 1
    assert outcomes.count("delivery_failed") == 2
    assert outcomes.count("mailed") == 1
