"""confirm() under races and interruptions: one hash per link, rollback on anything."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from typing import Any

import pytest
from passlib.context import CryptContext

from credrecovery import (
    Client,
    Confirmation,
    DeliveryFailed,
    IdentifierKind,
    InvalidToken,
    RateLimited,
    RateLimits,
    RecoveryService,
    TokenAlreadyUsed,
)
from credrecovery._flow import rotation as core_module
from credrecovery.memory import MemoryDirectory, MemoryMailer
from helpers import OLD_KEY, key_from, token_from

PRIMARY = "ejemplo@ejemploxmundo.com.ar"
# Every service test here runs through both shells, in both key modes.
pytestmark = [pytest.mark.shells("sync", "async"), pytest.mark.key_modes("generate", "choose")]


MakeService = Callable[..., RecoveryService]


class Accounts:
    """A host directory with hooks: a barrier in find, and an edit it can make."""

    def __init__(self, client: Client) -> None:
        self.clients = {client.number: client}
        self.lock = threading.Lock()
        self.find_barrier: threading.Barrier | None = None
        self.fail_replace_after: int | None = None
        self.replaces = 0

    def find(self, kind: IdentifierKind, value: str) -> Client | None:
        if self.find_barrier is not None:
            self.find_barrier.wait(10)
        with self.lock:
            return self.clients.get(value) if kind == "client_number" else None

    def replace_key_hash(self, number: str, current: str, new: str) -> bool:
        with self.lock:
            self.replaces += 1
            if self.fail_replace_after is not None and self.replaces > self.fail_replace_after:
                raise OSError("disk gone")
            client = self.clients.get(number)
            if client is None or client.key_hash != current:
                return False
            self.clients[number] = dataclasses.replace(client, key_hash=new)
            return True

    def set_email(self, number: str, email: str) -> None:
        with self.lock:
            self.clients[number] = dataclasses.replace(self.clients[number], email=email)


class HookedContext:
    """A hashing policy that runs ``hook`` and counts calls while it hashes."""

    def __init__(self, ctx: CryptContext, hook: Callable[[], None] = lambda: None) -> None:
        self.ctx = ctx
        self.hook = hook
        self.calls = 0

    def hash(self, secret: str) -> str:
        self.calls += 1
        self.hook()
        return self.ctx.hash(secret)


class RaisingMailer(MemoryMailer):
    """Sends confirmation mails; raises ``error`` on the mail of a confirmation."""

    def __init__(self, error: BaseException) -> None:
        super().__init__()
        self.error = error

    def send(self, message: Any) -> None:
        if "/recover/" not in message.get_body(("plain",)).get_content():
            raise self.error
        super().send(message)


@pytest.fixture
def accounts(ctx: CryptContext) -> Accounts:
    return Accounts(Client("9000", PRIMARY, ctx.hash(OLD_KEY), name="Ana"))


def _token(service: RecoveryService, outbox: list[Any]) -> str:
    service.request("client_number", "9000")
    return token_from(outbox[-1])


def test_an_address_changed_while_hashing_gets_no_key(
    make_service: MakeService,
    accounts: Accounts,
    ctx: CryptContext,
    mailer: MemoryMailer,
) -> None:
    """If the primary address changes during confirm(), the old hash is back; nothing is mailed."""
    hooked = HookedContext(ctx, lambda: accounts.set_email("9000", "new@ejemploxmundo.com.ar"))
    service = make_service(directory=accounts, crypt_context=hooked)
    token = _token(service, mailer.outbox)
    old_hash = accounts.clients["9000"].key_hash
    with pytest.raises(TokenAlreadyUsed):
        service.confirm(token)
    assert accounts.clients["9000"].key_hash == old_hash
    assert len(mailer.outbox) == 1


class GreenTimeout(BaseException):
    """Stands for gevent's and eventlet's Timeout, which derive from BaseException."""


@pytest.mark.parametrize("error", [KeyboardInterrupt(), SystemExit(3), GreenTimeout()])
def test_any_base_exception_from_the_mailer_rolls_back(
    error: BaseException,
    make_service: MakeService,
    accounts: Accounts,
) -> None:
    """KeyboardInterrupt, SystemExit or a green-thread timeout restore the old key, then raise."""
    mailer = RaisingMailer(error)
    service = make_service(directory=accounts, mailer=mailer)
    token = _token(service, mailer.outbox)
    old_hash = accounts.clients["9000"].key_hash
    with pytest.raises(type(error)):
        service.confirm(token)
    assert accounts.clients["9000"].key_hash == old_hash
    mailer.error = DeliveryFailed("still down")
    with pytest.raises(DeliveryFailed):
        service.confirm(token)  # the same link still works once the mailer does
    assert accounts.clients["9000"].key_hash == old_hash


def test_concurrent_confirmations_of_one_link_hash_once(
    make_service: MakeService,
    directory: MemoryDirectory,
    mailer: MemoryMailer,
    ctx: CryptContext,
) -> None:
    """Sixteen simultaneous POSTs of one link hash one key; the fifteen losers hash nothing."""
    results: list[object] = []
    losers_done = threading.Event()
    # The winner stays inside its hash until the fifteen others have answered.
    hooked = HookedContext(ctx, lambda: losers_done.wait(10))
    service = make_service(crypt_context=hooked)
    token = _token(service, mailer.outbox)
    barrier = threading.Barrier(16)
    lock = threading.Lock()

    def attempt() -> None:
        barrier.wait()
        try:
            result: object = service.confirm(token)
        except Exception as exc:  # noqa: BLE001 - collected and asserted on below
            result = exc
        with lock:
            results.append(result)
            if len(results) == 15:
                losers_done.set()

    threads = [threading.Thread(target=attempt) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert hooked.calls == 1
    assert sum(isinstance(r, Confirmation) for r in results) == 1
    assert sum(isinstance(r, TokenAlreadyUsed) for r in results) == 15
    stored = directory.find(IdentifierKind.CLIENT_NUMBER, "9000")
    assert stored is not None and ctx.verify(key_from(mailer.outbox[-1]), stored.key_hash)


def test_failed_confirmations_are_counted_then_decided(
    make_service: MakeService,
    accounts: Accounts,
    mailer: MemoryMailer,
) -> None:
    """Forty bad links at once from one requester: twenty refused as bad, twenty rate limited."""
    service = make_service(
        directory=accounts,
        rate_limits=RateLimits(failed_confirmations="20/minute", per_requester="1000/minute"),
    )
    used = _token(service, mailer.outbox)
    service.confirm(used)  # from here on the link is used up
    accounts.find_barrier = threading.Barrier(40)
    results: list[BaseException] = []
    lock = threading.Lock()

    def attempt() -> None:
        try:
            service.confirm(used, requester="203.0.113.9")
        except Exception as exc:  # noqa: BLE001 - collected and asserted on below
            with lock:
                results.append(exc)

    threads = [threading.Thread(target=attempt) for _ in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    limited = [r for r in results if isinstance(r, RateLimited)]
    refused = [r for r in results if isinstance(r, TokenAlreadyUsed)]
    assert (len(refused), len(limited)) == (20, 20)


@pytest.mark.key_modes("generate")  # a chosen key is the caller's, in its frames by design
def test_a_failed_restore_leaves_no_key_in_any_frame(
    make_service: MakeService,
    accounts: Accounts,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """When the mail and the restore both fail, no frame of the traceback holds the new key."""
    made: list[str] = []
    real_generate_key = core_module.generate_key

    def recording_generate_key() -> str:
        made.append(real_generate_key())
        return made[-1]

    monkeypatch.setattr(core_module, "generate_key", recording_generate_key)
    mailer = RaisingMailer(DeliveryFailed("down"))
    service = make_service(directory=accounts, mailer=mailer)
    token = _token(service, mailer.outbox)
    accounts.fail_replace_after = 1  # the swap works, the restore fails
    with pytest.raises(DeliveryFailed, match="request a new link") as excinfo:
        service.confirm(token)
    [key] = made
    frames = []
    tb = excinfo.tb
    while tb is not None:
        if "credrecovery" in tb.tb_frame.f_code.co_filename:
            frames.append(tb.tb_frame)
        tb = tb.tb_next
    for exc in (excinfo.value, excinfo.value.__cause__):
        assert exc is not None and key not in repr(exc) and key not in str(exc)
    for frame in frames:
        for name, value in frame.f_locals.items():
            assert key not in repr(value), (frame.f_code.co_name, name)
    rotating = [f for f in frames if f.f_code.co_name == "_rotate"]
    assert rotating and rotating[0].f_locals.get("message") is None


def test_invalid_tokens_before_the_limit_are_answered_as_such(
    make_service: MakeService,
) -> None:
    """Below the limit a forged link is InvalidToken, not RateLimited."""
    service = make_service(rate_limits=RateLimits(failed_confirmations="2/minute"))
    for _ in range(2):
        with pytest.raises(InvalidToken) as excinfo:
            service.confirm("forged.token.value", requester="203.0.113.1")
        assert not isinstance(excinfo.value, RateLimited)
    with pytest.raises(RateLimited):
        service.confirm("forged.token.value", requester="203.0.113.1")
