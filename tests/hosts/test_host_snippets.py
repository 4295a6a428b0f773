"""Every Python block of README.md and docs/ compiles, and those that can run here do.

Each block is either run by a runner below or named in ``SKIPPED`` with the
reason it cannot run here; a new block must be added to one of the two.
Blocks are keyed ``page#n``, the n-th ``python`` block of the page, and each
key carries a fragment of the block, so that a block moved on its page fails
loudly instead of running the wrong code.

A block runs statement by statement in one namespace, in a temporary folder
as the working directory, with the environment variables it reads set to test
values. Names a block assumes (``directory``, ``mailer``, ``token``...) are
supplied by its runner, ``token`` at the moment the block first reads it,
from the mail the block's own service sent. Where a block names a server that
is not here, the runner rewrites that one literal in the block's text, as
``REWRITES`` lists, towards a real server on 127.0.0.1: an aiosmtpd SMTP
server with STARTTLS and a throw-away CA (trusted through ``SSL_CERT_FILE``,
so the block's own ``ssl.create_default_context()`` verifies it), or the local
Redis.
"""

from __future__ import annotations

import ast
import atexit
import contextlib
import logging
import os
import secrets
import socket
import sqlite3
import stat
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from passlib.context import CryptContext

from credrecovery import (
    DeliveryFailed,
    IdentifierKind,
    RecoveryService,
    TokenAlreadyUsed,
    default_context,
)
from credrecovery.sqlite import SQLiteDirectory
from helpers.smtp_server import RunningSMTPServer, make_certificate, running_smtp_server
from hosts.documents import code_of, python_blocks
from hosts.host_app import (
    CONFIRM_URL,
    DOMAIN,
    EMAIL,
    OLD_KEY,
    REQUESTER,
    SECRET,
    SENDER,
    CustomersDirectory,
    OutboxMailer,
    link_token,
    mailed_key,
    old_key_hash,
)

pytestmark = pytest.mark.slow
BLOCKS = python_blocks()
SMTP_PASSWORD = "smtp-test-password"

#: Blocks that cannot run here, and why. Each still compiles (test below).
SKIPPED: dict[str, str] = {
    "docs/custom-adapters.md#0": "the ClientDirectory protocol's signature, shown for reading; "
    "tests/unit/test_public_api.py checks the protocol's methods",
    "docs/custom-adapters.md#3": "the Mailer protocol's signature, likewise",
    "docs/custom-adapters.md#5": "the timing contract on a host's directory; "
    "tests/hosts/test_host_contracts.py runs it on CustomersDirectory",
    "docs/custom-adapters.md#6": "it is tests/adapters/test_host_directory.py, quoted whole "
    "(tests/integration/test_docs.py checks that), which runs it",
    "docs/custom-adapters.md#7": "an excerpt of tests/adapters/test_mailer_contract.py, run there",
    "docs/embedding.md#2": "Django settings of examples/django_app; needs Django's settings "
    "machinery; tests/integration/test_example_django.py checks the "
    "quote and runs it",
    "docs/embedding.md#3": "examples/django_app's service module; needs Django settings",
    "docs/embedding.md#4": "an excerpt of a Django directory method; needs Django's ORM",
    "docs/embedding.md#5": "an excerpt of a Django mailer method; needs Django's mail backends",
    "docs/embedding.md#6": "a Django view; needs Django settings and a request",
    "docs/embedding.md#7": "an excerpt of the FastAPI app's factory; "
    "tests/integration/test_example_fastapi.py checks the quote and "
    "runs the app",
    "docs/embedding.md#8": "FastAPI routes, excerpted from the app's factory; likewise",
    "docs/embedding.md#9": "an excerpt of the FastAPI app's error handler; likewise",
    "docs/embedding.md#14": "an excerpt of examples/flask_app.py's factory; "
    "tests/integration/test_example_flask_app.py checks the quote and "
    "runs the app behind a proxy",
    "docs/embedding.md#15": "an excerpt of the FastAPI app's factory; "
    "tests/integration/test_example_fastapi.py checks the quote and "
    "runs the app behind a proxy",
    "docs/embedding.md#16": "Django settings of examples/django_app; needs Django's settings; "
    "tests/integration/test_example_django.py checks the quote",
    "docs/embedding.md#17": "a function of examples/django_app; needs Django settings and a "
    "request; tests/integration/test_example_django.py checks the quote "
    "and runs it",
    "docs/embedding.md#18": "Django middleware and hook; needs Django's settings and a shared "
    "cache; the Flask panel's browser test runs the same scheme end "
    "to end (tests/integration/test_example_flask_panel.py)",
    "docs/embedding.md#19": "a FastAPI dependency and hook; needs a FastAPI app with sessions; "
    "likewise",
    "docs/events.md#1": "registers in prometheus_client's global registry and listens on port "
    "9464; tests/integration/test_metrics.py runs the same setup on a "
    "registry and a port of its own",
    "docs/key-modes.md#0": "placeholders: secret_key=..., confirm_url=..., form_key",
    "docs/quickstart.md#0": "run as written by "
    "tests/integration/test_docs.py::test_quickstart_runs",
    "docs/scaling.md#0": "creates tables on the server db.internal; "
    "tests/adapters/test_sqlalchemy.py runs create_schema on PostgreSQL",
    "docs/templates.md#0": "placeholders: secret_key=..., and the host's template folders",
    "docs/workers.md#0": "needs a Celery broker and worker; tests/delivery/test_celery.py runs "
    "CeleryDelivery with both",
    "docs/workers.md#1": "names a Celery app and a mailer of the block before; "
    "tests/delivery/test_celery_once.py runs RedisDeliveryRecords",
    "docs/workers.md#2": "needs rq and an RQ worker (not installed); placeholder arguments (...)",
    "docs/workers.md#3": "needs dramatiq (not installed); its body is a placeholder (...)",
}

