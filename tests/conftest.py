"""Fixtures shared by the test suite."""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import re
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from passlib.context import CryptContext

from credrecovery import AsyncRecoveryService, RecoveryService, cheap_context
from credrecovery.memory import MemoryDirectory, MemoryMailer

SECRET = "test-secret-key-0123456789abcdef"
CONFIRM_URL = "https://panel.example.com/recover/{token}"
SENDER = "Client Panel <panel@example.com>"
OLD_KEY = "Old-Access-Key-2024"


class FakeClock:
    """A settable clock, in seconds since the epoch."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.start = self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def ctx() -> CryptContext:
    return cheap_context()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def directory(ctx: CryptContext) -> MemoryDirectory:
    d = MemoryDirectory(crypt_context=ctx)
    d.add_client(
        "9000",
        "ejemplo@ejemploxmundo.com.ar",
        key=OLD_KEY,
        domains=["ejemploxmundo.com.ar", "otro-ejemplo.com"],
        name="Ana Example",
    )
    return d


@pytest.fixture
def mailer() -> MemoryMailer:
    return MemoryMailer()


class AsyncShell:
    """An AsyncRecoveryService driven from synchronous tests, on one event loop of its own.

    The loop runs in a thread, so tests that call the service from several
    threads at once still race on one service, as an event loop's tasks do.
    Whatever a call raises, ``KeyboardInterrupt`` included, is raised in the
    calling thread. Every other attribute is the service's own.
    """

    def __init__(self, service: AsyncRecoveryService) -> None:
        self.service = service
        self._loop = asyncio.new_event_loop()
        # Room for the tests that race many calls at once through to_thread.
        self._loop.set_default_executor(concurrent.futures.ThreadPoolExecutor(64))
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.service, name)

    def __repr__(self) -> str:
        return repr(self.service)

    def _await(self, coroutine: Any) -> Any:
        async def captured() -> tuple[bool, Any]:
            try:
                return True, await coroutine
            except BaseException as exc:  # noqa: BLE001 - raised again in the caller
                return False, exc

        ok, value = asyncio.run_coroutine_threadsafe(captured(), self._loop).result(60)
        if not ok:
            raise value
        return value

    def request(self, *args: Any, **kwargs: Any) -> None:
        return self._await(self.service.request(*args, **kwargs))

    def check(self, *args: Any, **kwargs: Any) -> Any:
        return self._await(self.service.check(*args, **kwargs))

    def confirm(self, *args: Any, **kwargs: Any) -> Any:
        return self._await(self.service.confirm(*args, **kwargs))

    def authenticate(self, *args: Any, **kwargs: Any) -> Any:
        return self._await(self.service.authenticate(*args, **kwargs))

    def change_key(self, *args: Any, **kwargs: Any) -> Any:
        return self._await(self.service.change_key(*args, **kwargs))

    def flush(self, timeout: float | None = None) -> bool:
        return bool(self._await(self.service.flush(timeout)))

    def close(self, timeout: float | None = 30.0) -> None:
        self._await(self.service.aclose(timeout))

    def stop_loop(self) -> None:
        """End the event loop; the fixture calls this once the test is over."""
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def __enter__(self) -> AsyncShell:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class ChoosingShell:
    """A ``key_mode="choose"`` service, driven by tests written for generated keys.

    Each :meth:`confirm` called without ``new_key`` chooses a fresh key that
    the policy accepts; once it succeeds, :func:`key_from` reads that key
    back from the notice it mailed, so the same assertions hold in both modes.
    """

    def __init__(self, service: Any) -> None:
        self.service = service

    def __getattr__(self, name: str) -> Any:
        return getattr(self.service, name)

    def __repr__(self) -> str:
        return repr(self.service)

    def __enter__(self) -> ChoosingShell:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.service.close()

    def confirm(self, token: str, *, requester: str | None = None,
                new_key: str | None = None) -> Any:
        if new_key is None:
            new_key = f"correct horse battery staple {next(_CHOICES)}"
        confirmation = self.service.confirm(token, requester=requester, new_key=new_key)
        _CHOSEN[confirmation.number] = new_key
        return confirmation


_CHOICES = itertools.count()
# The key last chosen, by client number, for key_from() to read off a notice.
_CHOSEN: dict[str, str] = {}
KEY_MODES = ("generate", "choose")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run a module's service tests in both key modes when it sets ``BOTH_KEY_MODES``.

    A test about the generated key's own mail opts out with
    ``@pytest.mark.generated_key``.
    """
    if ("key_mode" in metafunc.fixturenames
            and getattr(metafunc.module, "BOTH_KEY_MODES", False)
            and metafunc.definition.get_closest_marker("generated_key") is None):
        metafunc.parametrize("key_mode", KEY_MODES)


@pytest.fixture
def key_mode() -> str:
    """The key mode of services that make_service builds; see pytest_generate_tests."""
    return "generate"


@pytest.fixture(params=["sync", "async"])
def shell(request: pytest.FixtureRequest) -> str:
    """Which shell a service-level test drives: RecoveryService or AsyncRecoveryService."""
    return str(request.param)


@pytest.fixture
def make_service(
    directory: MemoryDirectory, mailer: MemoryMailer, ctx: CryptContext, clock: FakeClock,
    shell: str, key_mode: str,
) -> Iterator[Callable[..., RecoveryService]]:
    """Build services with test defaults; synchronous delivery and no limits unless asked.

    Every test that uses it runs through both shells.
    """
    made: list[Any] = []

    def make(**overrides: Any) -> RecoveryService:
        options: dict[str, Any] = {
            "secret_key": SECRET,
            "confirm_url": CONFIRM_URL,
            "sender": SENDER,
            "crypt_context": ctx,
            "clock": clock,
            "delivery": "sync",
            "rate_limits": None,
        }
        options.update(overrides)
        d = options.pop("directory", directory)
        m = options.pop("mailer", mailer)
        options.setdefault("key_mode", key_mode)
        service: Any = (RecoveryService(d, m, **options) if shell == "sync"
                        else AsyncShell(AsyncRecoveryService(d, m, **options)))
        if options["key_mode"] == "choose":
            service = ChoosingShell(service)
        made.append(service)
        return service  # type: ignore[no-any-return]

    yield make
    for service in made:
        service.close()
        inner = service.service if isinstance(service, ChoosingShell) else service
        if isinstance(inner, AsyncShell):
            inner.stop_loop()


@pytest.fixture
def service(make_service: Callable[..., RecoveryService]) -> RecoveryService:
    return make_service()


def token_from(message: Any) -> str:
    """Extract the token from a confirmation mail's plain-text link."""
    text = message.get_body(("plain",)).get_content()
    match = re.search(r"/recover/([A-Za-z0-9_.-]+)", text)
    assert match, "no confirmation link in the mail"
    return match.group(1)


def key_from(message: Any) -> str:
    """The new access key: from a credentials mail, or the one chosen, for a change notice."""
    text = message.get_body(("plain",)).get_content()
    match = re.search(r"(?:Access key|Clave de acceso):\s+(\S+)", text)
    if match:
        return match.group(1)
    notice = re.search(r"client number (\S+) .* was changed|número de cliente (\S+) ", text)
    assert notice, "no access key in the mail, nor a notice of a chosen one"
    number = notice.group(1) or notice.group(2)
    assert number in _CHOSEN, "the notice is for a key no test chose"
    return _CHOSEN[number]
