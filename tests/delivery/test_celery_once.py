"""Celery delivery mails each sealed job at most once, and outlives whatever a mailer raises.

A real worker on the local Redis delivers to a real SMTP server, as in
``test_celery``, with the fixtures of ``helpers.celery_worker``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery

from credrecovery import ConfirmationJob
from credrecovery.celery import CeleryDelivery, RedisDeliveryRecords
from credrecovery.smtp import SMTPMailer
from credrecovery.sqlite import SQLiteDirectory
from helpers.celery_app import build
from helpers.celery_worker import (
    PRIMARY,
    SECRET,
    FlakyHandler,
    StartWorker,
    settings,
    start_worker,
    wait_for,
)
from helpers.redis_server import redis_url
from helpers.smtp_server import running_smtp_server

__all__ = ["redis_url", "settings", "start_worker"]

OTHER = "otro@otro-ejemplo.com"
RECORD = re.compile(rb"credrecovery:delivered:[0-9a-f]{32}")


@pytest.fixture
def broker(settings: dict[str, str]) -> Iterator[redis.Redis]:
    """A client of the broker's Redis, with a second client on the directory."""
    with SQLiteDirectory(settings["CREDRECOVERY_CELERY_DB"]) as directory:
        directory.add_client(
            "9001", OTHER, key="Other-Access-Key-2024", domains=["otro-ejemplo.com"]
        )
    client = redis.Redis.from_url(settings["CREDRECOVERY_CELERY_BROKER"])
    yield client
    client.close()


def _queued(client: redis.Redis, settings: dict[str, str]) -> list[bytes]:
    return list(client.lrange(settings["CREDRECOVERY_CELERY_QUEUE"], 0, -1))


def _sealed(raw: bytes) -> str:
    body = base64.b64decode(json.loads(raw)["body"])
    [sealed], _kwargs, _options = json.loads(body)
    assert isinstance(sealed, str)
    return sealed


def _records(client: redis.Redis) -> dict[bytes, bytes]:
    return {key: client.get(key) or b"" for key in client.scan_iter(b"credrecovery:*")}


