"""Where a SQLAlchemy directory keeps its clients: its own tables, or a host's mapped ones.

:class:`TableMapping` describes a host's existing tables; :func:`_own_tables`
defines the directory's own, and :func:`_mapped_tables` the mapped columns of
a host's. Both SQLAlchemy directories build their statements on these.
"""

from __future__ import annotations

import dataclasses
from typing import Any

try:
    import sqlalchemy as sa
except ImportError as exc:  # pragma: no cover - exercised with the extra missing
    raise ImportError(
        "credrecovery.sqlalchemy needs SQLAlchemy 2: pip install 'credrecovery[sqlalchemy]'"
    ) from exc

__all__ = ["TableMapping"]
# Characters no plain column name holds but a condition written as text does.
_CONDITION_CHARACTERS = frozenset(" =<>!'\"()")


@dataclasses.dataclass(frozen=True, kw_only=True)
class TableMapping:
    """Where a host's existing tables keep what the directory needs.

    Every field is keyword-only. Give table and column names as they are
    spelled in the database.

    ``clients_table`` holds one row per client: ``number`` (the client number),
    ``email`` (the primary address), ``key_hash`` (the passlib hash of the
    access key) and, when the table has them, ``name``, ``locale`` and
    ``must_change``; an unmapped ``name`` reads as ``""``, an unmapped
    ``locale`` as ``None``.

    ``must_change`` names a boolean column (``BOOLEAN`` on PostgreSQL; where
    there is no boolean type, an integer holding 0 or 1, as SQLAlchemy's
    :class:`~sqlalchemy.types.Boolean` stores it) telling that the client's
    key was generated and must be replaced at the next sign-in; ``NULL``
    reads as false. Without it, clients read with ``must_change`` false and
    :meth:`SQLAlchemyDirectory.set_must_change` does nothing.

    ``active`` tells which clients' accounts are open; the others read with
    :attr:`Client.active <credrecovery.models.Client.active>` false, and the
    service treats them as unknown. Without it every client is open. It is
    either the name of a boolean column (true for an open account; ``NULL``
    reads as closed), which :meth:`SQLAlchemyDirectory.set_active` and
    ``add_client(..., active=False)`` then write, or a condition over the
    clients table, a SQLAlchemy expression built by the host, which the
    lookups select as ``CASE WHEN <condition> THEN true ELSE false END``:
    ``sa.column("status") != "Closed"`` (the value is sent as a bound
    parameter) or ``sa.text("status <> 'Closed'")`` (SQL text, inserted as
    it is); a ``NULL`` outcome reads as closed. Write its columns with
    :func:`sqlalchemy.column`, unattached to a table object; a column the
    domains table has too must be qualified, e.g.
    ``sa.literal_column("accounts.status")``. A condition is the host's code:
    never build it from a client's or a request's data. A string is always a
    column name, quoted as one; SQL text in a string is refused. With a
    condition, only the host opens and closes accounts, in its own columns:
    :meth:`SQLAlchemyDirectory.set_active` raises :class:`TypeError`, and
    adding a closed client :class:`ValueError`, as without ``active``.

    ``domains_table`` holds one row per domain: ``domain`` and
    ``domain_client``, the column holding the owning client's number. A
    lookup returns a client's domains with it, lower-cased when
    ``domain_lowercased`` is off, sorted and without duplicates.

    ``schema`` qualifies both tables (a PostgreSQL schema, a MySQL database).

    ``number_is_integer`` tells that ``number`` and ``domain_client`` are
    integer columns. Numbers are then read back as decimal text; a client
    number that is not a non-negative 64-bit integer finds nobody, and one
    with leading zeros finds the same client as without them.

    ``email_lowercased`` (the default) promises that ``email`` holds addresses
    lower-cased, as :func:`~credrecovery.normalize_identifier` does; lookups
    then compare with ``=`` and use a plain index on the column. Set it to
    ``False`` when the column holds mixed case: lookups then compare
    ``lower(email)``, which only an expression index serves, e.g. on PostgreSQL
    ``CREATE INDEX ON clients (lower(email))``. Without one, every lookup by
    email scans the table. ``domain_lowercased`` is the same for ``domain``;
    domains must otherwise be stored as A-labels without a trailing dot.

    ``number`` and ``domain`` should each be unique (or, with the flags above
    off, unique once lower-cased) and indexed: a number or domain matching
    several clients raises :class:`~credrecovery.DirectoryError`, and only a
    unique constraint stops two concurrent :meth:`SQLAlchemyDirectory.add_client`
    calls from both succeeding. ``email`` should be indexed; it may be shared
    by several clients, which :meth:`SQLAlchemyDirectory.find_all` returns in
    number order. ``domain_client`` should be indexed too: a lookup reads the
    domains of the clients it found through it.
    """

    clients_table: str
    number: str
    email: str
    key_hash: str
    name: str | None = None
    locale: str | None = None
    must_change: str | None = None
    active: str | sa.ColumnElement[Any] | sa.TextClause | None = None
    domains_table: str
    domain: str
    domain_client: str
    schema: str | None = None
    number_is_integer: bool = False
    email_lowercased: bool = True
    domain_lowercased: bool = True

    def __post_init__(self) -> None:
        required = (
            self.clients_table,
            self.number,
            self.email,
            self.key_hash,
            self.domains_table,
            self.domain,
            self.domain_client,
        )
        if not all(isinstance(value, str) and value for value in required):
            raise ValueError("every table and column name of a TableMapping must be given")
        _check_active(self.active)


