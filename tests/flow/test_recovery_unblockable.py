"""Recovery nobody can block: one requester's requests never use up a client's mails,
while per_mailbox bounds what every requester together sends to one mailbox."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator

import pytest
import redis

from credrecovery import RateLimits, RecoveryService
from credrecovery.memory import MemoryMailer
from helpers import FakeClock
from helpers.redis_server import redis_url  # noqa: F401 - a fixture, used through getfixturevalue

pytestmark = [pytest.mark.shells("sync", "async"), pytest.mark.slow]

NUMBER = "9000"
DOMAIN = "ejemploxmundo.com.ar"
EMAIL = "ejemplo@ejemploxmundo.com.ar"
ATTACKER = "203.0.113.7"
CLIENT_HOME = "198.51.100.23"
NAMES = [
    ("domain", DOMAIN),
    ("client_number", NUMBER),
    ("email", EMAIL),
    ("domain", "otro-ejemplo.com"),
]


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def storage_uri(request: pytest.FixtureRequest) -> str:
    """Where the limits are counted: a process-local memory storage or a fresh Redis DB."""
    if request.param == "memory":
        return "memory://"
    url: str = request.getfixturevalue("redis_url")
    return url


def _mails_to_client(mailer: MemoryMailer) -> int:
    return sum(m["To"].addresses[0].addr_spec == EMAIL for m in mailer.outbox)


def test_one_requester_cannot_use_up_the_clients_mails(
    make_service: Callable[..., RecoveryService],
    mailer: MemoryMailer,
    storage_uri: str,
) -> None:
    """With the default limits, one address asking for client 9000 by domain, number and
    email, six times each (past per_identifier and per_client), gets three mails out;
    the client's own request from another address is still mailed, whichever way it
    names itself."""
    service = make_service(rate_limits=RateLimits(storage_uri=storage_uri))
    for _ in range(6):
        for kind, value in NAMES[:3]:
            assert service.request(kind, value, requester=ATTACKER) is None
    assert _mails_to_client(mailer) == 3
    for kind, value in NAMES[:3]:
        before = len(mailer.outbox)
        service.request(kind, value, requester=CLIENT_HOME)
        assert len(mailer.outbox) == before + 1, f"the client's request by {kind} was withheld"
        assert mailer.outbox[-1]["To"].addresses[0].addr_spec == EMAIL


def test_many_requesters_together_get_at_most_per_mailbox_mails(
    make_service: Callable[..., RecoveryService],
    mailer: MemoryMailer,
    storage_uri: str,
) -> None:
    """Forty addresses asking at once for one client, each three times: ten mails in all,
    per_mailbox's default, and each address's own allowance never adds to it."""
    service = make_service(rate_limits=RateLimits(storage_uri=storage_uri))
    assert RateLimits().per_mailbox == "10/hour"
    for round_ in range(3):
        for n in range(40):
            kind, value = NAMES[(n + round_) % len(NAMES)]
            service.request(kind, value, requester=f"10.0.0.{n}")
    assert _mails_to_client(mailer) == len(mailer.outbox) == 10


FLOOD_SPACING = 20  # seconds between the test clock's requests after the burst


def test_a_flood_from_many_requesters_keeps_to_per_mailbox_each_hour(
    make_service: Callable[..., RecoveryService],
    mailer: MemoryMailer,
    clock: FakeClock,
) -> None:
    """A flood for one client from ever new addresses, for three hours on the test clock:
    mail resumes as the hours pass, and no mail is sent within the hour of the tenth
    before it."""
    service = make_service(rate_limits=RateLimits())
    assert clock.start % 3600 == 0  # see test_ratelimit's flood: the hour turns at the start
    sent_at: list[float] = []
    for i in range(3 * 3600 // FLOOD_SPACING):
        kind, value = NAMES[i % len(NAMES)]
        service.request(kind, value, requester=f"10.{i // 250 % 250}.{i % 250}.1")
        if len(mailer.outbox) > len(sent_at):
            sent_at.append(clock())
        clock.advance(FLOOD_SPACING if i >= 40 else 0)
    assert sent_at[:10] == [clock.start] * 10
    assert len(sent_at) > 10, "the flood locked the client out for good"
    pairs = zip(sent_at, sent_at[10:], strict=False)
    assert all(later - earlier >= 3600 for earlier, later in pairs)


def test_without_a_requester_per_client_counts_everyone(
    make_service: Callable[..., RecoveryService],
    mailer: MemoryMailer,
) -> None:
    """requester=None keeps the earlier meaning: three mails a client per hour, in all."""
    service = make_service(rate_limits=RateLimits())
    for _ in range(3):
        for kind, value in NAMES:
            service.request(kind, value)
    assert len(mailer.outbox) == 3


# --- a hit and a miss do the same limiter work ---------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
def own_redis_url() -> Iterator[str]:
    """A Redis server of the test's own, whose command statistics nothing else moves."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    port = _free_port()
    process = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
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
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url, socket_connect_timeout=1)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        yield url
    finally:
        client.close()
        process.terminate()
        process.wait(10)


def _scripts_run(client: redis.Redis) -> int:
    """How many limiter operations (one Lua script each) reached the server."""
    stats = client.info("commandstats")
    return sum(
        int(value["calls"])
        for name, value in stats.items()
        if name in ("cmdstat_evalsha", "cmdstat_eval")
    )


@pytest.mark.redis
def test_a_miss_asks_the_limiter_what_a_hit_asks(
    make_service: Callable[..., RecoveryService],
    own_redis_url: str,
) -> None:
    """Request by request, client 9000 and values nobody holds, each series from its own
    requester, ask the limiter's Redis as many operations: while mail goes out, once
    per_client withholds it (for the client, even when it is named another way, which
    a miss's counters do not know), and once per_identifier does."""
    service = make_service(rate_limits=RateLimits(storage_uri=own_redis_url))
    client = redis.Redis.from_url(own_redis_url)
    series = {
        "hit": [("client_number", NUMBER)] * 3
        + [("email", EMAIL), ("domain", DOMAIN)]
        + [("client_number", NUMBER)] * 4,
        "miss": [("client_number", "7777")] * 3
        + [("email", "nadie@nadie.example"), ("domain", "nadie.example")]
        + [("client_number", "7777")] * 4,
    }
    seen: dict[str, list[int]] = {}
    try:
        service.request("client_number", "1", requester="192.0.2.99")  # connections, scripts
        for (name, requests), requester in zip(
            series.items(), ("192.0.2.1", "192.0.2.2"), strict=True
        ):
            seen[name] = []
            for kind, value in requests:
                client.config_resetstat()
                service.request(kind, value, requester=requester)
                seen[name].append(_scripts_run(client))
    finally:
        client.close()
    assert seen["hit"] == seen["miss"]
    assert all(count >= 4 for count in seen["hit"])
