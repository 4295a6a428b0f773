"""Plain records exchanged between the service, directories and hosts."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Client:
    """A client of the panel, as a directory returns it.

    ``email`` is the primary address, the only one recovery mail goes to.
    ``key_hash`` is the passlib hash of the current access key; it is left out
    of the repr so that it never reaches a log by accident.
    """

    number: str
    email: str
    key_hash: str = dataclasses.field(repr=False)
    name: str = ""
    locale: str | None = None


@dataclasses.dataclass(frozen=True)
class Confirmation:
    """What a successful :meth:`RecoveryService.confirm` reports.

    The new access key is deliberately absent: it only travels by mail.
    """

    number: str
    email: str


@dataclasses.dataclass(frozen=True)
class Login:
    """What a successful :meth:`RecoveryService.authenticate` reports: who signed in."""

    number: str
    email: str