def _check_active(active: object) -> None:
    """Refuse an ``active`` that is neither a column name nor a self-contained condition."""
    if active is None or isinstance(active, sa.TextClause):
        return
    if isinstance(active, str):
        if not active:
            raise ValueError("TableMapping.active must name a column")
        if _CONDITION_CHARACTERS & set(active):
            raise ValueError(
                "TableMapping.active as text names a column; give a condition as a SQLAlchemy "
                'expression, e.g. sa.column("status") != "Closed"'
            )
        return
    if not isinstance(active, sa.ColumnElement):
        raise TypeError("TableMapping.active is a column name or a SQLAlchemy condition")
    # A column of another table object would join that table into every lookup.
    if active._from_objects:
        raise ValueError(
            "write the columns of TableMapping.active with sa.column(), unattached to a table"
        )


_OWN_MAPPING = TableMapping(
    clients_table="credrecovery_clients",
    number="number",
    email="email",
    key_hash="key_hash",
    name="name",
    locale="locale",
    must_change="must_change",
    active="active",
    domains_table="credrecovery_domains",
    domain="domain",
    domain_client="client_number",
)


def _own_tables(metadata: sa.MetaData) -> tuple[sa.Table, sa.Table]:
    # Constraint and index names are explicit so that migrations generated
    # from this metadata are the same on every database.
    clients = sa.Table(
        _OWN_MAPPING.clients_table,
        metadata,
        # 32 is the longest client number normalize_identifier accepts; 320 the
        # longest input it reads at all.
        sa.Column("number", sa.String(32), nullable=False),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("key_hash", sa.Text(), nullable=False),
        sa.Column("name", sa.String(255), nullable=False, server_default=""),
        sa.Column("locale", sa.String(35), nullable=True),
        sa.Column("must_change", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("active", sa.Boolean(), nullable=False, server_default=sa.true()),
        sa.PrimaryKeyConstraint("number", name="pk_credrecovery_clients"),
        # Not unique: resellers hold several client numbers under one address.
        sa.Index("ix_credrecovery_clients_email", "email"),
    )
    domains = sa.Table(
        _OWN_MAPPING.domains_table,
        metadata,
        sa.Column("domain", sa.String(253), nullable=False),
        sa.Column("client_number", sa.String(32), nullable=False),
        sa.PrimaryKeyConstraint("domain", name="pk_credrecovery_domains"),
        sa.ForeignKeyConstraint(
            ["client_number"],
            [clients.c.number],
            name="fk_credrecovery_domains_client_number",
            ondelete="CASCADE",
        ),
        sa.Index("ix_credrecovery_domains_client_number", "client_number"),
    )
    return clients, domains


def _mapped_tables(metadata: sa.MetaData, mapping: TableMapping) -> tuple[sa.Table, sa.Table]:
    # Only the mapped columns: the tables are never created from these
    # definitions, and statements built from them touch nothing else.
    def number_type() -> sa.types.TypeEngine[Any]:
        return sa.BigInteger() if mapping.number_is_integer else sa.String()

    client_columns = [
        sa.Column(mapping.number, number_type()),
        sa.Column(mapping.email, sa.String()),
        sa.Column(mapping.key_hash, sa.String()),
    ]
    client_columns += [
        sa.Column(column, sa.String())
        for column in (mapping.name, mapping.locale)
        if column is not None
    ]
    for flag in (mapping.must_change, mapping.active):
        if isinstance(flag, str):
            client_columns.append(sa.Column(flag, sa.Boolean()))
    clients = sa.Table(mapping.clients_table, metadata, *client_columns)
    domains = sa.Table(
        mapping.domains_table,
        metadata,
        sa.Column(mapping.domain, sa.String()),
        sa.Column(mapping.domain_client, number_type()),
    )
    return clients, domains
