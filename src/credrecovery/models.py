"""Plain records exchanged between the service, directories and hosts."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Client:
    """A client of the panel, as a directory returns it.

    ``email`` is the primary address, the only one recovery mail goes to.
    ``key_hash`` is the passlib hash of the current access key; it is left out
    of the repr so that it never reaches a log by accident. ``domains`` are
    the client's domain names, for directories that return them: a key the
    client chooses may not contain one. ``must_change`` tells that the current
    key was generated and mailed, and should be replaced at the next sign-in,
    for directories that store it (see ``set_must_change`` in
    :class:`~credrecovery.protocols.ClientDirectory`). ``active`` false marks
    a closed or suspended account: the service treats it as unknown, mails it
    nothing, refuses its links and its sign-ins. A directory that knows no
    such state leaves it at its default, true.
    """

    number: str
    email: str
    key_hash: str = dataclasses.field(repr=False)
    name: str = ""
    locale: str | None = None
    domains: tuple[str, ...] = ()
    must_change: bool = False
    active: bool = True


@dataclasses.dataclass(frozen=True)
class Confirmation:
    """What a successful :meth:`RecoveryService.confirm` reports.

    The new access key is deliberately absent: it only travels by mail.
    """

    number: str
    email: str


@dataclasses.dataclass(frozen=True)
class Login:
    """What a successful :meth:`RecoveryService.authenticate` reports: who signed in.

    ``must_change`` tells that the key was generated and mailed by a recovery
    (for directories that keep the mark): the panel should ask for a new one,
    with :meth:`RecoveryService.change_key`, before anything else.
    """

    number: str
    email: str
    must_change: bool = False
