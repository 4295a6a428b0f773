"""Kept SMTP connections: which one a mail may use again, and closing those left idle.

Both SMTP mailers keep a connection open once a mail has gone through it, so
that the next mail skips the TCP, TLS and login round trips. A kept
connection serves one mail at a time: a sender takes it out of the pool and
gives it back once the server has accepted its mail. It is used again only
while younger than ``max_connection_age`` and idle for less than
``idle_timeout``; past either it is closed, by a daemon thread of the pool
(:class:`ThreadPool`) or a task on the connection's own event loop
(:class:`LoopPools`), which both end once nothing is kept. Threads without an
event loop send through an asyncio mailer on a relay's loop (``_smtp_relay``). At most
:data:`MAX_IDLE` connections wait in a pool; one more is closed.

A pool forgets, without a word to the server, the connections a process
inherited through ``fork``: they belong to the parent.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final, Generic, TypeVar

from ._smtp_common import _Settings

__all__ = ["MAX_IDLE", "Kept", "LoopPools", "ThreadPool"]

#: Idle connections a pool keeps at most; a sender that gives back one more closes it.
MAX_IDLE: Final = 8

_C = TypeVar("_C")


@dataclass
class Kept(Generic[_C]):
    """A connection, when it was opened and last used (monotonic seconds), and its pool's era."""

    client: _C
    opened: float
    used: float
    generation: int
    #: The pool it was taken out of for a mail, until it is given back.
    lender: Any = None


class _Idle(Generic[_C]):
    """The idle connections of one pool, the most recently used last. No lock of its own."""

    def __init__(self, settings: _Settings) -> None:
        self._idle_timeout = settings.idle_timeout
        self._max_age = settings.max_connection_age
        self.items: list[Kept[_C]] = []

    def _deadline(self, kept: Kept[_C]) -> float:
        return min(kept.used + self._idle_timeout, kept.opened + self._max_age)

    def take(self, now: float) -> tuple[Kept[_C] | None, list[Kept[_C]]]:
        """The most recently used connection still fit for a mail, and those gone stale."""
        stale = self.expired(now)
        return (self.items.pop() if self.items else None), stale

    def put(self, kept: Kept[_C], now: float) -> Kept[_C] | None:
        """Keep ``kept``, used just now; returns the connection to close if the pool is full."""
        kept.used = now
        self.items.append(kept)
        return self.items.pop(0) if len(self.items) > MAX_IDLE else None

    def expired(self, now: float) -> list[Kept[_C]]:
        """Take out and return the connections idle or open for too long."""
        stale = [kept for kept in self.items if self._deadline(kept) <= now]
        if stale:
            self.items = [kept for kept in self.items if self._deadline(kept) > now]
        return stale

    def deadline(self) -> float | None:
        """When the next connection goes stale; ``None`` once none is kept."""
        return min(map(self._deadline, self.items), default=None)

    def drain(self) -> list[Kept[_C]]:
        items, self.items = self.items, []
        return items


class ThreadPool(Generic[_C]):
    """Kept connections of a mailer that threads call; ``retire`` closes one politely.

    ``drop`` closes a connection without a word to the server, for those a
    fork left behind. :meth:`close` closes what is idle, and whatever is in
    use once it is given back; the pool stays usable. The idle thread lives
    while a connection is kept or lent, and ends with the last.
    """

    def __init__(
        self, settings: _Settings, retire: Callable[[_C], None], drop: Callable[[_C], None]
    ) -> None:
        self._settings = settings
        self._retire = retire
        self._drop = drop
        self._pid = -1
        self._forked()

    def _forked(self) -> None:
        # Fresh in a new process: a lock another thread held at the fork stays held.
        self._cond = threading.Condition()
        self._idle: _Idle[_C] = _Idle(self._settings)
        self._reaper: threading.Thread | None = None
        self._lent = 0
        self._generation = 0
        self._pid = os.getpid()

    def _same_process(self) -> bool:
        if self._pid == os.getpid():
            return True
        inherited = self._idle.items
        self._forked()
        for kept in inherited:
            self._drop(kept.client)
        return False

    def take(self) -> Kept[_C] | None:
        """A kept connection for one mail, or ``None``: then open one and :meth:`adopt` it.

        Give it back (:meth:`give_back`) or tell it :meth:`lost`.
        """
        if not self._same_process():
            return None
        with self._cond:
            kept, stale = self._idle.take(time.monotonic())
            if kept is not None:
                kept.lender = self
                self._lent += 1
        self._close(stale)
        return kept

    def adopt(self, client: _C) -> Kept[_C]:
        now = time.monotonic()
        return Kept(client, now, now, self._generation)

    def give_back(self, kept: Kept[_C]) -> None:
        """Keep ``kept`` for the next mail, unless the pool was closed or is full meanwhile."""
        if not self._same_process():
            self._drop(kept.client)
            return
        with self._cond:
            self._returned(kept)
            if kept.generation != self._generation:
                extra: Kept[_C] | None = kept
            else:
                before = self._idle.deadline()
                extra = self._idle.put(kept, time.monotonic())
                if self._reaper is None:
                    self._reaper = threading.Thread(
                        target=self._reap, name="credrecovery-smtp-idle", daemon=True
                    )
                    self._reaper.start()
                elif before is None or self._idle.deadline() != before:
                    self._cond.notify_all()
        if extra is not None:
            self._retire(extra.client)

    def lost(self, kept: Kept[_C]) -> None:
        """``kept``, taken out, is closed and gone."""
        if self._same_process():
            with self._cond:
                self._returned(kept)

    def _returned(self, kept: Kept[_C]) -> None:
        if kept.lender is self:
            kept.lender = None
            self._lent -= 1
            if not self._lent and not self._idle.items:
                self._cond.notify_all()

    def close(self) -> None:
        """Close the idle connections now, and those in use when they come back."""
        if not self._same_process():
            return
        with self._cond:
            idle = self._idle.drain()
            self._generation += 1
            reaper, self._reaper = self._reaper, None
            self._cond.notify_all()
        self._close(idle)
        if reaper is not None and reaper is not threading.current_thread():
            reaper.join()

    def _close(self, kept: list[Kept[_C]]) -> None:
        for each in kept:
            self._retire(each.client)

    def _reap(self) -> None:
        me = threading.current_thread()
        while True:
            with self._cond:
                if self._reaper is not me:
                    return
                now = time.monotonic()
                stale = self._idle.expired(now)
                if not stale:
                    deadline = self._idle.deadline()
                    if deadline is None and not self._lent:
                        self._reaper = None
                        return
                    self._cond.wait(None if deadline is None else deadline - now)
                    continue
            self._close(stale)


