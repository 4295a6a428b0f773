"""A real ``celery worker`` process for the Celery delivery tests, and what they share.

The ``settings`` fixture holds a worker's environment (a broker database, a
queue, a directory, a secret); ``start_worker`` starts ``celery -A
helpers.celery_app:app worker`` with it for a given SMTP server. Test modules
import both fixtures by name, with ``redis_url`` they depend on::

    from helpers.celery_worker import settings, start_worker
    from helpers.redis_server import redis_url
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from passlib.context import CryptContext

from credrecovery.sqlite import SQLiteDirectory
from helpers.constants import TESTS
from helpers.smtp_server import RecordingHandler, RunningSMTPServer

__all__ = [
    "PRIMARY",
    "SECRET",
    "FlakyHandler",
    "StartWorker",
    "settings",
    "start_worker",
    "wait_for",
]

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

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        self.rcpt_attempts += 1
        if self.rcpt_attempts <= self.failures:
            return self.reply
        return await super().handle_RCPT(server, session, envelope, address, rcpt_options)


@pytest.fixture
def settings(redis_url: str, tmp_path: Path, ctx: CryptContext) -> dict[str, str]:
    """Environment for a worker and a web side: a broker, a queue, a directory, a secret."""
    db = tmp_path / "clients.sqlite3"
    with SQLiteDirectory(db, crypt_context=ctx) as directory:
        directory.add_client(
            "9000", PRIMARY, key="Old-Access-Key-2024", domains=["ejemploxmundo.com.ar"], name="Ana"
        )
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
        workers.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "helpers.celery_app:app",
                    "worker",
                    "--pool=solo",
                    "-Q",
                    settings["CREDRECOVERY_CELERY_QUEUE"],
                    "--loglevel=WARNING",
                    "--without-gossip",
                    "--without-mingle",
                    "--without-heartbeat",
                ],
                cwd=TESTS,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        return workers[-1]

    yield start
    # The test is over: a warm shutdown would only wait for the worker to say goodbye.
    for worker in workers:
        worker.kill()
        worker.wait(15)


def wait_for(condition: Callable[[], bool], seconds: float = 30.0) -> bool:
    """Whether ``condition`` holds within ``seconds``, polling it every 50 ms."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()
