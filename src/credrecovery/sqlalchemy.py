"""A :class:`~credrecovery.ClientDirectory` on any database SQLAlchemy 2 speaks.

:class:`SQLAlchemyDirectory` works in one of two modes:

* **its own tables** (no ``mapping``): ``credrecovery_clients`` and
  ``credrecovery_domains``, created by :meth:`SQLAlchemyDirectory.create_schema`
  or described by :attr:`SQLAlchemyDirectory.metadata` for a migration tool;
* **the host's existing tables**, described by a :class:`TableMapping`. Only the
  mapped columns are ever read or written; the host's other columns, indexes
  and constraints are left alone and nothing is reflected.

Only SQLAlchemy Core is used; the host needs no ORM models. Lookups compare
stored values with ``=`` so that an ordinary index serves them; see
:class:`TableMapping` for what a host table must provide.

Errors from the database surface as :class:`~credrecovery.DirectoryError`
chained to SQLAlchemy's exception. SQLAlchemy's own messages quote the SQL
parameters, key hashes among them, unless the engine hides them: engines this
module creates do; create yours with ``hide_parameters=True`` as well.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import re
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

try:
    import sqlalchemy as sa
    from sqlalchemy import exc as sa_exc
except ImportError as exc:  # pragma: no cover - exercised with the extra missing
    raise ImportError(
        "credrecovery.sqlalchemy needs SQLAlchemy 2: pip install 'credrecovery[sqlalchemy]'"
    ) from exc

from passlib.context import CryptContext

from ._records import ClientRecord
from .exceptions import DirectoryError
from .identifiers import IdentifierKind, parse_kind
from .models import Client

__all__ = ["SQLAlchemyDirectory", "TableMapping"]

_MAX_BIGINT = 2**63 - 1
_DECIMAL = re.compile(r"[0-9]{1,19}")


@dataclasses.dataclass(frozen=True, kw_only=True)
class TableMapping:
    """Where a host's existing tables keep what the directory needs.

    Every field is keyword-only. Give table and column names as they are
    spelled in the database.

    ``clients_table`` holds one row per client: ``number`` (the client number),
    ``email`` (the primary address), ``key_hash`` (the passlib hash of the
    access key) and, when the table has them, ``name`` and ``locale``; an
    unmapped ``name`` reads as ``""``, an unmapped ``locale`` as ``None``.

    ``domains_table`` holds one row per domain: ``domain`` and
    ``domain_client``, the column holding the owning client's number.

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

    ``number``, ``email`` and ``domain`` should each be unique (or, with the
    flags above off, unique once lower-cased) and indexed: a lookup matching
    several clients raises :class:`~credrecovery.DirectoryError`, and only a
    unique constraint stops two concurrent :meth:`SQLAlchemyDirectory.add_client`
    calls from both succeeding.
    """

    clients_table: str
    number: str
    email: str
    key_hash: str
    name: str | None = None
    locale: str | None = None
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


_OWN_MAPPING = TableMapping(
    clients_table="credrecovery_clients",
    number="number",
    email="email",
    key_hash="key_hash",
    name="name",
    locale="locale",
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
        sa.PrimaryKeyConstraint("number", name="pk_credrecovery_clients"),
        sa.UniqueConstraint("email", name="uq_credrecovery_clients_email"),
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
    clients = sa.Table(mapping.clients_table, metadata, *client_columns)
    domains = sa.Table(
        mapping.domains_table,
        metadata,
        sa.Column(mapping.domain, sa.String()),
        sa.Column(mapping.domain_client, number_type()),
    )
    return clients, domains


@contextlib.contextmanager
def _database_errors(action: str) -> Iterator[None]:
    # SQLAlchemy's messages quote the statement's parameters; this one must
    # never carry a hash or a key, so it is fixed.
    try:
        yield
    except sa_exc.SQLAlchemyError as exc:
        raise DirectoryError(f"the client directory could not {action}") from exc


class SQLAlchemyDirectory:
    """A :class:`~credrecovery.ClientDirectory` in a SQL database.

    ``engine_or_url`` is an :class:`~sqlalchemy.engine.Engine`, or a URL from
    which one is created with ``pool_pre_ping=True`` and
    ``hide_parameters=True``. Without ``mapping`` the directory uses its own
    tables, created when ``create_schema`` is true; with a
    :class:`TableMapping` it uses the host's. To keep its own tables in
    another schema, give an engine with a ``schema_translate_map`` execution
    option or a ``search_path``.

    ``crypt_context`` hashes the keys given to :meth:`add_client`; it defaults
    to :func:`~credrecovery.keys.default_context`.
    """

    def __init__(
        self,
        engine_or_url: sa.Engine | sa.URL | str,
        *,
        mapping: TableMapping | None = None,
        crypt_context: CryptContext | None = None,
        create_schema: bool = False,
    ) -> None:
        owns_engine = not isinstance(engine_or_url, sa.Engine)
        if isinstance(engine_or_url, sa.Engine):
            self._engine = engine_or_url
        else:
            self._engine = sa.create_engine(engine_or_url, pool_pre_ping=True, hide_parameters=True)
        self._own_schema = mapping is None
        self._mapping = _OWN_MAPPING if mapping is None else mapping
        self._crypt_context = crypt_context
        self._metadata = sa.MetaData(schema=self._mapping.schema)
        if mapping is None:
            self._clients, self._domains = _own_tables(self._metadata)
        else:
            self._clients, self._domains = _mapped_tables(self._metadata, mapping)
        m = self._mapping
        self._number = self._clients.c[m.number]
        self._email = self._clients.c[m.email]
        self._key_hash = self._clients.c[m.key_hash]
        self._domain = self._domains.c[m.domain]
        self._domain_client = self._domains.c[m.domain_client]
        self._client_columns: list[sa.ColumnElement[Any]] = [
            self._number.label("number"),
            self._email.label("email"),
            self._key_hash.label("key_hash"),
        ]
        if m.name is not None:
            self._client_columns.append(self._clients.c[m.name].label("name"))
        if m.locale is not None:
            self._client_columns.append(self._clients.c[m.locale].label("locale"))
        if create_schema:
            try:
                self.create_schema()
            except BaseException:
                if owns_engine:
                    self._engine.dispose()
                raise

    def __repr__(self) -> str:
        url = self._engine.url.render_as_string(hide_password=True)
        return (
            f"SQLAlchemyDirectory({url!r}, clients={self._clients.fullname!r}, "
            f"domains={self._domains.fullname!r})"
        )

    @property
    def engine(self) -> sa.Engine:
        """The engine every statement runs on."""
        return self._engine

    @property
    def mapping(self) -> TableMapping:
        """The tables and columns in use; the built-in one in own-schema mode."""
        return self._mapping

    @property
    def metadata(self) -> sa.MetaData:
        """The tables as SQLAlchemy sees them, e.g. for Alembic's ``target_metadata``.

        In mapped mode they hold only the mapped columns; never create them.
        """
        return self._metadata

    def create_schema(self) -> None:
        """Create the directory's own tables and indexes where they are missing.

        Idempotent. Raises :class:`TypeError` with a :class:`TableMapping`: the
        host owns those tables. Raises :class:`~credrecovery.DirectoryError`
        when the database fails.
        """
        if not self._own_schema:
            raise TypeError("create_schema only applies to the directory's own tables")
        with _database_errors("create its tables"):
            self._metadata.create_all(self._engine)

    def dispose(self) -> None:
        """Close the engine's pooled connections.

        The directory stays usable: connections are opened again on demand.
        """
        self._engine.dispose()

    close = dispose

    def __enter__(self) -> SQLAlchemyDirectory:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.dispose()

    def find(self, kind: IdentifierKind | str, value: str) -> Client | None:
        """Return the client that the normalized ``value`` identifies, or ``None``.

        Raises :class:`~credrecovery.DirectoryError` when the database fails
        or when several clients match.
        """
        kind = parse_kind(kind)
        condition: sa.ColumnElement[bool]
        if kind is IdentifierKind.CLIENT_NUMBER:
            number = self._number_value(value)
            if number is None:
                return None
            condition = self._number == number
        elif kind is IdentifierKind.EMAIL:
            condition = self._email_is(value)
        else:
            # A semi-join rather than a join, so that a host table listing a
            # domain twice for one client still yields that client once.
            owners = sa.select(self._domain_client).where(self._domain_is(value))
            condition = self._number.in_(owners.scalar_subquery())
        statement = sa.select(*self._client_columns).where(condition).limit(2)
        with _database_errors("look up a client"), self._engine.connect() as connection:
            rows = connection.execute(statement).all()
        if len(rows) > 1:
            raise DirectoryError(
                "several clients match one identifier; the mapped column must be unique"
            )
        return self._client(rows[0]._mapping) if rows else None

    def replace_key_hash(self, number: str, current: str, new: str) -> bool:
        """Store ``new`` as ``number``'s key hash if it still is ``current``.

        One conditional ``UPDATE``, atomic on any database. Returns whether it
        changed a row. Raises :class:`~credrecovery.DirectoryError` when the
        database fails.
        """
        number_value = self._number_value(number)
        if number_value is None:
            return False
        statement = (
            sa.update(self._clients)
            .where(self._number == number_value, self._key_hash == current)
            .values({self._key_hash: new})
        )
        with _database_errors("replace a key hash"), self._engine.begin() as connection:
            return connection.execute(statement).rowcount == 1

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

        Values are normalized as the service will look them up, and written in
        one transaction. Raises :class:`ValueError` when the number, email or a
        domain is taken, or a constraint of the tables refuses the row;
        :class:`~credrecovery.DirectoryError` when the database fails.
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
        )
        number_value = self._stored_number(record.client.number)
        client = dataclasses.replace(record.client, number=str(number_value))
        with _database_errors("add a client"):
            try:
                with self._engine.begin() as connection:
                    self._check_free(connection, number_value, client.email, record.domains)
                    connection.execute(
                        sa.insert(self._clients), [self._client_row(client, number_value)]
                    )
                    if record.domains:
                        connection.execute(
                            sa.insert(self._domains),
                            [self._domain_row(d, number_value) for d in record.domains],
                        )
            except sa_exc.IntegrityError as exc:
                raise ValueError(
                    "the database refused the client: a duplicate or a constraint"
                ) from exc
        return client

    def bulk_add(
        self, clients: Iterable[tuple[Client, Sequence[str]]], *, batch_size: int = 1000
    ) -> int:
        """Insert many clients with their domains in one transaction; return how many.

        The clients' values must already be normalized and their keys hashed:
        nothing is checked. Rows go in ``batch_size`` at a time, with
        ``COPY`` on PostgreSQL through psycopg and ``executemany`` elsewhere.
        Raises :class:`ValueError` when a constraint refuses a row (nothing is
        then written); :class:`~credrecovery.DirectoryError`
        when the database fails.
        """
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        count = 0
        items = iter(clients)
        with _database_errors("add clients"):
            try:
                with self._engine.begin() as connection:
                    while batch := list(itertools.islice(items, batch_size)):
                        client_rows: list[dict[str, Any]] = []
                        domain_rows: list[dict[str, Any]] = []
                        for client, domains in batch:
                            number_value = self._stored_number(client.number)
                            client_rows.append(self._client_row(client, number_value))
                            domain_rows += (self._domain_row(d, number_value) for d in domains)
                        self._insert_many(connection, self._clients, client_rows)
                        self._insert_many(connection, self._domains, domain_rows)
                        count += len(client_rows)
            except sa_exc.IntegrityError as exc:
                raise ValueError(
                    "the database refused a client: a duplicate or a constraint"
                ) from exc
        return count

    @staticmethod
    def _insert_many(
        connection: sa.Connection, table: sa.Table, rows: list[dict[str, Any]]
    ) -> None:
        if not rows:
            return
        if connection.dialect.name == "postgresql" and connection.dialect.driver == "psycopg":
            # COPY loads an order of magnitude faster than row-by-row inserts.
            preparer = connection.dialect.identifier_preparer
            names = list(rows[0])
            columns = ", ".join(preparer.quote(name) for name in names)
            sql = f"COPY {preparer.format_table(table)} ({columns}) FROM STDIN"
            cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
            dbapi = connection.dialect.loaded_dbapi
            # The raw cursor bypasses SQLAlchemy, so its errors are wrapped here
            # as SQLAlchemy would, for the callers' handlers.
            try:
                with cursor.copy(sql) as copy:
                    for row in rows:
                        copy.write_row([row[name] for name in names])
            except dbapi.IntegrityError as exc:
                raise sa_exc.IntegrityError(sql, None, exc) from exc
            except dbapi.Error as exc:
                raise sa_exc.DBAPIError(sql, None, exc) from exc
            return
        connection.execute(sa.insert(table), rows)

    def _number_value(self, number: str) -> str | int | None:
        """``number`` as the number column compares it; ``None`` if it cannot match."""
        if not self._mapping.number_is_integer:
            return number
        if not _DECIMAL.fullmatch(number):
            return None
        value = int(number)
        return value if value <= _MAX_BIGINT else None

    def _stored_number(self, number: str) -> str | int:
        value = self._number_value(number)
        if value is None:
            raise ValueError("this directory's client numbers are non-negative integers")
        return value

    def _email_is(self, email: str) -> sa.ColumnElement[bool]:
        if self._mapping.email_lowercased:
            return self._email == email
        return sa.func.lower(self._email) == email

    def _domain_is(self, domain: str) -> sa.ColumnElement[bool]:
        if self._mapping.domain_lowercased:
            return self._domain == domain
        return sa.func.lower(self._domain) == domain

    def _check_free(
        self, connection: sa.Connection, number: str | int, email: str, domains: Sequence[str]
    ) -> None:
        def exists(table: sa.Table, condition: sa.ColumnElement[bool]) -> bool:
            statement = sa.select(sa.literal(1)).select_from(table).where(condition).limit(1)
            return connection.execute(statement).first() is not None

        if exists(self._clients, self._number == number):
            raise ValueError("a client with this number already exists")
        if exists(self._clients, self._email_is(email)):
            raise ValueError("a client with this primary email already exists")
        domain_column: sa.ColumnElement[str] = (
            self._domain if self._mapping.domain_lowercased else sa.func.lower(self._domain)
        )
        if domains and exists(self._domains, domain_column.in_(domains)):
            raise ValueError("one of these domains belongs to another client")

    def _client_row(self, client: Client, number: str | int) -> dict[str, Any]:
        m = self._mapping
        row: dict[str, Any] = {m.number: number, m.email: client.email, m.key_hash: client.key_hash}
        if m.name is not None:
            row[m.name] = client.name
        if m.locale is not None:
            row[m.locale] = client.locale
        return row

    def _domain_row(self, domain: str, number: str | int) -> dict[str, Any]:
        return {self._mapping.domain: domain, self._mapping.domain_client: number}

    @staticmethod
    def _client(row: sa.RowMapping) -> Client | None:
        # A row without an address or a hash cannot be recovered; it reads as absent.
        if row["email"] is None or row["key_hash"] is None:
            return None
        name = row.get("name")
        locale = row.get("locale")
        return Client(
            number=str(row["number"]),
            email=str(row["email"]),
            key_hash=str(row["key_hash"]),
            name="" if name is None else str(name),
            locale=str(locale) if locale else None,
        )