class LoopPools(Generic[_C]):
    """Kept connections of an asyncio mailer, one pool per event loop.

    A connection serves only the loop that opened it. Each pool's idle
    connections are closed by a task on its loop (``retire``, awaited), which
    lives while a connection is kept or lent; when the loop shuts down, as
    :func:`asyncio.run` does, that task is cancelled and ``abort`` closes
    them at once.
    """

    def __init__(
        self,
        settings: _Settings,
        retire: Callable[[_C], Awaitable[None]],
        abort: Callable[[_C], None],
    ) -> None:
        self._settings = settings
        self._retire = retire
        self._abort = abort
        self._lock = threading.Lock()
        self._pools: dict[asyncio.AbstractEventLoop, _LoopPool[_C]] = {}
        self._generation = 0

    def take(self) -> Kept[_C] | None:
        """A kept connection of the running loop, or ``None``: then open one and adopt it.

        Give it back (:meth:`give_back`) or tell it :meth:`lost`.
        """
        pool = self._pools.get(asyncio.get_running_loop())
        if pool is None:
            return None
        kept, stale = pool.idle.take(time.monotonic())
        for each in stale:
            self._abort(each.client)
        if kept is not None:
            kept.lender = pool
            pool.lent += 1
        return kept

    def adopt(self, client: _C) -> Kept[_C]:
        now = time.monotonic()
        return Kept(client, now, now, self._generation)

    def give_back(self, kept: Kept[_C]) -> None:
        """Keep ``kept`` on the running loop, unless the pools were closed meanwhile."""
        loop = asyncio.get_running_loop()
        with self._lock:
            current = kept.generation == self._generation
            pool = self._pools.get(loop)
            if current and pool is None:
                pool = self._pools[loop] = _LoopPool(self._settings)
        if isinstance(kept.lender, _LoopPool):
            kept.lender.returned(kept)
        if not current or pool is None:
            self._abort(kept.client)
            return
        was_empty = not pool.idle.items
        extra = pool.idle.put(kept, time.monotonic())
        if extra is not None:
            self._abort(extra.client)
        if pool.keeper is None:
            pool.keeper = loop.create_task(self._keep(loop, pool), name="credrecovery-smtp-idle")
        elif was_empty:
            pool.wake.set()

    def lost(self, kept: Kept[_C]) -> None:
        """``kept``, taken out, is closed and gone."""
        if isinstance(kept.lender, _LoopPool):
            kept.lender.returned(kept)

    async def aclose(self) -> None:
        """Close the running loop's idle connections politely; the others' as :meth:`close`."""
        loop = asyncio.get_running_loop()
        with self._lock:
            pool = self._pools.pop(loop, None)
        self.close()
        if pool is not None:
            if pool.keeper is not None:
                pool.keeper.cancel()
            for kept in pool.idle.drain():
                await self._retire(kept.client)

    def close(self) -> None:
        """Close every idle connection, each on its own loop; those in use once given back."""
        with self._lock:
            self._generation += 1
            pools = list(self._pools.items())
            self._pools.clear()
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        for loop, pool in pools:
            if loop is running:
                pool.stop(self._abort)
            elif not loop.is_closed():
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(pool.stop, self._abort)

    async def _keep(self, loop: asyncio.AbstractEventLoop, pool: _LoopPool[_C]) -> None:
        try:
            while True:
                now = time.monotonic()
                for kept in pool.idle.expired(now):
                    await self._retire(kept.client)
                deadline = pool.idle.deadline()
                if deadline is not None:
                    await asyncio.sleep(deadline - now)
                elif pool.lent:
                    pool.wake.clear()
                    await pool.wake.wait()
                else:
                    return
        except asyncio.CancelledError:
            # The loop is shutting down: no time for goodbyes.
            for kept in pool.idle.drain():
                self._abort(kept.client)
            raise
        finally:
            pool.keeper = None
            with self._lock:
                if self._pools.get(loop) is pool and not pool.idle.items:
                    del self._pools[loop]


class _LoopPool(Generic[_C]):
    def __init__(self, settings: _Settings) -> None:
        self.idle: _Idle[_C] = _Idle(settings)
        self.keeper: asyncio.Task[None] | None = None
        self.lent = 0
        self.wake = asyncio.Event()

    def returned(self, kept: Kept[_C]) -> None:
        if kept.lender is self:
            kept.lender = None
            self.lent -= 1
            if not self.lent and not self.idle.items:
                self.wake.set()

    def stop(self, abort: Callable[[_C], None]) -> None:
        if self.keeper is not None:
            self.keeper.cancel()
        for kept in self.idle.drain():
            abort(kept.client)
