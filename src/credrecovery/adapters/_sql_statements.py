"""The statements both SQLAlchemy directories run, and how their rows decode into clients.

:class:`_Statements` holds the tables, the column mapping and every statement;
the sync and asyncio directories differ only in how they run them.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from typing import Any

try:
    import sqlalchemy as sa
except ImportError as exc:  # pragma: no cover - exercised with the extra missing
    raise ImportError(
        "credrecovery.sqlalchemy needs SQLAlchemy 2: pip install 'credrecovery[sqlalchemy]'"
    ) from exc

from .._records import ClientRecord
from ..identifiers import IdentifierKind, parse_kind
from ..models import Client
from ._sql_errors import _directory_error
from ._sql_tables import _OWN_MAPPING, TableMapping, _mapped_tables, _own_tables

_MAX_BIGINT = 2**63 - 1
_DECIMAL = re.compile(r"[0-9]{1,19}")
# Joins a client's domains in a lookup; no domain name holds one.
_DOMAIN_SEPARATOR = ","


class _Statements:
    """The tables, the column mapping and every statement a SQLAlchemy directory runs.

    Shared by :class:`SQLAlchemyDirectory` and the asyncio directory, which
    then differ only in how they run these statements.
    """

    def __init__(self, mapping: TableMapping | None) -> None:
        self.own_schema = mapping is None
        self.mapping = _OWN_MAPPING if mapping is None else mapping
        self.metadata = sa.MetaData(schema=self.mapping.schema)
        if mapping is None:
            self.clients, self.domains = _own_tables(self.metadata)
        else:
            self.clients, self.domains = _mapped_tables(self.metadata, mapping)
        m = self.mapping
        self.number = self.clients.c[m.number]
        self.email = self.clients.c[m.email]
        self.key_hash = self.clients.c[m.key_hash]
        self.domain = self.domains.c[m.domain]
        self.domain_client = self.domains.c[m.domain_client]
        self.client_columns: list[sa.ColumnElement[Any]] = [
            self.number.label("number"),
            self.email.label("email"),
            self.key_hash.label("key_hash"),
        ]
        if m.name is not None:
            self.client_columns.append(self.clients.c[m.name].label("name"))
        if m.locale is not None:
            self.client_columns.append(self.clients.c[m.locale].label("locale"))
        self.must_change: sa.Column[Any] | None = (
            None if m.must_change is None else self.clients.c[m.must_change]
        )
        if self.must_change is not None:
            self.client_columns.append(self.must_change.label("must_change"))
        # A column the directory may write, or the host's condition, read in every lookup.
        self.active: sa.Column[Any] | None = None
        if isinstance(m.active, str):
            self.active = self.clients.c[m.active]
            self.client_columns.append(self.active.label("active"))
        elif m.active is not None:
            self.client_columns.append(
                sa.case((m.active, sa.true()), else_=sa.false()).label("active")
            )
        self._lookups = {kind: self._lookup(kind) for kind in IdentifierKind}
        # The same columns in every lookup, by position.
        self._columns = [c.name for c in self._lookups[IdentifierKind.EMAIL].selected_columns]

    def describe(self, url: sa.URL) -> str:
        """What a repr shows: the URL without its password, and the tables."""
        shown = url.render_as_string(hide_password=True)
        return f"{shown!r}, clients={self.clients.fullname!r}, domains={self.domains.fullname!r}"

    def check_own_schema(self) -> None:
        if not self.own_schema:
            raise TypeError("create_schema only applies to the directory's own tables")

    def create_own_schema(self, connection: sa.Connection) -> None:
        """Create the own tables where missing, and add the columns an earlier version lacked."""
        self.metadata.create_all(connection)
        schema = _translated_schema(connection, self.clients)
        present = {
            column["name"]
            for column in sa.inspect(connection).get_columns(self.clients.name, schema=schema)
        }
        assert self.must_change is not None and self.active is not None
        for column in (self.must_change, self.active):
            if column.name not in present:
                # The column as create_all writes it, NOT NULL with its default,
                # so that rows already there read as its default: false, and open.
                spec = sa.schema.CreateColumn(column).compile(dialect=connection.dialect)
                connection.exec_driver_sql(
                    f"ALTER TABLE {_quoted_table(connection, self.clients)} ADD {spec}"
                )

    def set_must_change(self, number: str, value: bool) -> sa.Update | None:
        """The ``UPDATE`` of the flag; ``None`` without a column or when ``number`` cannot match."""
        number_value = self.number_value(number)
        if self.must_change is None or number_value is None:
            return None
        return (
            sa.update(self.clients)
            .where(self.number == number_value)
            .values({self.must_change: bool(value)})
        )

    def set_active(self, number: str, active: bool) -> sa.Update | None:
        """The ``UPDATE`` that opens or closes an account; ``None`` when ``number`` cannot match.

        Raises :class:`TypeError` when the mapping names no ``active`` column.
        """
        if self.active is None:
            raise TypeError(self._no_active_column())
        number_value = self.number_value(number)
        if number_value is None:
            return None
        return (
            sa.update(self.clients)
            .where(self.number == number_value)
            .values({self.active: bool(active)})
        )

    def _no_active_column(self) -> str:
        if self.mapping.active is None:
            return "this directory's TableMapping names no active column"
        return (
            "this directory's TableMapping decides with a condition which accounts are "
            "open; change the columns it reads"
        )

    def select(
        self, kind: IdentifierKind | str, value: str, limit: int
    ) -> tuple[IdentifierKind, sa.Select[Any] | None, dict[str, Any]]:
        """The lookup for ``value`` and its parameters: ``None`` when it cannot match.

        Checks ``limit``. The statement is one of three built with the
        directory (see :meth:`_lookup`); only the parameters change per call,
        so SQLAlchemy finds its compiled form in its cache without walking a
        new statement.
        """
        kind = parse_kind(kind)
        if limit < 1:
            raise ValueError("limit must be at least 1")
        probe: str | int = value
        if kind is IdentifierKind.CLIENT_NUMBER:
            number = self.number_value(value)
            if number is None:
                return kind, None, {}
            probe = number
        fetch = limit if kind is IdentifierKind.EMAIL else 2
        return kind, self._lookups[kind], {"probe": probe, "fetch": fetch}

    def _lookup(self, kind: IdentifierKind) -> sa.Select[Any]:
        """The statement that looks ``probe`` up by ``kind``, reading ``fetch`` rows.

        It reads as many rows whether or not anything matched: ``limit`` for
        an email, two for a number or a domain (two, to tell a column that is
        not unique). They are the rows that follow ``probe`` in the index that
        serves the lookup, a hit's own first, wrapping round to the first rows
        when too few follow; a ``hit`` column tells the matches, and the rest
        are decoded like them, then dropped.
        """
        key: sa.ColumnElement[Any]
        source: sa.FromClause
        if kind is IdentifierKind.CLIENT_NUMBER:
            key, source = self.number, self.clients
        elif kind is IdentifierKind.EMAIL:
            key, source = self._email(), self.clients
        else:
            key = self._stored_domain()
            source = self.domains.join(self.clients, self.number == self.domain_client)
        probe = sa.bindparam("probe", type_=key.type)
        fetch = sa.bindparam("fetch", type_=sa.Integer())
        usable = (self.email.is_not(None), self.key_hash.is_not(None))

        def part(hit: sa.ColumnElement[Any], where: sa.ColumnElement[bool]) -> sa.Select[Any]:
            # Wrapped: SQLite takes no ORDER BY or LIMIT on a part of a compound.
            return sa.select(
                sa.select(*self.client_columns, hit.label("hit"))
                .select_from(source)
                .where(where, *usable)
                .order_by(key, self.number)
                .limit(fetch)
                .subquery()
            )

        # Both parts are limited on their own and the whole again: the
        # databases run UNION ALL's parts in order and stop at the limit, so
        # the wrapped part is read only when too few rows follow ``probe``.
        # Each part is ordered by its index, so that it reads no more rows
        # than it returns.
        picked = (
            sa.union_all(part(key == probe, key >= probe), part(sa.false(), key < probe))
            .limit(fetch)
            .subquery("picked")
        )
        # The clients' domains by the same statement, so that a hit costs no
        # second round trip that a miss would not. Read around the lookup
        # rather than in it, so that they leave its plan alone and are read
        # for the picked rows only. The separator is SQL text, not a bound
        # literal, which SQLAlchemy would render anew on every call.
        separator: Any = sa.literal_column(f"'{_DOMAIN_SEPARATOR}'")
        domains = (
            sa.select(sa.func.aggregate_strings(self._stored_domain(), separator))
            .where(self.domain_client == picked.c.number)
            .scalar_subquery()
        )
        return sa.select(picked, domains.label("domains")).order_by(picked.c.number)

    def found(
        self, kind: IdentifierKind, rows: Sequence[Sequence[Any]], limit: int
    ) -> list[Client]:
        """The matched clients of a lookup's ``rows``, by number; stand-ins are dropped.

        ``rows`` hold the lookup's columns in order: SQLAlchemy's rows or a
        driver's. Raises when a number or domain names several clients.
        """
        # Every row is decoded, a stand-in as a match, so that both cost alike.
        mappings = [dict(zip(self._columns, row, strict=True)) for row in rows]
        read = [(bool(row["hit"]), self.client(row)) for row in mappings]
        clients = [client for hit, client in read if hit and client is not None]
        if kind is IdentifierKind.DOMAIN:
            # A host table may list one client's domain twice: one client still.
            clients = list({client.number: client for client in clients}.values())
        if kind is not IdentifierKind.EMAIL and len(clients) > 1:
            raise _directory_error(
                "several clients match one number or domain; the mapped column must be unique"
            )
        return clients[:limit]

    def replace(self, number: str, current: str, new: str) -> sa.Update | None:
        """The conditional ``UPDATE``; ``None`` when ``number`` cannot match."""
        number_value = self.number_value(number)
        if number_value is None:
            return None
        return (
            sa.update(self.clients)
            .where(self.number == number_value, self.key_hash == current)
            .values({self.key_hash: new})
        )

    def stored_record(self, record: ClientRecord) -> tuple[Client, str | int]:
        """The client as it reads back, and its number as the column stores it."""
        number_value = self.stored_number(record.client.number)
        return dataclasses.replace(record.client, number=str(number_value)), number_value

    def taken_checks(
        self, number: str | int, domains: Sequence[str]
    ) -> list[tuple[sa.Select[Any], str]]:
        """Queries that find a row when ``number`` or one of ``domains`` is taken, each with
        the refusal to raise then."""
        checks = [
            (
                self._exists(self.clients, self.number == number),
                "a client with this number already exists",
            )
        ]
        if domains:
            checks.append(
                (
                    self._exists(self.domains, self._stored_domain().in_(domains)),
                    "one of these domains belongs to another client",
                )
            )
        return checks

    @staticmethod
    def _exists(table: sa.Table, condition: sa.ColumnElement[bool]) -> sa.Select[Any]:
        return sa.select(sa.literal(1)).select_from(table).where(condition).limit(1)

    def inserts(
        self, client: Client, number: str | int, domains: Sequence[str]
    ) -> list[tuple[sa.Insert, list[dict[str, Any]]]]:
        """The inserts that add ``client`` and its ``domains``, each with its rows."""
        inserts = [(sa.insert(self.clients), [self.client_row(client, number)])]
        if domains:
            inserts.append((sa.insert(self.domains), [self.domain_row(d, number) for d in domains]))
        return inserts

    def number_value(self, number: str) -> str | int | None:
        """``number`` as the number column compares it; ``None`` if it cannot match."""
        if not self.mapping.number_is_integer:
            return number
        if not _DECIMAL.fullmatch(number):
            return None
        value = int(number)
        return value if value <= _MAX_BIGINT else None

    def stored_number(self, number: str) -> str | int:
        value = self.number_value(number)
        if value is None:
            raise ValueError("this directory's client numbers are non-negative integers")
        return value

    def _email(self) -> sa.ColumnElement[str]:
        if self.mapping.email_lowercased:
            return self.email
        return sa.func.lower(self.email)

    def _stored_domain(self) -> sa.ColumnElement[str]:
        if self.mapping.domain_lowercased:
            return self.domain
        return sa.func.lower(self.domain)

    def client_row(self, client: Client, number: str | int) -> dict[str, Any]:
        m = self.mapping
        row: dict[str, Any] = {m.number: number, m.email: client.email, m.key_hash: client.key_hash}
        if m.name is not None:
            row[m.name] = client.name
        if m.locale is not None:
            row[m.locale] = client.locale
        if m.must_change is not None:
            row[m.must_change] = client.must_change
        if self.active is not None:
            row[self.active.name] = bool(client.active)
        elif not client.active:
            raise ValueError(f"a closed client cannot be stored: {self._no_active_column()}")
        return row

    def domain_row(self, domain: str, number: str | int) -> dict[str, Any]:
        return {self.mapping.domain: domain, self.mapping.domain_client: number}

    @staticmethod
    def client(row: Mapping[str, Any]) -> Client | None:
        # A row without an address or a hash cannot be recovered; it reads as absent.
        if row["email"] is None or row["key_hash"] is None:
            return None
        name = row.get("name")
        locale = row.get("locale")
        domains = row["domains"]
        return Client(
            number=str(row["number"]),
            email=str(row["email"]),
            key_hash=str(row["key_hash"]),
            name="" if name is None else str(name),
            locale=str(locale) if locale else None,
            # A host table may list a domain twice; databases join in no set order.
            domains=tuple(sorted(set(str(domains).split(_DOMAIN_SEPARATOR)))) if domains else (),
            must_change=bool(row.get("must_change")),
            # NULL, from a nullable host column, reads as closed.
            active=bool(row["active"]) if "active" in row else True,
        )


def _translated_schema(connection: sa.Connection, table: sa.Table) -> str | None:
    """``table``'s schema, translated by the connection's ``schema_translate_map``."""
    translate = connection.get_execution_options().get("schema_translate_map") or {}
    if table.schema not in translate:
        return table.schema
    schema: str | None = translate[table.schema] or connection.dialect.default_schema_name
    return schema


def _quoted_table(connection: sa.Connection, table: sa.Table) -> str:
    """``table``'s quoted name, with its schema translated as SQLAlchemy would."""
    preparer = connection.dialect.identifier_preparer
    schema = _translated_schema(connection, table)
    name = preparer.quote(table.name)
    return name if schema is None else f"{preparer.quote_schema(schema)}.{name}"
