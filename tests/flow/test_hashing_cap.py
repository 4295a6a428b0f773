"""The process-wide cap on key hashing: set_hashing_limit() and Overloaded.

Hashing here is a host's own passlib policy, :class:`MeteredContext`: real
argon2 that reports how many of its hashes run at once, and that can pause or
hold each one, so that slots stay busy for as long as a test needs. Slots are
held by other services of the same process, from real threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import pickle
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from passlib.context import CryptContext

from credrecovery import (
    AsyncRecoveryService,
    HashingLimit,
    IdentifierKind,
    Overloaded,
    RateLimited,
    RecoveryError,
    RecoveryService,
    cheap_context,
    hashing_limit,
    set_hashing_limit,
)
from credrecovery.memory import MemoryDirectory, MemoryMailer
from credrecovery.sqlite import SQLiteDirectory
from helpers import CONFIRM_URL, OLD_KEY, ROOT, SECRET, SENDER, AsyncShell, key_from, token_from

pytestmark = [pytest.mark.shells("sync", "async"), pytest.mark.slow]

MakeService = Callable[..., Any]
NUMBER = "9000"
WRONG_KEY = "Not-The-Right-Key-0"
NEW_KEY = "a long passphrase of my own choosing"


class MeteredContext(CryptContext):  # type: ignore[misc]
    """argon2 (cheap_context()'s profile) that counts the hashes running at once.

    Each hash and verification first waits for ``gate`` to be open, then
    sleeps ``pause`` seconds, so that it takes a slot for as long as a test
    says.
    """

    def __init__(self, pause: float = 0.0) -> None:
        super().__init__(
            schemes=["argon2"], argon2__memory_cost=8, argon2__time_cost=1, argon2__parallelism=1
        )
        self.pause = pause
        self.gate = threading.Event()
        self.gate.set()
        self.lock = threading.Lock()
        self.running = 0
        self.peak = 0
        self.calls = 0

    @contextmanager
    def _metered(self) -> Iterator[None]:
        with self.lock:
            self.running += 1
            self.calls += 1
            self.peak = max(self.peak, self.running)
        try:
            assert self.gate.wait(30), "the test never let the hash go on"
            time.sleep(self.pause)
            yield
        finally:
            with self.lock:
                self.running -= 1

    def reset(self) -> None:
        with self.lock:
            self.peak = self.calls = 0

    def hash(self, secret: str, *args: Any, **kwargs: Any) -> str:
        with self._metered():
            return str(super().hash(secret, *args, **kwargs))

    def verify_and_update(
        self, secret: str, stored: str, *args: Any, **kwargs: Any
    ) -> tuple[bool, str | None]:
        with self._metered():
            valid, upgraded = super().verify_and_update(secret, stored, *args, **kwargs)
            return bool(valid), upgraded


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def plain_service(ctx: CryptContext) -> RecoveryService:
    """A RecoveryService of its own on client 9000, hashing with ``ctx``."""
    directory = MemoryDirectory(crypt_context=cheap_context())
    directory.add_client(NUMBER, "ana@example.com", key=OLD_KEY)
    return RecoveryService(
        directory,
        MemoryMailer(),
        secret_key=SECRET,
        confirm_url=CONFIRM_URL,
        sender=SENDER,
        crypt_context=ctx,
        delivery="sync",
        rate_limits=None,
    )


class Holder:
    """Another service of the process, whose sign-ins hold ``count`` hashing slots until closed."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.ctx = MeteredContext()
        self.ctx.gate.clear()
        self.service = plain_service(self.ctx)
        self.threads = [threading.Thread(target=self._sign_in) for _ in range(count)]

    def _sign_in(self) -> None:
        # On the way out another holder may take the slot back: that one is refused.
        with contextlib.suppress(Overloaded):
            self.service.authenticate(NUMBER, WRONG_KEY)

    def start(self) -> None:
        """Sign in from every thread; each takes a slot as soon as one comes free."""
        for thread in self.threads:
            thread.start()

    def release(self) -> None:
        """Let every held hash end, and wait for the sign-ins."""
        self.ctx.gate.set()
        for thread in self.threads:
            thread.join(30)
        self.service.close()

    def __enter__(self) -> Holder:
        self.start()
        wait_until(lambda: self.ctx.running == self.count)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


@pytest.fixture(autouse=True)
def restored_limit() -> Iterator[None]:
    """Each test sets the cap it needs; the process gets its own back afterwards."""
    previous = hashing_limit()
    yield
    set_hashing_limit(previous.slots, previous.wait)


@pytest.fixture
def metered() -> MeteredContext:
    return MeteredContext()


@pytest.fixture
def signing_in(make_service: MakeService, metered: MeteredContext) -> Any:
    """A service hashing with ``metered``; its stand-in hash for unknown numbers already made."""
    service = make_service(crypt_context=metered)
    assert service.authenticate(NUMBER, OLD_KEY) is not None
    metered.reset()
    return service


def sign_in_at_once(service: Any, attempts: int) -> list[object]:
    """``attempts`` wrong-key sign-ins from as many threads, released together; what each got."""
    barrier = threading.Barrier(attempts)
    results: list[object] = []
    lock = threading.Lock()

    def attempt(index: int) -> None:
        barrier.wait(10)
        number = NUMBER if index % 2 else "9999"  # known and unknown numbers alike
        try:
            outcome: object = service.authenticate(number, WRONG_KEY)
        except Exception as exc:  # noqa: BLE001 - collected and asserted on below
            outcome = exc
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(attempts)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return results


def test_no_more_verifications_run_at_once_than_there_are_slots(
    signing_in: Any,
    metered: MeteredContext,
) -> None:
    """Eight sign-ins at once under two slots: two verify at a time, and all eight are answered."""
    set_hashing_limit(2, wait=30)
    metered.pause = 0.1
    results = sign_in_at_once(signing_in, 8)
    assert results == [None] * 8
    assert metered.peak == 2
    assert metered.calls == 8


def test_without_a_cap_every_sign_in_hashes_at_once(
    signing_in: Any,
    metered: MeteredContext,
) -> None:
    """slots=None lifts the cap: the same eight sign-ins verify side by side."""
    set_hashing_limit(None)
    metered.pause = 0.3
    assert sign_in_at_once(signing_in, 8) == [None] * 8
    assert metered.peak > 2


def test_beyond_the_wait_a_sign_in_is_refused_fast_before_hashing(
    signing_in: Any,
    metered: MeteredContext,
) -> None:
    """With every slot held past the wait, a known and an unknown number both get Overloaded.

    The refusal comes once the wait is over, hashes nothing, and says when to
    come back; once a slot is free, sign-in works again.
    """
    set_hashing_limit(1, wait=0.2)
    with Holder(1):
        for number in (NUMBER, "9999"):
            started = time.monotonic()
            with pytest.raises(Overloaded) as refused:
                signing_in.authenticate(number, OLD_KEY)
            assert 0.2 <= time.monotonic() - started < 1.5
            assert refused.value.retry_after == 1.0
            assert refused.value.limit == "hashing"
        assert metered.calls == 0
    assert signing_in.authenticate(NUMBER, OLD_KEY) is not None


@pytest.mark.key_modes("generate", "choose")
def test_a_refused_confirmation_changes_nothing_and_its_link_still_works(
    make_service: MakeService,
    directory: MemoryDirectory,
    mailer: MemoryMailer,
) -> None:
    """confirm() refused for want of a slot: the key, the mark and the link are as they were."""
    set_hashing_limit(1, wait=0.1)
    service = make_service()
    service.request("client_number", NUMBER)
    token = token_from(mailer.outbox[-1])
    before = directory.find(IdentifierKind.CLIENT_NUMBER, NUMBER)
    with Holder(1), pytest.raises(Overloaded):
        service.confirm(token)
    assert directory.find(IdentifierKind.CLIENT_NUMBER, NUMBER) == before
    assert len(mailer.outbox) == 1
    service.confirm(token)
    assert service.authenticate(NUMBER, key_from(mailer.outbox[-1])) is not None


def test_a_key_change_refused_between_its_hashes_keeps_the_old_key(
    make_service: MakeService,
    directory: MemoryDirectory,
    mailer: MemoryMailer,
    metered: MeteredContext,
) -> None:
    """change_key() whose key verified but whose new hash found no slot: the old key stays.

    While the current key verifies, another service queues for the one slot;
    it takes the slot next, and holds it past the wait of the new key's hash.
    """
    set_hashing_limit(1, wait=1.0)
    service = make_service(crypt_context=metered)
    assert service.authenticate(NUMBER, OLD_KEY) is not None
    metered.gate.clear()
    outcome: list[object] = []

    def change() -> None:
        try:
            outcome.append(service.change_key(NUMBER, OLD_KEY, NEW_KEY))
        except Exception as exc:  # noqa: BLE001 - asserted on below
            outcome.append(exc)

    changing = threading.Thread(target=change)
    changing.start()
    wait_until(lambda: metered.running == 1)  # verifying the current key, in the slot
    holder = Holder(1)
    holder.start()
    time.sleep(0.2)  # the holder is queued for the slot now
    metered.gate.set()
    changing.join(30)
    holder.release()
    [refused] = outcome
    assert isinstance(refused, Overloaded)
    assert service.authenticate(NUMBER, OLD_KEY) is not None
    assert service.authenticate(NUMBER, NEW_KEY) is None
    assert mailer.outbox == []


def test_one_cap_for_every_service_of_the_process(tmp_path: Path) -> None:
    """A RecoveryService and an AsyncRecoveryService, six sign-ins at once: two slots in all."""
    set_hashing_limit(2, wait=30)
    ctx = MeteredContext(pause=0.1)
    sync_service = plain_service(ctx)
    directory = MemoryDirectory(crypt_context=cheap_context())
    directory.add_client(NUMBER, "ana@example.com", key=OLD_KEY)
    async_service = AsyncShell(
        AsyncRecoveryService(
            directory,
            MemoryMailer(),
            secret_key=SECRET,
            confirm_url=CONFIRM_URL,
            sender=SENDER,
            crypt_context=ctx,
            delivery="sync",
            rate_limits=None,
        )
    )
    try:
        for service in (sync_service, async_service):
            assert service.authenticate(NUMBER, OLD_KEY) is not None
        ctx.reset()
        barrier = threading.Barrier(6)
        answers: list[object] = []

        def attempt(service: Any) -> None:
            barrier.wait(10)
            answers.append(service.authenticate(NUMBER, WRONG_KEY))

        threads = [
            threading.Thread(target=attempt, args=(service,))
            for service in [sync_service, async_service] * 3
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert answers == [None] * 6
        assert ctx.peak == 2
    finally:
        sync_service.close()
        async_service.close()
        async_service.stop_loop()


def test_an_async_wait_leaves_the_event_loop_free() -> None:
    """While an AsyncRecoveryService waits for a slot, the loop keeps running other tasks."""
    set_hashing_limit(1, wait=0.5)
    directory = MemoryDirectory(crypt_context=cheap_context())
    directory.add_client(NUMBER, "ana@example.com", key=OLD_KEY)

    async def main() -> tuple[int, float]:
        async with AsyncRecoveryService(
            directory,
            MemoryMailer(),
            secret_key=SECRET,
            confirm_url=CONFIRM_URL,
            sender=SENDER,
            crypt_context=cheap_context(),
            delivery="sync",
            rate_limits=None,
        ) as service:
            ticks = 0
            waiting = asyncio.ensure_future(service.authenticate(NUMBER, OLD_KEY))
            started = time.monotonic()
            while not waiting.done():
                await asyncio.sleep(0.01)
                ticks += 1
            with pytest.raises(Overloaded):
                waiting.result()
            return ticks, time.monotonic() - started

    with Holder(1):
        ticks, waited = asyncio.run(main())
    assert waited >= 0.45
    # A blocked loop would tick once at most; 10 leaves room for a busy machine,
    # where each 10 ms sleep takes longer (19 in one run with three xdist workers).
    assert ticks >= 10


def test_a_cancelled_async_sign_in_keeps_its_slot_until_its_hash_ends() -> None:
    """Cancelling the caller does not free the slot while its verification still runs."""
    set_hashing_limit(1, wait=0)
    ctx = MeteredContext()
    directory = MemoryDirectory(crypt_context=cheap_context())
    directory.add_client(NUMBER, "ana@example.com", key=OLD_KEY)
    other = plain_service(cheap_context())

    async def main() -> None:
        async with AsyncRecoveryService(
            directory,
            MemoryMailer(),
            secret_key=SECRET,
            confirm_url=CONFIRM_URL,
            sender=SENDER,
            crypt_context=ctx,
            delivery="sync",
            rate_limits=None,
        ) as service:
            ctx.gate.clear()
            signing_in = asyncio.ensure_future(service.authenticate(NUMBER, OLD_KEY))
            while ctx.running == 0:
                await asyncio.sleep(0.005)
            signing_in.cancel()
            with pytest.raises(asyncio.CancelledError):
                await signing_in
            with pytest.raises(Overloaded):
                other.authenticate(NUMBER, OLD_KEY)  # the slot is still taken
            ctx.gate.set()
            while ctx.running:
                await asyncio.sleep(0.005)
            await asyncio.sleep(0.05)  # the slot is given back on the loop
            assert other.authenticate(NUMBER, OLD_KEY) is not None

    try:
        asyncio.run(main())
    finally:
        other.close()


def test_the_setting_its_defaults_and_what_it_refuses() -> None:
    """By default: the usable cores, at least 2, and a 2-second wait; nonsense is refused."""
    set_hashing_limit(3, wait=0.5)
    assert set_hashing_limit() == HashingLimit(3, 0.5)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert hashing_limit() == HashingLimit(max(2, cores or 1), 2.0)
    assert set_hashing_limit(None, 0).slots == max(2, cores or 1)
    assert hashing_limit() == HashingLimit(None, 0.0)
    for slots in (0, -1, True, 1.5, "2"):
        with pytest.raises(ValueError, match="slots"):
            set_hashing_limit(slots)  # type: ignore[arg-type]
    for wait in (-1, math.nan, math.inf, "1"):
        with pytest.raises(ValueError, match="wait"):
            set_hashing_limit(2, wait)  # type: ignore[arg-type]
    assert hashing_limit() == HashingLimit(None, 0.0)


def test_overloaded_is_a_rate_limit_a_host_already_answers() -> None:
    """Overloaded is a RateLimited (so Retry-After is sent), with status 503, and pickles."""
    error = Overloaded()
    assert isinstance(error, RateLimited) and isinstance(error, RecoveryError)
    assert (error.http_status, error.retry_after, error.limit) == (503, 1.0, "hashing")
    copy = pickle.loads(pickle.dumps(error))
    assert (type(copy), str(copy), copy.retry_after, copy.limit) == (
        Overloaded,
        str(error),
        1.0,
        "hashing",
    )


def test_the_panel_answers_a_refused_sign_in_with_503_and_retry_after(tmp_path: Path) -> None:
    """The Flask panel example: a wrong key gets 401, the same form with no slot free 503."""
    pytest.importorskip("flask_wtf")
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))  # the example is imported as ``examples.flask_panel``
    from examples.flask_panel import create_app

    db = tmp_path / "clients.sqlite3"
    with SQLiteDirectory(db, crypt_context=cheap_context()) as directory:
        directory.add_client(NUMBER, "ana@example.com", key=OLD_KEY)
    app = create_app(
        {
            "CREDRECOVERY_SECRET_KEY": SECRET,
            "PANEL_DB": str(db),
            "PANEL_SMTP_HOST": "127.0.0.1",
            "PANEL_SMTP_PORT": "2525",
            "PANEL_SENDER": SENDER,
            "PANEL_DELIVERY": "sync",
            "PANEL_CRYPT_CONTEXT": cheap_context(),
            "WTF_CSRF_ENABLED": False,
        }
    )
    try:
        client = app.test_client()
        form = {"number": NUMBER, "key": WRONG_KEY}
        assert client.post("/login", data=form).status_code == 401
        set_hashing_limit(1, wait=0.1)
        with Holder(1):
            refused = client.post("/login", data=form)
        assert refused.status_code == 503
        assert refused.headers["Retry-After"] == "1"
        assert client.post("/login", data=form).status_code == 401
    finally:
        app.extensions["credrecovery_panel"].close()
