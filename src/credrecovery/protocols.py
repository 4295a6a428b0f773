"""What a host provides: where clients are stored, how mail leaves, and where delivery runs.

All are structural protocols; any object with these methods will do. The
directory and the mailer each have an asyncio twin, for
:class:`~credrecovery.AsyncRecoveryService`, with the same contract.
"""

from __future__ import annotations

from email.message import EmailMessage
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from .identifiers import IdentifierKind
from .jobs import ConfirmationJob
from .models import Client

if TYPE_CHECKING:
    from .mail.composer import Composer

__all__ = [
    "AsyncClientDirectory",
    "AsyncMailer",
    "AsyncMustChangeDirectory",
    "ClientDirectory",
    "DeliveryQueue",
    "Mailer",
    "MustChangeDirectory",
]


@runtime_checkable
class ClientDirectory(Protocol):
    """Read clients and swap their key hash. The host's storage, behind two methods.

    A directory where several clients may share one primary address should
    also have ``find_all(kind, value, *, limit) -> Sequence[Client]``: every
    client that ``value`` names, ordered by client number, at most ``limit``
    of them, with the normalization and errors of :meth:`find`. The service
    detects it at run time and, for an email, mails one confirmation that
    lists them all. Without it, :meth:`find` alone serves, unchanged.

    A directory that can remember that a client's key must be replaced should
    also have ``set_must_change(number, value) -> None`` (see
    :class:`MustChangeDirectory`) and report the flag as
    :attr:`Client.must_change <credrecovery.models.Client.must_change>`. The
    service detects it at run time: it sets the flag once it has mailed a
    generated key, clears it when the client chooses a key, and puts it back
    when that fails. Without it, clients read with ``must_change`` false.
    A directory may also return each client's
    :attr:`~credrecovery.models.Client.domains`, normalized.

    A directory that knows closed or suspended accounts returns them as they
    are, with :attr:`Client.active <credrecovery.models.Client.active>`
    false, rather than leaving them out: the service then treats such a
    client as unknown, at the same cost (no mail, its links refused, its
    sign-ins ``None``), and mails a shared address for its open clients only.
    One that returns clients without ``active`` works as before: every client
    is open. The shipped directories open and close accounts with
    ``set_active(number, active) -> None``, which the service never calls; a
    host's directory may have it too, with ``set_must_change``'s rules, and
    the directory contract then checks it.

    A directory that holds connections or files may have ``close()`` (and an
    asyncio one ``aclose()``), which the host calls at shutdown, never the
    service. The shipped directories' close alike: it releases what they
    hold, may be called again, and every later call raises
    :class:`~credrecovery.DirectoryError`; the directory contract checks that
    of any directory with ``close``.
    """

    def find(self, kind: IdentifierKind, value: str) -> Client | None:
        """Return the client that ``value`` identifies, or ``None``.

        ``value`` arrives already normalized by :func:`normalize_identifier`
        for ``kind``: a lower-case A-label domain, a lower-cased email, or a
        stripped client number. Match the email against the client's primary
        address only, and a domain against any of the client's domains. Return
        ``None`` rather than raising when nothing matches. Raise on storage
        failure; the service wraps it in :class:`DirectoryError`.
        """
        ...

    def replace_key_hash(self, number: str, current: str, new: str) -> bool:
        """Store ``new`` as client ``number``'s key hash if it is still ``current``.

        This must be an atomic compare-and-set: of several concurrent calls
        with the same ``current``, at most one may return ``True``. Return
        ``False``, without writing, when the stored hash differs or the client
        does not exist. Raise on storage failure, having written nothing.
        """
        ...


@runtime_checkable
class MustChangeDirectory(Protocol):
    """The optional part of a :class:`ClientDirectory` that keeps the "must change" flag.

    Not a requirement: the service looks for ``set_must_change`` at run time.
    A directory with it returns the stored flag as
    :attr:`Client.must_change <credrecovery.models.Client.must_change>` from
    ``find`` and ``find_all``.
    """

    def set_must_change(self, number: str, value: bool) -> None:
        """Record whether client ``number`` must replace its key at the next sign-in.

        ``number`` is normalized, as :meth:`ClientDirectory.replace_key_hash`
        gets it. Change nothing else of the record. For an unknown number do
        nothing and return ``None``, without raising. Raise on storage
        failure, having written nothing; the service wraps it in
        :class:`DirectoryError`.
        """
        ...


