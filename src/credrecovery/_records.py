"""Validation shared by the adapters' ``add_client``."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterable

from passlib.context import CryptContext

from ._keyprep import hash_key
from .identifiers import IdentifierKind, normalize_identifier
from .keys import default_context
from .models import Client

# Built once: adapters without a context of their own hash every added key with it.
_default_context = functools.cache(default_context)


@dataclasses.dataclass(frozen=True)
class ClientRecord:
    """A client ready to store: every value normalized, the key hashed.

    ``domains`` are normalized, without duplicates and sorted, so that a
    client reads back from any directory equal to the one ``add_client``
    returned; ``client.domains`` holds the same tuple.
    """

    client: Client
    domains: tuple[str, ...]

    @classmethod
    def build(
        cls,
        number: str,
        email: str,
        *,
        key: str | None,
        key_hash: str | None,
        domains: Iterable[str],
        name: str,
        locale: str | None,
        crypt_context: CryptContext | None,
        active: bool = True,
    ) -> ClientRecord:
        """Normalize and hash; raises :class:`ValueError` on bad input.

        ``active`` false adds the client closed (see :attr:`Client.active`).
        """
        if (key is None) == (key_hash is None):
            raise ValueError("give exactly one of key and key_hash")
        if key is not None:
            key_hash = hash_key(crypt_context or _default_context(), key)
        assert key_hash is not None
        if not key_hash:
            raise ValueError("key_hash must not be empty")
        normalized_domains = tuple(
            sorted({normalize_identifier(IdentifierKind.DOMAIN, d) for d in domains})
        )
        client = Client(
            number=normalize_identifier(IdentifierKind.CLIENT_NUMBER, number),
            email=normalize_identifier(IdentifierKind.EMAIL, email),
            key_hash=key_hash,
            name=name,
            locale=locale,
            domains=normalized_domains,
            active=bool(active),
        )
        return cls(client, normalized_domains)
