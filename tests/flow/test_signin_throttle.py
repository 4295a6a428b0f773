"""Sign-in throttling: failures counted per requester and number, per requester, and per
number, checked before anything is looked up or hashed; in memory and in Redis."""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import threading
from collections.abc import Callable
from typing import Any

import pytest
import redis
from passlib.context import CryptContext

from credrecovery import LimitName, RateLimited, RateLimits, RecoveryService
from credrecovery.memory import MemoryDirectory, MemoryMailer
from helpers import OLD_KEY, FakeClock
from helpers.redis_server import redis_url  # noqa: F401 - a fixture, used through getfixturevalue

pytestmark = pytest.mark.shells("sync", "async")

NUMBER = "9000"
EMAIL = "ejemplo@ejemploxmundo.com.ar"
ATTACKER = "203.0.113.7"
CLIENT_HOME = "198.51.100.23"
WRONG = "Not-The-Key-2024"
UNREACHABLE_REDIS = "redis://127.0.0.1:1/0"  # nothing listens on port 1


class CountingDirectory(MemoryDirectory):
    """A host's directory that counts its lookups."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.finds = 0

    def find(self, kind: Any, value: str) -> Any:
        self.finds += 1
        return super().find(kind, value)


class CountingContext(CryptContext):
    """A host's hashing policy (cheap_context's settings) that counts verifications."""

    def __init__(self) -> None:
        super().__init__(
            schemes=["argon2", "bcrypt"],
            deprecated=["bcrypt"],
            argon2__memory_cost=8,
            argon2__time_cost=1,
            argon2__parallelism=1,
            bcrypt__rounds=4,
        )
        self.verifications = 0

    def verify_and_update(self, *args: Any, **kwargs: Any) -> Any:
        self.verifications += 1
        return super().verify_and_update(*args, **kwargs)


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def storage_uri(request: pytest.FixtureRequest) -> str:
    """Where the limits are counted: a process-local memory storage or a fresh Redis DB."""
    if request.param == "memory":
        return "memory://"
    url: str = request.getfixturevalue("redis_url")
    return url


@pytest.fixture
def counted(directory: MemoryDirectory) -> tuple[CountingDirectory, CountingContext]:
    """Client 9000 in a directory that counts lookups, hashed by a policy that counts."""
    context = CountingContext()
    counting = CountingDirectory(crypt_context=context)
    counting.add_client(NUMBER, EMAIL, key=OLD_KEY, name="Ana Example")
    for n in range(40):
        counting.add_client(str(7000 + n), f"c{n}@example.com", key=f"Other-Key-{n:04d}-xyz")
    return counting, context


@pytest.fixture
def limited(
    make_service: Callable[..., RecoveryService],
    storage_uri: str,
    counted: tuple[CountingDirectory, CountingContext],
) -> Callable[..., RecoveryService]:
    """Build a service over the counting directory, counting limits in ``storage_uri``."""
    counting, context = counted

    def make(**limits: Any) -> RecoveryService:
        return make_service(
            directory=counting,
            crypt_context=context,
            rate_limits=RateLimits(storage_uri=storage_uri, **limits),
        )

    return make


def _refusal(call: Callable[[], object]) -> RateLimited:
    with pytest.raises(RateLimited) as excinfo:
        call()
    assert excinfo.value.http_status == 429
    return excinfo.value


# --- one requester against one number ---------------------------------------------------


def test_the_sixth_wrong_key_is_refused_before_any_lookup_or_hash(
    limited: Callable[..., RecoveryService],
    counted: tuple[CountingDirectory, CountingContext],
) -> None:
    """Five wrong keys from one requester are checked; the sixth attempt, even with the
    right key, is refused with RateLimited, and nothing is looked up or verified."""
    service = limited()
    directory, context = counted
    for _ in range(5):
        assert service.authenticate(NUMBER, WRONG, requester=ATTACKER) is None
    finds, verifications = directory.finds, context.verifications
    assert (finds, verifications) == (5, 10)  # one lookup, and one verification a scheme
    for key in (WRONG, OLD_KEY):
        refused = _refusal(lambda k=key: service.authenticate(NUMBER, k, requester=ATTACKER))
        assert refused.limit is LimitName.FAILED_SIGNINS
        assert 0 < refused.retry_after <= 900
    assert (directory.finds, context.verifications) == (finds, verifications)
    # Another requester is not held back by this one.
    assert service.authenticate(NUMBER, OLD_KEY, requester=CLIENT_HOME) is not None


def test_a_hundred_wrong_keys_are_refused_long_before_the_hundredth(
    limited: Callable[..., RecoveryService],
    counted: tuple[CountingDirectory, CountingContext],
) -> None:
    """Of a hundred wrong keys from one requester, five are checked; the rest never reach
    the directory."""
    service = limited()
    directory, _ = counted
    outcomes = []
    for _ in range(100):
        try:
            outcomes.append(service.authenticate(NUMBER, WRONG, requester=ATTACKER))
        except RateLimited as exc:
            outcomes.append(exc.limit)
    assert outcomes == [None] * 5 + [LimitName.FAILED_SIGNINS] * 95
    assert directory.finds == 5


def test_a_success_clears_the_requesters_failures(limited: Callable[..., RecoveryService]) -> None:
    """Four typos and a success leave the requester its five attempts again."""
    service = limited()
    for _ in range(2):
        for _ in range(4):
            assert service.authenticate(NUMBER, WRONG, requester=CLIENT_HOME) is None
        assert service.authenticate(NUMBER, OLD_KEY, requester=CLIENT_HOME) is not None
    for _ in range(5):
        assert service.authenticate(NUMBER, WRONG, requester=CLIENT_HOME) is None
    _refusal(lambda: service.authenticate(NUMBER, OLD_KEY, requester=CLIENT_HOME))


def test_an_unknown_number_is_counted_as_a_known_one(
    limited: Callable[..., RecoveryService],
) -> None:
    """A number nobody holds meets the same limits, in the same order, as a client's:
    the answers tell nothing of who exists. Spellings of one number share a counter."""
    service = limited()
    seen = {}
    waits = []
    for number, requester in ((NUMBER, "192.0.2.1"), ("7777", "192.0.2.2")):
        outcomes: list[object] = []
        for spelling in (number, f" {number} ", number, f"{number} ", number, number):
            try:
                outcomes.append(service.authenticate(spelling, WRONG, requester=requester))
            except RateLimited as exc:
                outcomes.append(exc.limit)
                waits.append(exc.retry_after)
        seen[number] = outcomes
    assert seen[NUMBER] == seen["7777"] == [None] * 5 + [LimitName.FAILED_SIGNINS]
    assert waits[0] == pytest.approx(waits[1], abs=2)


# --- one requester across numbers -------------------------------------------------------


def test_a_spray_of_numbers_from_one_requester_is_refused(
    limited: Callable[..., RecoveryService],
    counted: tuple[CountingDirectory, CountingContext],
) -> None:
    """Thirty failures an hour from one requester, whatever numbers it tries; then
    RateLimited for every number, and nothing more is looked up."""
    service = limited()
    directory, _ = counted
    for n in range(30):
        number = str(7000 + n) if n % 2 else str(8000 + n)  # clients and nobody, mixed
        assert service.authenticate(number, WRONG, requester=ATTACKER) is None
    finds = directory.finds
    for number in ("7035", "8035", NUMBER):
        refused = _refusal(lambda n=number: service.authenticate(n, WRONG, requester=ATTACKER))
        assert refused.limit is LimitName.FAILED_SIGNINS_PER_REQUESTER
        assert 0 < refused.retry_after <= 3600
    assert directory.finds == finds
    assert service.authenticate(NUMBER, OLD_KEY, requester=CLIENT_HOME) is not None


# --- one number across requesters: slow down, don't lock --------------------------------


def _guessed_by_many(service: RecoveryService, requesters: int) -> list[str]:
    """Five wrong keys for client 9000 from each of ``requesters`` addresses."""
    guessers = [f"10.0.0.{i}" for i in range(requesters)]
    for guesser in guessers:
        for _ in range(5):
            assert service.authenticate(NUMBER, WRONG, requester=guesser) is None
    return guessers


def test_guessing_from_many_addresses_never_locks_the_client_out(
    limited: Callable[..., RecoveryService],
    counted: tuple[CountingDirectory, CountingContext],
) -> None:
    """Fifty failures against one number from ten addresses: past that, an address that
    failed is refused, a new one gets one attempt, and the client signs in from home."""
    service = limited()
    directory, _ = counted
    guessers = _guessed_by_many(service, 10)
    finds = directory.finds
    refused = _refusal(lambda: service.authenticate(NUMBER, WRONG, requester=guessers[0]))
    assert refused.limit is LimitName.FAILED_SIGNINS_PER_CLIENT
    newcomer = "10.0.1.1"
    assert service.authenticate(NUMBER, WRONG, requester=newcomer) is None
    refused = _refusal(lambda: service.authenticate(NUMBER, OLD_KEY, requester=newcomer))
    assert refused.limit in (LimitName.FAILED_SIGNINS, LimitName.FAILED_SIGNINS_PER_CLIENT)
    assert directory.finds == finds + 1
    # The client, from its own address, with the right key, while the guessing goes on.
    login = service.authenticate(NUMBER, OLD_KEY, requester=CLIENT_HOME)
    assert login is not None and login.number == NUMBER
    # Signed in, the client may sign in again; and a typo of its own costs one attempt.
    assert service.authenticate(NUMBER, OLD_KEY, requester=CLIENT_HOME) is not None
    assert service.authenticate(NUMBER, WRONG, requester=CLIENT_HOME) is None
    refused = _refusal(lambda: service.authenticate(NUMBER, OLD_KEY, requester=CLIENT_HOME))
    assert refused.limit is LimitName.FAILED_SIGNINS_PER_CLIENT
    # Other clients are not slowed down.
    assert service.authenticate("7001", WRONG, requester=guessers[1]) is None


def test_a_newcomers_one_attempt_cannot_be_multiplied_by_racing(
    limited: Callable[..., RecoveryService],
    counted: tuple[CountingDirectory, CountingContext],
) -> None:
    """Past the per-number limit a new address has one attempt, even when it sends
    eight at once: the other seven are refused without a lookup."""
    service = limited(failed_signins_per_client="3/hour")
    directory, _ = counted
    for i in range(3):
        assert service.authenticate(NUMBER, WRONG, requester=f"10.0.0.{i}") is None
    finds = directory.finds
    barrier = threading.Barrier(8)

    def attempt() -> object:
        barrier.wait(10)
        try:
            return service.authenticate(NUMBER, WRONG, requester="10.0.2.2")
        except RateLimited as exc:
            return exc.limit

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(lambda _: attempt(), range(8)))
    assert sorted(map(str, outcomes)) == ["None"] + ["failed_signins_per_client"] * 7
    assert directory.finds == finds + 1


def test_without_a_requester_only_the_per_number_limit_applies(
    limited: Callable[..., RecoveryService],
    counted: tuple[CountingDirectory, CountingContext],
) -> None:
    """requester=None counts every caller as one: past failed_signins_per_client every
    anonymous attempt is refused (so pass the requester), while a caller that names its
    requester still gets its attempt."""
    service = limited(failed_signins_per_client="8/hour")
    directory, _ = counted
    for _ in range(8):
        assert service.authenticate(NUMBER, WRONG) is None
    finds = directory.finds
    refused = _refusal(lambda: service.authenticate(NUMBER, OLD_KEY))
    assert refused.limit is LimitName.FAILED_SIGNINS_PER_CLIENT
    assert 0 < refused.retry_after <= 3600
    assert directory.finds == finds
    assert service.authenticate(NUMBER, OLD_KEY, requester=CLIENT_HOME) is not None


# --- change_key --------------------------------------------------------------------------


def test_change_key_counts_wrong_current_keys(
    limited: Callable[..., RecoveryService],
    mailer: MemoryMailer,
) -> None:
    """A wrong current key in change_key is a failed sign-in: the sixth attempt is
    refused, the right key included; positional calls keep working."""
    service = limited()
    new_key = "correct horse battery staple 1"
    for _ in range(5):
        assert service.change_key(NUMBER, WRONG, new_key, requester=ATTACKER) is None
    refused = _refusal(lambda: service.change_key(NUMBER, OLD_KEY, new_key, requester=ATTACKER))
    assert refused.limit is LimitName.FAILED_SIGNINS
    assert mailer.outbox == []
    assert service.change_key(NUMBER, OLD_KEY, new_key) is not None
    assert service.authenticate(NUMBER, new_key, requester=CLIENT_HOME) is not None


# --- windows, storage failures, what is stored --------------------------------------------


def test_the_windows_run_on_the_service_clock(
    make_service: Callable[..., RecoveryService],
    clock: FakeClock,
) -> None:
    """With memory://, a refused requester is let in again as the service's clock moves
    on, and retry_after shrinks with that clock alone."""
    service = make_service(rate_limits=RateLimits())
    clock.advance(15)
    for _ in range(5):
        assert service.authenticate(NUMBER, WRONG, requester=ATTACKER) is None
    first = _refusal(lambda: service.authenticate(NUMBER, OLD_KEY, requester=ATTACKER))
    clock.advance(100)
    second = _refusal(lambda: service.authenticate(NUMBER, OLD_KEY, requester=ATTACKER))
    assert first.retry_after - second.retry_after == pytest.approx(100, abs=1e-6)
    clock.advance(1800)  # two windows of failed_signins: the failures have weighed off
    assert service.authenticate(NUMBER, OLD_KEY, requester=ATTACKER) is not None


def test_an_unreachable_storage_fails_open(
    make_service: Callable[..., RecoveryService],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """With Redis down every sign-in is checked, none refused, and limiter_error logged
    at ERROR for each sign-in limit, naming neither requester nor number."""
    caplog.set_level(logging.INFO, logger="credrecovery")
    service = make_service(rate_limits=RateLimits(storage_uri=UNREACHABLE_REDIS))
    for _ in range(10):
        assert service.authenticate(NUMBER, WRONG, requester=ATTACKER) is None
    assert service.authenticate(NUMBER, OLD_KEY, requester=ATTACKER) is not None
    errors = [r for r in caplog.records if getattr(r, "event", None) == "limiter_error"]
    assert {getattr(r, "limit", None) for r in errors} == {
        "failed_signins",
        "failed_signins_per_requester",
        "failed_signins_per_client",
    }
    assert all(r.levelno == logging.ERROR for r in errors)
    for record in caplog.records:
        text = record.getMessage() + repr(vars(record))
        assert ATTACKER not in text and WRONG not in text and OLD_KEY not in text


def test_counters_and_logs_hold_no_number_requester_or_key(
    limited: Callable[..., RecoveryService],
    storage_uri: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Refusals log 'throttled' with the limit's name only; Redis keys are digests."""
    caplog.set_level(logging.DEBUG, logger="credrecovery")
    service = limited()
    for _ in range(6):
        with contextlib.suppress(RateLimited):
            service.authenticate(NUMBER, WRONG, requester=ATTACKER)
    throttled = [r for r in caplog.records if getattr(r, "event", None) == "throttled"]
    assert [getattr(r, "limit", None) for r in throttled] == ["failed_signins"]
    for record in caplog.records:
        text = record.getMessage() + repr(vars(record))
        assert ATTACKER not in text and WRONG not in text
    if storage_uri.startswith("redis://"):
        client = redis.Redis.from_url(storage_uri)
        try:
            keys = [key.decode() for key in client.scan_iter(count=1000)]
        finally:
            client.close()
        assert any("/failed_signins/" in key for key in keys)
        assert not any(NUMBER in key.split("/") or ATTACKER in key for key in keys)


def test_the_sign_in_limits_have_documented_defaults() -> None:
    """The defaults the operations guide states."""
    limits = RateLimits()
    assert (
        limits.failed_signins,
        limits.failed_signins_per_requester,
        limits.failed_signins_per_client,
    ) == ("5/15 minutes", "30/hour", "50/hour")
    with pytest.raises(ValueError, match="failed_signins_per_client"):
        RateLimits(failed_signins_per_client="lots")