@runtime_checkable
class Mailer(Protocol):
    """Deliver one ready-made message."""

    def send(self, message: EmailMessage) -> None:
        """Send ``message`` to the recipients in its ``To`` header.

        Return only once the message is accepted for delivery; raise on any
        failure. The message is complete, with ``From``, ``To``, ``Subject``,
        ``Date`` and ``Message-ID`` set; do not add recipients.
        """
        ...


@runtime_checkable
class DeliveryQueue(Protocol):
    """Where confirmation jobs go from the request path: a thread, a process or a task queue.

    :class:`~credrecovery.BackgroundMailer` is the default; ``credrecovery.celery``
    ships one on Celery. A queue gets one job per request, a hit or a miss, and
    must treat them alike until the job is composed: the caller is timing it.
    """

    def bind(self, composer: Composer) -> None:
        """Compose jobs with ``composer``. The service calls this once, at construction.

        Raise :class:`ValueError` if the queue already serves a different service.
        """
        ...

    def submit(self, job: ConfirmationJob) -> None:
        """Take ``job`` for delivery and return at once.

        Do the same work whatever the job holds: ``job.decoy`` may be read
        only once the job is off the request path. Compose it with the bound
        composer (a :class:`ValueError` means the address cannot be mailed),
        drop it if it is a decoy, and send it otherwise, retrying temporary
        failures. Raise :class:`~credrecovery.DeliveryFailed` when the job
        cannot be taken (the queue is full or closed); the service logs it.
        """
        ...

    def flush(self, timeout: float | None = None) -> bool:
        """Wait up to ``timeout`` seconds until every job taken has left; ``False`` on timeout.

        For a queue whose jobs leave the process (a broker), "left" means
        handed to the broker.
        """
        ...

    def close(self, timeout: float | None = 30.0) -> None:
        """Flush for up to ``timeout`` seconds, then release what the queue holds.

        A second call does nothing. Once closed, :meth:`submit` raises
        :class:`~credrecovery.DeliveryFailed` (``temporary`` false), which the
        service logs as ``mail_dropped``.
        """
        ...


@runtime_checkable
class AsyncClientDirectory(Protocol):
    """Read clients and swap their key hash, as coroutines: :class:`ClientDirectory`'s twin.

    It may have ``async def find_all(kind, value, *, limit)``,
    ``async def set_must_change(number, value)`` (see
    :class:`AsyncMustChangeDirectory`) and ``async def set_active(number,
    active)``, as a :class:`ClientDirectory` may have ``find_all``,
    ``set_must_change`` and ``set_active``; it returns closed accounts with
    ``active`` false alike.
    """

    async def find(self, kind: IdentifierKind, value: str) -> Client | None: ...

    async def replace_key_hash(self, number: str, current: str, new: str) -> bool: ...


@runtime_checkable
class AsyncMustChangeDirectory(Protocol):
    """:class:`MustChangeDirectory`'s twin, for an :class:`AsyncClientDirectory`."""

    async def set_must_change(self, number: str, value: bool) -> None: ...


@runtime_checkable
class AsyncMailer(Protocol):
    """Deliver one ready-made message, as a coroutine: :class:`Mailer`'s twin."""

    async def send(self, message: EmailMessage) -> None: ...


# One contract, written once: the twins carry the sync methods' docstrings.
for _twin, _original in (
    (AsyncClientDirectory, ClientDirectory),
    (AsyncMustChangeDirectory, MustChangeDirectory),
    (AsyncMailer, Mailer),
):
    for _name in ("find", "replace_key_hash", "set_must_change", "send"):
        if hasattr(_twin, _name):
            getattr(_twin, _name).__doc__ = getattr(_original, _name).__doc__
