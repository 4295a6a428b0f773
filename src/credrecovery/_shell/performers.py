"""How a shell performs the flows' effects: directory, mailer, hasher, delivery, limiter.

:class:`Performs` does it with plain calls, for
:class:`~credrecovery.RecoveryService`; :class:`AsyncPerforms` with ``await``,
for :class:`~credrecovery.AsyncRecoveryService`, running whatever is not a
coroutine function in a worker thread. Both serve the same effects, in the
same order, and hand the limiters' answers back unchanged: a storage failure
is the limiters' own to meet.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from passlib.context import CryptContext

from .._flow import driver, effects
from .._flow.effects import Effect, Flow
from .._flow.login import stand_in_hash
from .._keyprep import hash_key, verify_key
from ..delivery.background import BackgroundMailer
from ..protocols import DeliveryQueue
from .hashing import gated, perform_gated

__all__ = ["AsyncPerforms", "Performs"]

_T = TypeVar("_T")


class _Parts:
    """What a performer reads from its shell, set by the shell's constructor."""

    directory: Any
    mailer: Any
    crypt_context: CryptContext
    limiter: Any
    _delivery: DeliveryQueue
    _events: Any
    _attempts: Any
    _find_all: Callable[..., Any] | None


class Performs(_Parts):
    """Drives a flow synchronously, performing each effect with a plain call."""

    def _run(self, flow: Flow[_T]) -> _T:
        return driver.run(flow, gated(self._perform))

    def _perform(self, effect: Effect) -> Any:
        match effect:
            case effects.Find(kind, value):
                return self.directory.find(kind, value)
            case effects.FindAll(kind, value):
                assert self._find_all is not None
                return self._find_all(kind, value)
            case effects.Swap(number, current, new):
                return self.directory.replace_key_hash(number, current, new)
            case effects.Mark(number, value):
                return self.directory.set_must_change(number, value)
            case effects.Hash(key):
                return hash_key(self.crypt_context, key.reveal())
            case effects.Verify(key, stored):
                return verify_key(self.crypt_context, key.reveal(), stored)
            case effects.Submit(job):
                return self._delivery.submit(job)
            case effects.Send(message):
                return self.mailer.send(message)
            case effects.StandIn(scheme):
                return stand_in_hash(self.crypt_context, scheme)
            case effects.Emit(event):
                return self._events.put(event)
            case effects.Attempt(nonce, lifetime):
                return self._attempts.spend(nonce, lifetime)
            case effects.Refund(nonce, lifetime):
                return self._attempts.refund(nonce, lifetime)
        assert self.limiter is not None
        match effect:
            case effects.Hit(limit, value):
                return self.limiter.hit(limit, value)
            case effects.HitClient(value, known):
                return self.limiter.hit_client(value, known=known)
            case effects.HitMailbox(value, known, sends):
                return self.limiter.hit_mailbox(value, known=known, sends=sends)
            case effects.Claim(limit, value):
                return self.limiter.claim(limit, value)
            case effects.Clear(limit, value):
                return self.limiter.clear(limit, value)
            case effects.Test(limit, value):
                return self.limiter.test(limit, value)
            case effects.RetryAfter(limit, value):
                return self.limiter.retry_after(limit, value)
        raise TypeError(f"unknown effect {type(effect).__name__}")


class AsyncPerforms(_Parts):
    """Drives a flow on the event loop, awaiting each effect."""

    async def _run(self, flow: Flow[_T]) -> _T:
        self._events.attach()  # delivery's threads report to this loop
        result: Any = None
        error: BaseException | None = None
        while True:
            done, value = driver.advance(flow, result, error)
            if done:
                return value  # type: ignore[no-any-return]
            result, error = None, None
            try:
                result = await perform_gated(self._perform, value)
            except BaseException as exc:  # noqa: BLE001 - thrown into the flow, which decides
                error = exc

    async def _perform(self, effect: Effect) -> Any:
        match effect:
            case effects.Find(kind, value):
                return await _call(self.directory.find, kind, value)
            case effects.FindAll(kind, value):
                assert self._find_all is not None
                return await _call(self._find_all, kind, value)
            case effects.Swap(number, current, new):
                return await _call(self.directory.replace_key_hash, number, current, new)
            case effects.Mark(number, value):
                return await _call(self.directory.set_must_change, number, value)
            case effects.Hash(key):
                return await _call(hash_key, self.crypt_context, key.reveal())
            case effects.Verify(key, stored):
                return await _call(verify_key, self.crypt_context, key.reveal(), stored)
            case effects.Submit(job):
                if isinstance(self._delivery, BackgroundMailer):
                    # A pipe write or a queue push: quicker than a thread hop.
                    return self._delivery.submit(job)
                return await _call(self._delivery.submit, job)
            case effects.Send(message):
                return await _call(self.mailer.send, message)
            case effects.StandIn(scheme):
                return await _call(stand_in_hash, self.crypt_context, scheme)
            case effects.Emit(event):
                # On the loop: the dispatcher's queue takes it without a thread hop.
                return self._events.put(event)
            case effects.Attempt(nonce, lifetime):
                return await self._attempts.spend(nonce, lifetime)
            case effects.Refund(nonce, lifetime):
                return await self._attempts.refund(nonce, lifetime)
        assert self.limiter is not None
        match effect:
            case effects.Hit(limit, value):
                return await self.limiter.hit(limit, value)
            case effects.HitClient(value, known):
                return await self.limiter.hit_client(value, known=known)
            case effects.HitMailbox(value, known, sends):
                return await self.limiter.hit_mailbox(value, known=known, sends=sends)
            case effects.Claim(limit, value):
                return await self.limiter.claim(limit, value)
            case effects.Clear(limit, value):
                return await self.limiter.clear(limit, value)
            case effects.Test(limit, value):
                return await self.limiter.test(limit, value)
            case effects.RetryAfter(limit, value):
                return await self.limiter.retry_after(limit, value)
        raise TypeError(f"unknown effect {type(effect).__name__}")


async def _call(function: Callable[..., Any], *args: Any) -> Any:
    """Await ``function(*args)`` if it is a coroutine function, else run it in a thread."""
    if _is_async(function):
        return await function(*args)
    try:
        return await asyncio.to_thread(function, *args)
    except Exception:
        raise
    except BaseException as exc:  # noqa: BLE001 - wrapped, raised again by the driver
        # asyncio throws a thread's exception into this coroutine; thrown in,
        # GeneratorExit would end it, and the flow must still undo its work.
        raise effects.Interrupted(exc) from None


def _is_async(function: Callable[..., Any]) -> bool:
    target = function.func if isinstance(function, functools.partial) else function
    return inspect.iscoroutinefunction(target)
