"""In-memory directory and mailer, for tests, notebooks and the demo."""

from __future__ import annotations

import bisect
import dataclasses
import threading
from collections.abc import Iterable
from email.message import EmailMessage

from passlib.context import CryptContext

from ._records import ClientRecord
from .identifiers import IdentifierKind, parse_kind
from .models import Client

__all__ = ["MemoryDirectory", "MemoryMailer"]


class MemoryDirectory:
    """A thread-safe :class:`~credrecovery.ClientDirectory` held in a dict.

    Numbers and domains are unique; several clients may share a primary
    address, and :meth:`find_all` returns them all.
    """

    def __init__(self, *, crypt_context: CryptContext | None = None) -> None:
        self._lock = threading.Lock()
        self._clients: dict[str, Client] = {}
        # Every number holding the address, kept sorted.
        self._by_email: dict[str, list[str]] = {}
        self._by_domain: dict[str, str] = {}
        self._crypt_context = crypt_context

    def __repr__(self) -> str:
        return f"MemoryDirectory(<{len(self._clients)} clients>)"

    def add_client(
        self,
        number: str,
        email: str,
        *,
        key: str | None = None,
        key_hash: str | None = None,
        domains: Iterable[str] = (),
        name: str = "",
        locale: str | None = None,
    ) -> Client:
        """Add a client, given exactly one of ``key`` or an imported ``key_hash``.

        Values are normalized as the service will look them up. The primary
        address may be another client's too. Raises :class:`ValueError` when
        the number or a domain is taken.
        """
        record = ClientRecord.build(
            number, email, key=key, key_hash=key_hash, domains=domains,
            name=name, locale=locale, crypt_context=self._crypt_context,
        )
        with self._lock:
            if record.client.number in self._clients:
                raise ValueError("a client with this number already exists")
            if any(domain in self._by_domain for domain in record.domains):
                raise ValueError("one of these domains belongs to another client")
            self._clients[record.client.number] = record.client
            bisect.insort(self._by_email.setdefault(record.client.email, []),
                          record.client.number)
            for domain in record.domains:
                self._by_domain[domain] = record.client.number
        return record.client

    def find(self, kind: IdentifierKind, value: str) -> Client | None:
        """Return the client ``value`` names, or ``None``; ``value`` is normalized.

        For an address several clients share, the first of :meth:`find_all`'s.
        """
        found = self.find_all(kind, value, limit=1)
        return found[0] if found else None

    def find_all(self, kind: IdentifierKind, value: str, *, limit: int = 50) -> list[Client]:
        """Every client the normalized ``value`` names, by client number, at most ``limit``.

        A number or a domain names at most one client; an email, every client
        whose primary address it is. The service asks for a small ``limit``.
        Raises :class:`ValueError` when ``limit`` is below 1.
        """
        kind = parse_kind(kind)
        if limit < 1:
            raise ValueError("limit must be at least 1")
        with self._lock:
            numbers: list[str]
            if kind is IdentifierKind.CLIENT_NUMBER:
                numbers = [value]
            elif kind is IdentifierKind.EMAIL:
                numbers = self._by_email.get(value, [])
            else:
                owner = self._by_domain.get(value)
                numbers = [] if owner is None else [owner]
            found = (self._clients.get(number) for number in numbers[:limit])
            return [client for client in found if client is not None]

    def replace_key_hash(self, number: str, current: str, new: str) -> bool:
        """Atomically store ``new`` if client ``number``'s hash is still ``current``."""
        with self._lock:
            client = self._clients.get(number)
            if client is None or client.key_hash != current:
                return False
            self._clients[number] = dataclasses.replace(client, key_hash=new)
            return True


class MemoryMailer:
    """A :class:`~credrecovery.Mailer` that keeps every message in :attr:`outbox`."""

    def __init__(self) -> None:
        self.outbox: list[EmailMessage] = []
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"MemoryMailer(<{len(self.outbox)} messages>)"

    def send(self, message: EmailMessage) -> None:
        """Append ``message`` to :attr:`outbox`."""
        with self._lock:
            self.outbox.append(message)
