"""SQLAlchemyDirectory on SQLite and PostgreSQL, with its own tables and a host's."""

from __future__ import annotations

import dataclasses
import importlib
import sys
import threading
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import sqlalchemy as sa

from credrecovery.exceptions import DirectoryError
from credrecovery.identifiers import IdentifierKind
from credrecovery.keys import cheap_context, generate_key
from credrecovery.models import Client
from credrecovery.protocols import ClientDirectory
from credrecovery.sqlalchemy import SQLAlchemyDirectory, TableMapping
from helpers import pg

CONTEXT = cheap_context()
KEY = "Kq7mZr2WxPd9HtNa"
HASH = CONTEXT.hash(KEY)
NEW_HASH = CONTEXT.hash("Bn4vTy8QpLm3XsGe")

# The PostgreSQL fixture, made visible to this module's tests.
postgres = pg.postgres

NUMBER = IdentifierKind.CLIENT_NUMBER
EMAIL = IdentifierKind.EMAIL
DOMAIN = IdentifierKind.DOMAIN


@dataclasses.dataclass(frozen=True)
class Database:
    """An empty database for one test; ``schema`` is set on PostgreSQL."""

    dialect: str
    engine: sa.Engine
    schema: str | None = None


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Database]:
    """SQLite in a file, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        engine = sa.create_engine(f"sqlite:///{tmp_path / 'clients.sqlite3'}", hide_parameters=True)
        try:
            yield Database("sqlite", engine)
        finally:
            engine.dispose()
    else:
        with pg.fresh_schema() as schema:
            yield Database("postgresql", schema.engine, schema.name)


@pytest.fixture
def directory(database: Database) -> Iterator[SQLAlchemyDirectory]:
    """A directory with its own, freshly created tables."""
    directory = SQLAlchemyDirectory(database.engine, crypt_context=CONTEXT, create_schema=True)
    yield directory
    directory.dispose()


def add_alice(directory: SQLAlchemyDirectory) -> Client:
    return directory.add_client(
        "1001",
        "alice@example.com",
        key_hash=HASH,
        domains=["alice.example", "alice-shop.example", "alice.example.org"],
        name="Alice Martin",
        locale="fr",
    )


# --- own schema -------------------------------------------------------------


def test_create_schema_is_idempotent_and_indexes_every_lookup(
    directory: SQLAlchemyDirectory, database: Database
) -> None:
    """create_schema twice is harmless; number, email, domain and client_number are indexed."""
    directory.create_schema()
    inspector = sa.inspect(database.engine)
    assert {"credrecovery_clients", "credrecovery_domains"} <= set(inspector.get_table_names())
    assert inspector.get_pk_constraint("credrecovery_clients")["constrained_columns"] == ["number"]
    assert inspector.get_pk_constraint("credrecovery_domains")["constrained_columns"] == ["domain"]
    # The primary address is indexed but not unique: resellers share one.
    assert inspector.get_unique_constraints("credrecovery_clients") == []
    email_indexes = {
        i["name"]: (i["column_names"], i["unique"])
        for i in inspector.get_indexes("credrecovery_clients")
    }
    assert email_indexes == {"ix_credrecovery_clients_email": (["email"], False)}
    indexed = [i["column_names"] for i in inspector.get_indexes("credrecovery_domains")]
    assert ["client_number"] in indexed


def test_satisfies_the_protocol(directory: SQLAlchemyDirectory) -> None:
    """The directory is a ClientDirectory."""
    assert isinstance(directory, ClientDirectory)


def test_find_by_each_kind(directory: SQLAlchemyDirectory) -> None:
    """A client is found by number, primary email and each of its domains."""
    alice = add_alice(directory)
    directory.add_client("1002", "bob@example.net", key_hash=NEW_HASH, domains=["bob.example"])
    assert directory.find(NUMBER, "1001") == alice
    assert directory.find(EMAIL, "alice@example.com") == alice
    for domain in ("alice.example", "alice-shop.example", "alice.example.org"):
        assert directory.find(DOMAIN, domain) == alice
    found = directory.find(DOMAIN, "bob.example")
    assert found is not None
    assert (found.number, found.name, found.locale) == ("1002", "", None)
    assert found.key_hash == NEW_HASH


def test_find_unknown_returns_none(directory: SQLAlchemyDirectory) -> None:
    """Unknown values of every kind find nobody."""
    add_alice(directory)
    assert directory.find(NUMBER, "9999") is None
    assert directory.find(EMAIL, "nobody@example.com") is None
    assert directory.find(DOMAIN, "nobody.example") is None


def test_find_accepts_the_kind_as_text(directory: SQLAlchemyDirectory) -> None:
    """The kind may be given as its form value."""
    alice = add_alice(directory)
    assert directory.find("email", "alice@example.com") == alice


def test_add_client_normalizes_and_hashes(directory: SQLAlchemyDirectory) -> None:
    """add_client stores normalized values and a hash of the key, as lookups expect."""
    client = directory.add_client(
        " 1003 ", "Carol@Example.COM", key=KEY, domains=["Bücher.Example", "SHOP.example."]
    )
    assert (client.number, client.email) == ("1003", "carol@example.com")
    assert CONTEXT.verify(KEY, client.key_hash)
    assert directory.find(EMAIL, "carol@example.com") == client
    assert directory.find(DOMAIN, "xn--bcher-kva.example") == client
    assert directory.find(DOMAIN, "shop.example") == client


def test_add_client_refuses_duplicates_and_writes_nothing(
    directory: SQLAlchemyDirectory,
) -> None:
    """A taken number or domain raises ValueError and leaves no partial client."""
    add_alice(directory)
    with pytest.raises(ValueError, match="number"):
        directory.add_client("1001", "other@example.com", key_hash=HASH)
    with pytest.raises(ValueError, match="domain"):
        directory.add_client(
            "2002", "other@example.com", key_hash=HASH, domains=["new.example", "alice.example"]
        )
    assert directory.find(NUMBER, "2002") is None
    assert directory.find(DOMAIN, "new.example") is None
    with pytest.raises(ValueError, match="exactly one"):
        directory.add_client("2003", "x@example.com")


def test_replace_key_hash_is_compare_and_set(directory: SQLAlchemyDirectory) -> None:
    """CAS succeeds once, then fails for the stale hash and for an unknown number."""
    add_alice(directory)
    assert directory.replace_key_hash("1001", HASH, NEW_HASH) is True
    assert directory.replace_key_hash("1001", HASH, CONTEXT.hash("other")) is False
    found = directory.find(NUMBER, "1001")
    assert found is not None and found.key_hash == NEW_HASH
    assert directory.replace_key_hash("9999", NEW_HASH, HASH) is False
    assert directory.replace_key_hash("1001", NEW_HASH, HASH) is True


def test_bulk_add_inserts_in_batches(directory: SQLAlchemyDirectory) -> None:
    """bulk_add inserts every client and domain across several batches."""
    rows = [
        (
            Client(f"c{i}", f"user{i}@example.com", HASH, f"User {i}", "de"),
            [f"site{i}.example", f"www.site{i}.example"],
        )
        for i in range(50)
    ]
    assert directory.bulk_add(rows, batch_size=7) == 50
    stored = [
        dataclasses.replace(client, domains=tuple(sorted(domains))) for client, domains in rows
    ]
    assert directory.find(NUMBER, "c49") == stored[49]
    assert directory.find(EMAIL, "user0@example.com") == stored[0]
    assert directory.find(DOMAIN, "www.site23.example") == stored[23]


def test_bulk_add_duplicate_rolls_back(directory: SQLAlchemyDirectory) -> None:
    """A duplicate in bulk_add raises ValueError and writes none of the clients."""
    rows = [(Client(str(i), f"u{i}@example.com", HASH), ()) for i in (1, 2, 1)]
    with pytest.raises(ValueError):
        directory.bulk_add(rows, batch_size=2)
    assert directory.find(NUMBER, "2") is None


def test_repr_hides_password_and_hashes() -> None:
    """repr shows the URL without its password and never a hash."""
    directory = SQLAlchemyDirectory("postgresql+psycopg://panel:s3cret@db.invalid:5432/panel")
    try:
        text = repr(directory)
        assert "s3cret" not in text
        assert "panel:***@db.invalid" in text
        assert "credrecovery_clients" in text
    finally:
        directory.dispose()


def test_url_creates_a_recycling_engine_that_hides_parameters(tmp_path: Any) -> None:
    """Given a URL, the directory builds an engine that recycles, never pings, hides parameters."""
    directory = SQLAlchemyDirectory(f"sqlite:///{tmp_path / 'own.sqlite3'}", create_schema=True)
    try:
        assert directory.engine.pool._pre_ping is False
        assert directory.engine.pool._recycle == 1800
        assert directory.engine.hide_parameters is True
        add_alice(directory)
        assert HASH not in repr(directory)
    finally:
        directory.dispose()


def test_create_schema_refused_for_host_tables(database: Database) -> None:
    """create_schema is only for the directory's own tables."""
    directory = SQLAlchemyDirectory(database.engine, mapping=HOST_MAPPING)
    with pytest.raises(TypeError):
        directory.create_schema()


