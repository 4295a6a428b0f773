"""Driving a flow: send each effect's result, or throw its error, back in."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from .effects import Effect, Flow, Interrupted

__all__ = ["advance", "run"]

_T = TypeVar("_T")


def advance(flow: Flow[_T], result: Any, error: BaseException | None) -> tuple[bool, Any]:
    """One step of ``flow``: ``(False, next effect)`` or ``(True, its return value)``.

    ``error``, what the last effect raised, is thrown in instead of ``result``.
    """
    try:
        if error is not None:
            thrown = error if isinstance(error, Exception) else Interrupted(error)
            return False, flow.throw(thrown)
        return False, flow.send(result)
    except StopIteration as stop:
        return True, stop.value
    except Interrupted as stopped:
        raise stopped.original from None


def run(flow: Flow[_T], perform: Callable[[Effect], Any]) -> _T:
    """Drive ``flow`` to its end, performing each effect with ``perform``."""
    result: Any = None
    error: BaseException | None = None
    while True:
        done, value = advance(flow, result, error)
        if done:
            return value  # type: ignore[no-any-return]
        result, error = None, None
        try:
            result = perform(value)
        except BaseException as exc:  # noqa: BLE001 - thrown into the flow, which decides
            error = exc