#: The literal of a block rewritten before it runs, as (old, new); ``{port}`` is the server's.
REWRITES: dict[str, list[tuple[str, str]]] = {
    "README.md#0": [('"smtp.example.com", 587', '"localhost", {port}')],
    "docs/index.md#0": [('"smtp.example.com", 587', '"localhost", {port}')],
    "docs/operations.md#3": [('"smtp.example.com", 587', '"localhost", {port}')],
    "docs/operations.md#4": [('"smtp.example.com", 587', '"localhost", {port}')],
    "docs/operations.md#5": [
        ('"relay.internal.example", 587', '"localhost", {port}'),
        ('"/etc/credrecovery/relay-ca.pem"', "{cafile!r}"),
    ],
    "docs/scaling.md#4": [("redis.internal", "127.0.0.1")],
}


def test_every_block_compiles() -> None:
    """Each ``python`` block of README.md and docs/ is valid Python (excerpts as their body)."""
    for where, block in BLOCKS.items():
        compile(code_of(block), where, "exec", dont_inherit=True)


def test_every_block_is_run_or_skipped_with_a_reason() -> None:
    """No block is left out silently: each is run below or named in SKIPPED."""
    run = {key for keys in RUNS.values() for key in keys}
    assert run.isdisjoint(SKIPPED)
    assert sorted(set(BLOCKS) - run - SKIPPED.keys()) == []
    assert sorted((run | SKIPPED.keys()) - set(BLOCKS)) == []


# --- The harness ---------------------------------------------------------------------------


