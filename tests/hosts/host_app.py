"""A host's own code, written from the documentation alone: directories and mailers.

These are the classes a panel writes around credrecovery, kept in a module of
the host (never ``__main__``), with state of their own that the host reads
back: an outbox list, a counter, rows in its database. They follow
docs/custom-adapters.md and use only names the documentation shows.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import re
import sqlite3
import threading
from collections.abc import Iterable
from email import message_from_bytes, policy
from email.message import EmailMessage

from credrecovery import Client, IdentifierKind, default_context, normalize_identifier

# --- The panel's settings -------------------------------------------------------------------

SECRET = "host-suite-secret-key-0123456789abcdef"
CONFIRM_URL = "https://panel.example.com/recover/{token}"
SENDER = "Client Panel <panel@example.com>"
REQUESTER = "203.0.113.7"
OLD_KEY = "Old-Access-Key-2024"
CHOSEN_KEY = "correct horse battery staple"
EMAIL = "ana@example.com"
DOMAIN = "ejemploxmundo.com.ar"


@functools.cache
def old_key_hash() -> str:
    """The current key's hash under the default policy, made once: argon2 is slow on purpose."""
    return str(default_context().hash(OLD_KEY))


# --- A synchronous directory: the panel's own SQLite tables (docs/custom-adapters.md) ----

_COLUMNS = "c.number, c.email, c.key_hash, c.full_name, c.language"


def _one_row(matched: str, source: str, order: str) -> str:
    near = f"SELECT {matched}, {_COLUMNS} FROM {source} WHERE {order} >= :value"
    first = f"SELECT 0, {_COLUMNS} FROM {source}"
    return (
        f"SELECT * FROM ({near} ORDER BY {order} LIMIT 1) UNION ALL"
        f" SELECT * FROM ({first} ORDER BY {order} LIMIT 1) LIMIT 1"
    )


_DOMAINS = "customer_domains d JOIN customers c ON c.number = d.customer"
_FIND = {
    IdentifierKind.CLIENT_NUMBER: _one_row("c.number = :value", "customers c", "c.number"),
    IdentifierKind.EMAIL: _one_row("c.email = :value", "customers c", "c.email"),
    IdentifierKind.DOMAIN: _one_row("d.domain = :value", _DOMAINS, "d.domain"),
}
_SWAP = "UPDATE customers SET key_hash = ? WHERE number = ? AND key_hash = ?"
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS customers (number TEXT PRIMARY KEY, email TEXT NOT NULL,"
    " key_hash TEXT NOT NULL, full_name TEXT, language TEXT)",
    "CREATE INDEX IF NOT EXISTS customers_email ON customers (email)",
    "CREATE TABLE IF NOT EXISTS customer_domains (domain TEXT PRIMARY KEY,"
    " customer TEXT NOT NULL REFERENCES customers (number))",
    "CREATE TABLE IF NOT EXISTS outgoing_mail (id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " recipient TEXT NOT NULL, subject TEXT NOT NULL, raw BLOB NOT NULL)",
)


def _connect(path: str) -> contextlib.closing[sqlite3.Connection]:
    # Autocommit, and a new connection per call: safe to share between threads.
    return contextlib.closing(sqlite3.connect(path, timeout=5.0, isolation_level=None))


def create_panel_database(path: str) -> None:
    """Create the panel's tables: customers, their domains and its outgoing mail."""
    with _connect(path) as conn:
        for statement in _SCHEMA:
            conn.execute(statement)


def add_customer(
    path: str,
    number: str,
    email: str,
    key_hash: str,
    *,
    domains: Iterable[str] = (),
    name: str = "",
    language: str | None = None,
) -> Client:
    """Sign a customer up, storing values normalized the way they are looked up."""
    client = Client(
        number=normalize_identifier(IdentifierKind.CLIENT_NUMBER, number),
        email=normalize_identifier(IdentifierKind.EMAIL, email),
        key_hash=key_hash,
        name=name,
        locale=language,
    )
    with _connect(path) as conn:
        conn.execute(
            "INSERT INTO customers VALUES (?, ?, ?, ?, ?)",
            (client.number, client.email, key_hash, name, language),
        )
        for domain in domains:
            conn.execute(
                "INSERT INTO customer_domains VALUES (?, ?)",
                (normalize_identifier(IdentifierKind.DOMAIN, domain), client.number),
            )
    return client