def test_import_without_sqlalchemy_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """Importing the module without SQLAlchemy says which extra to install."""
    monkeypatch.setitem(sys.modules, "sqlalchemy", None)
    monkeypatch.delitem(sys.modules, "credrecovery.sqlalchemy")
    with pytest.raises(ImportError, match=r"pip install 'credrecovery\[sqlalchemy\]'"):
        importlib.import_module("credrecovery.sqlalchemy")


# --- a host's tables ----------------------------------------------------------


HOST_DDL = [
    "CREATE TABLE cust (cust_id integer primary key, mail varchar(254) not null,"
    " pw_hash text not null, full_name text, lang varchar(8), notes text default 'keep')",
    "CREATE TABLE cust_domains (fqdn varchar(253) primary key, cust_id integer references cust)",
]

HOST_MAPPING = TableMapping(
    clients_table="cust",
    number="cust_id",
    email="mail",
    key_hash="pw_hash",
    name="full_name",
    locale="lang",
    domains_table="cust_domains",
    domain="fqdn",
    domain_client="cust_id",
    number_is_integer=True,
)


def create_host_tables(engine: sa.Engine, alice_mail: str = "alice@example.com") -> None:
    """The host's own tables, named its own way, with two clients."""
    with engine.begin() as connection:
        for statement in HOST_DDL:
            connection.exec_driver_sql(statement)
        connection.execute(
            sa.text(
                "INSERT INTO cust (cust_id, mail, pw_hash, full_name, lang)"
                " VALUES (:id, :mail, :hash, :name, :lang)"
            ),
            [
                {"id": 1, "mail": alice_mail, "hash": HASH, "name": "Alice", "lang": "de"},
                {"id": 2, "mail": "bob@example.net", "hash": HASH, "name": None, "lang": None},
            ],
        )
        connection.execute(
            sa.text("INSERT INTO cust_domains (fqdn, cust_id) VALUES (:fqdn, :id)"),
            [
                {"fqdn": "alice.example", "id": 1},
                {"fqdn": "alice-shop.example", "id": 1},
                {"fqdn": "bob.example", "id": 2},
            ],
        )