@dataclass
class Harness:
    """A temporary folder as cwd, the environment a block reads, and its real servers."""

    folder: Path
    monkeypatch: pytest.MonkeyPatch
    stack: contextlib.ExitStack
    smtp: RunningSMTPServer | None = None
    cafile: str = ""
    closers: list[Callable[[], object]] = field(default_factory=list)

    def start_smtp(self, *, starttls: bool, login: bool = False) -> RunningSMTPServer:
        """An SMTP server on 127.0.0.1; with STARTTLS, its CA trusted by default contexts."""
        certificate = make_certificate(self.folder)
        self.cafile = str(certificate.ca_path)
        if starttls:
            self.monkeypatch.setenv("SSL_CERT_FILE", self.cafile)
        self.smtp = self.stack.enter_context(
            running_smtp_server(
                starttls=certificate.server_context() if starttls else None,
                users={"panel": SMTP_PASSWORD} if login else None,
            )
        )
        return self.smtp

    def received(self, count: int) -> list[EmailMessage]:
        """The messages the SMTP server got, once there are ``count`` of them."""
        assert self.smtp is not None
        deadline = time.monotonic() + 30
        while len(self.smtp.received) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(self.smtp.received) == count, "the SMTP server did not get the mail"
        return [mail.message for mail in self.smtp.received]

    def source(self, key: str) -> str:
        """The block's text, its ``REWRITES`` applied; each must match exactly once."""
        text = BLOCKS[key]
        port = self.smtp.port if self.smtp is not None else 0
        for old, new in REWRITES.get(key, []):
            assert text.count(old) == 1, f"{key} no longer holds {old}"
            text = text.replace(old, new.format(port=port, cafile=self.cafile))
        return code_of(text)

    def run(
        self,
        key: str,
        namespace: dict[str, Any] | None = None,
        lazy: dict[str, Callable[[dict[str, Any]], Any]] | None = None,
    ) -> dict[str, Any]:
        """Run block ``key`` statement by statement; ``lazy`` names are made when first read."""
        namespace = {"__name__": "__documented_block__"} if namespace is None else namespace
        lazy = lazy or {}
        for statement in ast.parse(self.source(key)).body:
            read = {
                node.id
                for node in ast.walk(statement)
                if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load)
            }
            for name in sorted(read & lazy.keys()):
                if name not in namespace:
                    namespace[name] = lazy[name](namespace)
            module = ast.Module(body=[statement], type_ignores=[])
            exec(compile(module, key, "exec", dont_inherit=True), namespace)
        return namespace

    def token_from_smtp(self, count: int) -> Callable[[dict[str, Any]], str]:
        """A lazy ``token``: flush the block's service, then read the link it mailed."""

        def token(namespace: dict[str, Any]) -> str:
            namespace["service"].flush(30)
            return link_token(self.received(count)[-1])

        return token

    def closing(self, close: Callable[[], object]) -> None:
        self.closers.append(close)


@pytest.fixture
def harness(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Harness]:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CREDRECOVERY_SECRET_KEY", SECRET)
    monkeypatch.setenv("SMTP_PASSWORD", SMTP_PASSWORD)
    with contextlib.ExitStack() as stack:
        made = Harness(tmp_path, monkeypatch, stack)
        try:
            yield made
        finally:
            for close in reversed(made.closers):
                close()


def clients_file(path: str = "clients.sqlite3") -> None:
    """The SQLite directory file the blocks open, holding client 9000 <ana@example.com>."""
    with SQLiteDirectory(path) as directory:
        directory.add_client(
            "9000", EMAIL, key_hash=old_key_hash(), domains=[DOMAIN], name="Ana Example"
        )


def panel_tables(path: str) -> None:
    """The panel schema docs/custom-adapters.md describes, holding client 9000."""
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute(
            "CREATE TABLE customers (number TEXT PRIMARY KEY, email TEXT, "
            "key_hash TEXT, full_name TEXT, language TEXT)"
        )
        conn.execute("CREATE INDEX customers_email ON customers (email)")
        conn.execute("CREATE TABLE customer_domains (domain TEXT PRIMARY KEY, customer TEXT)")
        conn.execute(
            "INSERT INTO customers VALUES ('9000', ?, ?, 'Ana Example', NULL)",
            (EMAIL, old_key_hash()),
        )
        conn.execute("INSERT INTO customer_domains VALUES (?, '9000')", (DOMAIN,))


# --- The runners: each takes the harness and runs one or more blocks -----------------------


def run_first_service(harness: Harness, key: str) -> None:
    """README's and the overview's service: SQLite file, SMTP with STARTTLS and a login."""
    server = harness.start_smtp(starttls=True, login=True)
    clients_file()
    namespace: dict[str, Any] = {"client_ip": REQUESTER}
    harness.closing(lambda: namespace["service"].close())
    harness.run(key, namespace, {"token": harness.token_from_smtp(1)})
    confirmation = namespace.get("result", namespace.get("confirmation"))
    assert confirmation.number == "9000"
    assert mailed_key(harness.received(2)[1])
    assert {(mail.login, mail.tls) for mail in server.received} == {("panel", True)}


