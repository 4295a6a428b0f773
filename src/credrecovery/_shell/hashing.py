"""The process-wide cap on key hashing: how many hashes and verifications run at once.

An argon2 verification under the default policy takes a core for about a
third of a second and 64 MiB of memory. Every sign-in attempt, right or
wrong, costs one, so a burst of them can take a server's every core and
gigabytes of memory unless their number is bounded. Here it is, once per
process: every :class:`~credrecovery.RecoveryService` and
:class:`~credrecovery.AsyncRecoveryService` of the process draws on the same
slots, since a cap per service would let a host with several services (one
per language, say) exceed it. A hash or verification beyond the cap waits,
first come first served, for at most ``wait`` seconds, and is then refused
with :class:`~credrecovery.Overloaded` before any hashing starts.

Both shells perform their effects through :func:`gated` and
:func:`perform_gated`, which take a slot around a ``Hash`` or ``Verify``
effect only; the flows do not know about the cap.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import os
import threading
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from .._flow import effects
from ..exceptions import Overloaded

__all__ = [
    "DEFAULT_WAIT",
    "HashingLimit",
    "default_slots",
    "gated",
    "hashing_limit",
    "perform_gated",
    "set_hashing_limit",
]

logger = logging.getLogger("credrecovery")

#: Seconds a hash waits for a slot before :class:`Overloaded`: under the
#: default policy a burst of about six sign-ins per slot still passes.
DEFAULT_WAIT = 2.0
# What a refused requester is told to wait: by then the slots have served
# about three verifications each, so the queue it met has moved on.
_RETRY_AFTER = 1.0


def default_slots() -> int:
    """The cores this process may run on, and at least 2.

    A hash holds a core for its whole run and the hashing library releases
    the GIL, so as many run in parallel as there are cores; more would only
    share them, slowing every one down and adding each one's memory. Two at
    least, so that one slow verification (an old bcrypt hash and its rehash)
    does not hold up every other sign-in on a one-core machine.
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on every platform
        cores = os.cpu_count() or 1
    return max(2, cores)


@dataclasses.dataclass(frozen=True, slots=True)
class HashingLimit:
    """The process's cap on key hashing, as :func:`hashing_limit` reports it.

    ``slots`` is how many hashes and verifications may run at once (``None``:
    no cap); ``wait`` how many seconds one waits for a slot before
    :class:`~credrecovery.Overloaded`.
    """

    slots: int | None
    wait: float


class _Waiter:
    """One hash waiting for a slot: a thread's event, or a future on an event loop."""

    __slots__ = ("event", "future", "granted", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.granted = False
        self.loop = loop
        self.event = threading.Event() if loop is None else None
        self.future: asyncio.Future[None] | None = None if loop is None else loop.create_future()

    def grant(self) -> bool:
        """Hand this waiter a slot; False when its event loop is gone."""
        if self.event is not None:
            self.granted = True
            self.event.set()
            return True
        assert self.loop is not None and self.future is not None
        try:
            self.loop.call_soon_threadsafe(_resolve, self.future)
        except RuntimeError:  # the loop is closed: nobody is waiting any more
            return False
        self.granted = True
        return True


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class _Slots:
    """Counting slots that both threads and event loops wait for, in arrival order."""

    def __init__(self, slots: int | None, wait: float) -> None:
        self._lock = threading.Lock()
        self._limit = HashingLimit(slots, wait)
        self._busy = 0
        self._queue: deque[_Waiter] = deque()

    @property
    def limit(self) -> HashingLimit:
        return self._limit

    def configure(self, limit: HashingLimit) -> HashingLimit:
        with self._lock:
            previous, self._limit = self._limit, limit
            self._grant_queued()
        return previous

    def reset(self) -> None:
        """Forget every slot and waiter: a forked child runs none of its parent's hashes."""
        self._lock = threading.Lock()
        self._busy = 0
        self._queue = deque()

    def _free(self) -> bool:
        return self._limit.slots is None or self._busy < self._limit.slots

    def _grant_queued(self) -> None:
        while self._queue and self._free():
            waiter = self._queue.popleft()
            self._busy += 1
            if not waiter.grant():
                self._busy -= 1

    def _enter(self, loop: asyncio.AbstractEventLoop | None) -> tuple[_Waiter | None, float]:
        """Take a free slot at once (``None``), or queue a waiter; refuse if no wait is allowed."""
        with self._lock:
            if not self._queue and self._free():
                self._busy += 1
                return None, 0.0
            wait = self._limit.wait
            if wait > 0:
                waiter = _Waiter(loop)
                self._queue.append(waiter)
                return waiter, wait
        raise self._refusal()

    def _gave_up(self, waiter: _Waiter) -> bool:
        """Whether a waiter leaves without a slot; one granted meanwhile keeps it."""
        with self._lock:
            if waiter.granted:
                return False
            self._queue.remove(waiter)
            return True

    def _refusal(self) -> Overloaded:
        logger.warning(
            "key hashing refused: every slot stayed busy",
            extra={"event": "overloaded", "limit": "hashing"},
        )
        return Overloaded(_RETRY_AFTER)

    def acquire(self) -> None:
        """Take a slot, waiting in this thread; :class:`Overloaded` after the wait."""
        waiter, wait = self._enter(None)
        if waiter is None:
            return
        assert waiter.event is not None
        if not waiter.event.wait(wait) and self._gave_up(waiter):
            raise self._refusal()

    async def acquire_async(self) -> None:
        """Take a slot, waiting on the event loop, never in a thread; as :meth:`acquire`."""
        waiter, wait = self._enter(asyncio.get_running_loop())
        if waiter is None:
            return
        assert waiter.future is not None
        try:
            await asyncio.wait_for(asyncio.shield(waiter.future), wait)
        except TimeoutError:
            if self._gave_up(waiter):
                raise self._refusal() from None
        except BaseException:
            # Cancelled while waiting: give back the slot if it came meanwhile.
            if not self._gave_up(waiter):
                self.release()
            raise

    def release(self) -> None:
        with self._lock:
            self._busy -= 1
            self._grant_queued()


_slots = _Slots(default_slots(), DEFAULT_WAIT)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_slots.reset)


