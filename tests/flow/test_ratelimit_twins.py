"""Both shells meet rate limits alike: storage failures, retry_after on the service's clock,
and the limit names as LimitName."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from passlib.context import CryptContext

import credrecovery
import credrecovery.ratelimit
from credrecovery import (
    AsyncRecoveryService,
    InvalidToken,
    LimitName,
    RateLimited,
    RateLimits,
    RecoveryService,
)
from credrecovery.memory import MemoryDirectory, MemoryMailer
from credrecovery.ratelimit import AsyncLimiter, Limiter
from helpers import CONFIRM_URL, OLD_KEY, SECRET, SENDER, AsyncShell, FakeClock
from helpers.redis_server import redis_url  # noqa: F401 - a fixture, used by name

ServiceFactory = Callable[..., RecoveryService]
pytestmark = pytest.mark.shells("sync", "async")

DOMAIN = "ejemploxmundo.com.ar"
REQUESTER = "203.0.113.7"
BAD_TOKENS = ["not-a-token", "x" * 40, "abc.def.ghi"]
LIMITER_KEY = b"limiter-key-for-tests-0123456789"
UNREACHABLE_REDIS = "redis://127.0.0.1:1/0"  # nothing listens on port 1
# What a record of the rate limits says, compared between the shells.
FIELDS = ("event", "levelname", "msg", "limit", "error")


# --- a Redis server of the test's own, to stop halfway ----------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class OwnRedis:
    """A redis-server process on a free loopback port, with nothing saved to disk."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url, socket_connect_timeout=1)
        deadline = time.monotonic() + 10
        try:
            while True:
                try:
                    client.ping()
                    break
                except redis.ConnectionError:
                    if time.monotonic() > deadline:
                        self.stop()
                        raise
                    time.sleep(0.02)
        finally:
            client.close()

    def stop(self) -> None:
        if self._process.poll() is None:
            self._process.terminate()
            self._process.wait(10)


