"""Rate limits on requests and confirmations, counted in memory and in Redis."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import pytest
import redis

from credrecovery import RateLimits, RecoveryService
from credrecovery._limits_storage import BoundedMemoryStorage
from credrecovery.exceptions import InvalidToken, RateLimited
from credrecovery.memory import MemoryDirectory, MemoryMailer
from credrecovery.ratelimit import Limiter
from helpers import FakeClock, token_from
from helpers.redis_server import redis_url  # noqa: F401 - a fixture, used through getfixturevalue

ServiceFactory = Callable[..., RecoveryService]
# Every service test here runs through both shells, in both key modes.
pytestmark = [pytest.mark.shells("sync", "async"), pytest.mark.key_modes("generate", "choose")]

DOMAIN = "ejemploxmundo.com.ar"
OTHER_DOMAIN = "otro-ejemplo.com"
EMAIL = "ejemplo@ejemploxmundo.com.ar"
NUMBER = "9000"
KNOWN = [
    ("domain", DOMAIN),
    ("client_number", NUMBER),
    ("email", EMAIL),
    ("domain", OTHER_DOMAIN),
]
UNKNOWN = [
    ("domain", "nadie-aqui.com.ar"),
    ("client_number", "7777"),
    ("email", "nadie@nadie-aqui.com.ar"),
    ("domain", "tampoco.example"),
]
BAD_TOKENS = ["not-a-token", "x" * 40, "abc.def.ghi", "eyJudW1iZXIiOiI5MDAwIn0.Zm9v.YmFy"]


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def storage_uri(request: pytest.FixtureRequest) -> str:
    """Where the limits are counted: a process-local memory storage or a fresh Redis DB."""
    if request.param == "memory":
        return "memory://"
    url: str = request.getfixturevalue("redis_url")
    return url


@pytest.fixture
def limited(make_service: ServiceFactory, storage_uri: str) -> Callable[..., RecoveryService]:
    """Build a service counting limits in ``storage_uri``.

    ``memory://`` windows run on the test clock. On Redis each counter's
    window starts at its first hit, in a database flushed for the test, so no
    window turns while a test runs, however near a turn of the real clock.
    """

    def make(**limits: str) -> RecoveryService:
        return make_service(rate_limits=RateLimits(storage_uri=storage_uri, **limits))

    return make


def _token(service: RecoveryService, mailer: MemoryMailer) -> str:
    """Request a fresh confirmation for client 9000 and return its token."""
    before = len(mailer.outbox)
    service.request("client_number", NUMBER)
    assert len(mailer.outbox) == before + 1
    return token_from(mailer.outbox[-1])


def _redis_keys(url: str) -> list[str]:
    client = redis.Redis.from_url(url)
    try:
        return [key.decode() for key in client.scan_iter(count=1000)]
    finally:
        client.close()


# --- per_requester ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "identifiers",
    [KNOWN, UNKNOWN, [x for pair in zip(KNOWN, UNKNOWN, strict=True) for x in pair]],
    ids=["known", "unknown", "mixed"],
)
def test_per_requester_refuses_the_21st_request(
    limited: Callable[..., RecoveryService], identifiers: list[tuple[str, str]]
) -> None:
    """Twenty requests from one requester pass, whatever they name; the 21st is refused."""
    service = limited()
    for i in range(20):
        kind, value = identifiers[i % len(identifiers)]
        assert service.request(kind, value, requester="203.0.113.7") is None
    kind, value = identifiers[0]
    with pytest.raises(RateLimited) as excinfo:
        service.request(kind, value, requester="203.0.113.7")
    assert excinfo.value.limit == "per_requester"
    assert 0 < excinfo.value.retry_after <= 60
    assert excinfo.value.http_status == 429


def test_per_requester_counts_each_requester_apart(
    limited: Callable[..., RecoveryService],
) -> None:
    """A throttled requester does not throttle another one, nor anonymous requests."""
    service = limited()
    for i in range(20):
        kind, value = UNKNOWN[i % len(UNKNOWN)]
        service.request(kind, value, requester="203.0.113.7")
    with pytest.raises(RateLimited):
        service.request("domain", DOMAIN, requester="203.0.113.7")
    for i in range(20):
        kind, value = UNKNOWN[i % len(UNKNOWN)]
        assert service.request(kind, value, requester="198.51.100.23") is None
    for i in range(30):
        kind, value = UNKNOWN[i % len(UNKNOWN)]
        assert service.request(kind, value) is None
    with pytest.raises(RateLimited):
        service.request("domain", DOMAIN, requester="198.51.100.23")


# --- per_identifier ---------------------------------------------------------------------


def test_per_identifier_withholds_the_sixth_mail(
    limited: Callable[..., RecoveryService], mailer: MemoryMailer
) -> None:
    """Five requests naming one value mail five times; the sixth answers the same, silently."""
    service = limited(per_client="100/hour")
    for i in range(5):
        assert service.request("domain", DOMAIN) is None
        assert len(mailer.outbox) == i + 1
    assert service.request("domain", DOMAIN) is None
    assert len(mailer.outbox) == 5
    service.request("client_number", NUMBER)
    assert len(mailer.outbox) == 6


def test_per_identifier_counts_unknown_values(
    limited: Callable[..., RecoveryService], directory: MemoryDirectory, mailer: MemoryMailer
) -> None:
    """Requests for a value nobody holds count too: once it exists, its quota is spent."""
    service = limited(per_client="100/hour")
    for _ in range(5):
        assert service.request("domain", "nuevo-cliente.com.ar") is None
    assert mailer.outbox == []
    directory.add_client(
        "9001",
        "hola@nuevo-cliente.com.ar",
        key="Another-Key-2024",
        domains=["nuevo-cliente.com.ar"],
    )
    assert service.request("domain", "nuevo-cliente.com.ar") is None
    assert mailer.outbox == []
    service.request("email", "hola@nuevo-cliente.com.ar")
    assert [m["To"] for m in mailer.outbox] == ["hola@nuevo-cliente.com.ar"]


def test_per_identifier_counts_the_normalized_value(
    limited: Callable[..., RecoveryService], mailer: MemoryMailer
) -> None:
    """Spellings of one domain share a counter: case, trailing dot and spaces do not matter."""
    service = limited(per_client="100/hour")
    spellings = ["EJEMPLOXMUNDO.COM.AR.", "ejemploxmundo.com.ar", "  EjemploXMundo.com.ar  "]
    for i in range(5):
        service.request("domain", spellings[i % len(spellings)])
    assert len(mailer.outbox) == 5
    for spelling in spellings:
        assert service.request("domain", spelling) is None
    assert len(mailer.outbox) == 5


# --- per_client -------------------------------------------------------------------------


def test_per_client_caps_mails_however_the_client_is_named(
    limited: Callable[..., RecoveryService], mailer: MemoryMailer
) -> None:
    """Three mails per client per hour, whether asked by domain, number or email."""
    service = limited()
    for kind, value in KNOWN[:3]:
        assert service.request(kind, value) is None
    assert len(mailer.outbox) == 3
    assert {m["To"].addresses[0].addr_spec for m in mailer.outbox} == {EMAIL}
    for kind, value in [("domain", OTHER_DOMAIN), *KNOWN[:3]]:
        assert service.request(kind, value) is None
    assert len(mailer.outbox) == 3


# --- per_client: known clients apart from misses ---------------------------------------

LIMITER_KEY = b"limiter-key-for-tests-0123456789"


def _spray_misses(limiter: Limiter, count: int, caps: int) -> int:
    """Send ``count`` requests that match nobody, each from its own requester, as the
    service counts them; check every store stays within ``caps``; return the largest
    size the shared store reached."""
    largest = 0
    for i in range(count):
        requester = f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}"
        value = f"domain:spray-{i}.example"
        limiter.hit("per_requester", requester)
        limiter.hit("per_identifier", value)
        assert limiter.hit_client(f"?{value}", known=False)
        assert isinstance(limiter.storage, BoundedMemoryStorage)
        assert isinstance(limiter.known_storage, BoundedMemoryStorage)
        assert len(limiter.storage) <= caps
        assert len(limiter.known_storage) <= caps
        largest = max(largest, len(limiter.storage))
    return largest


@pytest.mark.parametrize("spray", [800, 6_000])
def test_a_spray_of_misses_never_resets_a_known_clients_cap(
    spray: int,
    clock: FakeClock,
) -> None:
    """After 3 hits on a client, no spray of misses lets a 4th through; stores stay capped."""
    limiter = Limiter(
        RateLimits(per_client="3/hour", memory_max_keys=2_000), LIMITER_KEY, clock=clock
    )
    victim = EMAIL
    for _ in range(3):
        assert limiter.hit_client(victim, known=True)
    largest = _spray_misses(limiter, spray, caps=2_000)
    assert largest > 1_500, "the spray never filled the shared store; nothing was tested"
    assert len(limiter.known_storage) == 1  # misses wrote nothing there
    assert not limiter.hit_client(victim, known=True)


def test_the_spray_does_reset_a_counter_kept_beside_the_misses(clock: FakeClock) -> None:
    """Control: the same spray evicts a per_client counter kept in the shared store."""
    limiter = Limiter(
        RateLimits(per_client="3/hour", memory_max_keys=2_000), LIMITER_KEY, clock=clock
    )
    for _ in range(3):
        assert limiter.hit("per_client", EMAIL)
    _spray_misses(limiter, 800, caps=2_000)
    assert limiter.hit("per_client", EMAIL)


def test_known_and_unknown_clients_count_in_like_stores_apart() -> None:
    """With memory://, known hits and misses go to two like, equally capped stores only."""
    limiter = Limiter(RateLimits(per_client="3/hour", memory_max_keys=1234), LIMITER_KEY)
    assert type(limiter.storage) is type(limiter.known_storage) is BoundedMemoryStorage
    assert limiter.storage is not limiter.known_storage
    assert isinstance(limiter.storage, BoundedMemoryStorage)
    assert isinstance(limiter.known_storage, BoundedMemoryStorage)
    assert limiter.storage.max_keys == limiter.known_storage.max_keys == 1234
    assert [limiter.hit_client(NUMBER, known=True) for _ in range(4)] == [True] * 3 + [False]
    assert (len(limiter.storage), len(limiter.known_storage)) == (0, 1)
    assert [limiter.hit_client("?domain:x.example", known=False) for _ in range(4)] == [
        True
    ] * 3 + [False]
    assert (len(limiter.storage), len(limiter.known_storage)) == (1, 1)
    assert limiter.hit("per_client", NUMBER)  # a different store: a fresh count