def hashing_limit() -> HashingLimit:
    """The process's cap on key hashing now in force."""
    return _slots.limit


def set_hashing_limit(
    slots: int | Literal["auto"] | None = "auto", wait: float = DEFAULT_WAIT
) -> HashingLimit:
    """Cap how many key hashes and verifications run at once in this process.

    The cap is shared by every service of the process, synchronous and
    asyncio alike; set it once at start-up, before serving. ``slots``:
    how many may run at once; ``"auto"``, the default, is the number of
    cores the process may use, at least 2; ``None`` lifts the cap.
    ``wait``: the seconds a hash waits for a slot, first come first served,
    before the call that needed it raises :class:`~credrecovery.Overloaded`
    (``0``: refuse at once). An asyncio service waits on its event loop,
    without a thread. Calling it with no argument restores the defaults.
    Returns the setting it replaced.

    Each process of a multi-process server (gunicorn's workers) has its own
    slots: size them per process, so that processes times slots is about the
    machine's cores.
    """
    if slots == "auto":
        slots = default_slots()
    if slots is not None and (isinstance(slots, bool) or not isinstance(slots, int) or slots < 1):
        raise ValueError("slots must be a whole number of 1 or more, or None for no cap")
    if (
        isinstance(wait, bool)
        or not isinstance(wait, int | float)
        or not (math.isfinite(wait) and wait >= 0)
    ):
        raise ValueError("wait must be a number of seconds, 0 or more")
    return _slots.configure(HashingLimit(slots, float(wait)))


def _hashing(effect: effects.Effect) -> bool:
    return isinstance(effect, effects.Hash | effects.Verify | effects.StandIn)


def gated(perform: Callable[[effects.Effect], Any]) -> Callable[[effects.Effect], Any]:
    """``perform``, holding a slot for each ``Hash``, ``Verify`` and ``StandIn`` effect."""

    def perform_within_cap(effect: effects.Effect) -> Any:
        if not _hashing(effect):
            return perform(effect)
        _slots.acquire()
        try:
            return perform(effect)
        finally:
            _slots.release()

    return perform_within_cap


async def perform_gated(
    perform: Callable[[effects.Effect], Awaitable[Any]], effect: effects.Effect
) -> Any:
    """``await perform(effect)``, holding a slot for a ``Hash`` or ``Verify`` effect.

    The slot is given back when the hashing itself ends: a caller cancelled
    while its hash runs in a thread stops waiting for it, but the thread goes
    on, and its slot stays taken until it is done.
    """
    if not _hashing(effect):
        return await perform(effect)
    await _slots.acquire_async()
    try:
        task = asyncio.ensure_future(perform(effect))
    except BaseException:
        _slots.release()
        raise
    task.add_done_callback(_finished)
    return await asyncio.shield(task)


def _finished(task: asyncio.Future[Any]) -> None:
    _slots.release()
    if not task.cancelled():
        task.exception()  # retrieved here too, in case the caller was cancelled