@pytest.fixture
def own_redis() -> Iterator[Callable[[], OwnRedis]]:
    """Start Redis servers of the test's own; each is stopped after the test if still up."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    started: list[OwnRedis] = []

    def start() -> OwnRedis:
        server = OwnRedis()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def _build(
    shell: str, ctx: CryptContext, clock: FakeClock, storage_uri: str, mailer: MemoryMailer
) -> Any:
    directory = MemoryDirectory(crypt_context=ctx)
    directory.add_client("9000", "ejemplo@ejemploxmundo.com.ar", key=OLD_KEY, domains=[DOMAIN])
    options: dict[str, Any] = {
        "secret_key": SECRET,
        "confirm_url": CONFIRM_URL,
        "sender": SENDER,
        "crypt_context": ctx,
        "clock": clock,
        "delivery": "sync",
        "rate_limits": RateLimits(storage_uri=storage_uri),
    }
    if shell == "sync":
        return RecoveryService(directory, mailer, **options)
    return AsyncShell(AsyncRecoveryService(directory, mailer, **options))


def _limit_records(caplog: pytest.LogCaptureFixture) -> list[tuple[Any, ...]]:
    return [
        tuple(getattr(r, field, None) for field in FIELDS)
        for r in caplog.records
        if getattr(r, "event", None) in ("limiter_error", "throttled")
    ]


def _outcome(call: Callable[[], Any]) -> tuple[str, Any]:
    try:
        call()
    except RateLimited as exc:
        return "RateLimited", exc.limit
    except InvalidToken as exc:
        return type(exc).__name__, None
    return "passed", None


def _until_and_after_the_stop(service: Any, server: OwnRedis) -> tuple[list[Any], list[float]]:
    """21 requests from one requester, one more for its retry_after, then the server
    stopped, 3 more requests and 3 bad tokens: each answer, and the retry_after seen."""
    ask = functools.partial(service.request, "domain", DOMAIN, requester=REQUESTER)
    outcomes = [_outcome(ask) for _ in range(21)]
    waits = []
    try:
        ask()
    except RateLimited as exc:
        waits.append(exc.retry_after)
    server.stop()
    outcomes += [_outcome(ask) for _ in range(3)]
    outcomes += [
        _outcome(functools.partial(service.confirm, token, requester=REQUESTER))
        for token in BAD_TOKENS
    ]
    return outcomes, waits


@pytest.mark.redis
def test_both_shells_meet_a_storage_that_stops_alike(
    own_redis: Callable[[], OwnRedis],
    ctx: CryptContext,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Counted in a live Redis, then with that Redis stopped: the same answers and the
    same records from RecoveryService and AsyncRecoveryService, failing open alike."""
    caplog.set_level(logging.INFO, logger="credrecovery")
    seen: dict[str, tuple[list[Any], list[float], int, list[tuple[Any, ...]]]] = {}
    for shell in ("sync", "async"):
        caplog.clear()
        server, mailer = own_redis(), MemoryMailer()
        service = _build(shell, ctx, clock, server.url, mailer)
        try:
            outcomes, waits = _until_and_after_the_stop(service, server)
        finally:
            service.close()
            if isinstance(service, AsyncShell):
                service.stop_loop()
        seen[shell] = (outcomes, waits, len(mailer.outbox), _limit_records(caplog))

    sync, async_ = seen["sync"], seen["async"]
    assert sync[0] == async_[0]
    assert sync[0] == (
        [("passed", None)] * 20
        + [("RateLimited", "per_requester")]
        + [("passed", None)] * 3
        + [("InvalidToken", None)] * 3
    )
    # Counted on the Redis server's clock: a whole minute, less the time the test took.
    assert len(sync[1]) == len(async_[1]) == 1
    assert all(50.0 < wait <= 60.0 for wait in sync[1] + async_[1])
    assert sync[2] == async_[2] == 3 + 3  # per_client's three, then three let through
    assert sync[3] == async_[3]
    records = sync[3]
    errors = [r for r in records if r[0] == "limiter_error"]
    assert {r[3] for r in errors} == {
        "per_requester",
        "per_identifier",
        "per_client",
        "failed_confirmations",
        "per_mailbox",
    }
    assert all(r[1] == "ERROR" and r[4] for r in errors)
    # Log fields stay plain strings, whatever names the limit inside.
    assert all(type(r[3]) is str for r in records)


def test_both_limiters_fail_open_alike(caplog: pytest.LogCaptureFixture) -> None:
    """Limiter and AsyncLimiter on an unreachable storage: every hit and test let through,
    retry_after the limit's whole window, and the same records, in the same order."""
    caplog.set_level(logging.INFO, logger="credrecovery")
    limits = RateLimits(storage_uri=UNREACHABLE_REDIS)

    def calls(limiter: Any) -> list[Any]:
        return [
            limiter.hit("per_requester", REQUESTER),
            limiter.hit(LimitName.PER_IDENTIFIER, "domain:" + DOMAIN),
            limiter.hit_client("ejemplo@ejemploxmundo.com.ar", known=True),
            limiter.test("failed_confirmations", REQUESTER),
            limiter.retry_after("per_requester", REQUESTER),
            limiter.retry_after(LimitName.PER_IDENTIFIER, "domain:" + DOMAIN),
        ]

    sync = calls(Limiter(limits, LIMITER_KEY))
    sync_records = _limit_records(caplog)
    caplog.clear()

    async def run() -> list[Any]:
        limiter = AsyncLimiter(limits, LIMITER_KEY)
        try:
            return [await call for call in calls(limiter)]
        finally:
            await limiter.aclose()

    async_ = asyncio.run(run())
    assert sync == async_ == [True, True, True, True, 60.0, 3600.0]
    assert sync_records == _limit_records(caplog)
    assert [r[3] for r in sync_records] == [
        "per_requester",
        "per_identifier",
        "per_client",
        "failed_confirmations",
        "per_requester",
        "per_identifier",
    ]
    for record in caplog.records:
        assert REQUESTER not in record.getMessage() + repr(vars(record))


# --- retry_after on the service's clock ---------------------------------------------------


