"""What a service reports to the host's ``on_event`` hook: one :class:`Event` per outcome.

An event is plain, frozen data: its :class:`EventKind`, why (``reason``), the
client number where it is known, the requester and support operator the
caller named, and when it happened on the service's clock. It never holds a
token, a code, a key, a hash or the identifier a visitor typed.

A ``requested`` event's reason tells a hit from a miss: exactly what the
recovery form must never show. The hook is the host's own, for its metrics,
audit trail or session store; never pass an event, or anything derived from
it, back into a web answer. See ``docs/events.md``.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable, Mapping
from datetime import datetime

__all__ = ["REASONS", "Event", "EventHook", "EventKind"]


class EventKind(enum.StrEnum):
    """What happened; each value is the event's name in metrics and logs."""

    #: A recovery was asked for: ``hit``, ``miss``, ``withheld`` (a limit kept
    #: the mail back) or ``rate_limited`` (the requester was refused).
    REQUESTED = "requested"
    #: A mail left: ``confirmation``, ``credentials`` or ``key_change_notice``.
    MAILED = "mailed"
    #: A mail was given up on, with the same reasons as ``mailed``.
    DELIVERY_FAILED = "delivery_failed"
    #: A link (``link``) or a code (``code``) was confirmed: the key was replaced.
    CONFIRMED = "confirmed"
    #: A confirmation was refused: ``expired``, ``used``, ``invalid``,
    #: ``wrong_code`` or ``rate_limited``.
    REJECTED = "rejected"
    #: A client's key was replaced: ``generated`` (and mailed) or ``chosen``.
    KEY_CHANGED = "key_changed"
    #: A client signed in.
    SIGNED_IN = "signed_in"
    #: A sign-in (or a key change's check of the current key) failed:
    #: ``wrong_key``, ``unknown`` (no usable client has the number) or
    #: ``changed_meanwhile`` (another change of the key won).
    SIGNIN_FAILED = "signin_failed"
    #: A sign-in limit refused the attempt; the reason is the limit's name.
    SIGNIN_THROTTLED = "signin_throttled"
    #: Support issued a link: ``mailed``, or ``not_mailed`` (handed to the operator);
    #: or a code: ``code_mailed`` or ``code_not_mailed``.
    ISSUED = "issued"


#: The reasons each kind is reported with (``None``: it has none). A sign-in
#: limit's name is ``signin_throttled``'s reason: see :class:`~credrecovery.LimitName`.
REASONS: Mapping[EventKind, tuple[str | None, ...]] = {
    EventKind.REQUESTED: ("hit", "miss", "withheld", "rate_limited"),
    EventKind.MAILED: ("confirmation", "credentials", "key_change_notice"),
    EventKind.DELIVERY_FAILED: ("confirmation", "credentials", "key_change_notice"),
    EventKind.CONFIRMED: ("link", "code"),
    EventKind.REJECTED: ("expired", "used", "invalid", "wrong_code", "rate_limited"),
    EventKind.KEY_CHANGED: ("generated", "chosen"),
    EventKind.SIGNED_IN: (None,),
    EventKind.SIGNIN_FAILED: ("wrong_key", "unknown", "changed_meanwhile"),
    EventKind.SIGNIN_THROTTLED: (
        "failed_signins",
        "failed_signins_per_requester",
        "failed_signins_per_client",
    ),
    EventKind.ISSUED: ("mailed", "not_mailed", "code_mailed", "code_not_mailed"),
}


@dataclasses.dataclass(frozen=True, slots=True)
class Event:
    """One outcome, as the service's ``on_event`` hook receives it.

    ``time`` is an aware UTC datetime on the service's clock. ``number`` is
    the client number where the service knows whose outcome it is (never on
    a miss, nor for an unknown number); ``requester`` is what the caller
    passed as ``requester=`` (``None`` for delivery outcomes); ``operator``
    is who issued a link or a code (:meth:`~credrecovery.RecoveryService.issue_link`,
    :meth:`~credrecovery.RecoveryService.issue_code`).
    """

    kind: EventKind
    time: datetime
    reason: str | None = None
    number: str | None = None
    requester: str | None = None
    operator: str | None = None


#: A synchronous hook: called with each event, on a thread of the service's own.
EventHook = Callable[[Event], object]
