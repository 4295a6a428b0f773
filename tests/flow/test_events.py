"""The ``on_event`` hook: one event per outcome, off the caller's path, never a secret."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Any

import pytest

from credrecovery import (
    AsyncRecoveryService,
    BackgroundMailer,
    DeliveryFailed,
    Event,
    EventKind,
    IdentifierKind,
    InvalidToken,
    RateLimited,
    RateLimits,
    RecoveryService,
    RetryPolicy,
    TokenAlreadyUsed,
    TokenExpired,
)
from credrecovery.events import REASONS
from credrecovery.memory import MemoryDirectory, MemoryMailer
from helpers import CONFIRM_URL, OLD_KEY, SECRET, SENDER, FakeClock, key_from, token_from
from helpers.celery_worker import settings, start_worker
from helpers.redis_server import redis_url

pytestmark = pytest.mark.shells("sync", "async")
__all__ = ["redis_url", "settings", "start_worker"]  # the Celery test's fixtures

MakeService = Callable[..., RecoveryService]
NUMBER = "9000"
DOMAIN = "ejemploxmundo.com.ar"
EMAIL = "ejemplo@ejemploxmundo.com.ar"
UNKNOWN = "not-a-client.example"
REQUESTER = "198.51.100.7"
OWN_KEY = "a key of the client's own, long enough"


class Seen:
    """An on_event hook that keeps every event it is handed, and the thread it ran on."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.threads: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, event: Event) -> None:
        with self._lock:
            self.events.append(event)
            self.threads.add(threading.current_thread().name)

    def outcomes(self) -> list[tuple[str, str | None, str | None]]:
        return [(e.kind.value, e.reason, e.number) for e in self.events]


class FailingMailer:
    """A mailer whose every send fails for good."""

    def send(self, message: EmailMessage) -> None:
        raise DeliveryFailed("refused", temporary=False)


def stored_hash(directory: MemoryDirectory) -> str:
    client = directory.find(IdentifierKind.CLIENT_NUMBER, NUMBER)
    assert client is not None
    return client.key_hash


# --- one event per outcome --------------------------------------------------------------------


@pytest.mark.key_modes("generate", "choose")
def test_a_full_run_reports_every_outcome_in_order_and_no_secret(
    make_service: MakeService,
    directory: MemoryDirectory,
    mailer: MemoryMailer,
    clock: FakeClock,
    key_mode: str,
) -> None:
    """Requests, confirmations, refusals, sign-ins, a key change and a support link: each
    is one event, in order, stamped on the service's clock, and no field of any event
    holds a token, a key, a hash, the secret or a typed identifier."""
    seen = Seen()
    service = make_service(on_event=seen)
    secrets = {OLD_KEY, SECRET, stored_hash(directory), DOMAIN, UNKNOWN, EMAIL}
    stamps = {clock.now}

    service.request("domain", DOMAIN, requester=REQUESTER)
    service.request("domain", UNKNOWN, requester=REQUESTER)
    token = token_from(mailer.outbox[-1])
    service.check(token, requester=REQUESTER)
    assert service.confirm(token, requester=REQUESTER).number == NUMBER
    new_key = key_from(mailer.outbox[-1])
    secrets |= {token, new_key, stored_hash(directory)}
    with pytest.raises(TokenAlreadyUsed):
        service.confirm(token, requester=REQUESTER)
    with pytest.raises(InvalidToken):
        service.confirm(token[:-2] + "xx", requester=REQUESTER)
    service.request("client_number", NUMBER, requester=REQUESTER)
    late = token_from(mailer.outbox[-1])
    secrets.add(late)
    clock.advance(7200)
    stamps.add(clock.now)
    with pytest.raises(TokenExpired):
        service.confirm(late, requester=REQUESTER)
    assert service.authenticate(NUMBER, new_key, requester=REQUESTER) is not None
    assert service.authenticate(NUMBER, "not the key", requester=REQUESTER) is None
    assert service.authenticate("12345", "not the key", requester=REQUESTER) is None
    assert service.change_key(NUMBER, new_key, OWN_KEY, requester=REQUESTER) is not None
    secrets |= {OWN_KEY, stored_hash(directory)}
    link = service.issue_link(NUMBER, operator="support-ana")
    secrets |= {link, link.rsplit("/", 1)[1], token_from(mailer.outbox[-1])}
    assert service.flush(10)

    mailed = "credentials" if key_mode == "generate" else "key_change_notice"
    changed = "generated" if key_mode == "generate" else "chosen"
    assert seen.outcomes() == [
        ("mailed", "confirmation", NUMBER),
        ("requested", "hit", NUMBER),
        ("requested", "miss", None),
        ("mailed", mailed, NUMBER),
        ("key_changed", changed, NUMBER),
        ("confirmed", "link", NUMBER),
        ("rejected", "used", NUMBER),
        ("rejected", "invalid", None),
        ("mailed", "confirmation", NUMBER),
        ("requested", "hit", NUMBER),
        ("rejected", "expired", None),
        ("signed_in", None, NUMBER),
        ("signin_failed", "wrong_key", NUMBER),
        ("signin_failed", "unknown", None),
        ("mailed", "key_change_notice", NUMBER),
        ("key_changed", "chosen", NUMBER),
        ("mailed", "confirmation", NUMBER),
        ("issued", "mailed", NUMBER),
    ]
    for event in seen.events:
        assert event.time.utcoffset() == timedelta(0)
        assert event.time.timestamp() in stamps
        assert event.kind in REASONS and event.reason in REASONS[event.kind]
        expected_requester = (
            None if event.kind in (EventKind.MAILED, EventKind.ISSUED) else REQUESTER
        )
        assert event.requester == expected_requester, event
        assert event.operator == ("support-ana" if event.kind is EventKind.ISSUED else None)
        shown = [repr(event), str(event)] + [
            str(getattr(event, field.name)) for field in dataclasses.fields(event)
        ]
        for text in shown:
            for secret in secrets:
                assert secret not in text, (event.kind, secret[:8])


