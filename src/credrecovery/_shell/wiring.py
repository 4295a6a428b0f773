"""How a shell takes the objects a host passes: what it checks and what it adapts."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

from ..jobs import MAX_CLIENTS_PER_MAIL

__all__ = ["_find_all_of", "_require_methods"]


def _find_all_of(directory: object) -> Callable[..., Any] | None:
    """The directory's optional ``find_all``, asking for no more than a mail lists."""
    find_all = getattr(directory, "find_all", None)
    if not callable(find_all):
        return None
    try:
        takes_limit = "limit" in inspect.signature(find_all).parameters
    except (TypeError, ValueError):
        takes_limit = False
    if not takes_limit:
        return find_all  # type: ignore[no-any-return]
    # One more than a mail lists, to know that some were left out.
    return functools.partial(find_all, limit=MAX_CLIENTS_PER_MAIL + 1)


def _require_methods(value: object, role: str, protocol: str, names: tuple[str, ...]) -> None:
    """Raise :class:`TypeError` at construction for a wiring mistake, naming what is missing."""
    missing = [name for name in names if not callable(getattr(value, name, None))]
    if missing:
        methods = " and ".join(f"{name}()" for name in missing)
        raise TypeError(
            f"the {role} ({type(value).__name__}) has no {methods}: "
            f"a {protocol} needs {', '.join(names)}"
        )
