"""In-memory directory and mailer, for tests, notebooks and the demo."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from email.message import EmailMessage

from passlib.context import CryptContext

from ._records import ClientRecord
from .identifiers import IdentifierKind, parse_kind
from .models import Client

__all__ = ["MemoryDirectory", "MemoryMailer"]


class MemoryDirectory:
    """A thread-safe :class:`~credrecovery.ClientDirectory` held in a dict."""

    def __init__(self, *, crypt_context: CryptContext | None = None) -> None:
        self._lock = threading.Lock()
        self._clients: dict[str, Client] = {}
        self._by_email: dict[str, str] = {}
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

        Values are normalized as the service will look them up. Raises
        :class:`ValueError` when the number, email or a domain is taken.
        """
        record = ClientRecord.build(
            number, email, key=key, key_hash=key_hash, domains=domains,
            name=name, locale=locale, crypt_context=self._crypt_context,
        )
        with self._lock:
            if record.client.number in self._clients:
                raise ValueError("a client with this number already exists")
            if record.client.email in self._by_email:
                raise ValueError("a client with this primary email already exists")
            if any(domain in self._by_domain for domain in record.domains):
                raise ValueError("one of these domains belongs to another client")
            self._clients[record.client.number] = record.client
            self._by_email[record.client.email] = record.client.number
            for domain in record.domains:
                self._by_domain[domain] = record.client.number
        return record.client

    def find(self, kind: IdentifierKind, value: str) -> Client | None:
        """Return the client ``value`` names, or ``None``; ``value`` is normalized."""
        kind = parse_kind(kind)
        with self._lock:
            if kind is IdentifierKind.CLIENT_NUMBER:
                number: str | None = value
            elif kind is IdentifierKind.EMAIL:
                number = self._by_email.get(value)
            else:
                number = self._by_domain.get(value)
            return self._clients.get(number) if number is not None else None

    def replace_key_hash(self, number: str, current: str, new: str) -> bool:
        """Atomically store ``new`` if client ``number``'s hash is still ``current``."""
        with self._lock:
            client = self._clients.get(number)
            if client is None or client.key_hash != current:
                return False
            self._clients[number] = Client(
                client.number, client.email, new, client.name, client.locale
            )
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
