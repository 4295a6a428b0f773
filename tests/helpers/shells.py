"""The shells a service-level test drives a service through: async from sync code, chosen keys."""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import threading
from typing import Any

from credrecovery import AsyncRecoveryService

__all__ = ["KEY_MODES", "SHELLS", "AsyncShell", "ChoosingShell", "chosen_key"]

#: The shells of ``pytest.mark.shells``: RecoveryService, or AsyncRecoveryService in an AsyncShell.
SHELLS = ("sync", "async")
#: The key modes of ``pytest.mark.key_modes``.
KEY_MODES = ("generate", "choose")


class AsyncShell:
    """An AsyncRecoveryService driven from synchronous tests, on one event loop of its own.

    The loop runs in a thread, so tests that call the service from several
    threads at once still race on one service, as an event loop's tasks do.
    Whatever a call raises, ``KeyboardInterrupt`` included, is raised in the
    calling thread. Every other attribute is the service's own.
    """

    def __init__(self, service: AsyncRecoveryService) -> None:
        self.service = service
        self._loop = asyncio.new_event_loop()
        # Room for the tests that race many calls at once through to_thread.
        self._loop.set_default_executor(concurrent.futures.ThreadPoolExecutor(64))
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.service, name)

    def __repr__(self) -> str:
        return repr(self.service)

    def _await(self, coroutine: Any) -> Any:
        async def captured() -> tuple[bool, Any]:
            try:
                return True, await coroutine
            except BaseException as exc:  # noqa: BLE001 - raised again in the caller
                return False, exc

        ok, value = asyncio.run_coroutine_threadsafe(captured(), self._loop).result(60)
        if not ok:
            raise value
        return value

    def request(self, *args: Any, **kwargs: Any) -> None:
        return self._await(self.service.request(*args, **kwargs))

    def check(self, *args: Any, **kwargs: Any) -> Any:
        return self._await(self.service.check(*args, **kwargs))

    def confirm(self, *args: Any, **kwargs: Any) -> Any:
        return self._await(self.service.confirm(*args, **kwargs))

    def authenticate(self, *args: Any, **kwargs: Any) -> Any:
        return self._await(self.service.authenticate(*args, **kwargs))

    def request_code(self, *args: Any, **kwargs: Any) -> str:
        return str(self._await(self.service.request_code(*args, **kwargs)))

    def check_code(self, *args: Any, **kwargs: Any) -> Any:
        return self._await(self.service.check_code(*args, **kwargs))

    def confirm_code(self, *args: Any, **kwargs: Any) -> Any:
        return self._await(self.service.confirm_code(*args, **kwargs))

    def change_key(self, *args: Any, **kwargs: Any) -> Any:
        return self._await(self.service.change_key(*args, **kwargs))

    def issue_link(self, *args: Any, **kwargs: Any) -> str:
        return str(self._await(self.service.issue_link(*args, **kwargs)))

    def issue_code(self, *args: Any, **kwargs: Any) -> Any:
        return self._await(self.service.issue_code(*args, **kwargs))

    def flush(self, timeout: float | None = None) -> bool:
        return bool(self._await(self.service.flush(timeout)))

    def close(self, timeout: float | None = 30.0) -> None:
        self._await(self.service.aclose(timeout))

    def stop_loop(self) -> None:
        """End the event loop; the fixture calls this once the test is over."""
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def __enter__(self) -> AsyncShell:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class ChoosingShell:
    """A ``key_mode="choose"`` service, driven by tests written for generated keys.

    Each :meth:`confirm` (or :meth:`confirm_code`) called without ``new_key``
    chooses a fresh key that the policy accepts; once it succeeds,
    :func:`key_from` reads that key back from the notice it mailed, so the
    same assertions hold in both modes.
    """

    def __init__(self, service: Any) -> None:
        self.service = service

    def __getattr__(self, name: str) -> Any:
        return getattr(self.service, name)

    def __repr__(self) -> str:
        return repr(self.service)

    def __enter__(self) -> ChoosingShell:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.service.close()

    def confirm(
        self, token: str, *, requester: str | None = None, new_key: str | None = None
    ) -> Any:
        if new_key is None:
            new_key = f"correct horse battery staple {next(_CHOICES)}"
        confirmation = self.service.confirm(token, requester=requester, new_key=new_key)
        _CHOSEN[confirmation.number] = new_key
        return confirmation

    def confirm_code(
        self, ticket: str, code: str, *, requester: str | None = None, new_key: str | None = None
    ) -> Any:
        if new_key is None:
            new_key = f"correct horse battery staple {next(_CHOICES)}"
        confirmation = self.service.confirm_code(ticket, code, requester=requester, new_key=new_key)
        _CHOSEN[confirmation.number] = new_key
        return confirmation


_CHOICES = itertools.count()
# The key last chosen, by client number, for key_from() to read off a notice.
_CHOSEN: dict[str, str] = {}


def chosen_key(number: str) -> str | None:
    """The key a ChoosingShell last chose for client ``number``, if any."""
    return _CHOSEN.get(number)
