"""The recovery flow end to end: request, check, confirm, and everything that can go wrong."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
from collections.abc import Callable
from email.message import EmailMessage

import pytest
from passlib.context import CryptContext

from credrecovery import (
    AsyncRecoveryService,
    Client,
    ClientDirectory,
    Confirmation,
    DeliveryFailed,
    DirectoryError,
    IdentifierKind,
    InvalidIdentifier,
    InvalidToken,
    Mailer,
    RecoveryError,
    RecoveryService,
    TokenAlreadyUsed,
    TokenExpired,
)
from credrecovery.memory import MemoryDirectory, MemoryMailer
from helpers import CONFIRM_URL, OLD_KEY, SECRET, SENDER, FakeClock, key_from, token_from

PRIMARY = "ejemplo@ejemploxmundo.com.ar"
NEW_SECRET = "rotated-secret-key-9876543210fedcba"

# Every service test here runs through both shells, in both key modes.
pytestmark = [pytest.mark.shells("sync", "async"), pytest.mark.key_modes("generate", "choose")]


MakeService = Callable[..., RecoveryService]


# --- a host's own directory and mailer, written from the protocol text -----


class HostDirectory:
    """Clients in a dict behind a lock; domains map to client numbers."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._clients: dict[str, Client] = {}
        self._domains: dict[str, str] = {}
        self.fail_find: Exception | None = None
        self.fail_replace: Exception | None = None
        self.replace_calls = 0

    def add(self, client: Client, domains: tuple[str, ...] = ()) -> None:
        with self._lock:
            self._clients[client.number] = client
            for domain in domains:
                self._domains[domain] = client.number

    def get(self, number: str) -> Client:
        with self._lock:
            return self._clients[number]

    def change_email(self, number: str, email: str) -> None:
        with self._lock:
            self._clients[number] = dataclasses.replace(self._clients[number], email=email)

    def remove(self, number: str) -> None:
        with self._lock:
            del self._clients[number]

    def find(self, kind: IdentifierKind, value: str) -> Client | None:
        if self.fail_find is not None:
            raise self.fail_find
        with self._lock:
            if kind == "client_number":
                return self._clients.get(value)
            if kind == "email":
                for client in self._clients.values():
                    if client.email == value:
                        return client
                return None
            number = self._domains.get(value)
            return self._clients.get(number) if number is not None else None

    def replace_key_hash(self, number: str, current: str, new: str) -> bool:
        self.replace_calls += 1
        if self.fail_replace is not None:
            raise self.fail_replace
        with self._lock:
            client = self._clients.get(number)
            if client is None or client.key_hash != current:
                return False
            self._clients[number] = dataclasses.replace(client, key_hash=new)
            return True


class HostMailer:
    """Keeps what it sends; raises ``fail`` instead while it is set."""

    def __init__(self) -> None:
        self.sent: list[EmailMessage] = []
        self.fail: Exception | None = None

    def send(self, message: EmailMessage) -> None:
        if self.fail is not None:
            raise self.fail
        self.sent.append(message)


@pytest.fixture
def host_directory(ctx: CryptContext) -> HostDirectory:
    directory = HostDirectory()
    directory.add(
        Client("9000", PRIMARY, ctx.hash(OLD_KEY), name="Ana Example"),
        domains=("ejemploxmundo.com.ar", "otro-ejemplo.com"),
    )
    return directory


@pytest.fixture
def host_mailer() -> HostMailer:
    return HostMailer()


@pytest.fixture
def host_service(
    make_service: MakeService, host_directory: HostDirectory, host_mailer: HostMailer
) -> RecoveryService:
    return make_service(directory=host_directory, mailer=host_mailer)


def _stored(directory: MemoryDirectory, number: str = "9000") -> Client:
    client = directory.find(IdentifierKind.CLIENT_NUMBER, number)
    assert client is not None
    return client


def _request_token(
    service: RecoveryService,
    outbox: list[EmailMessage],
    kind: str = "client_number",
    value: str = "9000",
) -> str:
    before = len(outbox)
    assert service.request(kind, value) is None
    assert len(outbox) == before + 1
    return token_from(outbox[-1])


