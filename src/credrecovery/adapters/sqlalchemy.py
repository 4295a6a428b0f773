"""A :class:`~credrecovery.ClientDirectory` on any database SQLAlchemy 2 speaks.

:class:`SQLAlchemyDirectory` works in one of two modes:

* **its own tables** (no ``mapping``): ``credrecovery_clients`` and
  ``credrecovery_domains``, created by :meth:`SQLAlchemyDirectory.create_schema`
  or described by :attr:`SQLAlchemyDirectory.metadata` for a migration tool.
  Tables an earlier version created lack ``credrecovery_clients.must_change``
  or ``credrecovery_clients.active``; ``create_schema`` adds them (a migration
  tool can, from the metadata);
* **the host's existing tables**, described by a :class:`TableMapping`. Only the
  mapped columns are ever read or written; the host's other columns, indexes
  and constraints are left alone and nothing is reflected.

Only SQLAlchemy Core is used; the host needs no ORM models. Lookups compare
stored values with ``=`` so that an ordinary index serves them; see
:class:`TableMapping` for what a host table must provide.

Numbers and domains name one client each; several clients may share a
primary address, and :meth:`SQLAlchemyDirectory.find_all` returns them all.
A lookup returns each client with its domains, read by the same statement,
with the flag that ``set_must_change`` keeps, and open or closed (see
``TableMapping.active`` and ``set_active``).

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

import itertools
from collections.abc import Iterable, Sequence
from typing import Any

try:
    import sqlalchemy as sa
    from sqlalchemy import exc as sa_exc
except ImportError as exc:  # pragma: no cover - exercised with the extra missing
    raise ImportError(
        "credrecovery.sqlalchemy needs SQLAlchemy 2: pip install 'credrecovery[sqlalchemy]'"
    ) from exc

from passlib.context import CryptContext

from .._records import ClientRecord
from ..identifiers import IdentifierKind
from ..models import Client
from ._sql_errors import _ADD_REFUSAL, _guarded, _guarded_write
from ._sql_lookup import POOL_RECYCLE, _Reader
from ._sql_statements import _quoted_table, _Statements
from ._sql_tables import TableMapping as TableMapping

__all__ = ["SQLAlchemyDirectory", "TableMapping"]


class SQLAlchemyDirectory:
    """A :class:`~credrecovery.ClientDirectory` in a SQL database.

    ``engine_or_url`` is an :class:`~sqlalchemy.engine.Engine`, used as the
    host configured it, or a URL from which one is created with
    ``pool_recycle=1800`` (a pooled connection is replaced once 30 minutes
    old) and ``hide_parameters=True``, without ``pool_pre_ping``: a call
    whose connection the server dropped runs once more on a new connection
    instead (a write only when the connection died before ``COMMIT``, so
    that the server rolled it back), and a healthy server costs no extra
    round trip. For the old pre-ping, give an engine made with
    ``pool_pre_ping=True``. On PostgreSQL a lookup is one round trip outside
    any transaction; see ``docs/scaling.md``.

    Without ``mapping`` the directory uses its own tables, created when
    ``create_schema`` is true; with a :class:`TableMapping` it uses the
    host's. To keep its own tables in another schema, give an engine with a
    ``schema_translate_map`` execution option or a ``search_path``.

    ``crypt_context`` hashes the keys given to :meth:`add_client`; it defaults
    to :func:`~credrecovery.keys.default_context`.

    :meth:`close` (the same as :meth:`dispose`), or leaving a ``with`` block,
    closes the engine's pooled connections. Unlike
    :class:`~credrecovery.sqlite.SQLiteDirectory`, the directory stays usable
    afterwards: connections are opened again on demand, as after a fork.
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
            self._engine = sa.create_engine(
                engine_or_url, pool_recycle=POOL_RECYCLE, hide_parameters=True
            )
        self._reader = _Reader(self._engine)
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
        ``must_change`` column (``NOT NULL``, default false) and the
        ``active`` column (``NOT NULL``, default true: every client already
        there stays open); it changes them in no other way. Raises
        :class:`TypeError` with a :class:`TableMapping`: the host owns those
        tables. Raises :class:`~credrecovery.DirectoryError` when the database
        fails.
        """
        statements = self._statements
        statements.check_own_schema()

        def create() -> None:
            with self._engine.begin() as connection:
                statements.create_own_schema(connection)

        _guarded("create its tables", create)

    def dispose(self) -> None:
        """Close the engine's pooled connections, the host's engine's too.

        The directory stays usable: connections are opened again on demand,
        as after a fork.
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

    def find_all(self, kind: IdentifierKind | str, value: str, *, limit: int = 50) -> list[Client]:
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
        kind, statement, parameters = self._statements.select(kind, value, limit)
        if statement is None:
            return []

        rows = self._reader.read(kind, statement, parameters)
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

        def swap(connection: sa.Connection) -> bool:
            return connection.execute(statement).rowcount == 1

        return _guarded_write("replace a key hash", self._engine, swap)

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

        def update(connection: sa.Connection) -> None:
            connection.execute(statement)

        _guarded_write("record whether a key must change", self._engine, update)

    def set_active(self, number: str, active: bool) -> None:
        """Open (``True``) or close (``False``) client ``number``'s account.

        One ``UPDATE`` of the ``active`` column; an unknown number changes
        nothing. A closed client is found as it is, with ``active`` false, and
        the service treats it as unknown. Raises :class:`TypeError` when the
        :class:`TableMapping` names no ``active`` column, or gives a condition
        (the host's columns decide then), and
        :class:`~credrecovery.DirectoryError` when the database fails.
        """
        statement = self._statements.set_active(number, active)
        if statement is None:
            return

        def update(connection: sa.Connection) -> None:
            connection.execute(statement)

        _guarded_write("open or close an account", self._engine, update)

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

        Values are normalized as the service will look them up, and written in
        one transaction. The primary address may be another client's too.
        ``active=False`` adds it closed, into the ``active`` column; without
        one (see :class:`TableMapping`) that raises :class:`ValueError`.
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
            active=active,
        )
        statements = self._statements
        client, number_value = statements.stored_record(record)
        taken = statements.taken_checks(number_value, record.domains)

        def insert(connection: sa.Connection) -> None:
            for check, refusal in taken:
                if connection.execute(check).first() is not None:
                    raise ValueError(refusal)
            for statement, rows in statements.inserts(client, number_value, record.domains):
                connection.execute(statement, rows)

        _guarded_write("add a client", self._engine, insert, refusal=_ADD_REFUSAL)
        return client

    def bulk_add(
        self, clients: Iterable[tuple[Client, Sequence[str]]], *, batch_size: int = 1000
    ) -> int:
        """Insert many clients with their domains in one transaction; return how many.

        The clients' values must already be normalized and their keys hashed:
        nothing is checked, except that a closed client (``active`` false)
        needs an ``active`` column. Rows go in ``batch_size`` at a time, with
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

        return _guarded(
            "add clients",
            insert,
            refusal="the database refused a client: a duplicate or a constraint",
        )

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
