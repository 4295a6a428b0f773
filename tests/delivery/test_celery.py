"""Delivery through a real Celery worker on the local Redis, to a real SMTP server."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time

import pytest
import redis

from credrecovery import ConfirmationJob
from credrecovery.celery import CeleryDelivery
from credrecovery.sqlite import SQLiteDirectory
from helpers import TESTS, token_from
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


@pytest.mark.slow  # starts a Celery worker
def test_a_worker_delivers_the_link_and_drops_the_decoy(
    settings: dict[str, str],
    start_worker: StartWorker,
) -> None:
    """A hit's mail arrives through the worker with a working link; a miss sends nothing."""
    with SQLiteDirectory(settings["CREDRECOVERY_CELERY_DB"]) as directory:
        directory.add_client(
            "9001",
            "otro@otro-ejemplo.com",
            key="Other-Access-Key-2024",
            domains=["otro-ejemplo.com"],
        )
    with running_smtp_server() as server:
        start_worker(server)
        _, service = build(settings)
        service.request("domain", "nadie-aqui.com.ar")
        service.request("domain", "ejemploxmundo.com.ar")
        service.request("email", "nadie@nadie-aqui.com.ar")
        # The solo worker takes jobs in order: once this last hit's mail is in,
        # every decoy before it has been handled.
        service.request("client_number", "9001")
        assert wait_for(lambda: len(server.received) >= 2)
        mail, sentinel = server.received
        assert (mail.rcpt_tos, sentinel.rcpt_tos) == ((PRIMARY,), ("otro@otro-ejemplo.com",))
        assert service.confirm(token_from(mail.message)).number == "9000"
        assert len(server.received) == 3  # the credentials mail, sent by the web side


@pytest.mark.slow  # starts a Celery worker
def test_a_killed_web_process_loses_no_mail(
    settings: dict[str, str],
    start_worker: StartWorker,
) -> None:
    """A web process that dies right after request() leaves its job with the broker."""
    with running_smtp_server() as server:
        settings["CREDRECOVERY_CELERY_SMTP_PORT"] = str(server.port)
        web = subprocess.run(
            [
                sys.executable,
                "-c",
                "import os\nfrom helpers import celery_app\n"
                "celery_app.service.request('client_number', '9000')\n"
                "os._exit(0)\n",
            ],
            cwd=TESTS,
            env={**os.environ, **settings},
            timeout=60,
            check=False,
        )
        assert web.returncode == 0
        assert server.received == []
        start_worker(server)
        assert wait_for(lambda: len(server.received) == 1)
        assert server.received[0].rcpt_tos == (PRIMARY,)


def test_a_broker_reader_learns_nothing(settings: dict[str, str]) -> None:
    """Queued payloads hold no link, address or number, and a hit's is a miss's size."""
    _, service = build(settings)
    service.request("client_number", "9000")
    service.request("client_number", "31337")
    client = redis.Redis.from_url(settings["CREDRECOVERY_CELERY_BROKER"])
    queued = client.lrange(settings["CREDRECOVERY_CELERY_QUEUE"], 0, -1)
    client.close()
    assert len(queued) == 2
    sizes = []
    for raw in queued:
        body = base64.b64decode(json.loads(raw)["body"])
        [sealed], _kwargs, _options = json.loads(body)
        sizes.append(len(sealed))
        for text in (raw, body):
            for clear in (b"9000", b"31337", PRIMARY.encode(), b"/recover/", b"nobody"):
                assert clear not in text
    assert sizes[0] == sizes[1]


@pytest.mark.slow  # starts a Celery worker
def test_temporary_failures_are_retried_by_celery(
    settings: dict[str, str],
    start_worker: StartWorker,
) -> None:
    """Two 451 answers, then success: Celery's retries deliver the mail once."""
    handler = FlakyHandler(failures=2, reply="451 4.3.0 Try again later")
    with running_smtp_server(handler) as server:
        start_worker(server)
        _, service = build(settings)
        service.request("client_number", "9000")
        assert wait_for(lambda: len(server.received) == 1)
        assert handler.rcpt_attempts == 3


@pytest.mark.slow  # starts a Celery worker
def test_a_permanent_failure_is_given_up_at_once(
    settings: dict[str, str],
    start_worker: StartWorker,
) -> None:
    """A 550 is tried once; the next job is delivered as usual."""
    handler = FlakyHandler(failures=1, reply="550 5.1.1 No such user")
    with running_smtp_server(handler) as server:
        start_worker(server)
        _, service = build(settings)
        service.request("client_number", "9000")
        assert wait_for(lambda: handler.rcpt_attempts == 1)
        service.request("domain", "ejemploxmundo.com.ar")
        assert wait_for(lambda: len(server.received) == 1)
        time.sleep(1.0)
        assert handler.rcpt_attempts == 2


def test_a_sealed_job_opens_only_with_the_secret(settings: dict[str, str]) -> None:
    """A sealed job opens under its secret (or as a fallback), not under another, nor tampered."""
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
    _, twin = build(settings)
    assert isinstance(twin.delivery, CeleryDelivery)
    assert twin.delivery.unseal(sealed) == job
    _, other = build({**settings, "CREDRECOVERY_CELERY_SECRET": "another-secret-" + "x" * 20})
    assert isinstance(other.delivery, CeleryDelivery)
    for forged in (sealed[:-4] + "AAAA", sealed[:40] + sealed[41:], "not a job"):
        with pytest.raises(ValueError):
            twin.delivery.unseal(forged)
    with pytest.raises(ValueError):
        other.delivery.unseal(sealed)
    _, rotated = build(
        {
            **settings,
            "CREDRECOVERY_CELERY_SECRET": "another-secret-" + "x" * 20,
            "CREDRECOVERY_CELERY_FALLBACK": SECRET,
        }
    )
    assert isinstance(rotated.delivery, CeleryDelivery)
    assert rotated.delivery.unseal(sealed) == job
