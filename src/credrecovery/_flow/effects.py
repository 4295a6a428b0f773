"""The effects a flow yields, frozen dataclasses a driver performs, and Interrupted."""

from __future__ import annotations

import dataclasses
from collections.abc import Generator
from email.message import EmailMessage
from typing import Any, TypeVar

from .._secrets import Secret
from ..identifiers import IdentifierKind
from ..jobs import ConfirmationJob

__all__ = [
    "Effect", "Find", "FindAll", "Flow", "Hash", "Hit", "HitClient", "Interrupted", "Mark",
    "RetryAfter", "Send", "Submit", "Swap", "Test", "Verify",
]

_T = TypeVar("_T")


@dataclasses.dataclass(frozen=True, slots=True)
class Find:
    """Look one client up: the directory's ``find``."""

    kind: IdentifierKind
    value: str


@dataclasses.dataclass(frozen=True, slots=True)
class FindAll:
    """Every client an identifier names: the directory's optional ``find_all``."""

    kind: IdentifierKind
    value: str


@dataclasses.dataclass(frozen=True, slots=True)
class Swap:
    """The directory's compare-and-set of a key hash."""

    number: str
    current: str
    new: str = dataclasses.field(repr=False)


@dataclasses.dataclass(frozen=True, slots=True)
class Hit:
    """Count one hit of a limit; the result is whether it was within the limit."""

    limit: str
    value: str = dataclasses.field(repr=False)


@dataclasses.dataclass(frozen=True, slots=True)
class HitClient:
    """Count one ``per_client`` hit, for a known client or a miss."""

    value: str = dataclasses.field(repr=False)
    known: bool


@dataclasses.dataclass(frozen=True, slots=True)
class Test:
    """Whether a limit would take one more hit, without counting it."""

    limit: str
    value: str = dataclasses.field(repr=False)


@dataclasses.dataclass(frozen=True, slots=True)
class RetryAfter:
    """Seconds until a limit takes a hit again."""

    limit: str
    value: str = dataclasses.field(repr=False)


@dataclasses.dataclass(frozen=True, slots=True)
class Hash:
    """Hash a new key with the service's policy; slow, so an async driver uses a thread."""

    key: Secret


@dataclasses.dataclass(frozen=True, slots=True)
class Verify:
    """Check a key against a stored hash: ``(valid, upgraded hash or None)``."""

    key: Secret
    stored: str = dataclasses.field(repr=False)


@dataclasses.dataclass(frozen=True, slots=True)
class Submit:
    """Hand delivery one confirmation job."""

    job: ConfirmationJob


@dataclasses.dataclass(frozen=True, slots=True)
class Send:
    """Send the credentials mail through the mailer, now."""

    message: EmailMessage = dataclasses.field(repr=False)


@dataclasses.dataclass(frozen=True, slots=True)
class Mark:
    """Say whether a client must change its key at the next sign-in: the optional
    ``set_must_change`` of the directory."""

    number: str
    value: bool


Effect = (Find | FindAll | Swap | Mark | Hit | HitClient | Test | RetryAfter | Hash | Verify
          | Submit | Send)
Flow = Generator[Effect, Any, _T]


class Interrupted(Exception):
    """Carries a ``KeyboardInterrupt``, ``SystemExit`` or the like into a flow.

    A generator cannot go on after ``GeneratorExit`` is thrown into it, nor
    should a flow's ``except Exception`` swallow an interruption; wrapped, it
    lets the flow undo what it must, and the driver raises the original.
    """

    def __init__(self, original: BaseException) -> None:
        super().__init__(type(original).__name__)
        self.original = original
