"""Running the host's ``on_event`` hook off the caller's path, in order, one event at a time.

A hook may be slow, or do more for a hit than for a miss; run inline it
would make the two cost differently, which is what the request path must
never do. So a service only queues each event: :class:`EventDispatcher`
hands them to the hook from a thread of its own, and
:class:`AsyncEventDispatcher` from a task on the service's event loop.
Whatever the hook raises is logged (``hook_failed``) and changes no outcome.
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import inspect
import logging
import os
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from ..events import Event, EventKind

__all__ = ["AsyncEventDispatcher", "EventDispatcher", "checked_hook", "remaining", "reporter"]

logger = logging.getLogger("credrecovery")

#: Events a dispatcher holds at most; more are dropped (logged) rather than held in memory.
MAX_QUEUE = 10_000


def _failed(event: Event, exc: BaseException) -> None:
    # The exception's text is the host's and could quote anything: its type only.
    logger.error(
        "the on_event hook failed on a %s event: %s",
        event.kind.value,
        type(exc).__name__,
        extra={"event": "hook_failed", "kind": event.kind.value, "error": type(exc).__name__},
    )


def _dropped(event: Event) -> None:
    logger.error(
        "event not handed to the on_event hook: the queue is full",
        extra={"event": "event_dropped", "kind": event.kind.value},
    )


class EventDispatcher:
    """Hands events to a plain hook from one daemon thread, in the order they came.

    :meth:`put` never blocks and never raises. :meth:`flush` waits until every
    queued event was handled; :meth:`close` flushes, then stops the thread, and
    later events are dropped. ``before_exit`` runs at interpreter exit before
    the last flush (the service flushes its delivery there, whose outcomes
    are events too). The thread starts at the first event, again in a forked
    child.
    """

    def __init__(
        self,
        hook: Callable[[Event], object] | None,
        *,
        before_exit: Callable[[], object] | None = None,
        max_queue: int = MAX_QUEUE,
    ) -> None:
        self.hook = hook
        self._before_exit = before_exit
        self._max_queue = max_queue
        self._closed = False
        self._pid = os.getpid()
        self._fresh()

    def _fresh(self) -> None:
        # After a fork, the parent's lock may be held by a thread the child lacks.
        self._cond = threading.Condition()
        self._queue: collections.deque[Event] = collections.deque()
        self._busy = False
        self._thread: threading.Thread | None = None

    @property
    def pending(self) -> int:
        """Events queued or being handled."""
        with self._cond:
            return len(self._queue) + self._busy

    def put(self, event: Event) -> None:
        """Queue ``event`` for the hook; dropped once closed, or when there is no hook."""
        if self.hook is None or self._closed:
            return
        if self._pid != os.getpid():
            self._fresh()
            self._pid = os.getpid()
        with self._cond:
            if len(self._queue) >= self._max_queue:
                _dropped(event)
                return
            self._queue.append(event)
            if self._thread is None or not self._thread.is_alive():
                if self._thread is None:
                    atexit.register(self._at_exit)
                self._thread = threading.Thread(
                    target=self._run, name="credrecovery-events", daemon=True
                )
                self._thread.start()
            self._cond.notify_all()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every queued event was handled; ``False`` on timeout."""
        if threading.current_thread() is self._thread:
            return True  # the hook itself asked: waiting would wait for itself
        with self._cond:
            return self._cond.wait_for(lambda: not self._queue and not self._busy, timeout)

    def close(self, timeout: float | None = 30.0) -> None:
        """Flush for up to ``timeout`` seconds, then stop; idempotent."""
        atexit.unregister(self._at_exit)
        self.flush(timeout)
        with self._cond:
            self._closed = True
            left = len(self._queue)
            self._queue.clear()
            self._cond.notify_all()
        if left:
            logger.error(
                "%d events not handed to the on_event hook: the service was closed",
                left,
                extra={"event": "event_dropped", "count": left},
            )

    def _at_exit(self) -> None:
        if self._before_exit is not None:
            try:
                self._before_exit()
            except Exception:  # noqa: BLE001 - exiting anyway; the events still go
                logger.debug("flushing delivery at exit failed", exc_info=False)
        self.close(10.0)

    def _run(self) -> None:
        hook = self.hook
        assert hook is not None
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._queue or self._closed)
                if self._closed:
                    return
                event = self._queue.popleft()
                self._busy = True
            try:
                hook(event)
            except BaseException as exc:  # noqa: BLE001 - no hook stops the others' events
                _failed(event, exc)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()