def run_readme(harness: Harness) -> None:
    run_first_service(harness, "README.md#0")


def run_index(harness: Harness) -> None:
    run_first_service(harness, "docs/index.md#0")


def run_custom_directory_and_flow(harness: Harness) -> None:
    """The panel's CustomersDirectory, checked by the documented end-to-end test_flow."""
    panel_tables("panel.sqlite3")
    namespace = harness.run("docs/custom-adapters.md#1")
    directory = namespace["CustomersDirectory"]("panel.sqlite3")
    assert directory.find(namespace["IdentifierKind"].DOMAIN, DOMAIN).number == "9000"
    flow = harness.run("docs/custom-adapters.md#8")
    flow["test_flow"](directory)


def run_normalization_examples(harness: Harness) -> None:
    """Each call of the block returns the value its comment shows."""
    namespace: dict[str, Any] = {}
    harness.run("docs/custom-adapters.md#2", namespace)
    for line in BLOCKS["docs/custom-adapters.md#2"].splitlines():
        if "#" in line and not line.startswith("from"):
            call, _, shown = line.partition("#")
            assert repr(eval(call, namespace)) == shown.strip(), line


def run_sendmail_mailer(harness: Harness) -> None:
    """SendmailMailer against a stand-in sendmail program that records what it gets."""
    program = harness.folder / "sendmail"
    program.write_text(
        '#!/bin/sh\nprintf "%s\\n" "$@" > "$0.args"\ncat > "$0.mail"\n'
        'exit "${SENDMAIL_STATUS:-0}"\n',
        encoding="utf-8",
    )
    program.chmod(program.stat().st_mode | stat.S_IXUSR)
    namespace = harness.run("docs/custom-adapters.md#4")
    mailer = namespace["SendmailMailer"](str(program), timeout=10)
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = SENDER, f"Ana <{EMAIL}>", "Hello"
    message.set_content("Hello.\n")
    mailer.send(message)
    args = (harness.folder / "sendmail.args").read_text(encoding="utf-8").splitlines()
    assert args == ["-i", "--", EMAIL]
    assert b"Subject: Hello" in (harness.folder / "sendmail.mail").read_bytes()
    for status, temporary in (("75", True), ("1", False)):
        harness.monkeypatch.setenv("SENDMAIL_STATUS", status)
        with pytest.raises(DeliveryFailed) as caught:
            mailer.send(message)
        assert caught.value.temporary is temporary


def run_panel_recovery(harness: Harness) -> None:
    """The shared panel_recovery module: build_service from the environment, the pages."""
    harness.start_smtp(starttls=False)
    assert harness.smtp is not None
    clients_file("panel.sqlite3")
    for name, value in {
        "CREDRECOVERY_DB": "panel.sqlite3",
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(harness.smtp.port),
        "SMTP_SECURITY": "plain",
        "CREDRECOVERY_CONFIRM_URL": CONFIRM_URL,
    }.items():
        harness.monkeypatch.setenv(name, value)
    harness.monkeypatch.delenv("SMTP_PASSWORD")  # this relay takes mail without a login
    panel = harness.run("docs/embedding.md#0")
    service = panel["build_service"]()
    harness.closing(service.close)
    service.request("domain", DOMAIN, requester=REQUESTER)
    assert service.flush(30)
    token = link_token(harness.received(1)[0])
    service.check(token, requester=REQUESTER)
    number = service.confirm(token, requester=REQUESTER).number
    assert number == "9000" and mailed_key(harness.received(2)[1])
    with pytest.raises(TokenAlreadyUsed) as caught:
        service.confirm(token, requester=REQUESTER)
    status, text, headers = panel["explain"](caught.value)
    assert (status, headers) == (409, {}) and "already used" in text
    status, _, headers = panel["explain"](panel["RateLimited"]("per_requester", 2.5))
    assert (status, headers) == (429, {"Retry-After": "3"})
    assert "&lt;script&gt;" in panel["page"]("<script>")
    assert 'value="&quot;&gt;"' in panel["form_page"]("bad", '">')


