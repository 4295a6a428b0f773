"""The Celery app of the HTTP timing benchmark, imported by the web app and by the worker.

Confirmation mails go through :class:`credrecovery.celery.CeleryDelivery`: the
web process only enqueues them on the broker, and a worker process started as

    celery -A benchmarks._http_celery_app:app worker --pool=threads --concurrency=8

sends them through the SMTP server. The environment carries what
:mod:`benchmarks._http_apps` reads, plus ``CREDRECOVERY_BENCH_BROKER`` (default
``redis://127.0.0.1:6379/13``).
"""

from __future__ import annotations

import os

from benchmarks._http_apps import service_options, smtp_port
from celery import Celery

from credrecovery import RecoveryService
from credrecovery import celery as credrecovery_celery
from credrecovery.smtp import SMTPMailer
from credrecovery.sqlite import SQLiteDirectory

DEFAULT_BROKER = "redis://127.0.0.1:6379/13"

app = Celery(
    "credrecovery_bench", broker=os.environ.get("CREDRECOVERY_BENCH_BROKER", DEFAULT_BROKER)
)
app.conf.broker_connection_retry_on_startup = True
app.conf.worker_hijack_root_logger = False
mailer = SMTPMailer("127.0.0.1", smtp_port())
service = RecoveryService(
    SQLiteDirectory(os.environ["CREDRECOVERY_BENCH_DB"]),
    mailer,
    delivery=credrecovery_celery.CeleryDelivery(app, mailer),
    **service_options(),
)