@pytest.fixture
def host(database: Database) -> Iterator[SQLAlchemyDirectory]:
    """A directory over the host's populated tables."""
    create_host_tables(database.engine)
    directory = SQLAlchemyDirectory(database.engine, mapping=HOST_MAPPING, crypt_context=CONTEXT)
    yield directory
    directory.dispose()


def test_host_tables_find_by_each_kind(host: SQLAlchemyDirectory) -> None:
    """Integer client numbers in a host's table read back as text, by every kind."""
    alice = Client(
        "1",
        "alice@example.com",
        HASH,
        "Alice",
        "de",
        domains=("alice-shop.example", "alice.example"),
    )
    assert host.find(NUMBER, "1") == alice
    assert host.find(EMAIL, "alice@example.com") == alice
    assert host.find(DOMAIN, "alice-shop.example") == alice
    assert host.find(DOMAIN, "bob.example") == Client(
        "2", "bob@example.net", HASH, "", None, domains=("bob.example",)
    )
    assert host.find(NUMBER, "0001") == alice
    assert host.find(NUMBER, "3") is None


@pytest.mark.parametrize("number", ["abc", "1-2", "1_0", "99999999999999999999", "٣"])
def test_host_integer_numbers_refuse_non_numbers(host: SQLAlchemyDirectory, number: str) -> None:
    """A number that cannot be an integer finds nobody and swaps nothing, without error."""
    assert host.find(NUMBER, number) is None
    assert host.replace_key_hash(number, HASH, NEW_HASH) is False


