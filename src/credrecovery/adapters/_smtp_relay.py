"""An event loop in a thread of an asyncio mailer's own, for delivery threads to send on.

Delivery threads have no event loop; :func:`asyncio.run` for each mail would
close, with its loop, the connection the mail went over. A :class:`Relay`
runs one loop for as long as the mailer sends from threads, so that its kept
connections (see ``_smtp_keep``) serve mail after mail.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["Relay"]

_M = TypeVar("_M")


class Relay:
    """An event loop in a daemon thread, for threads without one to run a mailer's sends on.

    Connections opened there stay open between calls, as they would in an
    asyncio application. :meth:`stop` waits for the sends under way, awaits
    ``closing`` on the loop, and ends the thread; a later call starts anew.
    """

    def __init__(self, closing: Callable[[], Coroutine[Any, Any, None]]) -> None:
        self._closing = closing
        self._lock = threading.Lock()
        self._current: _RelayLoop | None = None

    def run(self, send: Callable[[_M], Coroutine[Any, Any, None]], message: _M) -> None:
        """Run ``send(message)`` on the relay's loop and wait for it; raises what it raises."""
        with self._lock:
            relay = self._current
            if relay is None or relay.pid != os.getpid():
                relay = self._current = _RelayLoop()
            relay.enter()
        try:
            asyncio.run_coroutine_threadsafe(send(message), relay.loop).result()
        finally:
            relay.leave()

    @property
    def running(self) -> bool:
        """Whether the relay's loop runs in this process."""
        relay = self._current
        return relay is not None and relay.pid == os.getpid()

    def stop(self) -> None:
        """Wait for the sends under way, await ``closing`` on the loop, end the thread."""
        with self._lock:
            relay, self._current = self._current, None
        if relay is not None and relay.pid == os.getpid():
            relay.stop(self._closing)


class _RelayLoop:
    def __init__(self) -> None:
        self.pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        self._busy = 0
        self._idle = threading.Condition()
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="credrecovery-smtp-loop", daemon=True
        )
        self._thread.start()

    def enter(self) -> None:
        with self._idle:
            self._busy += 1

    def leave(self) -> None:
        with self._idle:
            self._busy -= 1
            self._idle.notify_all()

    def stop(self, closing: Callable[[], Coroutine[Any, Any, None]]) -> None:
        if threading.current_thread() is self._thread:
            self.loop.stop()
            return
        with self._idle:
            self._idle.wait_for(lambda: self._busy == 0)
        try:
            asyncio.run_coroutine_threadsafe(closing(), self.loop).result()
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join()
            self.loop.run_until_complete(_cancel_the_rest())
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()


async def _cancel_the_rest() -> None:
    """Cancel what is left on the running loop (a pool's idle task), as asyncio.run does."""
    left = asyncio.all_tasks() - {asyncio.current_task()}
    for task in left:
        task.cancel()
    await asyncio.gather(*left, return_exceptions=True)