def run_flask_front_end(harness: Harness) -> None:
    """flask_recovery.py on top of panel_recovery.py, driven by Flask's test client."""
    pytest.importorskip("flask")
    harness.start_smtp(starttls=False)
    assert harness.smtp is not None
    clients_file("panel.sqlite3")
    for name, value in {
        "CREDRECOVERY_DB": "panel.sqlite3",
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(harness.smtp.port),
        "SMTP_SECURITY": "plain",
        "CREDRECOVERY_CONFIRM_URL": CONFIRM_URL,
    }.items():
        harness.monkeypatch.setenv(name, value)
    harness.monkeypatch.delenv("SMTP_PASSWORD")  # this relay takes mail without a login
    (harness.folder / "panel_recovery.py").write_text(
        BLOCKS["docs/embedding.md#0"], encoding="utf-8"
    )
    harness.monkeypatch.syspath_prepend(str(harness.folder))
    harness.monkeypatch.delitem(sys.modules, "panel_recovery", raising=False)
    namespace = harness.run("docs/embedding.md#1")
    service = namespace["service"]
    atexit.unregister(service.close)
    harness.closing(service.close)
    client = namespace["app"].test_client()
    assert client.get("/forgot").status_code == 200
    sent = client.post("/forgot", data={"kind": "domain", "value": DOMAIN})
    assert sent.status_code == 200 and "we have mailed" in sent.get_data(as_text=True)
    assert client.post("/forgot", data={"kind": "domain", "value": "no dot"}).status_code == 400
    assert service.flush(30)
    token = link_token(harness.received(1)[0])
    page = client.get(f"/recover/{token}")
    assert page.status_code == 200 and page.headers["Referrer-Policy"] == "no-referrer"
    assert client.post(f"/recover/{token}").status_code == 200
    assert mailed_key(harness.received(2)[1])
    used = client.post(f"/recover/{token}")
    assert used.status_code == 409 and used.headers["Cache-Control"] == "no-store"


def run_notebook_cells(harness: Harness) -> None:
    """The notebook's cells, in order, in one namespace."""
    namespace: dict[str, Any] = {}
    for n in (10, 11, 12, 13):
        harness.run(f"docs/embedding.md#{n}", namespace)
    outbox = namespace["mailer"].outbox
    assert len(outbox) == 2 and mailed_key(outbox[1])


def run_breached_check(harness: Harness) -> None:
    """breached_in finds a key whose SHA-1 suffix is listed under its prefix file."""
    import hashlib

    namespace = harness.run("docs/key-modes.md#1")
    ranges = harness.folder / "ranges"
    ranges.mkdir()
    leaked = "correct horse battery staple"
    digest = hashlib.sha1(leaked.encode(), usedforsecurity=False).hexdigest().upper()
    (ranges / digest[:5]).write_text(f"{digest[5:]}:42\n", encoding="utf-8")
    breached = namespace["breached_in"](ranges)
    assert breached(leaked) and not breached("another key, never leaked")
    panel_tables("panel.sqlite3")
    ana = CustomersDirectory("panel.sqlite3").find(IdentifierKind.CLIENT_NUMBER, "9000")
    policy = namespace["KeyPolicy"](breached=breached)
    assert ana is not None and "breached" in policy.reasons(leaked, ana)
    assert policy.reasons("another key, never leaked", ana) == ()


def run_branding(harness: Harness, capsys: pytest.CaptureFixture[str]) -> None:
    """The branded service prints its subject, which starts with the provider's name."""
    harness.run("docs/mail.md#0")
    assert capsys.readouterr().out.startswith("XMundo Networks: ")


def run_default_context(harness: Harness) -> None:
    """The policy operations.md prints is default_context()'s."""
    namespace = harness.run("docs/operations.md#1", {"CryptContext": CryptContext})
    shown = eval(BLOCKS["docs/operations.md#1"], namespace)
    assert shown.to_dict() == default_context().to_dict()


