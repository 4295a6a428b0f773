"""A synchronous face on an asyncio directory, for the contract tests to share."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from ..identifiers import IdentifierKind
from ..models import Client

_T = TypeVar("_T")


class _LoopThread:
    """An event loop in a thread of its own, for synchronous code to hand coroutines to.

    Calls may come from several threads at once: their coroutines then run
    concurrently on the one loop, as an asyncio application's tasks do.
    """

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, _T]) -> _T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=60)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


class _SyncDirectory:
    """A synchronous face on an asyncio directory.

    It has ``find_all``, ``set_must_change`` and ``set_active`` only when the
    asyncio directory does.
    """

    def __init__(self, directory: Any, runner: _LoopThread) -> None:
        self._directory = directory
        self._runner = runner
        if hasattr(directory, "find_all"):
            self.find_all = self._find_all
        if hasattr(directory, "set_must_change"):
            self.set_must_change = self._set_must_change
        if hasattr(directory, "set_active"):
            self.set_active = self._set_active

    def find(self, kind: IdentifierKind, value: str) -> Client | None:
        found: Client | None = self._runner.run(self._directory.find(kind, value))
        return found

    def _find_all(self, kind: IdentifierKind, value: str, *, limit: int = 50) -> list[Client]:
        found: list[Client] = self._runner.run(self._directory.find_all(kind, value, limit=limit))
        return found

    def replace_key_hash(self, number: str, current: str, new: str) -> bool:
        replaced: bool = self._runner.run(self._directory.replace_key_hash(number, current, new))
        return replaced

    def _set_must_change(self, number: str, value: bool) -> None:
        self._runner.run(self._directory.set_must_change(number, value))

    def _set_active(self, number: str, active: bool) -> None:
        self._runner.run(self._directory.set_active(number, active))