def test_host_tables_compare_and_set(host: SQLAlchemyDirectory, database: Database) -> None:
    """CAS on a host table changes only the hash column, once."""
    assert host.replace_key_hash("1", HASH, NEW_HASH) is True
    assert host.replace_key_hash("1", HASH, NEW_HASH) is False
    assert host.replace_key_hash("7", HASH, NEW_HASH) is False
    with database.engine.connect() as connection:
        rows = connection.execute(
            sa.text("SELECT cust_id, pw_hash, notes FROM cust ORDER BY cust_id")
        ).all()
    assert [tuple(row) for row in rows] == [(1, NEW_HASH, "keep"), (2, HASH, "keep")]


def test_host_tables_add_client(host: SQLAlchemyDirectory, database: Database) -> None:
    """add_client writes into the host's tables; the host's other columns keep defaults."""
    client = host.add_client(
        "3", "Carol@Example.org", key=KEY, domains=["carol.example"], name="Carol", locale="en"
    )
    assert client.number == "3"
    assert host.find(DOMAIN, "carol.example") == client
    assert host.find(NUMBER, "3") == client
    with database.engine.connect() as connection:
        row = connection.execute(sa.text("SELECT mail, notes FROM cust WHERE cust_id = 3")).one()
    assert tuple(row) == ("carol@example.org", "keep")
    with pytest.raises(ValueError, match="domain"):
        host.add_client("4", "dave@example.org", key_hash=HASH, domains=["bob.example"])
    with pytest.raises(ValueError, match="integers"):
        host.add_client("x4", "dave@example.org", key_hash=HASH)
    assert host.find(EMAIL, "dave@example.org") is None


def test_host_tables_without_name_and_locale(database: Database) -> None:
    """Unmapped name and locale read as '' and None, and add_client skips them."""
    create_host_tables(database.engine)
    mapping = dataclasses.replace(HOST_MAPPING, name=None, locale=None)
    directory = SQLAlchemyDirectory(database.engine, mapping=mapping)
    assert directory.find(NUMBER, "1") == Client(
        "1", "alice@example.com", HASH, domains=("alice-shop.example", "alice.example")
    )
    added = directory.add_client("5", "eve@example.com", key_hash=HASH, name="Eve", locale="it")
    assert directory.find(NUMBER, "5") == dataclasses.replace(added, name="", locale=None)


def test_host_mixed_case_email(database: Database) -> None:
    """With email_lowercased=False a mixed-case stored address matches its lower-case form."""
    create_host_tables(database.engine, alice_mail="Alice@Example.COM")
    strict = SQLAlchemyDirectory(database.engine, mapping=HOST_MAPPING)
    assert strict.find(EMAIL, "alice@example.com") is None
    mapping = dataclasses.replace(HOST_MAPPING, email_lowercased=False)
    directory = SQLAlchemyDirectory(database.engine, mapping=mapping, crypt_context=CONTEXT)
    found = directory.find(EMAIL, "alice@example.com")
    assert found is not None
    assert (found.number, found.email) == ("1", "Alice@Example.COM")
    added = directory.add_client("6", "ALICE@example.com", key_hash=HASH)
    assert directory.find_all(EMAIL, "alice@example.com") == [found, added]


def test_host_address_shared_once_lower_cased(database: Database) -> None:
    """Two clients sharing an address once lower-cased are both found; find gives the first."""
    create_host_tables(database.engine, alice_mail="Bob@Example.NET")
    mapping = dataclasses.replace(HOST_MAPPING, email_lowercased=False)
    directory = SQLAlchemyDirectory(database.engine, mapping=mapping)
    found = directory.find_all(EMAIL, "bob@example.net")
    assert [(c.number, c.email) for c in found] == [
        ("1", "Bob@Example.NET"),
        ("2", "bob@example.net"),
    ]
    assert directory.find(EMAIL, "bob@example.net") == found[0]


