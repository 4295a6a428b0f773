"""A credrecovery ClientDirectory over the panel's Django models."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator

from django.db import DatabaseError, IntegrityError, transaction
from passlib.context import CryptContext

from credrecovery import Client, DirectoryError, IdentifierKind, normalize_identifier
from credrecovery.keys import default_context

from . import models


class DjangoDirectory:
    """Find clients in ``recovery.models`` and swap their key hash with one conditional UPDATE.

    Values arrive normalized by the service. Database failures raise
    :class:`DirectoryError`, whose message names the action only: a database's
    own text may quote a row. A miss reads no row while a hit reads one; a host
    worried about that timing can pad lookups, as the shipped SQLite adapter does.
    """

    def __init__(
        self, *, crypt_context: CryptContext | None = None, using: str = "default"
    ) -> None:
        self._crypt_context = crypt_context
        self._using = using

    def __repr__(self) -> str:
        return f"DjangoDirectory(using={self._using!r})"

    def find(self, kind: IdentifierKind, value: str) -> Client | None:
        """The client ``value`` names, or ``None``; for a shared address, the lowest number."""
        found = self.find_all(kind, value, limit=1)
        return found[0] if found else None

    def find_all(self, kind: IdentifierKind, value: str, *, limit: int = 50) -> list[Client]:
        """Every client ``value`` names, ordered by number, at most ``limit`` (at least 1)."""
        if limit < 1:
            raise ValueError("limit must be at least 1")
        rows = models.Client.objects.using(self._using)
        kind = IdentifierKind(kind)
        if kind is IdentifierKind.CLIENT_NUMBER:
            rows = rows.filter(number=value)
        elif kind is IdentifierKind.EMAIL:
            rows = rows.filter(email=value)  # the primary address only
        else:
            rows = rows.filter(domains__domain=value)
        fields = ("number", "email", "key_hash", "name", "locale")
        with self._database("look up a client"):
            return [Client(*row) for row in rows.order_by("number").values_list(*fields)[:limit]]

    def replace_key_hash(self, number: str, current: str, new: str) -> bool:
        """Store ``new`` if the hash is still ``current``: one UPDATE, atomic across processes."""
        with self._database("replace a key hash"):
            changed = (
                models.Client.objects.using(self._using)
                .filter(number=number, key_hash=current)
                .update(key_hash=new)
            )
        return changed == 1

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

        Values are normalized as the service looks them up, and written in one
        transaction. Raises :class:`ValueError` when the number or a domain is taken.
        """
        if (key is None) == (key_hash is None):
            raise ValueError("give exactly one of key and key_hash")
        if key is not None:
            key_hash = (self._crypt_context or default_context()).hash(key)
        if not key_hash:
            raise ValueError("key_hash must not be empty")
        client = Client(
            number=normalize_identifier(IdentifierKind.CLIENT_NUMBER, number),
            email=normalize_identifier(IdentifierKind.EMAIL, email),
            key_hash=key_hash,
            name=name,
            locale=locale,
        )
        names = dict.fromkeys(normalize_identifier(IdentifierKind.DOMAIN, d) for d in domains)
        try:
            with self._database("add a client"), transaction.atomic(using=self._using):
                row = models.Client.objects.using(self._using).create(
                    number=client.number,
                    email=client.email,
                    key_hash=client.key_hash,
                    name=client.name,
                    locale=client.locale,
                )
                models.Domain.objects.using(self._using).bulk_create(
                    models.Domain(domain=domain, client=row) for domain in names
                )
        except DirectoryError as exc:
            if isinstance(exc.__cause__, IntegrityError):
                raise ValueError("the client number or one of the domains is taken") from None
            raise
        return client

    @contextlib.contextmanager
    def _database(self, action: str) -> Iterator[None]:
        try:
            yield
        except DatabaseError as exc:
            raise DirectoryError(f"the client directory failed to {action}") from exc