class AsyncEventDispatcher:
    """Hands events to a hook from a task on the service's event loop, in order.

    A coroutine function is awaited on the loop; a plain function runs in a
    worker thread (``asyncio.to_thread``), so that it never blocks the loop.
    Events put from other threads (the delivery workers') cross to the loop
    the service last ran on (:meth:`attach`). With no loop to cross to (a
    Celery worker builds the service but never runs a coroutine of it), the
    hook runs on an event loop of its own in a thread instead.
    """

    def __init__(
        self,
        hook: Callable[[Event], Any] | None,
        *,
        before_exit: Callable[[], object] | None = None,
        max_queue: int = MAX_QUEUE,
    ) -> None:
        self.hook = hook
        self._max_queue = max_queue
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: collections.deque[Event] = collections.deque()
        self._task: asyncio.Task[None] | None = None
        self._off_loop = EventDispatcher(
            self._run_alone if hook is not None else None,
            before_exit=before_exit,
            max_queue=max_queue,
        )
        self._awaits = hook is not None and _is_coroutine_function(hook)

    def attach(self) -> None:
        """Take the running event loop as the one events cross to; the service's every call
        does this first."""
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            return
        if running is not self._loop:
            self._loop, self._queue, self._task = running, collections.deque(), None

    def put(self, event: Event) -> None:
        """Queue ``event`` for the hook, from the loop or any thread; never raises."""
        if self.hook is None or self._closed:
            return
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is not None:
            self.attach()
            self._enqueue(event)
            return
        loop = self._loop
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(self._enqueue, event)
                return
            except RuntimeError:
                pass  # closed meanwhile
        self._off_loop.put(event)

    def _enqueue(self, event: Event) -> None:
        if self._closed:
            return
        if len(self._queue) >= self._max_queue:
            _dropped(event)
            return
        self._queue.append(event)
        if self._task is None or self._task.done():
            assert self._loop is not None
            self._task = self._loop.create_task(self._drain_queue(self._queue))

    async def _drain_queue(self, queue: collections.deque[Event]) -> None:
        # Ends when the queue is empty, so that no task outlives its work.
        while queue:
            await self._call(queue.popleft())

    async def _call(self, event: Event) -> None:
        hook = self.hook
        assert hook is not None
        try:
            result = hook(event) if self._awaits else await asyncio.to_thread(hook, event)
            if inspect.isawaitable(result):
                await result
        except Exception as exc:  # noqa: BLE001 - no hook stops the others' events
            _failed(event, exc)

    def _run_alone(self, event: Event) -> None:
        assert self.hook is not None
        result = self.hook(event)
        if inspect.isawaitable(result):
            asyncio.run(_awaited(result))

    async def flush(self, timeout: float | None = None) -> bool:
        """Wait until every queued event was handled; ``False`` on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        # Events a thread put a moment ago land on the loop first.
        await asyncio.sleep(0)
        while (task := self._task) is not None and not task.done():
            if task is asyncio.current_task():
                break
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            done, _ = await asyncio.wait({task}, timeout=left)
            if not done:
                return False
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        return await asyncio.to_thread(self._off_loop.flush, left)

    async def aclose(self, timeout: float | None = 30.0) -> None:
        """Flush for up to ``timeout`` seconds, then stop; idempotent."""
        await self.flush(timeout)
        self._closed = True
        task, self._task = self._task, None
        left = len(self._queue)
        self._queue.clear()
        if task is not None and not task.done() and task is not asyncio.current_task():
            task.cancel()
        if left:
            logger.error(
                "%d events not handed to the on_event hook: the service was closed",
                left,
                extra={"event": "event_dropped", "count": left},
            )
        await asyncio.to_thread(self._off_loop.close, timeout)


async def _awaited(result: Any) -> None:
    await result


def _is_coroutine_function(hook: Callable[..., Any]) -> bool:
    """Whether ``hook``, a function or an object with ``__call__``, is a coroutine function."""
    call = getattr(hook, "__call__", None)  # noqa: B004
    return inspect.iscoroutinefunction(hook) or inspect.iscoroutinefunction(call)


def checked_hook(hook: object) -> Callable[[Event], Any] | None:
    """``hook`` if it is ``None`` or callable; :class:`TypeError` otherwise."""
    if hook is not None and not callable(hook):
        raise TypeError(f"on_event must be a function taking an Event, not {type(hook).__name__}")
    return hook


def remaining(timeout: float | None) -> Callable[[], float | None]:
    """What is left of ``timeout`` seconds from now, each time it is asked (``None``: no limit)."""
    end = None if timeout is None else time.monotonic() + timeout
    return lambda: None if end is None else max(0.0, end - time.monotonic())


def reporter(
    put: Callable[[Event], None], clock: Callable[[], float]
) -> Callable[[EventKind, str | None, str], None]:
    """What delivery calls with each mail's outcome: an event, stamped on ``clock``, for ``put``."""

    def report(kind: EventKind, number: str | None, reason: str) -> None:
        put(Event(kind, datetime.fromtimestamp(clock(), UTC), reason, number))

    return report