def run_key_rotation(harness: Harness) -> None:
    """After rotation, a link signed with the old key still checks through the fallback."""
    panel_tables("panel.sqlite3")
    directory, mailer = CustomersDirectory("panel.sqlite3"), OutboxMailer()
    old_secret = "the-old-signing-key-0123456789abcdef"
    with RecoveryService(
        directory, mailer, secret_key=old_secret, confirm_url=CONFIRM_URL, sender=SENDER
    ) as before:
        before.request("email", EMAIL)
    token = link_token(mailer.outbox[0])
    harness.monkeypatch.setenv("CREDRECOVERY_FALLBACK_KEYS", old_secret)
    namespace = harness.run(
        "docs/operations.md#0",
        {"os": os, "RecoveryService": RecoveryService, "directory": directory, "mailer": mailer},
    )
    with namespace["service"] as service:
        assert service.check(token).number == "9000"


def run_heavier_hashing(harness: Harness) -> None:
    """A host's own CryptContext is the one the service hashes with."""
    namespace = harness.run("docs/operations.md#2", {"mailer": OutboxMailer()})
    with namespace["service"] as service:
        assert service.crypt_context is namespace["context"]
    namespace["directory"].close()


def run_own_background_mailer(harness: Harness) -> None:
    """A BackgroundMailer with the host's settings around SMTPMailer delivers on flush."""
    harness.start_smtp(starttls=True, login=True)
    panel_tables("panel.sqlite3")
    namespace = harness.run(
        "docs/operations.md#3", {"directory": CustomersDirectory("panel.sqlite3")}
    )
    with namespace["service"] as service:
        service.request("email", EMAIL)
        assert service.flush(30)
    assert [m["To"].addresses[0].addr_spec for m in harness.received(1)] == [EMAIL]


def run_envelope_sender(harness: Harness) -> None:
    """Bounces go to envelope_sender: it is the MAIL FROM of what the mailer sends."""
    server = harness.start_smtp(starttls=True, login=True)
    namespace = harness.run("docs/operations.md#4")
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = SENDER, EMAIL, "Hello"
    message.set_content("Hello.\n")
    namespace["smtp"].send(message)
    assert harness.received(1)[0]["From"] == SENDER
    assert server.received[0].mail_from == "bounces@panel.example.com"


def run_private_ca(harness: Harness) -> None:
    """SMTPMailer trusting a private CA reaches a server whose certificate it signed."""
    harness.start_smtp(starttls=True)
    harness.monkeypatch.delenv("SSL_CERT_FILE")  # only the block's own cafile is trusted
    namespace = harness.run("docs/operations.md#5")
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = SENDER, EMAIL, "Hello"
    message.set_content("Hello.\n")
    namespace["smtp"].send(message)
    assert harness.received(1)[0]["Subject"] == "Hello"


def run_log_format(harness: Harness) -> None:
    """The documented handler prints the event of each record of the library's logger."""
    logger = logging.getLogger("credrecovery")
    level, handlers = logger.level, list(logger.handlers)
    harness.closing(lambda: (setattr(logger, "handlers", handlers), logger.setLevel(level)))
    namespace = harness.run("docs/operations.md#6")
    record = logger.makeRecord(
        "credrecovery",
        logging.INFO,
        __file__,
        1,
        "mail sent",
        None,
        None,
        extra={"event": "mail_sent"},
    )
    assert "INFO credrecovery event=mail_sent mail sent" in namespace["handler"].format(record)


def run_sqlalchemy_engines(harness: Harness) -> None:
    """The engine, tenant and mapping blocks build directories without connecting."""
    pytest.importorskip("psycopg")
    from credrecovery.sqlalchemy import SQLAlchemyDirectory

    namespace: dict[str, Any] = {"SQLAlchemyDirectory": SQLAlchemyDirectory}
    for n in (1, 2, 3):
        harness.run(f"docs/scaling.md#{n}", namespace)
    assert namespace["mapping"].number_is_integer is True
    for name in ("directory", "tenant"):
        namespace[name].dispose()