def test_host_integer_numbers_are_ordered_numerically(database: Database) -> None:
    """With number_is_integer, clients sharing an address come in numeric order: 9, 10, 100."""
    create_host_tables(database.engine)
    directory = SQLAlchemyDirectory(database.engine, mapping=HOST_MAPPING)
    for number in ("100", "9", "10"):
        directory.add_client(number, "reseller@example.com", key_hash=HASH)
    found = directory.find_all(EMAIL, "reseller@example.com")
    assert [client.number for client in found] == ["9", "10", "100"]
    assert [c.number for c in directory.find_all(EMAIL, "reseller@example.com", limit=2)] == [
        "9",
        "10",
    ]


def test_host_domain_listed_for_two_clients_is_an_error(database: Database) -> None:
    """A domain two clients own in a host's table makes the lookup fail rather than guess."""
    create_host_tables(database.engine)
    with database.engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE shared_domains (fqdn text, cust_id integer)")
        connection.exec_driver_sql(
            "INSERT INTO shared_domains VALUES ('both.example', 1), ('both.example', 2)"
        )
    mapping = dataclasses.replace(HOST_MAPPING, domains_table="shared_domains")
    directory = SQLAlchemyDirectory(database.engine, mapping=mapping)
    for call in (
        lambda: directory.find(DOMAIN, "both.example"),
        lambda: directory.find_all(DOMAIN, "both.example"),
    ):
        with pytest.raises(DirectoryError, match="several"):
            call()


LOOSE_DDL = [
    "CREATE TABLE loose (id integer primary key, mail text, pw_hash text)",
    "CREATE TABLE loose_domains (fqdn text primary key, id integer)",
    "INSERT INTO loose VALUES (1, 'x@example.com', NULL), (2, 'x@example.com', 'h2'),"
    " (3, NULL, 'h3'), (4, 'x@example.com', 'h4')",
    "INSERT INTO loose_domains VALUES ('one.example', 1), ('three.example', 3)",
]
LOOSE_MAPPING = TableMapping(
    clients_table="loose",
    number="id",
    email="mail",
    key_hash="pw_hash",
    domains_table="loose_domains",
    domain="fqdn",
    domain_client="id",
    number_is_integer=True,
)


def test_rows_without_address_or_hash_read_as_absent(database: Database) -> None:
    """find and find_all skip rows whose address or key hash is NULL, before the limit."""
    with database.engine.begin() as connection:
        for statement in LOOSE_DDL:
            connection.exec_driver_sql(statement)
    directory = SQLAlchemyDirectory(database.engine, mapping=LOOSE_MAPPING)
    second, fourth = Client("2", "x@example.com", "h2"), Client("4", "x@example.com", "h4")
    assert directory.find_all(EMAIL, "x@example.com") == [second, fourth]
    assert directory.find_all(EMAIL, "x@example.com", limit=1) == [second]
    assert directory.find(EMAIL, "x@example.com") == second
    for kind, value in [
        (NUMBER, "1"),
        (NUMBER, "3"),
        (DOMAIN, "one.example"),
        (DOMAIN, "three.example"),
    ]:
        assert directory.find(kind, value) is None, (kind, value)
        assert directory.find_all(kind, value) == [], (kind, value)


def test_find_all_refuses_a_limit_below_one(directory: SQLAlchemyDirectory) -> None:
    """A limit below 1 is a ValueError, not an empty answer."""
    with pytest.raises(ValueError, match="limit"):
        directory.find_all(EMAIL, "alice@example.com", limit=0)


# --- failures -----------------------------------------------------------------


def assert_safe(error: DirectoryError) -> None:
    """The error wraps SQLAlchemy's and names no hash, key or parameter."""
    assert isinstance(error.__cause__, sa.exc.SQLAlchemyError)
    for secret in (HASH, NEW_HASH, KEY, "1001"):
        assert secret not in str(error)
        assert secret not in str(error.__cause__)