def _recipients(message: EmailMessage) -> list[str]:
    return [a.addr_spec for a in message["To"].addresses]


# --- the happy path --------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "value"),
    [
        (IdentifierKind.DOMAIN, "ejemploxmundo.com.ar"),
        ("domain", "otro-ejemplo.com"),
        ("domain", "EJEMPLOXMUNDO.COM.AR."),
        ("domain", "  Otro-Ejemplo.COM "),
        (IdentifierKind.CLIENT_NUMBER, "9000"),
        ("client_number", "  9000  "),
        (IdentifierKind.EMAIL, PRIMARY),
        ("email", "Ejemplo@EjemploXMundo.COM.AR"),
    ],
)
def test_each_identifier_recovers(
    kind: str,
    value: str,
    service: RecoveryService,
    directory: MemoryDirectory,
    mailer: MemoryMailer,
    ctx: CryptContext,
) -> None:
    """Every identifier kind mails the primary address, and confirming rotates the key."""
    old_hash = _stored(directory).key_hash
    assert service.request(kind, value) is None
    assert len(mailer.outbox) == 1
    assert _recipients(mailer.outbox[0]) == [PRIMARY]
    assert _stored(directory).key_hash == old_hash

    result = service.confirm(token_from(mailer.outbox[0]))
    assert result == Confirmation("9000", PRIMARY)
    assert len(mailer.outbox) == 2
    credentials = mailer.outbox[1]
    assert _recipients(credentials) == [PRIMARY]
    assert "9000" in credentials.get_body(("plain",)).get_content()
    new_key = key_from(credentials)
    assert new_key != OLD_KEY
    stored = _stored(directory)
    assert stored.key_hash != old_hash
    assert ctx.verify(new_key, stored.key_hash)
    assert not ctx.verify(OLD_KEY, stored.key_hash)


@pytest.mark.parametrize("value", ["münchen.de", "MÜNCHEN.DE", "München.de.", "xn--mnchen-3ya.de"])
def test_unicode_domain_recovers(
    value: str,
    make_service: MakeService,
    directory: MemoryDirectory,
    mailer: MemoryMailer,
) -> None:
    """A client registered under an internationalized domain is found by any spelling."""
    directory.add_client(
        "9100", "owner@muenchen.example", key="Some-Key-ABCDEFG", domains=["münchen.de"]
    )
    service = make_service()
    token = _request_token(service, mailer.outbox, "domain", value)
    assert _recipients(mailer.outbox[0]) == ["owner@muenchen.example"]
    assert service.confirm(token).number == "9100"


def test_confirmation_carries_no_key(
    service: RecoveryService, directory: MemoryDirectory, mailer: MemoryMailer
) -> None:
    """The Confirmation result holds number and email, and no trace of the key."""
    token = _request_token(service, mailer.outbox)
    result = service.confirm(token)
    new_key = key_from(mailer.outbox[1])
    assert result.number == "9000"
    assert result.email == PRIMARY
    assert [f.name for f in dataclasses.fields(result)] == ["number", "email"]
    assert not hasattr(result, "key")
    assert not hasattr(result, "key_hash")
    for text in (repr(result), str(result)):
        assert new_key not in text
        assert _stored(directory).key_hash not in text
        assert token not in text


def test_background_delivery_sends_after_flush(
    make_service: MakeService, mailer: MemoryMailer
) -> None:
    """With background delivery the confirmation mail arrives once flushed."""
    service = make_service(delivery="background")
    assert service.request("client_number", "9000") is None
    assert service.flush(5)
    assert len(mailer.outbox) == 1
    assert service.confirm(token_from(mailer.outbox[0])).number == "9000"
    assert len(mailer.outbox) == 2


# --- misses and malformed input --------------------------------------------


@pytest.mark.parametrize(
    ("kind", "value"),
    [
        ("domain", "unknown-domain.example"),
        ("domain", "ejemploxmundo.com"),
        ("client_number", "9001"),
        ("client_number", "0"),
        ("email", "nobody@ejemploxmundo.com.ar"),
        ("email", "ejemplo@otro-ejemplo.com"),
    ],
)
def test_unknown_identifier_is_silent(
    kind: str,
    value: str,
    service: RecoveryService,
    directory: MemoryDirectory,
    mailer: MemoryMailer,
) -> None:
    """An unknown identifier returns None, mails nothing and raises nothing."""
    old_hash = _stored(directory).key_hash
    assert service.request(kind, value) is None
    assert mailer.outbox == []
    assert _stored(directory).key_hash == old_hash