def run_redis_limits(harness: Harness) -> None:
    """Rate limits counted in the local Redis, as the block configures them."""
    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=1).close()
    except OSError:
        pytest.skip("no Redis on 127.0.0.1:6379")
    # Counters outlive the test in Redis, keyed by the secret: a fresh one counts from zero.
    harness.monkeypatch.setenv("CREDRECOVERY_SECRET_KEY", secrets.token_urlsafe(32))
    panel_tables("panel.sqlite3")
    mailer = OutboxMailer()
    namespace = harness.run(
        "docs/scaling.md#4",
        {"os": os, "directory": CustomersDirectory("panel.sqlite3"), "mailer": mailer},
    )
    with namespace["service"] as service:
        service.request("email", EMAIL, requester=REQUESTER)
        assert service.flush(30)
    assert len(mailer.outbox) == 1


def run_own_key_setter(harness: Harness) -> None:
    """set_own_key stores the client's key once per link; the link then reads as used."""
    panel_tables("panel.sqlite3")
    mailer = OutboxMailer()
    namespace = harness.run("docs/security.md#0")
    with RecoveryService(
        CustomersDirectory("panel.sqlite3"),
        mailer,
        secret_key=SECRET,
        confirm_url=CONFIRM_URL,
        sender=SENDER,
    ) as service:
        service.request("client_number", "9000", requester=REQUESTER)
        assert service.flush(30)
        token = link_token(mailer.outbox[0])
        own = "a key of my own, long enough"
        assert namespace["set_own_key"](service, token, own, REQUESTER) == "9000"
        assert service.authenticate("9000", own) is not None
        assert service.authenticate("9000", OLD_KEY) is None
        with pytest.raises(TokenAlreadyUsed):
            namespace["set_own_key"](service, token, own, REQUESTER)


def run_code_handlers(harness: Harness) -> None:
    """The two handlers of recovery by code: a typo is refused, the code then rotates the key."""
    from credrecovery.testing import code_from

    panel_tables("panel.sqlite3")
    mailer = OutboxMailer()
    with RecoveryService(
        CustomersDirectory("panel.sqlite3"),
        mailer,
        secret_key=SECRET,
        confirm_url=CONFIRM_URL,
        sender=SENDER,
    ) as service:
        namespace = harness.run("docs/codes.md#0", {"service": service})
        session: dict[str, str] = {}
        page = namespace["send_code"](session, "domain", DOMAIN, REQUESTER)
        assert page == namespace["send_code"]({}, "domain", "nobody.example", REQUESTER)
        assert service.flush(30)
        code = code_from(mailer.outbox[0])
        typo = ("C" if code[0] != "C" else "D") + code[1:]
        assert namespace["type_code"](session, typo, REQUESTER) == "code page, with an error"
        done = namespace["type_code"](session, code.lower().replace("-", " "), REQUESTER)
        assert done.startswith("done") and session == {}
        assert service.flush(30)
        assert service.authenticate("9000", mailed_key(mailer.outbox[-1])) is not None
        assert service.authenticate("9000", OLD_KEY) is None


def run_support_code(harness: Harness) -> None:
    """Support gives a code without mailing it; the client's page takes it once, with the
    number; an unknown number is said plainly to support."""
    panel_tables("panel.sqlite3")
    mailer = OutboxMailer()
    with RecoveryService(
        CustomersDirectory("panel.sqlite3"),
        mailer,
        secret_key=SECRET,
        confirm_url=CONFIRM_URL,
        sender=SENDER,
    ) as service:
        namespace = harness.run("docs/codes.md#1", {"service": service})
        said = namespace["give_code"]("9000", "support-ana")
        assert said.startswith("read this code to the caller: ")
        code = said.rsplit(" ", 1)[1]
        assert service.flush(30) and mailer.outbox == []
        assert namespace["give_code"]("9999", "support-ana") == "no client has the number 9999"
        typo = ("C" if code[0] != "C" else "D") + code[1:]
        page = namespace["type_support_code"]
        assert page("9000", typo, REQUESTER) == "code page, with an error"
        assert page("9001", code, REQUESTER) == "code page, with an error"
        assert page(" 9000 ", code, REQUESTER).startswith("done")
        assert page("9000", code, REQUESTER) == "code page, with an error"
        assert service.flush(30)
        assert service.authenticate("9000", mailed_key(mailer.outbox[-1])) is not None
        assert service.authenticate("9000", OLD_KEY) is None