@pytest.mark.redis
def test_hit_client_counts_in_redis_for_known_and_unknown(redis_url: str) -> None:  # noqa: F811
    """With Redis, both kinds of hit count in the one server, under hit()'s keys."""
    limiter = Limiter(RateLimits(storage_uri=redis_url, per_client="3/hour"), LIMITER_KEY)
    assert limiter.known_storage is limiter.storage
    assert [limiter.hit_client(EMAIL, known=True) for _ in range(3)] == [True] * 3
    assert not limiter.hit("per_client", EMAIL)
    for i in range(50):
        assert limiter.hit_client(f"?domain:spray-{i}.example", known=False)
    assert not limiter.hit_client(EMAIL, known=True)
    assert [limiter.hit_client("?domain:x.example", known=False) for _ in range(4)] == [
        True
    ] * 3 + [False]
    keys = _redis_keys(redis_url)
    assert keys
    assert not any(EMAIL in key or "example" in key for key in keys)


# --- failed_confirmations ---------------------------------------------------------------


def test_failed_confirmations_refuse_even_a_valid_token(
    limited: Callable[..., RecoveryService], mailer: MemoryMailer
) -> None:
    """After 20 bad tokens a requester is refused, even with a good one; others are not."""
    service = limited()
    token = _token(service, mailer)
    for i in range(20):
        with pytest.raises(InvalidToken):
            service.confirm(BAD_TOKENS[i % len(BAD_TOKENS)], requester="203.0.113.7")
    with pytest.raises(RateLimited) as excinfo:
        service.confirm(token, requester="203.0.113.7")
    assert excinfo.value.limit == "failed_confirmations"
    assert 0 < excinfo.value.retry_after <= 60
    with pytest.raises(RateLimited):
        service.check(token, requester="203.0.113.7")
    confirmation = service.confirm(token, requester="198.51.100.23")
    assert confirmation.number == NUMBER


