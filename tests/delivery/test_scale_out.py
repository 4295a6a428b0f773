"""Several worker processes sharing SQLite, PostgreSQL and Redis, and a host's own tables.

The workers are real processes, forked from a clean server process that has
only imported what this module imports (``forkserver``): each builds its own
directory and service from plain settings, as a web server's workers would.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import queue
import uuid
from collections.abc import Callable
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import argon2
import bcrypt
import pytest
import sqlalchemy as sa

from credrecovery import (
    IdentifierKind,
    InvalidToken,
    RateLimits,
    RecoveryService,
    cheap_context,
    default_context,
)
from credrecovery.memory import MemoryDirectory, MemoryMailer
from credrecovery.sqlalchemy import SQLAlchemyDirectory, TableMapping
from credrecovery.sqlite import SQLiteDirectory
from helpers import CONFIRM_URL, SECRET, SENDER, key_from, pg, redis_server, token_from

# The service fixtures, made visible to this module's tests.
postgres = pg.postgres
redis_url = redis_server.redis_url

pytestmark = pytest.mark.slow
WORKERS_TIMEOUT = 60.0
# What this module's import costs, imported once in the fork server rather than in
# each worker. Not the module itself: the server preloads on its own sys.path
# (the parent's reaches only the workers), where this folder is not.
PRELOAD = [
    "argon2",
    "bcrypt",
    "limits.storage",
    "psycopg",
    "pytest",
    "redis",
    "sqlalchemy.dialects.postgresql.psycopg",
    "credrecovery.memory",
    "credrecovery.sqlalchemy",
    "credrecovery.sqlite",
]
CREDENTIALS_SUBJECT = "Your client panel access details"


class FileMailer:
    """Writes each message to a file of its own in ``outbox``: a mailer any process can share."""

    def __init__(self, outbox: str | os.PathLike[str]) -> None:
        self.outbox = Path(outbox)
        self._count = itertools.count()

    def send(self, message: EmailMessage) -> None:
        name = f"{os.getpid()}-{next(self._count)}.eml"
        partial = self.outbox / f".{name}.part"
        partial.write_bytes(message.as_bytes())
        partial.replace(self.outbox / name)


def read_outbox(outbox: Path) -> list[EmailMessage]:
    return [
        message_from_bytes(path.read_bytes(), policy=policy.default)
        for path in sorted(outbox.glob("*.eml"))
    ]


def run_workers(target: Callable[..., None], args: list[tuple[Any, ...]]) -> list[Any]:
    """Run ``target(*a, barrier, results)`` in a process of its own per ``a``; return the results.

    Every worker waits on the barrier before its part, so they start it together.
    """
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    barrier = context.Barrier(len(args))
    results = context.Queue()
    processes = [
        context.Process(target=target, args=(*a, barrier, results), daemon=True) for a in args
    ]
    for process in processes:
        process.start()
    collected: list[Any] = []
    try:
        # Drained before joining: a worker exits only once its results are read.
        for _ in processes:
            collected.append(results.get(timeout=WORKERS_TIMEOUT))
    except queue.Empty:
        pytest.fail(f"only {len(collected)} of {len(processes)} workers reported: {collected}")
    finally:
        for process in processes:
            process.join(10)
            if process.is_alive():
                process.kill()
                process.join()
        results.close()
    assert [p.exitcode for p in processes] == [0] * len(processes)
    return collected


# --- eight workers confirm one token --------------------------------------------------------


def confirm_in_worker(
    backend: str, location: str, outbox: str, token: str, barrier: Any, results: Any
) -> None:
    """One worker: its own directory and service; confirm after the barrier."""
    try:
        directory: SQLiteDirectory | SQLAlchemyDirectory = (
            SQLiteDirectory(location) if backend == "sqlite" else SQLAlchemyDirectory(location)
        )
        service = RecoveryService(
            directory,
            FileMailer(outbox),
            secret_key=SECRET,
            confirm_url=CONFIRM_URL,
            sender=SENDER,
            crypt_context=cheap_context(),
            rate_limits=None,
            delivery="sync",
        )
        # Connect before the barrier, so that the race is on the confirmation itself.
        directory.find(IdentifierKind.CLIENT_NUMBER, "1001")
        barrier.wait(WORKERS_TIMEOUT)
        try:
            service.confirm(token)
        except InvalidToken as exc:
            results.put(type(exc).__name__)
        else:
            results.put("confirmed")
        directory.close()
    except BaseException as exc:  # noqa: BLE001 - reported to the parent
        results.put(f"error: {exc!r}")


@pytest.mark.postgres
def test_eight_processes_confirm_one_token_once(
    postgres: pg.PostgresSchema, tmp_path: Path
) -> None:
    """Eight processes on PostgreSQL confirm one token: one rotation, one mail."""
    context = cheap_context()
    old_key = "Old-Access-Key-2024"
    directory = SQLAlchemyDirectory(postgres.engine, crypt_context=context, create_schema=True)
    directory.add_client("1001", "alice@example.com", key=old_key, domains=["alice.example"])
    mailer = MemoryMailer()
    with RecoveryService(
        directory,
        mailer,
        secret_key=SECRET,
        confirm_url=CONFIRM_URL,
        sender=SENDER,
        crypt_context=context,
        rate_limits=None,
        delivery="sync",
    ) as service:
        service.request("domain", "alice.example")
    token = token_from(mailer.outbox[0])
    # The workers reach the fresh schema through the URL alone.
    url = (
        sa.make_url(postgres.url)
        .update_query_dict({"options": f"-csearch_path={postgres.name}", "connect_timeout": "5"})
        .render_as_string(hide_password=False)
    )
    outbox = tmp_path / "outbox"
    outbox.mkdir()

    outcomes = run_workers(confirm_in_worker, [("sqlalchemy", url, str(outbox), token)] * 8)

    assert_one_rotation(outcomes, outbox, directory, old_key)
    directory.dispose()


def test_four_processes_confirm_one_token_once_on_sqlite(tmp_path: Path) -> None:
    """Four processes sharing a SQLite file confirm one token: one rotation, one mail."""
    old_key = "Old-Access-Key-2024"
    path = tmp_path / "clients.sqlite3"
    directory = SQLiteDirectory(path, crypt_context=cheap_context())
    directory.add_client("1001", "alice@example.com", key=old_key, domains=["alice.example"])
    mailer = MemoryMailer()
    with RecoveryService(
        directory,
        mailer,
        secret_key=SECRET,
        confirm_url=CONFIRM_URL,
        sender=SENDER,
        crypt_context=cheap_context(),
        rate_limits=None,
        delivery="sync",
    ) as service:
        service.request("email", "alice@example.com")
    token = token_from(mailer.outbox[0])
    outbox = tmp_path / "outbox"
    outbox.mkdir()

    outcomes = run_workers(confirm_in_worker, [("sqlite", str(path), str(outbox), token)] * 4)

    assert_one_rotation(outcomes, outbox, directory, old_key)
    directory.close()


def assert_one_rotation(
    outcomes: list[Any],
    outbox: Path,
    directory: SQLiteDirectory | SQLAlchemyDirectory,
    old_key: str,
) -> None:
    assert sorted(outcomes) == ["TokenAlreadyUsed"] * (len(outcomes) - 1) + ["confirmed"]
    [credentials] = read_outbox(outbox)
    assert str(credentials["Subject"]) == CREDENTIALS_SUBJECT
    assert credentials["To"].addresses[0].addr_spec == "alice@example.com"
    key = key_from(credentials)
    stored = directory.find(IdentifierKind.CLIENT_NUMBER, "1001")
    assert stored is not None
    assert cheap_context().verify(key, stored.key_hash)
    assert not cheap_context().verify(old_key, stored.key_hash)


# --- four workers share one Redis limiter ---------------------------------------------------

IDENTIFIERS = [
    ("domain", "ejemploxmundo.com.ar"),
    ("email", "ejemplo@ejemploxmundo.com.ar"),
    ("client_number", "9000"),
    ("domain", "otro-ejemplo.com"),
    ("domain", "Ejemploxmundo.COM.ar."),
]
REQUESTS_PER_WORKER = 25


def request_in_worker(
    worker: int, secret: str, storage_uri: str, outbox: str, barrier: Any, results: Any
) -> None:
    """One worker: its own directory and service, limits counted in the shared Redis."""
    try:
        directory = MemoryDirectory(crypt_context=cheap_context())
        directory.add_client(
            "9000",
            "ejemplo@ejemploxmundo.com.ar",
            key="Old-Access-Key-2024",
            domains=["ejemploxmundo.com.ar", "otro-ejemplo.com"],
        )
        limits = RateLimits(
            per_requester="1000/hour",
            per_identifier="1000/hour",
            per_client="3/hour",
            per_mailbox="3/hour",
            storage_uri=storage_uri,
        )
        with RecoveryService(
            directory,
            FileMailer(outbox),
            secret_key=secret,
            confirm_url=CONFIRM_URL,
            sender=SENDER,
            crypt_context=cheap_context(),
            rate_limits=limits,
            delivery="sync",
        ) as service:
            barrier.wait(WORKERS_TIMEOUT)
            for i in range(REQUESTS_PER_WORKER):
                kind, value = IDENTIFIERS[(worker + i) % len(IDENTIFIERS)]
                service.request(kind, value, requester=f"198.51.100.{worker}")
        results.put("done")
    except BaseException as exc:  # noqa: BLE001 - reported to the parent
        results.put(f"error: {exc!r}")


@pytest.mark.redis
def test_four_processes_share_the_per_client_limit(redis_url: str, tmp_path: Path) -> None:
    """A hundred requests from four processes, each its own requester, mail the client
    three times in all: per_mailbox counts every requester together, across processes."""
    outbox = tmp_path / "outbox"
    outbox.mkdir()
    # A secret of the test's own keys its limiter entries apart from any other user of Redis.
    secret = f"{SECRET}-{uuid.uuid4().hex}"

    outcomes = run_workers(
        request_in_worker, [(i, secret, redis_url, str(outbox)) for i in range(4)]
    )

    assert outcomes == ["done"] * 4
    mails = read_outbox(outbox)
    assert len(mails) == 3
    assert {m["To"].addresses[0].addr_spec for m in mails} == {"ejemplo@ejemploxmundo.com.ar"}


# --- a host's existing tables ---------------------------------------------------------------

HOST_SCHEMA = """
CREATE TABLE customers (
    cust_no    integer PRIMARY KEY,
    email_addr varchar(254) NOT NULL,
    pw         text NOT NULL,
    fullname   text,
    language   varchar(8),
    balance    numeric(10, 2) NOT NULL DEFAULT 0
);
CREATE TABLE customer_domains (
    fqdn    text PRIMARY KEY,
    cust_no integer NOT NULL REFERENCES customers
);
"""


@pytest.mark.postgres
def test_host_tables_recover_by_mapping_alone(postgres: pg.PostgresSchema) -> None:
    """An existing panel's tables and bcrypt hashes; only a TableMapping is configured."""
    legacy_key = b"Legacy-Panel-Key-2019"
    legacy_hash = bcrypt.hashpw(legacy_key, bcrypt.gensalt(rounds=4)).decode()
    other_hash = bcrypt.hashpw(b"Other-Panel-Key-2020", bcrypt.gensalt(rounds=4)).decode()
    with postgres.engine.begin() as connection:
        connection.exec_driver_sql(HOST_SCHEMA)
        connection.exec_driver_sql(
            "INSERT INTO customers (cust_no, email_addr, pw, fullname, language, balance) "
            "VALUES (4711, 'marta@gomez-hosting.example', %(a)s, 'Marta Gómez', 'es', 12.50), "
            "(4712, 'otro@example.net', %(b)s, 'Otro Cliente', 'en', 0)",
            {"a": legacy_hash, "b": other_hash},
        )
        connection.exec_driver_sql(
            "INSERT INTO customer_domains (fqdn, cust_no) VALUES "
            "('gomez-hosting.example', 4711), ('marta-shop.example', 4711), "
            "('otro.example', 4712)"
        )

    def snapshot() -> tuple[list[Any], list[Any]]:
        with postgres.engine.connect() as connection:
            customers = connection.exec_driver_sql(
                "SELECT cust_no, email_addr, pw, fullname, language, balance "
                "FROM customers ORDER BY cust_no"
            ).all()
            domains = connection.exec_driver_sql(
                "SELECT fqdn, cust_no FROM customer_domains ORDER BY fqdn"
            ).all()
        return [tuple(row) for row in customers], [tuple(row) for row in domains]

    before_customers, before_domains = snapshot()
    mapping = TableMapping(
        clients_table="customers",
        number="cust_no",
        email="email_addr",
        key_hash="pw",
        name="fullname",
        locale="language",
        domains_table="customer_domains",
        domain="fqdn",
        domain_client="cust_no",
        schema=postgres.name,
        number_is_integer=True,
    )
    directory = SQLAlchemyDirectory(postgres.url, mapping=mapping)
    mailer = MemoryMailer()
    try:
        with RecoveryService(
            directory,
            mailer,
            secret_key=SECRET,
            confirm_url=CONFIRM_URL,
            sender=SENDER,
            rate_limits=None,
            delivery="sync",
        ) as service:
            service.request("domain", "Marta-Shop.Example")
            [confirmation_mail] = mailer.outbox
            assert confirmation_mail["To"].addresses[0].addr_spec == "marta@gomez-hosting.example"
            confirmation = service.confirm(token_from(confirmation_mail))
    finally:
        directory.dispose()

    assert (confirmation.number, confirmation.email) == ("4711", "marta@gomez-hosting.example")
    key = key_from(mailer.outbox[1])  # in Spanish: the language column was read
    after_customers, after_domains = snapshot()
    assert after_domains == before_domains
    assert after_customers[1] == before_customers[1]
    (number, email, pw, fullname, language, balance) = after_customers[0]
    assert (number, email, fullname, language, balance) == (
        before_customers[0][:2] + before_customers[0][3:]
    )
    assert pw.startswith("$argon2id$")
    assert argon2.PasswordHasher().verify(pw, key)
    assert not default_context().verify(legacy_key, pw)
