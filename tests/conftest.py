"""Fixtures shared by the test suite, the ``shells`` and ``key_modes`` markers they read,
the Hypothesis profiles, and the hooks that share one Chromium per process."""

from __future__ import annotations

import os
from collections.abc import Callable, Generator, Iterator
from typing import Any

import pytest
from hypothesis import settings
from passlib.context import CryptContext

from credrecovery import AsyncRecoveryService, RecoveryService, cheap_context
from credrecovery.memory import MemoryDirectory, MemoryMailer
from helpers import (
    CONFIRM_URL,
    KEY_MODES,
    OLD_KEY,
    SECRET,
    SENDER,
    SHELLS,
    AsyncShell,
    ChoosingShell,
    FakeClock,
)
from helpers import browser as chromium

# "ci", the default, runs each property test as many examples as it asks for;
# "dev" runs a fifth of them (see helpers.properties), for a quick loop.
settings.register_profile("ci", deadline=None, print_blob=True, database=None)
settings.register_profile("dev", max_examples=20, deadline=None)
settings.load_profile(os.environ.get("CREDRECOVERY_HYPOTHESIS_PROFILE", "ci"))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, None, None]:
    with chromium.attached(chromium.uses_browser(item)):
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    with chromium.attached(chromium.uses_browser(item)):
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Generator[None, None, None]:
    with chromium.attached(chromium.uses_browser(item)):
        return (yield)


def pytest_sessionfinish() -> None:
    chromium.stop()


def pytest_xdist_auto_num_workers() -> int | None:
    """``-n auto`` starts one worker more than this process has cores.

    About a third of a run waits on other processes (Celery workers, Chromium,
    servers starting, leases running out) rather than computing, and the extra
    worker fills those waits. ``PYTEST_XDIST_AUTO_NUM_WORKERS`` still decides
    when it is set.
    """
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return None
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) + 1
    return (os.cpu_count() or 1) + 1


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that needs PostgreSQL is slow too: each builds a schema of its own."""
    for item in items:
        if item.get_closest_marker("postgres") or "postgres" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)


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


def _declared(metafunc: pytest.Metafunc, name: str, known: tuple[str, ...]) -> list[str] | None:
    """The values of the closest ``name`` marker of a test, checked against ``known``."""
    marker = metafunc.definition.get_closest_marker(name)
    if marker is None:
        return None
    values = list(marker.args)
    if not values or not set(values) <= set(known):
        raise pytest.UsageError(
            f"{metafunc.definition.nodeid}: pytest.mark.{name} takes some of {known}, "
            f"not {tuple(values)}"
        )
    return values


def _parametrizes(metafunc: pytest.Metafunc, name: str) -> bool:
    """Whether the test parametrizes ``name`` itself, with ``pytest.mark.parametrize``."""
    for marker in metafunc.definition.iter_markers("parametrize"):
        names = marker.args[0] if marker.args else marker.kwargs.get("argnames", ())
        if isinstance(names, str):
            names = [n.strip() for n in names.split(",")]
        if name in names:
            return True
    return False


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run a service-level test in the shells and key modes its markers declare.

    A test that builds services through ``make_service`` declares its shells,
    usually for its whole module: ``pytestmark = pytest.mark.shells("sync", "async")``.
    ``pytest.mark.key_modes("generate", "choose")`` runs it in both key modes too;
    without that marker services generate keys. A test marked closer (on the
    function) overrides its module's marker; a single key mode adds no variant. A
    test that parametrizes ``shell`` or ``key_mode`` itself is left as it is.
    """
    if "shell" in metafunc.fixturenames and not _parametrizes(metafunc, "shell"):
        shells = _declared(metafunc, "shells", SHELLS)
        if shells is None:
            raise pytest.UsageError(
                f"{metafunc.definition.nodeid} builds services: declare the shells it runs "
                f"through with pytest.mark.shells(...)"
            )
        metafunc.parametrize("shell", shells, indirect=True)
    if "key_mode" in metafunc.fixturenames and not _parametrizes(metafunc, "key_mode"):
        modes = _declared(metafunc, "key_modes", KEY_MODES)
        if modes is not None and len(modes) > 1:
            metafunc.parametrize("key_mode", modes, indirect=True)


@pytest.fixture
def key_mode(request: pytest.FixtureRequest) -> str:
    """The key mode of services that make_service builds, from the ``key_modes`` marker."""
    if hasattr(request, "param"):
        return str(request.param)
    marker = request.node.get_closest_marker("key_modes")
    return str(marker.args[0]) if marker is not None else "generate"


@pytest.fixture
def shell(request: pytest.FixtureRequest) -> str:
    """Which shell a service-level test drives, from the ``shells`` marker.

    ``"sync"`` is RecoveryService, ``"async"`` an AsyncRecoveryService in an AsyncShell.
    """
    return str(request.param)


@pytest.fixture
def make_service(
    directory: MemoryDirectory,
    mailer: MemoryMailer,
    ctx: CryptContext,
    clock: FakeClock,
    shell: str,
    key_mode: str,
) -> Iterator[Callable[..., RecoveryService]]:
    """Build services with test defaults; synchronous delivery and no limits unless asked.

    The shell and the default key mode come from the test's markers.
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
        service: Any = (
            RecoveryService(d, m, **options)
            if shell == "sync"
            else AsyncShell(AsyncRecoveryService(d, m, **options))
        )
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