def test_valid_confirmations_do_not_count(
    limited: Callable[..., RecoveryService], mailer: MemoryMailer
) -> None:
    """A successful confirmation between failures does not use up the allowance."""
    service = limited()
    token = _token(service, mailer)
    for i in range(19):
        with pytest.raises(InvalidToken):
            service.confirm(BAD_TOKENS[i % len(BAD_TOKENS)], requester="203.0.113.7")
    service.check(token, requester="203.0.113.7")
    service.confirm(token, requester="203.0.113.7")
    with pytest.raises(InvalidToken) as excinfo:
        service.confirm(token, requester="203.0.113.7")  # reused: the 20th failure
    assert not isinstance(excinfo.value, RateLimited)
    with pytest.raises(RateLimited) as limited_info:
        service.confirm("not-a-token", requester="203.0.113.7")
    assert limited_info.value.limit == "failed_confirmations"


def test_requests_and_confirmations_count_apart(
    limited: Callable[..., RecoveryService],
) -> None:
    """Bad tokens do not spend the request allowance, nor requests the confirmation one."""
    service = limited()
    for i in range(20):
        with pytest.raises(InvalidToken):
            service.confirm(BAD_TOKENS[i % len(BAD_TOKENS)], requester="203.0.113.7")
    for i in range(20):
        kind, value = UNKNOWN[i % len(UNKNOWN)]
        service.request(kind, value, requester="198.51.100.23")
    assert service.request("domain", DOMAIN, requester="203.0.113.7") is None
    with pytest.raises(InvalidToken) as excinfo:
        service.confirm("not-a-token", requester="198.51.100.23")
    assert not isinstance(excinfo.value, RateLimited)


