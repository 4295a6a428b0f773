"""A clock the tests set and advance by hand."""

from __future__ import annotations

__all__ = ["FakeClock"]


class FakeClock:
    """A settable clock, in seconds since the epoch."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.start = self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