def test_limits_report_their_refusals(make_service: MakeService) -> None:
    """Refused by a limit: a request, a confirmation and a sign-in each say so."""
    seen = Seen()
    limits = RateLimits(
        per_requester="1/hour",
        failed_confirmations="1/hour",
        failed_signins="1/hour",
        storage_uri="memory://",
    )
    service = make_service(on_event=seen, rate_limits=limits)
    service.request("domain", DOMAIN, requester=REQUESTER)
    with pytest.raises(RateLimited):
        service.request("domain", DOMAIN, requester=REQUESTER)
    with pytest.raises(InvalidToken):
        service.confirm("forged.token.here", requester=REQUESTER)
    with pytest.raises(RateLimited):
        service.confirm("forged.token.here", requester=REQUESTER)
    assert service.authenticate(NUMBER, "wrong", requester=REQUESTER) is None
    with pytest.raises(RateLimited):
        service.authenticate(NUMBER, "wrong", requester=REQUESTER)
    assert service.flush(10)
    assert seen.outcomes() == [
        ("mailed", "confirmation", NUMBER),
        ("requested", "hit", NUMBER),
        ("requested", "rate_limited", None),
        ("rejected", "invalid", None),
        ("rejected", "rate_limited", None),
        ("signin_failed", "wrong_key", NUMBER),
        ("signin_throttled", "failed_signins", None),
    ]


def test_a_mail_a_limit_withholds_is_reported_as_withheld(make_service: MakeService) -> None:
    """The fourth request for one client within the hour is a decoy: ``withheld``, no mail."""
    seen = Seen()
    service = make_service(on_event=seen, rate_limits=RateLimits(storage_uri="memory://"))
    for _ in range(4):
        service.request("domain", DOMAIN, requester=REQUESTER)
    assert service.flush(10)
    requested = [e.reason for e in seen.events if e.kind is EventKind.REQUESTED]
    assert requested == ["hit", "hit", "hit", "withheld"]
    assert len([e for e in seen.events if e.kind is EventKind.MAILED]) == 3


# --- off the caller's path --------------------------------------------------------------------


@pytest.mark.slow  # each request waits out a slow hook
def test_a_slow_hook_for_hits_slows_no_request(make_service: MakeService) -> None:
    """A hook that takes half a second on every hit leaves hits as quick as misses."""
    handled: list[str | None] = []

    def slow_on_hits(event: Event) -> None:
        if event.reason == "hit":
            time.sleep(0.5)
        handled.append(event.reason)

    service = make_service(on_event=slow_on_hits)
    took: dict[str, list[float]] = {"hit": [], "miss": []}
    for _ in range(3):
        for reason, value in (("hit", DOMAIN), ("miss", UNKNOWN)):
            started = time.perf_counter()
            service.request("domain", value, requester=REQUESTER)
            took[reason].append(time.perf_counter() - started)
    # Inline, three hits would have taken a second and a half.
    assert sum(took["hit"]) < 0.75, took
    assert max(took["hit"]) < 0.25 and max(took["miss"]) < 0.25, took
    assert service.flush(10)
    assert handled.count("hit") == 3 and handled.count("miss") == 3


