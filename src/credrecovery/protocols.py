"""What a host provides: where clients are stored, and how mail leaves.

Both are structural protocols; any object with these methods will do.
"""

from __future__ import annotations

from email.message import EmailMessage
from typing import Protocol, runtime_checkable

from .identifiers import IdentifierKind
from .models import Client

__all__ = ["ClientDirectory", "Mailer"]


@runtime_checkable
class ClientDirectory(Protocol):
    """Read clients and swap their key hash. The host's storage, behind two methods."""

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
class Mailer(Protocol):
    """Deliver one ready-made message."""

    def send(self, message: EmailMessage) -> None:
        """Send ``message`` to the recipients in its ``To`` header.

        Return only once the message is accepted for delivery; raise on any
        failure. The message is complete, with ``From``, ``To``, ``Subject``,
        ``Date`` and ``Message-ID`` set; do not add recipients.
        """
        ...