@pytest.mark.parametrize(
    ("kind", "value"),
    [
        ("domain", "not a domain"),
        ("domain", ""),
        ("email", "not-an-email"),
        ("email", "a@b.com\r\nBcc: x@evil.com"),
        ("client_number", "90.00"),
        ("client_number", "x" * 33),
        ("phone", "9000"),
        ("", "9000"),
    ],
)
def test_malformed_request_raises_invalid_identifier(
    kind: str, value: str, service: RecoveryService, mailer: MemoryMailer
) -> None:
    """Only malformed input makes request raise, and then InvalidIdentifier."""
    with pytest.raises(InvalidIdentifier):
        service.request(kind, value)
    assert mailer.outbox == []


@pytest.mark.parametrize(
    "error", [RuntimeError("smtp down"), OSError("connection refused"), DeliveryFailed()]
)
def test_failing_mailer_at_request_does_not_raise(
    error: Exception,
    host_service: RecoveryService,
    host_mailer: HostMailer,
    host_directory: HostDirectory,
) -> None:
    """A mailer failure during request is swallowed, so a hit looks like a miss."""
    old_hash = host_directory.get("9000").key_hash
    host_mailer.fail = error
    assert host_service.request("client_number", "9000") is None
    assert host_service.request("email", PRIMARY) is None
    assert host_mailer.sent == []
    assert host_directory.get("9000").key_hash == old_hash


# --- tokens that no longer work --------------------------------------------


def test_expired_token_refused(
    service: RecoveryService,
    directory: MemoryDirectory,
    mailer: MemoryMailer,
    clock: FakeClock,
    ctx: CryptContext,
) -> None:
    """After token_max_age the token raises TokenExpired and the key stays."""
    old_hash = _stored(directory).key_hash
    token = _request_token(service, mailer.outbox)
    clock.advance(3601)
    with pytest.raises(TokenExpired):
        service.confirm(token)
    with pytest.raises(TokenExpired):
        service.check(token)
    assert _stored(directory).key_hash == old_hash
    assert ctx.verify(OLD_KEY, _stored(directory).key_hash)
    assert len(mailer.outbox) == 1


def test_token_valid_until_max_age(
    service: RecoveryService, mailer: MemoryMailer, clock: FakeClock
) -> None:
    """A token still confirms at exactly token_max_age."""
    token = _request_token(service, mailer.outbox)
    clock.advance(3600)
    assert service.confirm(token).number == "9000"


def test_token_single_use(
    service: RecoveryService,
    directory: MemoryDirectory,
    mailer: MemoryMailer,
    ctx: CryptContext,
) -> None:
    """A second confirm of the same token raises TokenAlreadyUsed and changes nothing."""
    token = _request_token(service, mailer.outbox)
    service.confirm(token)
    first_key = key_from(mailer.outbox[1])
    hash_after_first = _stored(directory).key_hash
    with pytest.raises(TokenAlreadyUsed):
        service.confirm(token)
    with pytest.raises(TokenAlreadyUsed):
        service.check(token)
    assert len(mailer.outbox) == 2
    assert _stored(directory).key_hash == hash_after_first
    assert ctx.verify(first_key, hash_after_first)


def test_older_tokens_die_with_a_newer_confirmation(
    service: RecoveryService,
    directory: MemoryDirectory,
    mailer: MemoryMailer,
    clock: FakeClock,
) -> None:
    """Confirming the newest token kills every token issued before it."""
    first = _request_token(service, mailer.outbox)
    clock.advance(10)
    second = _request_token(service, mailer.outbox, "email", PRIMARY)
    assert first != second
    service.confirm(second)
    hash_after = _stored(directory).key_hash
    with pytest.raises(TokenAlreadyUsed):
        service.confirm(first)
    assert _stored(directory).key_hash == hash_after
    assert len(mailer.outbox) == 3