def test_dropped_tables_raise_directory_error(
    directory: SQLAlchemyDirectory, database: Database
) -> None:
    """Every operation on vanished tables raises DirectoryError chained to SQLAlchemy's."""
    add_alice(directory)
    with database.engine.begin() as connection:
        connection.exec_driver_sql("DROP TABLE credrecovery_domains")
        connection.exec_driver_sql("DROP TABLE credrecovery_clients")
    calls: list[Callable[[], object]] = [
        lambda: directory.find(NUMBER, "1001"),
        lambda: directory.find(EMAIL, "alice@example.com"),
        lambda: directory.find(DOMAIN, "alice.example"),
        lambda: directory.replace_key_hash("1001", HASH, NEW_HASH),
        lambda: directory.add_client("1001", "a@example.com", key_hash=HASH),
        lambda: directory.bulk_add([(Client("1001", "a@example.com", HASH), ())]),
    ]
    for call in calls:
        with pytest.raises(DirectoryError) as caught:
            call()
        assert_safe(caught.value)


def test_missing_table_with_url_engine_hides_parameters(tmp_path: Any) -> None:
    """A directory-made engine keeps the hash out of the chained SQLAlchemy error too."""
    directory = SQLAlchemyDirectory(f"sqlite:///{tmp_path / 'empty.sqlite3'}")
    try:
        with pytest.raises(DirectoryError) as caught:
            directory.replace_key_hash("1001", HASH, NEW_HASH)
        assert_safe(caught.value)
        assert "hidden" in str(caught.value.__cause__)
    finally:
        directory.dispose()


def test_unreachable_server_raises_directory_error() -> None:
    """A closed port surfaces as DirectoryError, not as a driver exception."""
    directory = SQLAlchemyDirectory(
        "postgresql+psycopg://postgres:s3cret@127.0.0.1:1/test?connect_timeout=1"
    )
    try:
        for call in (
            lambda: directory.find(EMAIL, "alice@example.com"),
            lambda: directory.replace_key_hash("1001", HASH, NEW_HASH),
            lambda: directory.add_client("1001", "alice@example.com", key_hash=HASH),
        ):
            with pytest.raises(DirectoryError) as caught:
                call()
            assert_safe(caught.value)
            assert "s3cret" not in str(caught.value)
    finally:
        directory.dispose()


# --- PostgreSQL only ------------------------------------------------------------


def capture_statements(engine: sa.Engine, action: Callable[[], object]) -> list[tuple[str, Any]]:
    """Run ``action`` and return the statements it sent, with their parameters."""
    sent: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        sent.append((statement, parameters))

    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        action()
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)
    return sent


def explain(engine: sa.Engine, statement: str, parameters: Any, *, seqscan: bool = True) -> str:
    with engine.connect() as connection:
        if not seqscan:
            connection.exec_driver_sql("SET enable_seqscan = off")
        plan = connection.exec_driver_sql("EXPLAIN " + statement, parameters).scalars().all()
        connection.rollback()
    return "\n".join(plan)


@pytest.mark.postgres
def test_postgres_lookups_use_indexes(postgres: pg.PostgresSchema) -> None:
    """On 2000 analyzed clients, every lookup and the CAS update are index scans."""
    directory = SQLAlchemyDirectory(postgres.engine, crypt_context=CONTEXT, create_schema=True)
    directory.bulk_add(
        (Client(f"n{i}", f"user{i}@example.com", HASH), [f"site{i}.example", f"www{i}.example"])
        for i in range(2000)
    )
    with postgres.engine.begin() as connection:
        connection.exec_driver_sql("ANALYZE")
    actions: dict[str, Callable[[], object]] = {
        "number": lambda: directory.find(NUMBER, "n1234"),
        "email": lambda: directory.find(EMAIL, "user1234@example.com"),
        "domain": lambda: directory.find(DOMAIN, "www1234.example"),
        "cas": lambda: directory.replace_key_hash("n1234", HASH, NEW_HASH),
    }
    for label, action in actions.items():
        [(statement, parameters)] = capture_statements(postgres.engine, action)
        plan = explain(postgres.engine, statement, parameters)
        assert "Index" in plan, (label, plan)
        assert "Seq Scan" not in plan, (label, plan)


