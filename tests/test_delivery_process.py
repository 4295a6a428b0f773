"""Default delivery runs in a process of its own, started, replaced and stopped by the library."""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Callable

import pytest
from passlib.context import CryptContext

from conftest import CONFIRM_URL, SECRET, SENDER
from credrecovery import BackgroundMailer, RecoveryService
from credrecovery.memory import MemoryDirectory, MemoryMailer
from credrecovery.smtp import SMTPMailer
from smtp_server import RunningSMTPServer, running_smtp_server

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
    make_service: MakeService, server: RunningSMTPServer, caplog: pytest.LogCaptureFixture,
) -> None:
    """With a mailer that pickles, mail leaves from a child process whose logs reach ours."""
    caplog.set_level(logging.INFO, logger="credrecovery")
    service = make_service(mailer=SMTPMailer(server.host, server.port, timeout=5),
                           delivery="background")
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
    service.close()
    assert service.delivery.process_id is None
    deadline = time.monotonic() + 10
    while not _gone(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _gone(child)


def test_a_mailer_that_cannot_cross_stays_in_threads(
    make_service: MakeService, mailer: MemoryMailer, caplog: pytest.LogCaptureFixture,
) -> None:
    """A MemoryMailer keeps its outbox here: delivery runs in threads, with a warning."""
    caplog.set_level(logging.WARNING, logger="credrecovery")
    service = make_service(delivery="background")
    assert isinstance(service.delivery, BackgroundMailer)
    assert service.delivery.process_id is None
    assert len(_events(caplog, "delivery_in_thread")) == 1
    service.request("client_number", "9000")
    assert service.flush(timeout=5)
    assert len(mailer.outbox) == 1


def test_process_isolation_refuses_a_mailer_that_cannot_cross(
    make_service: MakeService,
) -> None:
    """isolation='process' with a mailer that does not pickle raises ValueError."""
    with pytest.raises(ValueError, match="pickled"):
        make_service(delivery=BackgroundMailer(MemoryMailer(), isolation="process"))


def test_a_dead_delivery_process_is_replaced(
    make_service: MakeService, server: RunningSMTPServer, caplog: pytest.LogCaptureFixture,
) -> None:
    """When the child dies, the next job starts another one, and nothing after is lost."""
    caplog.set_level(logging.INFO, logger="credrecovery")
    delivery = BackgroundMailer(SMTPMailer(server.host, server.port, timeout=5),
                                delay=(0.0, 0.0))
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
    directory: MemoryDirectory, server: RunningSMTPServer, ctx: CryptContext,
) -> None:
    """A worker forked after the service was built (a preloading server) has its own child."""
    delivery = BackgroundMailer(SMTPMailer(server.host, server.port, timeout=5),
                                delay=(0.0, 0.0))
    # The sync shell: preforking servers fork processes that run it.
    service = RecoveryService(directory, MemoryMailer(), secret_key=SECRET,
                              confirm_url=CONFIRM_URL, sender=SENDER, crypt_context=ctx,
                              rate_limits=None, delivery=delivery)
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


def test_a_mailer_of_the_main_script_stays_in_threads(
    make_service: MakeService, caplog: pytest.LogCaptureFixture,
) -> None:
    """A mailer class of __main__ pickles but would not load elsewhere: threads, with a warning."""
    caplog.set_level(logging.WARNING, logger="credrecovery")
    service = make_service(mailer=ScriptMailer(), delivery="background")
    assert isinstance(service.delivery, BackgroundMailer)
    assert service.delivery.process_id is None
    assert len(_events(caplog, "delivery_in_thread")) == 1
