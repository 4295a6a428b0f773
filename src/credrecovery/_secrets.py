"""A holder for a secret string that no repr, log or error tracker prints."""

from __future__ import annotations

__all__ = ["Secret"]


class Secret:
    """Wraps a secret so that ``repr()``, ``str()`` and ``vars()`` of its holder show nothing.

    Error trackers record the locals of failing frames; holding a new access
    key or a password in a ``Secret`` keeps it out of what they capture.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def __repr__(self) -> str:
        return "<secret>"

    __str__ = __repr__

    def reveal(self) -> str:
        """The secret itself; call it only where the value is used."""
        return self._value
