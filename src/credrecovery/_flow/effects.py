"""The effects a flow yields, frozen dataclasses a driver performs, and Interrupted."""

from __future__ import annotations

import dataclasses
from collections.abc import Generator
from email.message import EmailMessage
from typing import Any, TypeVar

from .._secrets import Secret
from ..events import Event
from ..identifiers import IdentifierKind
from ..jobs import ConfirmationJob
from .limits import LimitName

__all__ = [
    "Attempt",
    "Claim",
    "Clear",
    "Effect",
    "Emit",
    "Find",
    "FindAll",
    "Flow",
    "Hash",
    "Hit",
    "HitClient",
    "HitMailbox",
    "Interrupted",
    "Mark",
    "Refund",
    "RetryAfter",
    "Send",
    "StandIn",
    "Submit",
    "Swap",
    "Test",
    "Verify",
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

    limit: LimitName
    value: str = dataclasses.field(repr=False)


@dataclasses.dataclass(frozen=True, slots=True)
class HitClient:
    """Count one ``per_client`` hit, for a known client or a miss."""

    value: str = dataclasses.field(repr=False)
    known: bool


@dataclasses.dataclass(frozen=True, slots=True)
class HitMailbox:
    """Count one ``per_mailbox`` hit, for a known client or a miss; with ``sends`` False,
    touch the counter without counting, at the same cost."""

    value: str = dataclasses.field(repr=False)
    known: bool
    sends: bool


@dataclasses.dataclass(frozen=True, slots=True)
class Claim:
    """Take the whole of a limit at once if its counter is empty: whether it was."""

    limit: LimitName
    value: str = dataclasses.field(repr=False)


@dataclasses.dataclass(frozen=True, slots=True)
class Clear:
    """Forget a limit's hits for a value."""

    limit: LimitName
    value: str = dataclasses.field(repr=False)


@dataclasses.dataclass(frozen=True, slots=True)
class Test:
    """Whether a limit would take one more hit, without counting it."""

    limit: LimitName
    value: str = dataclasses.field(repr=False)


@dataclasses.dataclass(frozen=True, slots=True)
class RetryAfter:
    """Seconds until a limit takes a hit again."""

    limit: LimitName
    value: str = dataclasses.field(repr=False)


@dataclasses.dataclass(frozen=True, slots=True)
class Hash:
    """Hash a new key with the service's policy; slow, so an async driver uses a thread."""

    key: Secret


@dataclasses.dataclass(frozen=True, slots=True)
class StandIn:
    """A hash of a random key under ``scheme``, with the policy's settings for it: what a
    sign-in verifies for each scheme the stored hash is not under. Slow, as Hash is."""

    scheme: str


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


@dataclasses.dataclass(frozen=True, slots=True)
class Emit:
    """Queue an event for the host's ``on_event`` hook; never raises, never waits for it."""

    event: Event


@dataclasses.dataclass(frozen=True, slots=True)
class Attempt:
    """Count one attempt at a code ticket's code: whether the ticket has one left.

    ``lifetime`` is the ticket's, in seconds, for a ticket with an expiry of its own.
    """

    nonce: str = dataclasses.field(repr=False)
    lifetime: float | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Refund:
    """Give back the attempt a right code spent on its ticket."""

    nonce: str = dataclasses.field(repr=False)
    lifetime: float | None = None


Effect = (
    Find
    | FindAll
    | Swap
    | Mark
    | Hit
    | HitClient
    | HitMailbox
    | Claim
    | Clear
    | Test
    | RetryAfter
    | Hash
    | StandIn
    | Verify
    | Submit
    | Send
    | Emit
    | Attempt
    | Refund
)
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
