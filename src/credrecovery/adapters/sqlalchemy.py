"""A :class:`~credrecovery.ClientDirectory` on any database SQLAlchemy 2 speaks.

:class:`SQLAlchemyDirectory` works in one of two modes:

* **its own tables** (no ``mapping``): ``credrecovery_clients`` and
  ``credrecovery_domains``, created by :meth:`SQLAlchemyDirectory.create_schema`
  or described by :attr:`SQLAlchemyDirectory.metadata` for a migration tool.
  Tables an earlier version created lack ``credrecovery_clients.must_change``;
  ``create_schema`` adds it (a migration tool can, from the metadata);
* **the host's existing tables**, described by a :class:`TableMapping`. Only the
  mapped columns are ever read or written; the host's other columns, indexes
  and constraints are left alone and nothing is reflected.

Only SQLAlchemy Core is used; the host needs no ORM models. Lookups compare
stored values with ``=`` so that an ordinary index serves them; see
:class:`TableMapping` for what a host table must provide.

Numbers and domains name one client each; several clients may share a
primary address, and :meth:`SQLAlchemyDirectory.find_all` returns them all.
A lookup returns each client with its domains, read by the same statement,
and with the flag that ``set_must_change`` keeps.

Errors from the database surface as :class:`~credrecovery.DirectoryError`
with two attributes, ``sqlstate`` (the SQLSTATE the database reported, such
as ``"23514"``) and ``constraint`` (the name of the constraint it named), each
``None`` when unknown, and both in the message. An error whose text may quote
a row, such as PostgreSQL's ``DETAIL: Failing row contains (...)``, a value
the database could not read, or a host trigger's message, is raised without
``__cause__`` or ``__context__``, so the row never rides along; any other error
is chained to SQLAlchemy's exception. SQLAlchemy's own messages quote the SQL
parameters, key hashes among them, unless the engine hides them: engines this
module creates do; create yours with ``hide_parameters=True`` as well.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, TypeVar, cast

try:
    import sqlalchemy as sa
    from sqlalchemy import exc as sa_exc
except ImportError as exc:  # pragma: no cover - exercised with the extra missing
    raise ImportError(
        "credrecovery.sqlalchemy needs SQLAlchemy 2: pip install 'credrecovery[sqlalchemy]'"
    ) from exc

from passlib.context import CryptContext

from .._records import ClientRecord
from ..exceptions import DirectoryError
from ..identifiers import IdentifierKind, parse_kind
from ..models import Client

__all__ = ["SQLAlchemyDirectory", "TableMapping"]

_MAX_BIGINT = 2**63 - 1
_DECIMAL = re.compile(r"[0-9]{1,19}")
_T = TypeVar("_T")
# SQLSTATE classes whose messages may quote a row: data exceptions, integrity
# violations (DETAIL: Failing row contains ...), PL/pgSQL RAISE in host triggers.
_ROW_QUOTING_CLASSES = frozenset({"22", "23", "P0"})
# Joins a client's domains in a lookup; no domain name holds one.
_DOMAIN_SEPARATOR = ","


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
    must_change="must_change",
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
    if mapping.must_change is not None:
        client_columns.append(sa.Column(mapping.must_change, sa.Boolean()))
    clients = sa.Table(mapping.clients_table, metadata, *client_columns)
    domains = sa.Table(
        mapping.domains_table,
        metadata,
        sa.Column(mapping.domain, sa.String()),
        sa.Column(mapping.domain_client, number_type()),
    )
    return clients, domains


def _translated(
    exc: sa_exc.SQLAlchemyError, action: str, refusal: str | None
) -> tuple[Exception, bool]:
    """The error to raise for ``exc``, and whether it may be chained to ``exc``.

    With ``refusal``, an integrity error becomes a :class:`ValueError` with
    that message instead. Either carries ``sqlstate`` and ``constraint``. An
    error whose text may quote a row must not be chained: neither
    ``__cause__`` nor ``__context__`` may lead back to it.
    """
    sqlstate, constraint = _error_codes(exc)
    error: Exception
    if refusal is not None and isinstance(exc, sa_exc.IntegrityError):
        error = _tagged(ValueError(refusal), sqlstate, constraint)
    else:
        error = _directory_error(f"the client directory could not {action}",
                                 sqlstate, constraint)
    return error, not _may_quote_row(exc)


def _guarded(action: str, work: Callable[[], _T], *, refusal: str | None = None) -> _T:
    """Run ``work``, turning SQLAlchemy's errors into :class:`DirectoryError` (see _translated)."""
    try:
        return work()
    except sa_exc.SQLAlchemyError as exc:
        error, chained = _translated(exc, action, refusal)
        if chained:
            raise error from exc
    # Raised outside the handler, so that no __context__ is set.
    raise error