def test_newer_tokens_die_with_an_older_confirmation(
    service: RecoveryService, mailer: MemoryMailer, clock: FakeClock
) -> None:
    """Confirming an older outstanding token kills the newer one too."""
    first = _request_token(service, mailer.outbox)
    clock.advance(10)
    second = _request_token(service, mailer.outbox, "domain", "otro-ejemplo.com")
    assert first != second
    service.confirm(first)
    with pytest.raises(TokenAlreadyUsed):
        service.confirm(second)


def test_token_dies_when_primary_email_changes(
    host_service: RecoveryService,
    host_directory: HostDirectory,
    host_mailer: HostMailer,
) -> None:
    """A token issued before the primary email changed no longer confirms."""
    old_hash = host_directory.get("9000").key_hash
    token = _request_token(host_service, host_mailer.sent)
    host_directory.change_email("9000", "new-owner@example.com")
    with pytest.raises(TokenAlreadyUsed):
        host_service.check(token)
    with pytest.raises(TokenAlreadyUsed):
        host_service.confirm(token)
    assert host_directory.get("9000").key_hash == old_hash
    assert len(host_mailer.sent) == 1


def test_token_for_removed_client_invalid(
    host_service: RecoveryService,
    host_directory: HostDirectory,
    host_mailer: HostMailer,
) -> None:
    """A token whose client no longer exists raises InvalidToken."""
    token = _request_token(host_service, host_mailer.sent)
    host_directory.remove("9000")
    with pytest.raises(InvalidToken):
        host_service.confirm(token)
    assert len(host_mailer.sent) == 1


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),
        lambda t: t + "x",
        lambda t: "",
        lambda t: "not-a-token",
        lambda t: t.split(".")[0],
    ],
)
def test_tampered_token_invalid(
    mangle: Callable[[str], str],
    service: RecoveryService,
    directory: MemoryDirectory,
    mailer: MemoryMailer,
) -> None:
    """A forged or mangled token raises InvalidToken and rotates nothing."""
    old_hash = _stored(directory).key_hash
    token = _request_token(service, mailer.outbox)
    with pytest.raises(InvalidToken) as info:
        service.confirm(mangle(token))
    assert type(info.value) is InvalidToken
    with pytest.raises(InvalidToken):
        service.check(mangle(token))
    assert _stored(directory).key_hash == old_hash
    assert len(mailer.outbox) == 1


# --- check -----------------------------------------------------------------


def test_check_does_not_consume(
    service: RecoveryService, directory: MemoryDirectory, mailer: MemoryMailer
) -> None:
    """check() validates without rotating or mailing, so confirm still works."""
    old_hash = _stored(directory).key_hash
    token = _request_token(service, mailer.outbox)
    assert service.check(token) == Confirmation("9000", PRIMARY)
    assert service.check(token) == Confirmation("9000", PRIMARY)
    assert _stored(directory).key_hash == old_hash
    assert len(mailer.outbox) == 1
    assert service.confirm(token) == Confirmation("9000", PRIMARY)


# --- signing-key rotation --------------------------------------------------


def test_signing_key_rotation(make_service: MakeService, mailer: MemoryMailer) -> None:
    """A token from the old key confirms while it is a fallback, not after it is dropped."""
    service_a = make_service()
    token = _request_token(service_a, mailer.outbox)
    service_c = make_service(secret_key=NEW_SECRET)
    with pytest.raises(InvalidToken) as info:
        service_c.confirm(token)
    assert type(info.value) is InvalidToken
    service_b = make_service(secret_key=NEW_SECRET, fallback_secret_keys=[SECRET])
    assert service_b.confirm(token).number == "9000"

    fresh = _request_token(service_b, mailer.outbox)
    assert service_c.check(fresh).number == "9000"


# --- delivery failure and rollback -----------------------------------------