def test_flush_waits_for_the_hook_and_close_hands_over_the_rest(make_service: MakeService) -> None:
    """flush() waits for queued events (False on timeout); close() hands them over, then
    the hook hears nothing more."""
    seen = Seen()
    release = threading.Event()

    def held(event: Event) -> None:
        release.wait(10)
        seen(event)

    service = make_service(on_event=held)
    service.request("domain", DOMAIN)
    assert service.flush(0.05) is False
    release.set()
    assert service.flush(10) is True
    assert [e.kind for e in seen.events] == [EventKind.MAILED, EventKind.REQUESTED]
    release.clear()
    service.request("domain", UNKNOWN)
    threading.Timer(0.2, release.set).start()
    service.close()
    assert seen.outcomes()[-1] == ("requested", "miss", None)
    count = len(seen.events)
    service.request("domain", DOMAIN)  # closed: no mail, and no event either
    time.sleep(0.1)
    assert len(seen.events) == count


def test_a_failing_hook_is_logged_and_changes_nothing(
    make_service: MakeService, mailer: MemoryMailer, caplog: pytest.LogCaptureFixture
) -> None:
    """What the hook raises is logged at ERROR as hook_failed, with its type only; the
    calls answer as they would, and the next events still reach the hook."""
    seen = Seen()

    def fails_first(event: Event) -> None:
        if not seen.events:
            seen(event)
            raise RuntimeError(f"the host's bug, holding {event.number}-secret-text")
        seen(event)

    service = make_service(on_event=fails_first)
    with caplog.at_level(logging.INFO, logger="credrecovery"):
        assert service.request("domain", DOMAIN, requester=REQUESTER) is None
        token = token_from(mailer.outbox[-1])
        assert service.confirm(token, requester=REQUESTER).number == NUMBER
        assert service.flush(10)
    failed = [r for r in caplog.records if getattr(r, "event", None) == "hook_failed"]
    assert len(failed) == 1 and failed[0].levelno == logging.ERROR
    assert failed[0].error == "RuntimeError"  # type: ignore[attr-defined]
    assert "secret-text" not in failed[0].getMessage()
    for record in caplog.records:
        assert token not in record.getMessage()
    assert [e.kind for e in seen.events][-1] is EventKind.CONFIRMED


def test_a_hook_that_is_not_callable_is_refused(make_service: MakeService) -> None:
    """on_event must be a function: anything else is a TypeError at construction."""
    with pytest.raises(TypeError, match="on_event"):
        make_service(on_event="audit-log")


def test_an_async_service_awaits_a_coroutine_hook_on_its_loop(
    directory: MemoryDirectory, mailer: MemoryMailer, ctx: Any
) -> None:
    """A coroutine hook is awaited on the service's own event loop, off the request's path."""
    ran_on: list[asyncio.AbstractEventLoop] = []
    handled: list[Event] = []

    async def audit(event: Event) -> None:
        ran_on.append(asyncio.get_running_loop())
        if event.reason == "hit":
            await asyncio.sleep(0.5)
        handled.append(event)

    async def main() -> tuple[float, asyncio.AbstractEventLoop]:
        async with AsyncRecoveryService(
            directory,
            mailer,
            secret_key=SECRET,
            confirm_url=CONFIRM_URL,
            sender=SENDER,
            crypt_context=ctx,
            delivery="sync",
            rate_limits=None,
            on_event=audit,
        ) as service:
            started = time.perf_counter()
            await service.request("domain", DOMAIN)
            took = time.perf_counter() - started
            assert await service.flush(10)
            return took, asyncio.get_running_loop()

    took, loop = asyncio.run(main())
    assert took < 0.25
    assert [e.kind for e in handled] == [EventKind.MAILED, EventKind.REQUESTED]
    assert set(ran_on) == {loop}


# --- delivery outcomes ------------------------------------------------------------------------


def test_background_delivery_reports_mails_sent_and_given_up(
    make_service: MakeService, directory: MemoryDirectory
) -> None:
    """Threads of the web process report each real mail's outcome; a decoy has none."""
    seen = Seen()
    sent = make_service(
        on_event=seen, delivery=BackgroundMailer(MemoryMailer(), isolation="thread", delay=(0, 0))
    )
    sent.request("domain", DOMAIN)
    sent.request("domain", UNKNOWN)
    assert sent.flush(10)
    failing = make_service(
        on_event=seen,
        delivery=BackgroundMailer(
            FailingMailer(), isolation="thread", delay=(0, 0), retry=RetryPolicy(max_attempts=1)
        ),
    )
    failing.request("client_number", NUMBER)
    assert failing.flush(10)
    delivery = [o for o in seen.outcomes() if o[0] in ("mailed", "delivery_failed")]
    assert delivery == [
        ("mailed", "confirmation", NUMBER),
        ("delivery_failed", "confirmation", NUMBER),
    ]


