"""Default delivery runs in a process of its own, started, replaced and stopped by the library."""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from email.message import EmailMessage

import jinja2
import pytest
from passlib.context import CryptContext

from credrecovery import BackgroundMailer, RecoveryService
from credrecovery.memory import MemoryDirectory, MemoryMailer
from credrecovery.smtp import SMTPMailer
from helpers import CONFIRM_URL, SECRET, SENDER
from helpers.smtp_server import RunningSMTPServer, running_smtp_server

pytestmark = [pytest.mark.shells("sync", "async"), pytest.mark.slow]

MakeService = Callable[..., RecoveryService]
PRIMARY = "ejemplo@ejemploxmundo.com.ar"


@pytest.fixture
def clock() -> Callable[[], float]:
    """The real clock: a test clock would keep delivery in threads, and these test the process."""
    return time.time


@pytest.fixture
def server() -> RunningSMTPServer:
    with running_smtp_server() as running:
        yield running


def _events(caplog: pytest.LogCaptureFixture, name: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "event", None) == name]


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_default_delivery_composes_and_sends_in_another_process(
    make_service: MakeService,
    server: RunningSMTPServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """With a mailer that pickles, mail leaves from a child process whose logs reach ours."""
    caplog.set_level(logging.INFO, logger="credrecovery")
    service = make_service(
        mailer=SMTPMailer(server.host, server.port, timeout=5), delivery="background"
    )
    assert isinstance(service.delivery, BackgroundMailer)
    child = service.delivery.process_id
    assert child is not None and child != os.getpid()
    service.request("domain", "ejemploxmundo.com.ar")
    service.request("domain", "nadie-aqui.com.ar")
    assert service.flush(timeout=10)
    assert [mail.rcpt_tos for mail in server.received] == [(PRIMARY,)]
    [sent] = _events(caplog, "mail_sent")
    assert sent.process == child
    assert getattr(sent, "client", None) == "9000"
    # A plain string: a header object would carry its parse tree across.
    assert type(getattr(sent, "message_id", None)) is str
    assert sent.message_id == server.received[0].message["Message-ID"]
    service.close()
    assert service.delivery.process_id is None
    deadline = time.monotonic() + 10
    while not _gone(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _gone(child)


def test_a_memory_mailer_stays_in_threads(
    make_service: MakeService,
    mailer: MemoryMailer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A MemoryMailer keeps its outbox here: delivery runs in threads, and says why."""
    caplog.set_level(logging.INFO, logger="credrecovery")
    service = make_service(delivery="background")
    assert isinstance(service.delivery, BackgroundMailer)
    assert service.delivery.process_id is None
    [event] = _events(caplog, "delivery_in_thread")
    assert event.levelno == logging.INFO
    assert getattr(event, "reason", None) == "the host's own mailer"
    service.request("client_number", "9000")
    assert service.flush(timeout=5)
    assert len(mailer.outbox) == 1


class HostMailer:
    """A host's mailer, defined in a module another process could import, that pickles fine."""

    def __init__(self) -> None:
        self.sent: list[EmailMessage] = []

    def send(self, message: EmailMessage) -> None:
        self.sent.append(message)


def test_a_host_mailer_that_pickles_still_gets_every_mail(make_service: MakeService) -> None:
    """A host's picklable module-level mailer is never copied into a process: its own list fills."""
    host = HostMailer()
    service = make_service(mailer=host, delivery="background")
    assert isinstance(service.delivery, BackgroundMailer)
    assert service.delivery.process_id is None
    service.request("client_number", "9000")
    service.request("client_number", "1")
    assert service.flush(timeout=10)
    assert [m["To"].addresses[0].addr_spec for m in host.sent] == [PRIMARY]


class SMTPSettingsMailer:
    """A host's mailer defined by settings alone, for the explicit request for a process."""

    def __init__(self, host: str, port: int) -> None:
        self.inner = SMTPMailer(host, port, timeout=5)

    def send(self, message: EmailMessage) -> None:
        self.inner.send(message)


def test_process_isolation_is_the_hosts_explicit_choice(
    make_service: MakeService,
    server: RunningSMTPServer,
) -> None:
    """isolation='process' moves a host's mailer to a child, which sends from its copy."""
    delivery = BackgroundMailer(
        SMTPSettingsMailer(server.host, server.port), isolation="process", delay=(0.0, 0.0)
    )
    service = make_service(delivery=delivery)
    assert delivery.process_id is not None
    service.request("client_number", "9000")
    assert service.flush(timeout=10)
    assert [mail.rcpt_tos for mail in server.received] == [(PRIMARY,)]


def test_process_isolation_refuses_a_mailer_that_cannot_cross(
    make_service: MakeService,
) -> None:
    """isolation='process' with a mailer that does not pickle raises ValueError naming it."""
    with pytest.raises(ValueError, match=r"the mailer \(MemoryMailer\) cannot be pickled"):
        make_service(delivery=BackgroundMailer(MemoryMailer(), isolation="process"))


def test_a_dead_delivery_process_is_replaced(
    make_service: MakeService,
    server: RunningSMTPServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """When the child dies, the next job starts another one, and nothing after is lost."""
    caplog.set_level(logging.INFO, logger="credrecovery")
    delivery = BackgroundMailer(SMTPMailer(server.host, server.port, timeout=5), delay=(0.0, 0.0))
    service = make_service(delivery=delivery)
    first = delivery.process_id
    assert first is not None
    os.kill(first, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while delivery.process_id is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    service.request("client_number", "9000")
    assert service.flush(timeout=10)
    assert len(server.received) == 1
    assert delivery.process_id not in (None, first)
    assert len(_events(caplog, "delivery_restarted")) == 1


def test_a_forked_process_starts_its_own_delivery_process(
    directory: MemoryDirectory,
    server: RunningSMTPServer,
    ctx: CryptContext,
) -> None:
    """A worker forked after the service was built (a preloading server) has its own child."""
    delivery = BackgroundMailer(SMTPMailer(server.host, server.port, timeout=5), delay=(0.0, 0.0))
    # The sync shell: preforking servers fork processes that run it.
    service = RecoveryService(
        directory,
        MemoryMailer(),
        secret_key=SECRET,
        confirm_url=CONFIRM_URL,
        sender=SENDER,
        crypt_context=ctx,
        rate_limits=None,
        delivery=delivery,
    )
    parents_child = delivery.process_id
    pid = os.fork()
    if pid == 0:  # the forked worker
        code = 1
        try:
            service.request("client_number", "9000")
            delivered = service.flush(timeout=10)
            own = delivery.process_id
            service.close()
            code = 0 if delivered and own not in (None, parents_child) else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert len(server.received) == 1
    assert delivery.process_id == parents_child
    service.close()


class ScriptMailer(MemoryMailer):
    """Stands for a mailer a script defines in __main__, which no other process can import."""

    def __reduce__(self) -> tuple[object, ...]:
        return (ScriptMailer, ())


ScriptMailer.__module__ = "__main__"


def test_a_mailer_of_the_main_script_cannot_be_sent_to_a_process(
    make_service: MakeService,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A mailer class of __main__ pickles but would not load elsewhere, and the error says so."""
    monkeypatch.setattr(sys.modules["__main__"], "ScriptMailer", ScriptMailer, raising=False)
    with pytest.raises(ValueError, match="class of __main__"):
        make_service(delivery=BackgroundMailer(ScriptMailer(), isolation="process"))


class ScriptLoader(jinja2.DictLoader):
    """Stands for a template loader a script defines in __main__."""


ScriptLoader.__module__ = "__main__"


def test_a_composer_that_cannot_cross_keeps_smtp_in_threads_and_says_why(
    make_service: MakeService,
    server: RunningSMTPServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The library's SMTP mailer stays in threads when the composer cannot cross, naming it."""
    caplog.set_level(logging.WARNING, logger="credrecovery")
    service = make_service(
        mailer=SMTPMailer(server.host, server.port, timeout=5),
        templates=ScriptLoader({}),
        delivery="background",
    )
    assert isinstance(service.delivery, BackgroundMailer)
    assert service.delivery.process_id is None
    [event] = _events(caplog, "delivery_in_thread")
    assert "the composer (Composer) cannot be pickled" in event.getMessage()
    service.request("client_number", "9000")
    assert service.flush(timeout=10)
    assert len(server.received) == 1


class GreenTimeout(BaseException):
    """Stands for gevent's or eventlet's ``Timeout``, which is no ``Exception``."""


class TimingOutMailer(SMTPSettingsMailer):
    """Raises :class:`GreenTimeout` on its first five sends, then sends through SMTP."""

    def __init__(self, host: str, port: int) -> None:
        super().__init__(host, port)
        self.calls = 0

    def send(self, message: EmailMessage) -> None:
        self.calls += 1
        if self.calls <= 5:
            raise GreenTimeout
        super().send(message)


def test_the_delivery_process_loses_no_worker_to_a_base_exception(
    make_service: MakeService,
    server: RunningSMTPServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """In the child too, BaseExceptions from the mailer are retried and every mail leaves."""
    caplog.set_level(logging.INFO, logger="credrecovery")
    delivery = BackgroundMailer(
        TimingOutMailer(server.host, server.port),
        isolation="process",
        delay=(0.0, 0.0),
        backoff=0.01,
        workers=2,
        max_attempts=10,
    )
    service = make_service(delivery=delivery)
    for _ in range(3):
        service.request("client_number", "9000")
    assert service.flush(timeout=20)
    assert len(server.received) == 3
    assert len(_events(caplog, "delivery_retry")) == 5