# --- a flood ----------------------------------------------------------------------------


FLOOD_NAMES = [
    *KNOWN,
    ("domain", "EJEMPLOXMUNDO.COM.AR."),
    ("email", "Ejemplo@EjemploXMundo.com.ar"),
]
FLOOD_SPACING = 30  # seconds between the test clock's requests after the burst


@pytest.mark.key_modes("generate")  # requests only: the key mode never comes into it
def test_a_flood_sends_at_most_three_mails_an_hour(
    limited: Callable[..., RecoveryService],
    mailer: MemoryMailer,
    clock: FakeClock,
    storage_uri: str,
) -> None:
    """A flood for one client, however named, mails it at most three times in any hour.

    A burst names the client every way at once: the first three requests
    mail, no later one in the burst does. On the test clock the flood then
    goes on for two hours, a request every FLOOD_SPACING seconds, and mail
    resumes; Redis counts on the real clock, so there the burst names the
    client twenty times each way, and that is all.
    """
    service = limited()
    spread = storage_uri == "memory://"
    sent_at: list[float] = []

    def ask(i: int) -> None:
        kind, value = FLOOD_NAMES[i % len(FLOOD_NAMES)]
        assert service.request(kind, value) is None
        if len(mailer.outbox) > len(sent_at):
            sent_at.append(clock())

    for i in range(len(FLOOD_NAMES) * (1 if spread else 20)):
        ask(i)
    assert len(mailer.outbox) == 3
    assert all(m["To"].addresses[0].addr_spec == EMAIL for m in mailer.outbox)
    if not spread:
        return
    assert sent_at == [clock.start] * 3
    # The flood starts as an hour turns. The sliding window counter weighs the
    # previous hour's mails by how much of that hour the window still covers,
    # so three mails late in one hour would let a fourth through early in the next.
    assert clock.start % 3600 == 0
    for i in range(2 * 3600 // FLOOD_SPACING):
        clock.advance(FLOOD_SPACING)
        ask(i)
    assert all(m["To"].addresses[0].addr_spec == EMAIL for m in mailer.outbox)
    assert len(sent_at) > 3, "the flood locked the client out for good"
    # No hour holds a fourth mail: each is an hour or more after the third before it.
    pairs = zip(sent_at, sent_at[3:], strict=False)
    assert all(later - earlier >= 3600 for earlier, later in pairs)


# --- logging and storage keys -----------------------------------------------------------


def test_throttling_is_logged_without_identifiers_or_requesters(
    limited: Callable[..., RecoveryService],
    mailer: MemoryMailer,
    storage_uri: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Each throttled outcome logs 'throttled' with its limit, and no value in clear."""
    caplog.set_level(logging.DEBUG, logger="credrecovery")
    service = limited()
    asker, prober = "203.0.113.7", "198.51.100.23"
    sequence = [
        ("domain", DOMAIN),
        ("email", EMAIL),
        ("domain", DOMAIN),  # three mails
        ("email", EMAIL),  # per_client
        ("domain", DOMAIN),
        ("domain", DOMAIN),
        ("domain", DOMAIN),  # per_client
        ("domain", DOMAIN),  # the 6th naming this domain: per_identifier
        ("domain", "nadie-aqui.com.ar"),
    ]
    for kind, value in sequence:
        service.request(kind, value, requester=asker)
    for _ in range(20 - len(sequence)):
        service.request("domain", "nadie-aqui.com.ar", requester=asker)
    with pytest.raises(RateLimited):
        service.request("domain", DOMAIN, requester=asker)
    for i in range(20):
        with pytest.raises(InvalidToken):
            service.confirm(BAD_TOKENS[i % len(BAD_TOKENS)], requester=prober)
    with pytest.raises(RateLimited):
        service.confirm("not-a-token", requester=prober)
    assert len(mailer.outbox) == 3

    throttled = [r for r in caplog.records if getattr(r, "event", None) == "throttled"]
    assert {getattr(r, "limit", None) for r in throttled} == {
        "per_requester",
        "per_identifier",
        "per_client",
        "failed_confirmations",
    }
    assert all(r.levelno == logging.WARNING for r in throttled)
    secrets_in_clear = [DOMAIN, EMAIL, "nadie-aqui", asker, prober, *BAD_TOKENS]
    for record in caplog.records:
        text = record.getMessage() + repr(vars(record))
        for value in secrets_in_clear:
            assert value not in text, (value, record.getMessage())

    if storage_uri.startswith("redis://"):
        keys = _redis_keys(storage_uri)
        assert keys, "nothing was counted in Redis"
        for key in keys:
            for value in [DOMAIN, EMAIL, NUMBER, "nadie-aqui", asker, prober, "ejemplo"]:
                assert value not in key, (value, key)


@pytest.mark.redis
def test_a_redis_window_runs_a_whole_window_from_its_first_hit(
    redis_url: str,  # noqa: F811
) -> None:
    """On Redis a counter's window ends a whole window after its first hit, whatever the
    real clock's phase, so a test on a fresh database sees no window turn."""
    if time.time() % 60.0 < 1.5:
        time.sleep(1.5)  # a window that followed the clock would also end in a minute here
    limiter = Limiter(RateLimits(storage_uri=redis_url), LIMITER_KEY)
    assert limiter.hit("per_requester", "203.0.113.7")
    time.sleep(0.01)  # within the hit's millisecond, limits reads the window as ending now
    assert 59.0 < limiter.retry_after("per_requester", "203.0.113.7") <= 60.0


# --- configuration ----------------------------------------------------------------------


def test_default_limits(storage_uri: str) -> None:
    """The documented defaults, whichever storage counts them."""
    assert RateLimits() == RateLimits(
        per_requester="20/minute",
        per_identifier="5/hour",
        per_client="3/hour",
        failed_confirmations="20/minute",
        storage_uri="memory://",
    )
    limits = RateLimits(storage_uri=storage_uri)
    assert (
        limits.per_requester,
        limits.per_identifier,
        limits.per_client,
        limits.failed_confirmations,
    ) == ("20/minute", "5/hour", "3/hour", "20/minute")


@pytest.mark.parametrize(
    "field", ["per_requester", "per_identifier", "per_client", "failed_confirmations"]
)
@pytest.mark.parametrize("value", ["", "lots", "20/fortnight", "twenty per minute"])
def test_an_invalid_limit_string_is_refused(storage_uri: str, field: str, value: str) -> None:
    """A limit that ``limits`` cannot parse is a ValueError naming the field."""
    with pytest.raises(ValueError, match=field):
        RateLimits(storage_uri=storage_uri, **{field: value})


def test_no_rate_limits_turns_limiting_off(
    make_service: ServiceFactory, mailer: MemoryMailer
) -> None:
    """With rate_limits=None nothing is counted: no refusal, no withheld mail."""
    service = make_service(rate_limits=None)
    assert service.limiter is None
    for _ in range(30):
        assert service.request("domain", DOMAIN, requester="203.0.113.7") is None
    assert len(mailer.outbox) == 30
    for i in range(30):
        with pytest.raises(InvalidToken) as excinfo:
            service.confirm(BAD_TOKENS[i % len(BAD_TOKENS)], requester="203.0.113.7")
        assert not isinstance(excinfo.value, RateLimited)


# --- an unreachable Redis ---------------------------------------------------------------


UNREACHABLE_REDIS = "redis://127.0.0.1:1/0"  # nothing listens on port 1


def test_unreachable_redis_fails_open(
    make_service: ServiceFactory, mailer: MemoryMailer, caplog: pytest.LogCaptureFixture
) -> None:
    """With Redis down every attempt goes through and each failure is logged at ERROR."""
    caplog.set_level(logging.INFO, logger="credrecovery")
    service = make_service(rate_limits=RateLimits(storage_uri=UNREACHABLE_REDIS))
    for _ in range(25):
        assert service.request("domain", DOMAIN, requester="203.0.113.7") is None
    assert len(mailer.outbox) == 25
    for i in range(25):
        with pytest.raises(InvalidToken) as excinfo:
            service.confirm(BAD_TOKENS[i % len(BAD_TOKENS)], requester="203.0.113.7")
        assert not isinstance(excinfo.value, RateLimited)
    confirmation = service.confirm(token_from(mailer.outbox[-1]), requester="203.0.113.7")
    assert confirmation.number == NUMBER

    errors = [r for r in caplog.records if getattr(r, "event", None) == "limiter_error"]
    assert errors
    assert all(r.levelno == logging.ERROR for r in errors)
    assert {getattr(r, "limit", None) for r in errors} == {
        "per_requester",
        "per_identifier",
        "per_client",
        "failed_confirmations",
        "per_mailbox",
    }
    for record in caplog.records:
        assert "203.0.113.7" not in record.getMessage() + repr(vars(record))


@pytest.mark.parametrize("known", [True, False])
def test_unreachable_redis_fails_open_for_hit_client(
    known: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """With Redis down, hit_client lets every hit through and logs the failure at ERROR."""
    caplog.set_level(logging.INFO, logger="credrecovery")
    limiter = Limiter(RateLimits(storage_uri=UNREACHABLE_REDIS, per_client="3/hour"), LIMITER_KEY)
    assert all(limiter.hit_client(EMAIL, known=known) for _ in range(5))
    errors = [r for r in caplog.records if getattr(r, "event", None) == "limiter_error"]
    assert len(errors) == 5
    assert all(
        r.levelno == logging.ERROR and getattr(r, "limit", None) == "per_client" for r in errors
    )
    for record in caplog.records:
        assert EMAIL not in record.getMessage() + repr(vars(record))


SPRAY_CAP = 200  # memory_max_keys for the service-level spray: small, so few requests fill it


@pytest.mark.key_modes("generate")  # requests only: the key mode never comes into it
def test_a_spray_of_misses_leaves_a_clients_cap_in_place(
    make_service: ServiceFactory,
    mailer: MemoryMailer,
) -> None:
    """After per_mailbox's three mails, a spray of unknown identifiers from as many
    requesters, enough to fill the limiter's store, does not buy a fourth."""
    service = make_service(rate_limits=RateLimits(memory_max_keys=SPRAY_CAP, per_mailbox="3/hour"))
    for i in range(3):
        service.request("client_number", NUMBER, requester=f"198.51.100.{10 + i}")
    assert len(mailer.outbox) == 3
    shared = service.limiter.storage
    shared = getattr(shared, "bounded", shared)  # the async limiter wraps the same store
    largest = 0
    # Each miss writes four counters (requester, identifier, client, mailbox),
    # so half the cap in misses writes twice as many counters as the store holds.
    for n in range(SPRAY_CAP // 2):
        service.request("domain", f"spray-{n}.example", requester=f"10.{n // 250}.{n % 250}.1")
        largest = max(largest, len(shared))
    assert largest > SPRAY_CAP * 0.95, (
        "the spray never filled the limiter's store; nothing was tested"
    )
    service.request("domain", DOMAIN, requester="198.51.100.2")
    service.request("email", EMAIL, requester="198.51.100.3")
    assert len(mailer.outbox) == 3
