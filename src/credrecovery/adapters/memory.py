"""In-memory directory and mailer, for tests, notebooks and the demo."""

from __future__ import annotations

import bisect
import dataclasses
import random
import threading
from collections.abc import Iterable
from email.message import EmailMessage

from passlib.context import CryptContext

from .._records import ClientRecord
from ..identifiers import IdentifierKind, parse_kind
from ..mail.viewer import MessageView, render_html
from ..models import Client

__all__ = ["MemoryDirectory", "MemoryMailer", "MessageView", "Outbox", "render_html"]


class MemoryDirectory:
    """A thread-safe :class:`~credrecovery.ClientDirectory` held in a dict.

    Numbers and domains are unique; several clients may share a primary
    address, and :meth:`find_all` returns them all. Clients come back with
    their domains, with the flag :meth:`set_must_change` keeps, and open or
    closed as :meth:`add_client` or :meth:`set_active` left them.

    A lookup reads as many records whether or not anything matched: one for
    a number or a domain, ``limit`` for an email (see :meth:`find_all`).
    """

    def __init__(self, *, crypt_context: CryptContext | None = None) -> None:
        self._lock = threading.Lock()
        self._clients: dict[str, Client] = {}
        # Every number holding the address, kept sorted.
        self._by_email: dict[str, list[str]] = {}
        self._by_domain: dict[str, str] = {}
        # Every key of each index, in the order added: where a miss's stand-ins come from.
        self._numbers: list[str] = []
        self._emails: list[str] = []
        self._domains: list[str] = []
        self._random = random.Random()  # noqa: S311 - picks stand-ins, guards no secret
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
        active: bool = True,
    ) -> Client:
        """Add a client, given exactly one of ``key`` or an imported ``key_hash``.

        Values are normalized as the service will look them up. The primary
        address may be another client's too. ``active=False`` adds it closed
        (see :attr:`Client.active <credrecovery.models.Client.active>`).
        Raises :class:`ValueError` when the number or a domain is taken.
        """
        record = ClientRecord.build(
            number,
            email,
            key=key,
            key_hash=key_hash,
            domains=domains,
            name=name,
            locale=locale,
            crypt_context=self._crypt_context,
            active=active,
        )
        with self._lock:
            if record.client.number in self._clients:
                raise ValueError("a client with this number already exists")
            if any(domain in self._by_domain for domain in record.domains):
                raise ValueError("one of these domains belongs to another client")
            self._clients[record.client.number] = record.client
            self._numbers.append(record.client.number)
            if record.client.email not in self._by_email:
                self._emails.append(record.client.email)
            bisect.insort(self._by_email.setdefault(record.client.email, []), record.client.number)
            for domain in record.domains:
                self._by_domain[domain] = record.client.number
            self._domains.extend(record.domains)
        return record.client

    def find(self, kind: IdentifierKind, value: str) -> Client | None:
        """Return the client ``value`` names, or ``None``; ``value`` is normalized.

        For an address several clients share, the first of :meth:`find_all`'s.
        """
        # The same steps whether the list is empty or not.
        return next(iter(self.find_all(kind, value, limit=1)), None)

    def find_all(self, kind: IdentifierKind, value: str, *, limit: int = 50) -> list[Client]:
        """Every client the normalized ``value`` names, by client number, at most ``limit``.

        A number or a domain names at most one client; an email, every client
        whose primary address it is. The service asks for a small ``limit``.
        Raises :class:`ValueError` when ``limit`` is below 1.

        A hit and a miss read as many records: one for a number or a domain,
        ``limit`` for an email. A miss reads what a random key of the same
        index names; slots left over are filled with other clients' records.
        What did not match is dropped.
        """
        kind = parse_kind(kind)
        if limit < 1:
            raise ValueError("limit must be at least 1")
        width = limit if kind is IdentifierKind.EMAIL else 1
        with self._lock:
            # A miss looks up a random key of the same index instead, and
            # reads what that names, so that it touches as much as a hit.
            keys = {
                IdentifierKind.CLIENT_NUMBER: self._numbers,
                IdentifierKind.EMAIL: self._emails,
                IdentifierKind.DOMAIN: self._domains,
            }[kind]
            if not keys:
                return []
            stand_in = keys[self._random.randrange(len(keys))]
            numbers: list[str]
            if kind is IdentifierKind.CLIENT_NUMBER:
                hit = value in self._clients
                numbers = [value if hit else stand_in]
            elif kind is IdentifierKind.EMAIL:
                hit = value in self._by_email
                numbers = self._by_email[value if hit else stand_in][:width]
            else:
                hit = value in self._by_domain
                numbers = [self._by_domain[value if hit else stand_in]]
            # Slices fill the slots left over, so that a hit and a miss touch
            # as many records (width) whatever share of them the value names.
            pool, need = self._numbers, width - len(numbers)
            start = self._random.randrange(len(pool))
            others = pool[start : start + need]
            while len(others) < need:
                others += pool[: need - len(others)]
            read = [self._clients[number] for number in numbers + others]
            # Built alike and emptied for a miss: both sides allocate and free as much.
            found_all = read[: len(numbers)]
            if not hit:
                found_all.clear()
            return found_all

    def replace_key_hash(self, number: str, current: str, new: str) -> bool:
        """Atomically store ``new`` if client ``number``'s hash is still ``current``."""
        with self._lock:
            client = self._clients.get(number)
            if client is None or client.key_hash != current:
                return False
            self._clients[number] = dataclasses.replace(client, key_hash=new)
            return True

    def set_must_change(self, number: str, value: bool) -> None:
        """Record whether client ``number`` must replace its key at the next sign-in.

        Does nothing for an unknown number.
        """
        with self._lock:
            client = self._clients.get(number)
            if client is not None:
                self._clients[number] = dataclasses.replace(client, must_change=bool(value))

    def set_active(self, number: str, active: bool) -> None:
        """Open (``True``) or close (``False``) client ``number``'s account.

        A closed client is found as it is, with ``active`` false; the service
        then treats it as unknown. Does nothing for an unknown number.
        """
        with self._lock:
            client = self._clients.get(number)
            if client is not None:
                self._clients[number] = dataclasses.replace(client, active=bool(active))


class MemoryMailer:
    """A :class:`~credrecovery.Mailer` that keeps every message in :attr:`outbox`."""

    def __init__(self) -> None:
        self.outbox: Outbox = Outbox()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"MemoryMailer(<{len(self.outbox)} messages>)"

    def send(self, message: EmailMessage) -> None:
        """Append ``message`` to :attr:`outbox`."""
        with self._lock:
            self.outbox.append(message)


class Outbox(list[EmailMessage]):
    """The messages a :class:`MemoryMailer` sent, oldest first.

    A plain list in every other respect. In a notebook it renders each
    message as a card (see :func:`render_html`); :meth:`show` renders one.
    """

    def _repr_html_(self) -> str:
        # A copy: a delivery thread may append while this renders.
        messages = list(self)
        if not messages:
            return '<div class="credrecovery-outbox"><p>The outbox is empty.</p></div>'
        count = "1 message" if len(messages) == 1 else f"{len(messages)} messages"
        cards = "".join(render_html(message) for message in messages)
        return f'<div class="credrecovery-outbox"><p>{count}, oldest first.</p>{cards}</div>'

    def show(self, index: int = -1) -> MessageView:
        """The message at ``index``, the latest by default, to render alone.

        Raises :class:`IndexError` when there is no such message.
        """
        return MessageView(self[index])