@pytest.mark.parametrize(
    ("error", "temporary"),
    [
        (RuntimeError("smtp down"), True),
        (DeliveryFailed("try later", temporary=True), True),
        (DeliveryFailed("mailbox unknown", temporary=False), False),
    ],
)
def test_rollback_after_credentials_delivery_failure(
    error: Exception,
    temporary: bool,
    host_service: RecoveryService,
    host_directory: HostDirectory,
    host_mailer: HostMailer,
    ctx: CryptContext,
) -> None:
    """A failed credentials mail puts the old key back and the same token works later."""
    old_hash = host_directory.get("9000").key_hash
    token = _request_token(host_service, host_mailer.sent)
    host_mailer.fail = error
    with pytest.raises(DeliveryFailed) as info:
        host_service.confirm(token)
    assert info.value.__cause__ is error
    assert info.value.temporary is temporary
    assert host_directory.get("9000").key_hash == old_hash
    assert ctx.verify(OLD_KEY, host_directory.get("9000").key_hash)
    assert len(host_mailer.sent) == 1

    host_mailer.fail = None
    assert host_service.confirm(token).number == "9000"
    new_key = key_from(host_mailer.sent[-1])
    assert ctx.verify(new_key, host_directory.get("9000").key_hash)
    assert not ctx.verify(OLD_KEY, host_directory.get("9000").key_hash)


# --- concurrency -----------------------------------------------------------