def test_a_failed_credentials_mail_is_reported(
    make_service: MakeService, mailer: MemoryMailer, directory: MemoryDirectory
) -> None:
    """When the second mail fails, the key stays, and the hook hears delivery_failed."""
    seen = Seen()
    service = make_service(on_event=seen)
    service.request("domain", DOMAIN)
    token = token_from(mailer.outbox[-1])
    before = stored_hash(directory)
    refusing = make_service(on_event=seen, mailer=FailingMailer())
    with pytest.raises(DeliveryFailed):
        refusing.confirm(token)
    assert refusing.flush(10) and service.flush(10)
    assert stored_hash(directory) == before
    assert seen.outcomes()[-1] == ("delivery_failed", "credentials", NUMBER)


@pytest.mark.slow
def test_the_delivery_process_reports_back_to_the_web_process(
    directory: MemoryDirectory, ctx: Any, shell: str
) -> None:
    """With the library's SMTP mailer, delivery runs in a child process; each mail's
    outcome still reaches the hook in the process that made the request."""
    from credrecovery.smtp import SMTPMailer
    from helpers.smtp_server import running_smtp_server

    seen = Seen()
    with running_smtp_server() as server:
        mailer = SMTPMailer(server.host, server.port)
        options: dict[str, Any] = dict(
            secret_key=SECRET,
            confirm_url=CONFIRM_URL,
            sender=SENDER,
            crypt_context=ctx,
            rate_limits=None,
            on_event=seen,
            delivery=BackgroundMailer(mailer, delay=(0, 0)),
        )
        if shell == "sync":
            with RecoveryService(directory, mailer, **options) as service:
                assert service.delivery.process_id is not None  # type: ignore[attr-defined]
                service.request("domain", DOMAIN)
                service.request("domain", UNKNOWN)
                assert service.flush(30)
        else:

            async def main() -> None:
                async with AsyncRecoveryService(directory, mailer, **options) as service:
                    await service.request("domain", DOMAIN)
                    await service.request("domain", UNKNOWN)
                    assert await service.flush(30)

            asyncio.run(main())
        assert len(server.received) == 1
    assert ("mailed", "confirmation", NUMBER) in seen.outcomes()
    assert [o for o in seen.outcomes() if o[0] == "requested"] == [
        ("requested", "hit", NUMBER),
        ("requested", "miss", None),
    ]


def test_events_are_frozen_and_their_kinds_are_strings() -> None:
    """An event cannot be changed once made; a kind compares and formats as its name."""
    event = Event(EventKind.SIGNED_IN, datetime.now(UTC), number=NUMBER)
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.number = "9001"  # type: ignore[misc]
    assert EventKind.SIGNED_IN == "signed_in" and f"{EventKind.ISSUED}" == "issued"
    assert set(REASONS) == set(EventKind)


@pytest.mark.slow  # starts a Celery worker
@pytest.mark.shells("sync")
def test_with_celery_the_worker_reports_the_mail(
    settings: dict[str, str], start_worker: Any, tmp_path: Any, shell: str
) -> None:
    """The worker's own service, built from the same module, hears mailed in the worker's
    process; the web process hears its requested."""
    import json
    import os

    from helpers.celery_app import build
    from helpers.celery_worker import wait_for
    from helpers.smtp_server import running_smtp_server

    hook = tmp_path / "events.jsonl"
    settings["CREDRECOVERY_CELERY_HOOK"] = str(hook)

    def lines() -> list[dict[str, Any]]:
        if not hook.exists():
            return []
        return [json.loads(line) for line in hook.read_text("utf-8").splitlines()]

    with running_smtp_server() as server:
        worker = start_worker(server)
        _, service = build(settings)
        service.request("domain", DOMAIN)
        service.request("domain", UNKNOWN)
        assert service.flush(10)
        assert wait_for(lambda: any(line["kind"] == "mailed" for line in lines()))
        service.close()
    seen = {(line["pid"], line["kind"], line["reason"]) for line in lines()}
    assert seen == {
        (os.getpid(), "requested", "hit"),
        (os.getpid(), "requested", "miss"),
        (worker.pid, "mailed", "confirmation"),
    }