async def _guarded_async(
    action: str, work: Callable[[], Awaitable[_T]], *, refusal: str | None = None
) -> _T:
    """:func:`_guarded` for a coroutine."""
    try:
        return await work()
    except sa_exc.SQLAlchemyError as exc:
        error, chained = _translated(exc, action, refusal)
        if chained:
            raise error from exc
    raise error


def _directory_error(
    message: str, sqlstate: str | None = None, constraint: str | None = None
) -> DirectoryError:
    # The message is fixed text plus codes: SQLAlchemy's would quote the statement.
    return _tagged(DirectoryError(message), sqlstate, constraint)


_E = TypeVar("_E", bound=Exception)


def _tagged(error: _E, sqlstate: str | None, constraint: str | None) -> _E:
    """``error`` with ``sqlstate`` and ``constraint`` set, and named in its message."""
    codes = [f"SQLSTATE {sqlstate}"] if sqlstate else []
    codes += [f"constraint {constraint}"] if constraint else []
    if codes:
        error.args = (f"{error.args[0]} ({', '.join(codes)})",)
    target = cast(Any, error)
    target.sqlstate, target.constraint = sqlstate, constraint
    return error


def _error_codes(exc: sa_exc.SQLAlchemyError) -> tuple[str | None, str | None]:
    """The SQLSTATE and constraint name a driver reported (psycopg 3 or 2, asyncpg), if any."""
    orig = getattr(exc, "orig", None)
    sqlstate = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    constraint = getattr(getattr(orig, "diag", None), "constraint_name", None)
    if constraint is None:
        # SQLAlchemy's asyncpg adapter keeps asyncpg's own error as the cause.
        constraint = getattr(getattr(orig, "__cause__", None), "constraint_name", None)
    return (
        sqlstate if isinstance(sqlstate, str) else None,
        constraint if isinstance(constraint, str) else None,
    )


def _may_quote_row(exc: sa_exc.SQLAlchemyError) -> bool:
    if isinstance(exc, sa_exc.IntegrityError | sa_exc.DataError | sa_exc.InternalError):
        return True
    if not isinstance(exc, sa_exc.DBAPIError):
        return False
    sqlstate, _ = _error_codes(exc)
    if sqlstate is not None and sqlstate[:2] in _ROW_QUOTING_CLASSES:
        return True
    # PostgreSQL puts row values in DETAIL and, for COPY, the input line in CONTEXT.
    diag = getattr(exc.orig, "diag", None)
    if any(getattr(diag, field, None) for field in ("message_detail", "context")):
        return True
    asyncpg_error = getattr(exc.orig, "__cause__", None)
    return any(getattr(asyncpg_error, field, None) for field in ("detail", "context"))


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

    def describe(self, url: sa.URL) -> str:
        """What a repr shows: the URL without its password, and the tables."""
        shown = url.render_as_string(hide_password=True)
        return (f"{shown!r}, clients={self.clients.fullname!r}, "
                f"domains={self.domains.fullname!r}")

    def check_own_schema(self) -> None:
        if not self.own_schema:
            raise TypeError("create_schema only applies to the directory's own tables")

    def create_own_schema(self, connection: sa.Connection) -> None:
        """Create the own tables where missing, and add the columns an earlier version lacked."""
        self.metadata.create_all(connection)
        schema = _translated_schema(connection, self.clients)
        present = {column["name"] for column in
                   sa.inspect(connection).get_columns(self.clients.name, schema=schema)}
        assert self.must_change is not None
        if self.must_change.name not in present:
            # The column as create_all writes it, NOT NULL with its default,
            # so that rows already there read as false.
            spec = sa.schema.CreateColumn(self.must_change).compile(dialect=connection.dialect)
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

    def select(
        self, kind: IdentifierKind | str, value: str, limit: int
    ) -> tuple[IdentifierKind, sa.Select[Any] | None]:
        """The lookup for ``value``: ``None`` when it cannot match. Checks ``limit``.

        It reads as many rows whether or not anything matched: ``limit`` for
        an email, two for a number or a domain (two, to tell a column that is
        not unique). They are the rows that follow ``value`` in the index that
        serves the lookup, a hit's own first, wrapping round to the first rows
        when too few follow; a ``hit`` column tells the matches, and the rest
        are decoded like them, then dropped.
        """
        kind = parse_kind(kind)
        if limit < 1:
            raise ValueError("limit must be at least 1")
        key: sa.ColumnElement[Any]
        if kind is IdentifierKind.CLIENT_NUMBER:
            number = self.number_value(value)
            if number is None:
                return kind, None
            key, probe = self.number, number
            source: sa.FromClause = self.clients
        elif kind is IdentifierKind.EMAIL:
            key, probe, source = self._email(), value, self.clients
        else:
            key, probe = self._stored_domain(), value
            source = self.domains.join(self.clients, self.number == self.domain_client)
        fetch = limit if kind is IdentifierKind.EMAIL else 2
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
        # the wrapped part is read only when too few rows follow ``value``.
        # Each part is ordered by its index, so that it reads no more rows
        # than it returns.
        picked = (
            sa.union_all(part(key == probe, key >= probe),
                         part(sa.false(), key < probe))
            .limit(fetch)
            .subquery("picked")
        )
        # The clients' domains by the same statement, so that a hit costs no
        # second round trip that a miss would not. Read around the lookup
        # rather than in it, so that they leave its plan alone and are read
        # for the picked rows only.
        domains = (
            sa.select(sa.func.aggregate_strings(self._stored_domain(), _DOMAIN_SEPARATOR))
            .where(self.domain_client == picked.c.number)
            .scalar_subquery()
        )
        statement = sa.select(picked, domains.label("domains")).order_by(picked.c.number)
        return kind, statement

    def found(
        self, kind: IdentifierKind, rows: Sequence[sa.Row[Any]], limit: int
    ) -> list[Client]:
        """The matched clients of a lookup's ``rows``, by number; stand-ins are dropped.

        Raises when a number or domain names several clients.
        """
        # Every row is decoded, a stand-in as a match, so that both cost alike.
        read = [(bool(row.hit), self.client(row._mapping)) for row in rows]
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
        checks = [(self._exists(self.clients, self.number == number),
                   "a client with this number already exists")]
        if domains:
            checks.append((self._exists(self.domains, self._stored_domain().in_(domains)),
                           "one of these domains belongs to another client"))
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
            inserts.append((sa.insert(self.domains),
                            [self.domain_row(d, number) for d in domains]))
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
        return row

    def domain_row(self, domain: str, number: str | int) -> dict[str, Any]:
        return {self.mapping.domain: domain, self.mapping.domain_client: number}

    @staticmethod
    def client(row: sa.RowMapping) -> Client | None:
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
        )