def test_concurrent_confirmations_single_winner(
    service: RecoveryService,
    directory: MemoryDirectory,
    mailer: MemoryMailer,
    ctx: CryptContext,
) -> None:
    """Eight simultaneous confirms of one token: one succeeds, seven are TokenAlreadyUsed."""
    token = _request_token(service, mailer.outbox)
    threads_count = 8
    barrier = threading.Barrier(threads_count)
    results: list[object] = []
    results_lock = threading.Lock()

    def attempt() -> None:
        barrier.wait()
        try:
            outcome: object = service.confirm(token)
        except Exception as exc:  # noqa: BLE001 - collected and asserted on below
            outcome = exc
        with results_lock:
            results.append(outcome)

    threads = [threading.Thread(target=attempt) for _ in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(results) == threads_count
    successes = [r for r in results if isinstance(r, Confirmation)]
    failures = [r for r in results if not isinstance(r, Confirmation)]
    assert len(successes) == 1
    assert all(isinstance(r, TokenAlreadyUsed) for r in failures), failures
    assert len(mailer.outbox) == 2
    assert ctx.verify(key_from(mailer.outbox[1]), _stored(directory).key_hash)


# --- construction ----------------------------------------------------------


@pytest.mark.parametrize(
    "overrides",
    [
        {"secret_key": ""},
        {"secret_key": b""},
        {"fallback_secret_keys": [""]},
        {"confirm_url": "https://panel.example.com/recover"},
        {"confirm_url": "https://panel.example.com/recover/{tok}"},
        {"sender": "panel@example.com\r\nBcc: x@evil.com"},
        {"sender": "Panel <panel@example.com>\n"},
        {"sender": "panel@example.com\r"},
        {"sender": "no address here"},
        {"delivery": "smoke-signals"},
    ],
)
def test_constructor_validation(overrides: dict[str, object], make_service: MakeService) -> None:
    """Bad secrets, link templates, senders and delivery modes raise ValueError."""
    with pytest.raises(ValueError):
        make_service(**overrides)


@pytest.mark.parametrize(
    "confirm_url",
    [CONFIRM_URL, "https://other.example.net/account/confirm?t={token}&lang=es"],
)
def test_link_built_from_configured_url(
    confirm_url: str, make_service: MakeService, mailer: MemoryMailer
) -> None:
    """The mailed link is exactly the configured template with the token filled in."""
    service = make_service(confirm_url=confirm_url)
    service.request("client_number", "9000")
    message = mailer.outbox[0]
    text = message.get_body(("plain",)).get_content()
    prefix, suffix = confirm_url.split("{token}")
    links = [line for line in text.splitlines() if line.startswith("http")]
    assert len(links) == 1
    link = links[0]
    assert link.startswith(prefix)
    assert link.endswith(suffix)
    token = link[len(prefix) : len(link) - len(suffix)]
    assert service.check(token).number == "9000"


# --- logging ---------------------------------------------------------------


def _events(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.event for r in caplog.records if hasattr(r, "event")]


def test_secrets_absent_from_logs_reprs_and_errors(
    caplog: pytest.LogCaptureFixture,
    host_service: RecoveryService,
    host_directory: HostDirectory,
    host_mailer: HostMailer,
    clock: FakeClock,
) -> None:
    """No token, key, key hash or signing secret reaches a log record, repr or error."""
    caplog.set_level(logging.DEBUG, logger="credrecovery")
    errors: list[BaseException] = []
    old_hash = host_directory.get("9000").key_hash

    assert host_service.request("email", "nobody@example.com") is None
    first = _request_token(host_service, host_mailer.sent)
    second = _request_token(host_service, host_mailer.sent, "domain", "otro-ejemplo.com")

    host_mailer.fail = RuntimeError("smtp down")
    with pytest.raises(DeliveryFailed) as delivery:
        host_service.confirm(first)
    errors.append(delivery.value)
    assert host_service.request("client_number", "9000") is None
    host_mailer.fail = None

    host_service.confirm(first)
    new_key = key_from(host_mailer.sent[-1])
    new_hash = host_directory.get("9000").key_hash

    for bad in (first, second, first[:-2] + "AA", "garbage"):
        with pytest.raises(InvalidToken) as info:
            host_service.confirm(bad)
        errors.append(info.value)
    third = _request_token(host_service, host_mailer.sent)
    clock.advance(3601)
    with pytest.raises(TokenExpired) as expired:
        host_service.check(third)
    errors.append(expired.value)
    host_directory.fail_find = RuntimeError("database is down")
    with pytest.raises(DirectoryError) as directory_error:
        host_service.request("client_number", "9000")
    errors.append(directory_error.value)

    tokens = [first, second, third]
    secrets = [
        *tokens,
        *(part for token in tokens for part in token.split(".") if len(part) > 8),
        new_key,
        OLD_KEY,
        old_hash,
        new_hash,
        SECRET,
    ]
    assert caplog.records
    texts: list[str] = []
    for record in caplog.records:
        texts.append(record.getMessage())
        texts.extend(str(value) for value in record.__dict__.values())
    texts.append(repr(host_service))
    texts.append(repr(host_directory.get("9000")))
    texts.append(repr(Client("9000", PRIMARY, new_hash)))
    for error in errors:
        texts.extend([str(error), repr(error), *map(str, error.args)])
    for text in texts:
        for secret in secrets:
            assert secret not in text


def test_memory_service_repr_hides_secrets(
    service: RecoveryService, directory: MemoryDirectory, mailer: MemoryMailer
) -> None:
    """repr of the service, directory and client hides secrets and hashes."""
    token = _request_token(service, mailer.outbox)
    service.confirm(token)
    key = key_from(mailer.outbox[-1])
    text = repr(service) + repr(directory) + repr(_stored(directory)) + repr(mailer)
    for secret in (SECRET, token, key, OLD_KEY, _stored(directory).key_hash):
        assert secret not in text


def test_one_log_event_per_outcome(
    caplog: pytest.LogCaptureFixture,
    host_service: RecoveryService,
    host_mailer: HostMailer,
    clock: FakeClock,
) -> None:
    """Each outcome logs one record carrying its event name; delivery adds its own outcome."""
    caplog.set_level(logging.DEBUG, logger="credrecovery")

    def outcome(action: Callable[[], object]) -> list[str]:
        caplog.clear()
        with contextlib.suppress(RecoveryError):
            action()
        return _events(caplog)

    assert outcome(lambda: host_service.request("domain", "unknown.example")) == [
        "unknown_identifier"
    ]
    assert outcome(lambda: host_service.request("client_number", "9000")) == [
        "mail_sent",
        "requested",
    ]
    token = token_from(host_mailer.sent[-1])
    assert outcome(lambda: host_service.confirm(token + "x")) == ["invalid"]
    assert outcome(lambda: host_service.check(token)) == []
    host_mailer.fail = RuntimeError("smtp down")
    assert outcome(lambda: host_service.confirm(token)) == ["delivery_failed"]
    assert outcome(lambda: host_service.request("client_number", "9000")) == [
        "delivery_failed",
        "requested",
    ]
    host_mailer.fail = None
    assert outcome(lambda: host_service.confirm(token)) == ["mail_sent", "confirmed"]
    assert outcome(lambda: host_service.confirm(token)) == ["reused"]
    host_service.request("client_number", "9000")
    late = token_from(host_mailer.sent[-1])
    clock.advance(3601)
    assert outcome(lambda: host_service.confirm(late)) == ["expired"]


# --- host implementations --------------------------------------------------


def test_host_classes_satisfy_protocols(
    host_directory: HostDirectory, host_mailer: HostMailer
) -> None:
    """Plain host classes with the right methods are ClientDirectory and Mailer."""
    assert isinstance(host_directory, ClientDirectory)
    assert isinstance(host_mailer, Mailer)
    assert not isinstance(host_mailer, ClientDirectory)
    assert not isinstance(host_directory, Mailer)
    assert ClientDirectory not in type(host_directory).__mro__
    assert Mailer not in type(host_mailer).__mro__


@pytest.mark.parametrize(
    ("kind", "value"),
    [
        ("domain", "OTRO-EJEMPLO.com"),
        ("email", "EJEMPLO@ejemploxmundo.com.ar"),
        ("client_number", " 9000"),
    ],
)
def test_host_classes_run_whole_flow(
    kind: str,
    value: str,
    host_service: RecoveryService,
    host_directory: HostDirectory,
    host_mailer: HostMailer,
    ctx: CryptContext,
) -> None:
    """A host's own directory and mailer carry a recovery from request to new key."""
    token = _request_token(host_service, host_mailer.sent, kind, value)
    assert _recipients(host_mailer.sent[0]) == [PRIMARY]
    assert host_mailer.sent[0]["From"] == SENDER
    assert host_service.check(token).number == "9000"
    assert host_service.confirm(token) == Confirmation("9000", PRIMARY)
    new_key = key_from(host_mailer.sent[1])
    assert ctx.verify(new_key, host_directory.get("9000").key_hash)
    with pytest.raises(TokenAlreadyUsed):
        host_service.confirm(token)


# --- directory failures ----------------------------------------------------


def test_directory_failure_at_request(
    host_service: RecoveryService,
    host_directory: HostDirectory,
    host_mailer: HostMailer,
) -> None:
    """A directory error during request becomes DirectoryError with the cause kept."""
    cause = RuntimeError("database is down")
    host_directory.fail_find = cause
    with pytest.raises(DirectoryError) as info:
        host_service.request("client_number", "9000")
    assert info.value.__cause__ is cause
    assert host_mailer.sent == []


def test_directory_find_failure_at_confirm(
    host_service: RecoveryService,
    host_directory: HostDirectory,
    host_mailer: HostMailer,
    ctx: CryptContext,
) -> None:
    """A lookup failure during confirm raises DirectoryError and rotates nothing."""
    old_hash = host_directory.get("9000").key_hash
    token = _request_token(host_service, host_mailer.sent)
    cause = RuntimeError("database is down")
    host_directory.fail_find = cause
    with pytest.raises(DirectoryError) as info:
        host_service.confirm(token)
    assert info.value.__cause__ is cause
    assert host_directory.replace_calls == 0
    assert host_directory.get("9000").key_hash == old_hash
    assert ctx.verify(OLD_KEY, old_hash)
    assert len(host_mailer.sent) == 1
    host_directory.fail_find = None
    assert host_service.confirm(token).number == "9000"


def test_directory_swap_failure_at_confirm(
    host_service: RecoveryService,
    host_directory: HostDirectory,
    host_mailer: HostMailer,
) -> None:
    """A failing compare-and-set raises DirectoryError; no mail, no rotation, token still good."""
    old_hash = host_directory.get("9000").key_hash
    token = _request_token(host_service, host_mailer.sent)
    cause = RuntimeError("database is locked")
    host_directory.fail_replace = cause
    with pytest.raises(DirectoryError) as info:
        host_service.confirm(token)
    assert info.value.__cause__ is cause
    assert host_directory.get("9000").key_hash == old_hash
    assert len(host_mailer.sent) == 1
    host_directory.fail_replace = None
    assert host_service.confirm(token).number == "9000"
    assert len(host_mailer.sent) == 2


# --- configuration a reviewer could misread -----------------------------------


@pytest.mark.parametrize(
    "sender",
    [
        "Panel\u2028 <panel@example.com>",
        "Panel <panel@example.com>\u2029",
        "Pa\x0bnel <panel@example.com>",
        "Panel <panel@example.com>\x0c",
        "Panel\x85 <panel@example.com>",
        "\x1b[31mPanel <panel@example.com>",
        "panel@example.com, other@example.com",
        "Panel <panel@example.com> <x@example.com>",
        "Panel <pánel@example.com>",
        "Panel <panel@@example.com>",
    ],
)
def test_a_sender_with_control_characters_or_two_addresses_is_refused(
    sender: str,
    make_service: MakeService,
) -> None:
    """Line and control characters, second addresses and non-ASCII mailboxes raise ValueError."""
    with pytest.raises(ValueError):
        make_service(sender=sender)


def test_a_sender_domain_goes_out_as_an_a_label(
    make_service: MakeService,
    mailer: MemoryMailer,
) -> None:
    """An internationalized sender domain is turned into its A-label, in both mails."""
    service = make_service(sender="Panel München <panel@münchen.example>")
    assert service.sender == "Panel München <panel@xn--mnchen-3ya.example>"
    service.confirm(_request_token(service, mailer.outbox))
    for message in mailer.outbox:
        assert message["From"].addresses[0].addr_spec == "panel@xn--mnchen-3ya.example"


def test_a_short_secret_key_is_warned_about_once(
    make_service: MakeService,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A secret_key under 32 bytes logs one warning at construction; a long one none."""
    caplog.set_level(logging.WARNING, logger="credrecovery")
    make_service(secret_key="short-secret")
    service = make_service(secret_key="x" * 32)
    service.request("client_number", "9000")
    weak = [r for r in caplog.records if getattr(r, "event", None) == "weak_secret_key"]
    assert len(weak) == 1 and "short-secret" not in weak[0].getMessage()


def test_a_single_fallback_string_is_one_key(
    make_service: MakeService,
    mailer: MemoryMailer,
) -> None:
    """fallback_secret_keys='old-secret' verifies links of 'old-secret', not of 'o'."""
    old = make_service(secret_key="old-secret" * 4)
    token = _request_token(old, mailer.outbox)
    one_letter = make_service(secret_key="o")
    forged = _request_token(one_letter, mailer.outbox)
    rotated = make_service(secret_key=NEW_SECRET, fallback_secret_keys="old-secret" * 4)
    assert rotated.check(token).number == "9000"
    with pytest.raises(InvalidToken):
        rotated.check(forged)


# --- wiring -------------------------------------------------------------------------------


class ReadOnlyDirectory:
    """A directory a host wrote with no way to store a new key hash."""

    def find(self, kind: object, value: str) -> None:
        return None


class PrintingMailer:
    """A mailer a host wrote with its method misnamed."""

    def deliver(self, message: EmailMessage) -> None:
        print(message)


@pytest.mark.parametrize("service_class", [RecoveryService, AsyncRecoveryService])
@pytest.mark.parametrize(
    ("wired_directory", "wired_mailer", "missing"),
    [
        (
            object(),
            MemoryMailer(),
            r"the directory \(object\) has no find\(\) and replace_key_hash\(\)",
        ),
        (ReadOnlyDirectory(), MemoryMailer(), r"\(ReadOnlyDirectory\) has no replace_key_hash\(\)"),
        (MemoryDirectory(), PrintingMailer(), r"the mailer \(PrintingMailer\) has no send\(\)"),
    ],
)
def test_wiring_mistakes_fail_at_construction(
    service_class: type[RecoveryService],
    wired_directory: object,
    wired_mailer: object,
    missing: str,
) -> None:
    """A directory or mailer without a method the service needs raises TypeError naming it."""
    with pytest.raises(TypeError, match=missing):
        service_class(
            wired_directory,
            wired_mailer,
            secret_key=SECRET,  # type: ignore[arg-type]
            confirm_url=CONFIRM_URL,
            sender=SENDER,
            delivery="sync",
        )