@pytest.mark.postgres
def test_postgres_lower_email_lookup_can_use_an_expression_index(
    postgres: pg.PostgresSchema,
) -> None:
    """With email_lowercased=False, an index on lower(email) serves the lookup."""
    create_host_tables(postgres.engine, alice_mail="Alice@Example.COM")
    with postgres.engine.begin() as connection:
        connection.exec_driver_sql("CREATE INDEX cust_lower_mail ON cust (lower(mail))")
    mapping = dataclasses.replace(HOST_MAPPING, email_lowercased=False)
    directory = SQLAlchemyDirectory(postgres.engine, mapping=mapping)
    [(statement, parameters)] = capture_statements(
        postgres.engine, lambda: directory.find(EMAIL, "alice@example.com")
    )
    plan = explain(postgres.engine, statement, parameters, seqscan=False)
    assert "cust_lower_mail" in plan, plan


@pytest.mark.postgres
def test_postgres_host_tables_in_a_named_schema(postgres: pg.PostgresSchema) -> None:
    """TableMapping.schema qualifies the host's tables for an engine without search_path."""
    create_host_tables(postgres.engine)
    mapping = dataclasses.replace(HOST_MAPPING, schema=postgres.name)
    directory = SQLAlchemyDirectory(postgres.url, mapping=mapping, crypt_context=CONTEXT)
    try:
        assert f"{postgres.name}.cust" in repr(directory)
        found = directory.find(DOMAIN, "alice.example")
        assert found is not None and found.number == "1"
        assert directory.replace_key_hash("1", HASH, NEW_HASH) is True
        directory.add_client("3", "carol@example.org", key_hash=HASH, domains=["carol.example"])
        assert directory.find(EMAIL, "carol@example.org") is not None
    finally:
        directory.dispose()


@pytest.mark.postgres
def test_postgres_concurrent_compare_and_set_has_one_winner(
    postgres: pg.PostgresSchema,
) -> None:
    """Eight threads racing to swap the same hash: exactly one succeeds."""
    directory = SQLAlchemyDirectory(postgres.engine, crypt_context=CONTEXT, create_schema=True)
    add_alice(directory)
    new_hashes = [CONTEXT.hash(generate_key()) for _ in range(8)]
    barrier = threading.Barrier(8)

    def swap(new: str) -> bool:
        barrier.wait()
        return directory.replace_key_hash("1001", HASH, new)

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(swap, new_hashes))
    assert results.count(True) == 1
    found = directory.find(NUMBER, "1001")
    assert found is not None
    assert found.key_hash == new_hashes[results.index(True)]


def reachable(error: BaseException) -> list[object]:
    """Every exception, argument and diagnostic reachable from ``error``."""
    found: list[object] = []
    seen: set[int] = set()
    pending: list[object] = [error]
    while pending:
        item = pending.pop()
        if item is None or id(item) in seen:
            continue
        seen.add(id(item))
        found.append(item)
        if isinstance(item, BaseException):
            pending += [
                item.__cause__,
                item.__context__,
                *item.args,
                getattr(item, "orig", None),
                getattr(item, "diag", None),
            ]
        elif hasattr(item, "message_detail"):  # a driver's diagnostic: every field of it
            pending += [getattr(item, name) for name in dir(item) if not name.startswith("_")]
    return found


def assert_quotes_no_row(error: BaseException, *secrets: str) -> None:
    """Nothing reachable from ``error``, nor its formatted traceback, quotes a row value."""
    items = reachable(error)
    texts = [text for item in items for text in (str(item), repr(item))]
    texts.append("".join(traceback.format_exception(error)))
    for secret in ("$argon2", *secrets):
        leaks = [text for text in texts if secret in text]
        assert leaks == [], (secret, leaks)


LEGACY_HASH = "$pbkdf2-sha256$29000$bGVnYWN5$bGVnYWN5LWhhc2g"
# In constants, so that the test's own source lines in a traceback quote neither.
CAROL = "carol@example.org"
CHECKED_DDL = [
    "CREATE TABLE guarded (id integer PRIMARY KEY, mail text NOT NULL,"
    " pw_hash text NOT NULL CONSTRAINT guarded_pw_hash_not_argon2"
    " CHECK (left(pw_hash, 7) <> '$argon2'))",
    "CREATE TABLE guarded_domains (fqdn text PRIMARY KEY, id integer REFERENCES guarded)",
    f"INSERT INTO guarded VALUES (1, 'alice@example.com', '{LEGACY_HASH}')",
]
CHECKED_MAPPING = TableMapping(
    clients_table="guarded",
    number="id",
    email="mail",
    key_hash="pw_hash",
    domains_table="guarded_domains",
    domain="fqdn",
    domain_client="id",
    number_is_integer=True,
)