class CustomersDirectory:
    """The panel's own customers table as a ClientDirectory."""

    def __init__(self, path: str) -> None:
        self._path = path

    def find(self, kind: IdentifierKind, value: str) -> Client | None:
        with _connect(self._path) as conn:
            row = conn.execute(_FIND[kind], {"value": value}).fetchone()
        if row is None:  # an empty table
            return None
        matched, number, email, key_hash, name, locale = row
        # Built on a miss too, so that a miss decodes what a hit decodes.
        client = Client(
            number=str(number), email=email, key_hash=key_hash, name=name or "", locale=locale
        )
        return client if matched else None

    def replace_key_hash(self, number: str, current: str, new: str) -> bool:
        with _connect(self._path) as conn:
            return bool(conn.execute(_SWAP, (new, number, current)).rowcount == 1)


# --- An asyncio directory: clients in a dict --------------------------------------------


class AsyncDictDirectory:
    """The host's clients in a dict, for an AsyncRecoveryService."""

    def __init__(self) -> None:
        self.rows: dict[str, Client] = {}  # client number -> Client
        self.owners: dict[str, str] = {}  # domain -> client number
        self._lock = threading.Lock()

    def add(
        self,
        number: str,
        email: str,
        key_hash: str,
        *,
        domains: Iterable[str] = (),
        name: str = "",
        locale: str | None = None,
    ) -> Client:
        client = Client(
            normalize_identifier(IdentifierKind.CLIENT_NUMBER, number),
            normalize_identifier(IdentifierKind.EMAIL, email),
            key_hash,
            name,
            locale,
        )
        with self._lock:
            self.rows[client.number] = client
            for domain in domains:
                self.owners[normalize_identifier(IdentifierKind.DOMAIN, domain)] = client.number
        return client

    async def find(self, kind: IdentifierKind, value: str) -> Client | None:
        with self._lock:
            if kind is IdentifierKind.CLIENT_NUMBER:
                return self.rows.get(value)
            if kind is IdentifierKind.EMAIL:
                return next((c for c in self.rows.values() if c.email == value), None)
            return self.rows.get(self.owners.get(value, ""))

    async def replace_key_hash(self, number: str, current: str, new: str) -> bool:
        with self._lock:
            client = self.rows.get(number)
            if client is None or client.key_hash != current:
                return False
            self.rows[number] = Client(client.number, client.email, new, client.name, client.locale)
            return True


# --- Mailers -----------------------------------------------------------------------------


class OutboxMailer:
    """Keeps every message it is given in ``outbox``, as a host's test double or spool does."""

    def __init__(self) -> None:
        self.outbox: list[EmailMessage] = []

    def send(self, message: EmailMessage) -> None:
        self.outbox.append(message)


class AsyncOutboxMailer:
    """The asyncio twin of :class:`OutboxMailer`."""

    def __init__(self) -> None:
        self.outbox: list[EmailMessage] = []

    async def send(self, message: EmailMessage) -> None:
        self.outbox.append(message)


class DatabaseMailer:
    """Writes each message to the panel's ``outgoing_mail`` table, for its own relay to send."""

    def __init__(self, path: str) -> None:
        self._path = path

    def send(self, message: EmailMessage) -> None:
        with _connect(self._path) as conn:
            conn.execute(
                "INSERT INTO outgoing_mail (recipient, subject, raw) VALUES (?, ?, ?)",
                (str(message["To"]), str(message["Subject"]), message.as_bytes()),
            )

    def sent(self) -> list[EmailMessage]:
        """Every message written so far, oldest first."""
        with _connect(self._path) as conn:
            rows = conn.execute("SELECT raw FROM outgoing_mail ORDER BY id").fetchall()
        return [
            message_from_bytes(raw, policy=policy.default)  # type: ignore[misc]
            for (raw,) in rows
        ]


class CountingMailer:
    """Sends through another mailer and counts the outcomes, as the panel's metrics do."""

    def __init__(self, inner: OutboxMailer) -> None:
        self.inner = inner
        self.counts: collections.Counter[str] = collections.Counter()

    def send(self, message: EmailMessage) -> None:
        try:
            self.inner.send(message)
        except Exception:
            self.counts["failed"] += 1
            raise
        self.counts["sent"] += 1


# --- Reading the mails, as the host's own tests do ----------------------------------------


def link_token(message: EmailMessage) -> str:
    """The token of the confirmation link in a mail's plain-text part."""
    text = _plain(message)
    match = re.search(r"/recover/([A-Za-z0-9_.-]+)", text)
    assert match, "no confirmation link in the mail"
    return match.group(1)


def mailed_key(message: EmailMessage) -> str:
    """The new access key a credentials mail carries."""
    match = re.search(r"Access key:\s+(\S+)", _plain(message))
    assert match, "no access key in the mail"
    return match.group(1)


def _plain(message: EmailMessage) -> str:
    body = message.get_body(("plain",))
    assert body is not None, "the mail has no plain-text part"
    return str(body.get_content())  # type: ignore[attr-defined]
