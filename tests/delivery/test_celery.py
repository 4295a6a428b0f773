"""Delivery through a real Celery worker on the local Redis, to a real SMTP server."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from passlib.context import CryptContext

from credrecovery import ConfirmationJob
from credrecovery.celery import CeleryDelivery
from credrecovery.sqlite import SQLiteDirectory
from helpers import TESTS, token_from
from helpers.celery_app import build
from helpers.redis_server import redis_url
from helpers.smtp_server import RecordingHandler, RunningSMTPServer, running_smtp_server

__all__ = ["redis_url"]

PRIMARY = "ejemplo@ejemploxmundo.com.ar"
SECRET = "celery-test-secret-0123456789abcdef"
StartWorker = Callable[[RunningSMTPServer], "subprocess.Popen[bytes]"]


class FlakyHandler(RecordingHandler):
    """Answers the first ``failures`` recipients with ``reply``, then accepts."""

    def __init__(self, failures: int, reply: str) -> None:
        super().__init__()
        self.failures = failures
        self.reply = reply
        self.rcpt_attempts = 0

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          rcpt_options: list[str]) -> str:
        self.rcpt_attempts += 1
        if self.rcpt_attempts <= self.failures:
            return self.reply
        return await super().handle_RCPT(server, session, envelope, address, rcpt_options)


@pytest.fixture
def settings(redis_url: str, tmp_path: Path, ctx: CryptContext) -> dict[str, str]:
    """Environment for a worker and a web side: a broker, a queue, a directory, a secret."""
    db = tmp_path / "clients.sqlite3"
    with SQLiteDirectory(db, crypt_context=ctx) as directory:
        directory.add_client("9000", PRIMARY, key="Old-Access-Key-2024",
                             domains=["ejemploxmundo.com.ar"], name="Ana")
    return {
        "CREDRECOVERY_CELERY_BROKER": redis_url,
        "CREDRECOVERY_CELERY_QUEUE": f"credrecovery-test-{uuid.uuid4().hex}",
        "CREDRECOVERY_CELERY_DB": str(db),
        "CREDRECOVERY_CELERY_SECRET": SECRET,
        "CREDRECOVERY_CELERY_SMTP_PORT": "2525",  # replaced when a server starts
    }


@pytest.fixture
def start_worker(
    settings: dict[str, str],
) -> Iterator[Callable[[RunningSMTPServer], subprocess.Popen[bytes]]]:
    """Start ``celery worker`` in a process of its own for the given SMTP server."""
    workers: list[subprocess.Popen[bytes]] = []

    def start(server: RunningSMTPServer) -> subprocess.Popen[bytes]:
        settings["CREDRECOVERY_CELERY_SMTP_PORT"] = str(server.port)
        env = {**os.environ, **settings}
        workers.append(subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "helpers.celery_app:app", "worker",
             "--pool=solo", "-Q", settings["CREDRECOVERY_CELERY_QUEUE"], "--loglevel=WARNING",
             "--without-gossip", "--without-mingle", "--without-heartbeat"],
            cwd=TESTS, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        ))
        return workers[-1]

    yield start
    for worker in workers:
        worker.terminate()
        try:
            worker.wait(15)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait(5)


def _wait_for(condition: Callable[[], bool], seconds: float = 30.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def test_a_worker_delivers_the_link_and_drops_the_decoy(
    settings: dict[str, str], start_worker: StartWorker,
) -> None:
    """A hit's mail arrives through the worker with a working link; a miss sends nothing."""
    with SQLiteDirectory(settings["CREDRECOVERY_CELERY_DB"]) as directory:
        directory.add_client("9001", "otro@otro-ejemplo.com", key="Other-Access-Key-2024",
                             domains=["otro-ejemplo.com"])
    with running_smtp_server() as server:
        start_worker(server)
        _, service = build(settings)
        service.request("domain", "nadie-aqui.com.ar")
        service.request("domain", "ejemploxmundo.com.ar")
        service.request("email", "nadie@nadie-aqui.com.ar")
        # The solo worker takes jobs in order: once this last hit's mail is in,
        # every decoy before it has been handled.
        service.request("client_number", "9001")
        assert _wait_for(lambda: len(server.received) >= 2)
        mail, sentinel = server.received
        assert (mail.rcpt_tos, sentinel.rcpt_tos) == ((PRIMARY,), ("otro@otro-ejemplo.com",))
        assert service.confirm(token_from(mail.message)).number == "9000"
        assert len(server.received) == 3  # the credentials mail, sent by the web side


def test_a_killed_web_process_loses_no_mail(
    settings: dict[str, str], start_worker: StartWorker,
) -> None:
    """A web process that dies right after request() leaves its job with the broker."""
    with running_smtp_server() as server:
        settings["CREDRECOVERY_CELERY_SMTP_PORT"] = str(server.port)
        web = subprocess.run(
            [sys.executable, "-c",
             "import os\nfrom helpers import celery_app\n"
             "celery_app.service.request('client_number', '9000')\n"
             "os._exit(0)\n"],
            cwd=TESTS, env={**os.environ, **settings}, timeout=60, check=False,
        )
        assert web.returncode == 0
        assert server.received == []
        start_worker(server)
        assert _wait_for(lambda: len(server.received) == 1)
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


def test_temporary_failures_are_retried_by_celery(
    settings: dict[str, str], start_worker: StartWorker,
) -> None:
    """Two 451 answers, then success: Celery's retries deliver the mail once."""
    handler = FlakyHandler(failures=2, reply="451 4.3.0 Try again later")
    with running_smtp_server(handler) as server:
        start_worker(server)
        _, service = build(settings)
        service.request("client_number", "9000")
        assert _wait_for(lambda: len(server.received) == 1)
        assert handler.rcpt_attempts == 3


def test_a_permanent_failure_is_given_up_at_once(
    settings: dict[str, str], start_worker: StartWorker,
) -> None:
    """A 550 is tried once; the next job is delivered as usual."""
    handler = FlakyHandler(failures=1, reply="550 5.1.1 No such user")
    with running_smtp_server(handler) as server:
        start_worker(server)
        _, service = build(settings)
        service.request("client_number", "9000")
        assert _wait_for(lambda: handler.rcpt_attempts == 1)
        service.request("domain", "ejemploxmundo.com.ar")
        assert _wait_for(lambda: len(server.received) == 1)
        time.sleep(1.0)
        assert handler.rcpt_attempts == 2


def test_a_sealed_job_opens_only_with_the_secret(settings: dict[str, str]) -> None:
    """A sealed job opens under its secret (or as a fallback), not under another, nor tampered."""
    _, service = build(settings)
    delivery = service.delivery
    assert isinstance(delivery, CeleryDelivery)
    job = ConfirmationJob(recipient=PRIMARY, name="Ana", language="en", sender="a@b.example",
                          clients=(("9000", "binding"),), issued_at=time.time())
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
    _, rotated = build({**settings, "CREDRECOVERY_CELERY_SECRET": "another-secret-" + "x" * 20,
                        "CREDRECOVERY_CELERY_FALLBACK": SECRET})
    assert isinstance(rotated.delivery, CeleryDelivery)
    assert rotated.delivery.unseal(sealed) == job