@pytest.mark.parametrize("limit", ["per_requester", "failed_confirmations"])
def test_retry_after_follows_the_injected_clock(
    make_service: ServiceFactory,
    clock: FakeClock,
    limit: str,
) -> None:
    """With memory://, RateLimited.retry_after is reckoned on the service's clock alone:
    exactly the seconds left of the window on the test clock, as that clock moves."""
    service = make_service(rate_limits=RateLimits())
    assert clock.now % 60 == 0
    clock.advance(15)

    def attempt() -> None:
        if limit == "per_requester":
            service.request("domain", DOMAIN, requester=REQUESTER)
        else:
            service.confirm("not-a-token", requester=REQUESTER)

    for _ in range(20):
        with contextlib.suppress(InvalidToken):
            attempt()
    waits = []
    for step in (0, 20, 24.5):
        clock.advance(step)
        with pytest.raises(RateLimited) as excinfo:
            attempt()
        assert excinfo.value.limit == limit
        waits.append(excinfo.value.retry_after)
    # No wall-clock reading mixes in: only float rounding at the clock's scale.
    # With 0.5 s left the answer is the minimum, 1 s.
    assert waits == pytest.approx([45.0, 25.0, 1.0], rel=0, abs=1e-6)


# --- the limit names ------------------------------------------------------------------------


def test_limit_names_are_public_and_match_the_fields() -> None:
    """LimitName is exported from credrecovery and credrecovery.ratelimit, one member per
    RateLimits field, each a str equal to its field's name."""
    assert credrecovery.LimitName is credrecovery.ratelimit.LimitName is LimitName
    assert "LimitName" in credrecovery.__all__
    assert "LimitName" in credrecovery.ratelimit.__all__
    fields = [
        "per_requester",
        "per_identifier",
        "per_client",
        "failed_confirmations",
        "per_mailbox",
        "failed_signins",
        "failed_signins_per_requester",
        "failed_signins_per_client",
    ]
    assert [name.value for name in LimitName] == fields
    assert all(getattr(RateLimits(), name) for name in LimitName)
    for name, field in zip(LimitName, fields, strict=True):
        assert isinstance(name, str)
        assert name == field
        assert str(name) == f"{name}" == field
        assert LimitName(field) is name


def test_rate_limited_names_its_limit_as_a_limit_name(make_service: ServiceFactory) -> None:
    """A host may compare RateLimited.limit to the enum or to the old string."""
    service = make_service(rate_limits=RateLimits(per_requester="1/minute"))
    service.request("domain", DOMAIN, requester=REQUESTER)
    with pytest.raises(RateLimited) as excinfo:
        service.request("domain", DOMAIN, requester=REQUESTER)
    assert excinfo.value.limit == "per_requester"
    assert excinfo.value.limit is LimitName.PER_REQUESTER
    assert {excinfo.value.limit: 1} == {"per_requester": 1}


def test_a_name_and_its_string_count_on_one_counter() -> None:
    """``hit("per_client", v)`` and ``hit(LimitName.PER_CLIENT, v)`` share a counter; an
    unknown name is refused rather than counted."""
    limiter = Limiter(RateLimits(per_client="3/hour"), LIMITER_KEY)
    assert limiter.hit("per_client", "x")
    assert limiter.hit(LimitName.PER_CLIENT, "x")
    assert limiter.hit("per_client", "x")
    assert not limiter.hit(LimitName.PER_CLIENT, "x")
    assert not limiter.test("per_client", "x")
    with pytest.raises(ValueError, match="per_cliente"):
        limiter.hit("per_cliente", "x")


@pytest.mark.redis
def test_redis_keys_keep_the_plain_names(redis_url: str) -> None:  # noqa: F811
    """Counters in Redis are keyed by the limit's plain name, as before LimitName, so
    processes of either version share them."""
    limiter = Limiter(RateLimits(storage_uri=redis_url), LIMITER_KEY)
    assert limiter.hit(LimitName.PER_REQUESTER, REQUESTER)
    client = redis.Redis.from_url(redis_url)
    try:
        keys = [key.decode() for key in client.scan_iter()]
    finally:
        client.close()
    assert keys
    assert all("/per_requester/" in key and "LimitName" not in key for key in keys)