def run_event_hook(harness: Harness) -> None:
    """The documented hook logs each outcome to the panel's audit logger, off the request."""
    audit = logging.getLogger("panel.audit")
    heard: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            heard.append(record.getMessage())

    keep, level = Keep(), audit.level
    audit.addHandler(keep)
    audit.setLevel(logging.INFO)
    harness.closing(lambda: (audit.removeHandler(keep), audit.setLevel(level)))
    panel_tables("panel.sqlite3")
    mailer = OutboxMailer()
    namespace = harness.run(
        "docs/events.md#0", {"directory": CustomersDirectory("panel.sqlite3"), "mailer": mailer}
    )
    with namespace["service"] as service:
        service.request("email", EMAIL, requester=REQUESTER)
        service.request("email", "nobody@example.com", requester=REQUESTER)
        assert service.flush(30)
    assert f"requested hit client=9000 requester={REQUESTER}" in heard
    assert f"requested miss client=- requester={REQUESTER}" in heard
    assert len(mailer.outbox) == 1


#: Each runner and the blocks it runs, with a fragment each block must hold.
RUNS: dict[Callable[..., None], dict[str, str]] = {
    run_readme: {"README.md#0": "SMTPMailer("},
    run_index: {"docs/index.md#0": "SMTPMailer("},
    run_custom_directory_and_flow: {
        "docs/custom-adapters.md#1": "class CustomersDirectory",
        "docs/custom-adapters.md#8": "def test_flow",
    },
    run_normalization_examples: {"docs/custom-adapters.md#2": "normalize_identifier("},
    run_sendmail_mailer: {"docs/custom-adapters.md#4": "class SendmailMailer"},
    run_panel_recovery: {"docs/embedding.md#0": "def build_service"},
    run_flask_front_end: {"docs/embedding.md#1": "Flask(__name__)"},
    run_notebook_cells: {
        "docs/embedding.md#10": "MemoryDirectory(",
        "docs/embedding.md#11": "service.request(",
        "docs/embedding.md#12": "service.confirm(token)",
        "docs/embedding.md#13": "service.close()",
    },
    run_breached_check: {"docs/key-modes.md#1": "def breached_in"},
    run_branding: {"docs/mail.md#0": "Branding("},
    run_default_context: {"docs/operations.md#1": "CryptContext("},
    run_key_rotation: {"docs/operations.md#0": "fallback_secret_keys="},
    run_heavier_hashing: {"docs/operations.md#2": "argon2__memory_cost"},
    run_own_background_mailer: {"docs/operations.md#3": "BackgroundMailer(smtp"},
    run_envelope_sender: {"docs/operations.md#4": "envelope_sender="},
    run_private_ca: {"docs/operations.md#5": "cafile="},
    run_log_format: {"docs/operations.md#6": "logging.StreamHandler()"},
    run_sqlalchemy_engines: {
        "docs/scaling.md#1": "sa.create_engine(",
        "docs/scaling.md#2": "schema_translate_map",
        "docs/scaling.md#3": "TableMapping(",
    },
    run_redis_limits: {"docs/scaling.md#4": "redis://redis.internal"},
    run_own_key_setter: {"docs/security.md#0": "def set_own_key"},
    run_event_hook: {"docs/events.md#0": "on_event=on_event"},
    run_code_handlers: {"docs/codes.md#0": "def type_code"},
    run_support_code: {"docs/codes.md#1": "def give_code"},
}


@pytest.mark.parametrize("runner", list(RUNS), ids=[r.__name__[4:] for r in RUNS])
def test_documented_block_runs(
    runner: Callable[..., None], harness: Harness, request: pytest.FixtureRequest
) -> None:
    """The block does what its page says, run as written (but for REWRITES) with a harness."""
    for key, fragment in RUNS[runner].items():
        assert fragment in BLOCKS.get(key, ""), f"{key} moved: it no longer holds {fragment!r}"
    if "capsys" in runner.__code__.co_varnames[: runner.__code__.co_argcount]:
        runner(harness, request.getfixturevalue("capsys"))
    else:
        runner(harness)