def _events(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.mark.slow  # starts a Celery worker
def test_fifty_replays_of_a_sealed_job_mail_once(
    settings: dict[str, str],
    start_worker: StartWorker,
    broker: redis.Redis,
) -> None:
    """A job the broker holds 50 times (49 replays of its message) is mailed once."""
    _, service = build(settings)
    service.request("client_number", "9000")
    [raw] = _queued(broker, settings)
    broker.lpush(settings["CREDRECOVERY_CELERY_QUEUE"], *[raw] * 49)
    # The solo worker takes jobs in order: once this mail is in, every replay was handled.
    service.request("client_number", "9001")
    with running_smtp_server() as server:
        start_worker(server)
        assert wait_for(lambda: any(m.rcpt_tos == (OTHER,) for m in server.received), 60)
        time.sleep(0.5)
        assert [m.rcpt_tos for m in server.received] == [(PRIMARY,), (OTHER,)]


@pytest.mark.slow  # starts a Celery worker
def test_a_failed_first_send_is_retried_and_a_later_replay_is_not_mailed(
    settings: dict[str, str],
    start_worker: StartWorker,
    broker: redis.Redis,
) -> None:
    """A 451 first: the retry takes the job again and mails it; a replay after does not."""
    _, service = build(settings)
    service.request("client_number", "9000")
    [raw] = _queued(broker, settings)
    handler = FlakyHandler(failures=1, reply="451 4.3.0 Try again later")
    with running_smtp_server(handler) as server:
        start_worker(server)
        assert wait_for(lambda: len(server.received) == 1)
        assert handler.rcpt_attempts == 2
        broker.lpush(settings["CREDRECOVERY_CELERY_QUEUE"], raw)
        service.request("client_number", "9001")
        assert wait_for(lambda: len(server.received) == 2)
        time.sleep(0.5)
        assert [m.rcpt_tos for m in server.received] == [(PRIMARY,), (OTHER,)]


@pytest.mark.slow  # starts a Celery worker
def test_a_worker_dead_between_claim_and_send_leaves_the_job_to_another(
    settings: dict[str, str],
    start_worker: StartWorker,
    broker: redis.Redis,
    tmp_path: Path,
) -> None:
    """The claim a dead worker held runs out with its lease; the job's redelivery is mailed once."""
    mark, events = tmp_path / "crashed", tmp_path / "events.jsonl"
    settings.update(
        CREDRECOVERY_CELERY_CRASH_MARK=str(mark),
        CREDRECOVERY_CELERY_LEASE="6",
        CREDRECOVERY_CELERY_VISIBILITY="1",
        CREDRECOVERY_CELERY_EVENTS=str(events),
    )
    _, service = build(settings)
    with running_smtp_server() as server:
        first = start_worker(server)
        service.request("client_number", "9000")
        assert wait_for(lambda: first.poll() is not None)
        assert mark.exists() and server.received == []
        [(key, value)] = _records(broker).items()
        assert value.startswith(b"sending:")
        start_worker(server)
        assert wait_for(lambda: len(server.received) == 1)
        time.sleep(1.0)
        assert [m.rcpt_tos for m in server.received] == [(PRIMARY,)]
        assert _records(broker) == {key: b"done"}
    # The second worker waited for the dead one's lease, and that wait is no attempt.
    # (The short visibility timeout also hands out copies of the waiting job: dropped.)
    seen = [
        (e["event"], e["attempt"]) for e in _events(events) if e["event"] != "delivery_duplicate"
    ]
    assert seen == [("delivery_deferred", None), ("mail_sent", 1)]


@pytest.mark.slow  # starts a Celery worker
def test_the_records_name_no_address_no_secret_and_a_decoy_like_a_hit(
    settings: dict[str, str],
    start_worker: StartWorker,
    broker: redis.Redis,
) -> None:
    """One key per job, hit or decoy alike: a keyed digest, "done", for token_max_age + 1 min."""
    _, service = build(settings)
    service.request("client_number", "31337")
    service.request("client_number", "9000")
    sealed = [_sealed(raw) for raw in _queued(broker, settings)]
    assert isinstance(service.delivery, CeleryDelivery)
    jobs = [service.delivery.unseal(s) for s in sealed]
    assert sorted(job.decoy for job in jobs) == [False, True]
    with running_smtp_server() as server:
        start_worker(server)
        assert wait_for(lambda: len(server.received) == 1)
        assert wait_for(lambda: len(_records(broker)) == 2)
    records = _records(broker)
    assert set(records.values()) == {b"done"}
    for key in records:
        assert RECORD.fullmatch(key)
        assert 3600 < broker.ttl(key) <= 3660
        clear = [PRIMARY, "9000", "31337", SECRET, *sealed]
        clear += [binding for job in jobs for _, binding in job.clients]
        clear += [hashlib.sha256(s.encode()).hexdigest()[:32] for s in sealed]
        clear += [hashlib.sha256(base64.urlsafe_b64decode(s)).hexdigest()[:32] for s in sealed]
        for text in clear:
            assert text.encode() not in key


@pytest.mark.slow  # starts a Celery worker
def test_a_mailer_raising_a_base_exception_does_not_stop_the_worker(
    settings: dict[str, str],
    start_worker: StartWorker,
    tmp_path: Path,
) -> None:
    """A mailer's BaseException is retried, then given up with a reason; later jobs go out."""
    events = tmp_path / "events.jsonl"
    settings.update(CREDRECOVERY_CELERY_RAISE_FIRST="4", CREDRECOVERY_CELERY_EVENTS=str(events))
    with SQLiteDirectory(settings["CREDRECOVERY_CELERY_DB"]) as directory:
        directory.add_client(
            "9001", OTHER, key="Other-Access-Key-2024", domains=["otro-ejemplo.com"]
        )
    _, service = build(settings)
    with running_smtp_server() as server:
        worker = start_worker(server)
        service.request("client_number", "9000")
        # Three attempts, three GreenTimeouts: given up.
        assert wait_for(lambda: any(e["event"] == "delivery_failed" for e in _events(events)))
        # The fourth send raises too, and its job's retry delivers it; the other goes at once.
        service.request("client_number", "9001")
        service.request("domain", "ejemploxmundo.com.ar")
        assert wait_for(lambda: len(server.received) == 2)
        time.sleep(0.5)
        assert sorted(m.rcpt_tos for m in server.received) == [(PRIMARY,), (OTHER,)]
        assert worker.poll() is None
    failed = [e for e in _events(events) if e["event"] == "delivery_failed"]
    assert [(e["reason"], e["error"], e["attempt"]) for e in failed] == [
        ("the mailer raised GreenTimeout", "GreenTimeout", 3)
    ]
    assert [e["event"] for e in _events(events)].count("delivery_retry") == 3


@pytest.mark.slow  # starts a Celery worker
def test_a_job_older_than_token_max_age_is_refused(
    settings: dict[str, str],
    start_worker: StartWorker,
    tmp_path: Path,
) -> None:
    """A job the worker takes after token_max_age is given up, logged, and never mailed."""
    events = tmp_path / "events.jsonl"
    settings.update(CREDRECOVERY_CELERY_MAX_AGE="2", CREDRECOVERY_CELERY_EVENTS=str(events))
    with SQLiteDirectory(settings["CREDRECOVERY_CELERY_DB"]) as directory:
        directory.add_client(
            "9001", OTHER, key="Other-Access-Key-2024", domains=["otro-ejemplo.com"]
        )
    _, service = build(settings)
    service.request("client_number", "9000")
    time.sleep(3.2)
    with running_smtp_server() as server:
        start_worker(server)
        assert wait_for(lambda: any(e["event"] == "delivery_failed" for e in _events(events)))
        service.request("client_number", "9001")
        assert wait_for(lambda: len(server.received) == 1)
        time.sleep(0.5)
        assert [m.rcpt_tos for m in server.received] == [(OTHER,)]
    [failed] = [e for e in _events(events) if e["event"] == "delivery_failed"]
    assert "expired" in failed["reason"]


def test_a_re_encoded_sealed_job_does_not_open(settings: dict[str, str]) -> None:
    """Only the canonical sealed form opens, so a re-encoded copy cannot pass for another job."""
    _, service = build(settings)
    delivery = service.delivery
    assert isinstance(delivery, CeleryDelivery)
    job = ConfirmationJob(
        recipient=PRIMARY,
        name="Ana",
        language="en",
        sender="a@b.example",
        clients=(("9000", "binding"),),
        issued_at=time.time(),
    )
    sealed = delivery.seal(job)
    assert delivery.unseal(sealed) == job
    for variant in (sealed.rstrip("="), " " + sealed, sealed[:20] + "\n" + sealed[20:]):
        with pytest.raises(ValueError):
            delivery.unseal(variant)


def test_every_key_order_names_a_job_alike(settings: dict[str, str]) -> None:
    """During a key rotation, workers with the keys in either order give a job one digest."""
    old_first = build({**settings, "CREDRECOVERY_CELERY_FALLBACK": "another-secret-" + "x" * 20})
    new_first = build(
        {
            **settings,
            "CREDRECOVERY_CELERY_SECRET": "another-secret-" + "x" * 20,
            "CREDRECOVERY_CELERY_FALLBACK": SECRET,
        }
    )
    sealers = [service.delivery._bound() for _, service in (old_first, new_first)]  # type: ignore[attr-defined]
    job = ConfirmationJob(
        recipient=PRIMARY,
        name="Ana",
        language="en",
        sender="a@b.example",
        clients=(("9000", "binding"),),
        issued_at=time.time(),
    )
    for sealer in sealers:
        sealed = sealer.seal(job)
        (job_a, name_a), (job_b, name_b) = (other.open(sealed) for other in sealers)
        assert job_a == job_b == job and name_a == name_b
        assert sealers[0].open(sealer.seal(job))[1] != name_a


def test_records_default_to_the_brokers_redis_and_otherwise_are_off_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Records live in the broker's or result backend's Redis; with neither, none, said once."""

    def delivery(app: Celery, **options: Any) -> CeleryDelivery:
        return CeleryDelivery(app, SMTPMailer("127.0.0.1", 25), **options)

    on_redis = delivery(Celery("a", broker="redis://127.0.0.1:6379/5"))
    assert isinstance(on_redis.records, RedisDeliveryRecords)
    assert on_redis.records.client.connection_pool.connection_kwargs["db"] == 5
    backend = delivery(
        Celery("b", broker="amqp://guest@127.0.0.1//", backend="redis://127.0.0.1:6379/6")
    )
    assert isinstance(backend.records, RedisDeliveryRecords)
    amqp = Celery("c", broker="amqp://guest:pw@127.0.0.1//")
    with caplog.at_level(logging.WARNING, logger="credrecovery"):
        assert delivery(amqp).records is None
    [off] = [r for r in caplog.records if getattr(r, "event", None) == "delivery_records_off"]
    assert "records=" in off.getMessage() and "pw" not in off.getMessage()
    assert delivery(amqp, records=None).records is None
    named = RedisDeliveryRecords("redis://:pw@127.0.0.1:6379/7")
    assert delivery(amqp, records=named).records is named
    assert "pw" not in repr(named)
