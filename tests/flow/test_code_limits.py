"""Codes under pressure: the requester's limits, attempts shared through Redis, secrets kept
out of logs and reprs, and the events a code flow reports."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest

from credrecovery import InvalidCode, RateLimited, RateLimits
from credrecovery.codes import CODE_ALPHABET
from credrecovery.events import Event, EventKind
from credrecovery.memory import MemoryMailer
from helpers import code_from, key_from
from helpers.redis_server import redis_url  # noqa: F401 - a fixture

pytestmark = pytest.mark.shells("sync", "async")

MakeService = Callable[..., Any]
DOMAIN = "ejemploxmundo.com.ar"
REQUESTER = "203.0.113.9"


def _wrong(code: str) -> str:
    first = CODE_ALPHABET[(CODE_ALPHABET.index(code[0]) + 1) % len(CODE_ALPHABET)]
    return first + code[1:]


def test_wrong_codes_count_toward_failed_confirmations(
    make_service: MakeService,
    mailer: MemoryMailer,
) -> None:
    """Bad codes, like bad tokens, spend the requester's failed_confirmations."""
    service = make_service(rate_limits=RateLimits(failed_confirmations="2/minute"))
    tickets = []
    for _ in range(3):
        tickets.append((service.request_code("domain", DOMAIN), code_from(mailer.outbox[-1])))
    for ticket, code in tickets[:2]:
        with pytest.raises(InvalidCode):
            service.check_code(ticket, _wrong(code), requester=REQUESTER)
    ticket, code = tickets[2]
    with pytest.raises(RateLimited) as caught:
        service.check_code(ticket, code, requester=REQUESTER)
    assert caught.value.limit == "failed_confirmations"
    # Another requester, with the right code, is not held back.
    assert service.check_code(ticket, code, requester="198.51.100.4").number == "9000"


def test_request_code_counts_toward_the_request_limits(make_service: MakeService) -> None:
    """A code request is a recovery request: per_requester refuses the next one."""
    service = make_service(rate_limits=RateLimits(per_requester="2/minute"))
    service.request("domain", DOMAIN, requester=REQUESTER)
    service.request_code("domain", DOMAIN, requester=REQUESTER)
    with pytest.raises(RateLimited):
        service.request_code("domain", DOMAIN, requester=REQUESTER)


def test_a_withheld_mail_still_returns_a_ticket(
    make_service: MakeService,
    mailer: MemoryMailer,
) -> None:
    """Over per_client nothing is mailed, yet the ticket looks like any other."""
    service = make_service(rate_limits=RateLimits(per_client="1/hour"))
    first = service.request_code("domain", DOMAIN, requester=REQUESTER)
    sent = len(mailer.outbox)
    second = service.request_code("domain", DOMAIN, requester=REQUESTER)
    assert len(mailer.outbox) == sent
    assert len(second) == len(first)


def test_attempts_are_shared_by_services_on_one_redis(
    make_service: MakeService,
    mailer: MemoryMailer,
    redis_url: str,  # noqa: F811
) -> None:
    """Two workers on one Redis: wrong codes typed on either kill the ticket on both."""
    limits = RateLimits(
        storage_uri=redis_url,
        failed_confirmations="100/minute",
        per_client="100/hour",
        per_mailbox="100/hour",
    )
    one, two = make_service(rate_limits=limits), make_service(rate_limits=limits)
    ticket = one.request_code("domain", DOMAIN)
    code = code_from(mailer.outbox[-1])
    for service in (one, two, one):
        with pytest.raises(InvalidCode):
            service.check_code(ticket, _wrong(code), requester=REQUESTER)
    for service in (two, one):
        with pytest.raises(InvalidCode):
            service.check_code(ticket, code)
    # The counter is keyed by a digest: nothing of the ticket is in Redis's keys.
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        keys = [key.decode() for key in client.keys("*")]
    finally:
        client.close()
    assert any("code_attempts" in key for key in keys)
    assert not any(part in key for key in keys for part in ticket.split(".") if len(part) > 8)


def test_no_code_ticket_or_key_in_logs_or_reprs(
    make_service: MakeService,
    mailer: MemoryMailer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Every record of a full run, with its extra fields, and every repr hold none of them."""
    caplog.set_level(logging.DEBUG, logger="credrecovery")
    service = make_service(rate_limits=RateLimits())
    ticket = service.request_code("domain", DOMAIN, requester=REQUESTER)
    code = code_from(mailer.outbox[-1])
    with pytest.raises(InvalidCode):
        service.check_code(ticket, _wrong(code), requester=REQUESTER)
    confirmation = service.confirm_code(ticket, code.lower(), requester=REQUESTER)
    with pytest.raises(InvalidCode) as caught:
        service.confirm_code(ticket, code, requester=REQUESTER)
    key = key_from(mailer.outbox[-1])
    nonce = service.codes.read(ticket).nonce
    secrets = {ticket, code, code.replace("-", ""), key, _wrong(code), nonce, *ticket.split(".")}
    seen = [
        repr(service),
        repr(service.codes),
        repr(confirmation),
        str(caught.value),
        repr(caught.value),
    ]
    for record in caplog.records:
        seen.append(record.getMessage())
        seen.extend(repr(value) for value in vars(record).values())
    for text in seen:
        for secret in secrets:
            assert secret not in text


def test_code_flows_report_their_events(
    make_service: MakeService,
    mailer: MemoryMailer,
) -> None:
    """requested (hit, miss), rejected wrong_code, confirmed code: never a code in a field."""
    events: list[Event] = []
    service = make_service(on_event=events.append)
    ticket = service.request_code("domain", DOMAIN)
    code = code_from(mailer.outbox[-1])
    service.request_code("domain", "ejemploxmundo.com.uy")
    with pytest.raises(InvalidCode):
        service.check_code(ticket, _wrong(code))
    service.confirm_code(ticket, code)
    assert service.flush(10)
    seen = [(e.kind, e.reason) for e in events]
    for expected in (
        (EventKind.REQUESTED, "hit"),
        (EventKind.REQUESTED, "miss"),
        (EventKind.REJECTED, "wrong_code"),
        (EventKind.CONFIRMED, "code"),
        (EventKind.KEY_CHANGED, "generated"),
    ):
        assert expected in seen
    confirmed = next(e for e in events if e.kind is EventKind.CONFIRMED)
    assert confirmed.number == "9000"
    for event in events:
        assert code not in repr(event) and ticket not in repr(event)