#: What add_client's ValueError says when a constraint refuses the client.
_ADD_REFUSAL = "the database refused the client: a duplicate or a constraint"


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
        self._statements = _Statements(mapping)
        self._crypt_context = crypt_context
        if create_schema:
            try:
                self.create_schema()
            except BaseException:
                if owns_engine:
                    self._engine.dispose()
                raise

    def __repr__(self) -> str:
        return f"SQLAlchemyDirectory({self._statements.describe(self._engine.url)})"

    @property
    def engine(self) -> sa.Engine:
        """The engine every statement runs on."""
        return self._engine

    @property
    def mapping(self) -> TableMapping:
        """The tables and columns in use; the built-in one in own-schema mode."""
        return self._statements.mapping

    @property
    def metadata(self) -> sa.MetaData:
        """The tables as SQLAlchemy sees them, e.g. for Alembic's ``target_metadata``.

        In mapped mode they hold only the mapped columns; never create them.
        """
        return self._statements.metadata

    def create_schema(self) -> None:
        """Create the directory's own tables and indexes where they are missing.

        Idempotent. To tables an earlier version created it adds the
        ``must_change`` column (``NOT NULL``, default false); it changes them
        in no other way. Raises :class:`TypeError` with a :class:`TableMapping`:
        the host owns those tables. Raises :class:`~credrecovery.DirectoryError`
        when the database fails.
        """
        statements = self._statements
        statements.check_own_schema()

        def create() -> None:
            with self._engine.begin() as connection:
                statements.create_own_schema(connection)

        _guarded("create its tables", create)

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

        For an address several clients share, the first of :meth:`find_all`'s.
        Raises :class:`~credrecovery.DirectoryError` when the database fails
        or when several clients have the number or the domain.
        """
        found = self.find_all(kind, value, limit=1)
        return found[0] if found else None

    def find_all(
        self, kind: IdentifierKind | str, value: str, *, limit: int = 50
    ) -> list[Client]:
        """Every client the normalized ``value`` names, by client number, at most ``limit``.

        A number or a domain names at most one client; an email, every client
        whose primary address it is. Numbers are ordered as the database
        orders the column: numerically with ``number_is_integer``, else as
        text. Each client comes with its domains, sorted, and its
        ``must_change`` flag (false without a mapped column). Rows without an
        address or a key hash are left out. The service asks for a small
        ``limit``. Raises :class:`ValueError` when ``limit`` is below 1, and
        :class:`~credrecovery.DirectoryError` when the database fails or when
        several clients have the number or the domain.
        """
        kind, statement = self._statements.select(kind, value, limit)
        if statement is None:
            return []

        def fetch_rows() -> Sequence[sa.Row[Any]]:
            with self._engine.connect() as connection:
                return connection.execute(statement).all()

        rows = _guarded("look up a client", fetch_rows)
        return self._statements.found(kind, rows, limit)

    def replace_key_hash(self, number: str, current: str, new: str) -> bool:
        """Store ``new`` as ``number``'s key hash if it still is ``current``.

        One conditional ``UPDATE``, atomic on any database. Returns whether it
        changed a row. Raises :class:`~credrecovery.DirectoryError` when the
        database fails.
        """
        statement = self._statements.replace(number, current, new)
        if statement is None:
            return False

        def swap() -> bool:
            with self._engine.begin() as connection:
                return connection.execute(statement).rowcount == 1

        return _guarded("replace a key hash", swap)

    def set_must_change(self, number: str, value: bool) -> None:
        """Record whether client ``number`` must replace its key at the next sign-in.

        One ``UPDATE``; an unknown number changes nothing. With a
        :class:`TableMapping` that names no ``must_change`` column it does
        nothing at all. Raises :class:`~credrecovery.DirectoryError` when the
        database fails.
        """
        statement = self._statements.set_must_change(number, value)
        if statement is None:
            return

        def update() -> None:
            with self._engine.begin() as connection:
                connection.execute(statement)

        _guarded("record whether a key must change", update)

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
        one transaction. The primary address may be another client's too.
        Raises :class:`ValueError` when the number or a domain is taken, or a
        constraint of the tables refuses the row (its ``sqlstate`` and
        ``constraint`` then say which, as on
        :class:`~credrecovery.DirectoryError`);
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
        statements = self._statements
        client, number_value = statements.stored_record(record)
        taken = statements.taken_checks(number_value, record.domains)

        def insert() -> None:
            with self._engine.begin() as connection:
                for check, refusal in taken:
                    if connection.execute(check).first() is not None:
                        raise ValueError(refusal)
                for statement, rows in statements.inserts(client, number_value, record.domains):
                    connection.execute(statement, rows)

        _guarded("add a client", insert, refusal=_ADD_REFUSAL)
        return client

    def bulk_add(
        self, clients: Iterable[tuple[Client, Sequence[str]]], *, batch_size: int = 1000
    ) -> int:
        """Insert many clients with their domains in one transaction; return how many.

        The clients' values must already be normalized and their keys hashed:
        nothing is checked. Rows go in ``batch_size`` at a time, with
        ``COPY`` on PostgreSQL through psycopg and ``executemany`` elsewhere.
        The engine's ``schema_translate_map`` applies to ``COPY`` as to every
        other statement. Raises :class:`ValueError` when a constraint refuses a
        row (nothing is then written; ``sqlstate`` and ``constraint`` say
        which); :class:`~credrecovery.DirectoryError` when the database fails.
        """
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        items = iter(clients)
        statements = self._statements

        def insert() -> int:
            count = 0
            with self._engine.begin() as connection:
                while batch := list(itertools.islice(items, batch_size)):
                    client_rows: list[dict[str, Any]] = []
                    domain_rows: list[dict[str, Any]] = []
                    for client, domains in batch:
                        number_value = statements.stored_number(client.number)
                        client_rows.append(statements.client_row(client, number_value))
                        domain_rows += (statements.domain_row(d, number_value) for d in domains)
                    self._insert_many(connection, statements.clients, client_rows)
                    self._insert_many(connection, statements.domains, domain_rows)
                    count += len(client_rows)
            return count

        return _guarded("add clients", insert,
                        refusal="the database refused a client: a duplicate or a constraint")

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
            sql = f"COPY {_quoted_table(connection, table)} ({columns}) FROM STDIN"
            cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
            dbapi = connection.dialect.loaded_dbapi
            # The raw cursor bypasses SQLAlchemy, so its errors are wrapped here
            # as SQLAlchemy would, for the callers' handlers.
            try:
                with cursor.copy(sql) as copy:
                    for row in rows:
                        copy.write_row([row[name] for name in names])
            except dbapi.Error as exc:
                raise sa_exc.DBAPIError.instance(sql, None, exc, dbapi.Error) from exc
            return
        connection.execute(sa.insert(table), rows)


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

