"""The Celery app of the delivery throughput benchmark, imported by it and by its worker.

The worker runs as

    celery -A benchmarks._delivery_celery_app:app worker --pool=solo

from the repository's root, with ``CREDRECOVERY_BENCH_BROKER`` (the Redis
broker), ``CREDRECOVERY_BENCH_SMTP_PORT`` (the sink on 127.0.0.1) and
``CREDRECOVERY_BENCH_SECRET`` (the service's secret key) and
``CREDRECOVERY_BENCH_QUEUE`` (the queue, which the worker consumes with
``-Q``) in its environment, and ``CREDRECOVERY_BENCH_RECORDS=none`` for a
delivery that records nothing;
:func:`build` builds the same service for the side that submits the jobs, and
:func:`empty_task` a task that measures what Celery itself costs a job.
"""

from __future__ import annotations

import os
import time
from typing import Any

import redis
from celery import Celery

from credrecovery import RecoveryService
from credrecovery.celery import CeleryDelivery
from credrecovery.memory import MemoryDirectory
from credrecovery.smtp import SMTPMailer

CONFIRM_URL = "https://panel.example.com/recover/{token}"
SENDER = "Example Hosting <noreply@hosting.example>"


def build() -> tuple[Celery, CeleryDelivery, RecoveryService]:
    """The app, its delivery and the service, from the environment."""
    celery_app = Celery(
        "credrecovery_delivery_bench", broker=os.environ["CREDRECOVERY_BENCH_BROKER"]
    )
    celery_app.conf.broker_connection_retry_on_startup = True
    celery_app.conf.worker_hijack_root_logger = False
    mailer = SMTPMailer("127.0.0.1", int(os.environ["CREDRECOVERY_BENCH_SMTP_PORT"]))
    delivery = CeleryDelivery(
        celery_app,
        mailer,
        delay=(0.0, 0.0),
        queue=os.environ["CREDRECOVERY_BENCH_QUEUE"],
        records=None if os.environ.get("CREDRECOVERY_BENCH_RECORDS") == "none" else "broker",
    )
    service = RecoveryService(
        MemoryDirectory(),
        mailer,
        secret_key=os.environ["CREDRECOVERY_BENCH_SECRET"],
        confirm_url=CONFIRM_URL,
        sender=SENDER,
        rate_limits=None,
        delivery=delivery,
    )
    return celery_app, delivery, service


def empty_task(celery_app: Celery) -> Any:
    """A task with the options of the delivery task that does nothing: Celery's own cost.

    Given a key, it stores the time it ran there, in the broker's Redis.
    """

    def empty(task: Any, sealed: str, stamp: str | None = None) -> None:
        if stamp is not None:
            redis.Redis.from_url(celery_app.conf.broker_url).set(stamp, repr(time.time()))

    register: Any = celery_app.task(
        name="credrecovery_bench.empty",
        bind=True,
        acks_late=True,
        reject_on_worker_lost=True,
        ignore_result=True,
        max_retries=None,
    )
    return register(empty)


if "CREDRECOVERY_BENCH_BROKER" in os.environ:
    app, _delivery, _service = build()
    empty = empty_task(app)