@pytest.mark.postgres
def test_postgres_refused_row_never_rides_in_the_exception(postgres: pg.PostgresSchema) -> None:
    """A CHECK refusing a new hash gives SQLSTATE and constraint, and no trace of the row."""
    with postgres.engine.begin() as connection:
        for statement in CHECKED_DDL:
            connection.exec_driver_sql(statement)
    directory = SQLAlchemyDirectory(postgres.engine, mapping=CHECKED_MAPPING)
    with pytest.raises(DirectoryError) as swapped:
        directory.replace_key_hash("1", LEGACY_HASH, NEW_HASH)
    with pytest.raises(ValueError) as added:
        directory.add_client("2", CAROL, key_hash=NEW_HASH, domains=["c.example"])
    for caught in (swapped, added):
        error = caught.value
        assert getattr(error, "sqlstate", None) == "23514"
        assert getattr(error, "constraint", None) == "guarded_pw_hash_not_argon2"
        assert "23514" in str(error) and "guarded_pw_hash_not_argon2" in str(error)
        assert error.__cause__ is None and error.__context__ is None
        assert_quotes_no_row(error, NEW_HASH, LEGACY_HASH, "alice@example.com", CAROL)
    assert directory.find(NUMBER, "2") is None
    found = directory.find(NUMBER, "1")
    assert found is not None and found.key_hash == LEGACY_HASH


@pytest.mark.postgres
def test_postgres_duplicate_in_bulk_add_quotes_no_row(postgres: pg.PostgresSchema) -> None:
    """A duplicate address COPY runs into names the constraint, not the address (its DETAIL)."""
    with postgres.engine.begin() as connection:
        connection.exec_driver_sql(
            "CREATE TABLE uniq (id integer PRIMARY KEY,"
            " mail text NOT NULL CONSTRAINT uniq_mail UNIQUE, pw_hash text NOT NULL)"
        )
        connection.exec_driver_sql("CREATE TABLE uniq_domains (fqdn text, id integer)")
    mapping = dataclasses.replace(
        CHECKED_MAPPING, clients_table="uniq", domains_table="uniq_domains"
    )
    directory = SQLAlchemyDirectory(postgres.engine, mapping=mapping)
    rows = [(Client(str(i), CAROL, HASH), ()) for i in (1, 2)]
    with pytest.raises(ValueError) as caught:
        directory.bulk_add(rows)
    assert getattr(caught.value, "sqlstate", None) == "23505"
    assert getattr(caught.value, "constraint", None) == "uniq_mail"
    assert caught.value.__cause__ is None and caught.value.__context__ is None
    assert_quotes_no_row(caught.value, HASH, CAROL)
    assert directory.find(NUMBER, "1") is None


@pytest.mark.postgres
def test_postgres_bulk_add_follows_the_schema_translate_map() -> None:
    """bulk_add writes into the schema the engine's schema_translate_map names, not the default."""
    with pg.fresh_schema() as default, pg.fresh_schema() as tenant:
        SQLAlchemyDirectory(default.engine, create_schema=True)
        SQLAlchemyDirectory(tenant.engine, create_schema=True)
        engine = default.engine.execution_options(schema_translate_map={None: tenant.name})
        directory = SQLAlchemyDirectory(engine)
        rows = [
            (Client("1", "a@example.com", HASH), ["a.example", "www.a.example"]),
            (Client("2", "a@example.com", HASH), []),
        ]
        assert directory.bulk_add(rows) == 2

        def counts(schema: str) -> tuple[int, int]:
            with default.engine.connect() as connection:
                return tuple(  # type: ignore[return-value]
                    connection.exec_driver_sql(f'SELECT count(*) FROM "{schema}".{table}').scalar()
                    for table in ("credrecovery_clients", "credrecovery_domains")
                )

        assert counts(tenant.name) == (2, 2)
        assert counts(default.name) == (0, 0)
        assert [c.number for c in directory.find_all(EMAIL, "a@example.com")] == ["1", "2"]
