"""Contract suites a host runs on its own client directory and mailer.

Every directory and mailer the library ships passes these same suites. To
check one of your own, subclass the matching contract in a pytest module,
name the subclass ``Test...`` so that pytest collects it, and give it a
fixture that builds your adapter: ``directory`` for a directory contract,
``mailer`` for a mailer contract. Every ``test_*`` method of the contract then
runs on it::

    import pytest
    from credrecovery.testing import DirectoryContract

    class TestPanelDirectory(DirectoryContract):
        @pytest.fixture
        def directory(self, tmp_path):
            return PanelDirectory(tmp_path / "panel.db")

        def add_client(self, directory, number, email, *, key_hash, domains=(),
                       name="", locale=None):
            return directory.insert(number, email, key_hash, domains, name, locale)

The suites need pytest (``pip install 'credrecovery[test]'``); nothing else in
the package imports this module. Pytest rewrites the ``assert`` statements of
test modules only: to see the compared values when a contract test fails, call
``pytest.register_assert_rewrite("credrecovery.testing")`` in your
``conftest.py`` before anything imports this module.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import inspect
import logging
import math
import random
import re
import statistics
import threading
import time
from collections.abc import Callable, Coroutine, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any, ClassVar, TypeVar, cast

import pytest

from .delivery import BackgroundMailer
from .exceptions import DeliveryFailed, DirectoryError, RecoveryError, TokenAlreadyUsed
from .identifiers import IdentifierKind, normalize_identifier
from .jobs import MAX_CLIENTS_PER_MAIL
from .keys import cheap_context
from .memory import MemoryMailer
from .models import Client
from .protocols import (
    AsyncClientDirectory,
    AsyncMailer,
    ClientDirectory,
    Mailer,
    MustChangeDirectory,
)
from .service import RecoveryService

__all__ = [
    "AsyncDirectoryContract",
    "AsyncDirectoryTimingContract",
    "AsyncMailerContract",
    "DirectoryContract",
    "DirectoryTimingContract",
    "DirectoryUnderTest",
    "MailerContract",
    "MailerUnderTest",
    "ks_2samp_pvalue",
]

# Weak hashing, for test speed only.
_CONTEXT = cheap_context()
_OLD_KEY = "Old-Access-Key-2024"
_BOB_KEY = "Bob-Access-Key-2024"
_OLD_HASH = _CONTEXT.hash(_OLD_KEY)
_NEW_HASH = "$argon2id$v=19$m=8,t=1,p=1$bmV3LWhhc2g$c3RhbmQtaW4tZm9yLWEtbmV3LWhhc2g"
_THIRD_HASH = "$argon2id$v=19$m=8,t=1,p=1$dGhpcmQtaGFzaA$c3RhbmQtaW4tZm9yLWEtdGhpcmQtaGFzaA"
_SECRET = "contract-suite-secret-key-0123456789"  # noqa: S105 - signs test tokens only
_CONFIRM_URL = "https://panel.example.com/recover/{token}"
_SENDER = "Client Panel <panel@example.com>"

_NUMBER = IdentifierKind.CLIENT_NUMBER
_EMAIL = IdentifierKind.EMAIL
_DOMAIN = IdentifierKind.DOMAIN

_ALICE_DOMAINS = ("alice.example", "alice-shop.example", "alice.example.org")

_T = TypeVar("_T")
# Makes the next call to time: the value is picked before the clock starts.
_Pick = Callable[[], Callable[[], object]]


# --- directories ----------------------------------------------------------------------------


@dataclasses.dataclass
class DirectoryUnderTest:
    """What a directory contract test works on, built by the contract from your fixture.

    :param directory: the directory, with synchronous methods; for an asyncio
        directory, a face whose every call runs the coroutine to completion.
    :param add_client: adds a client to the directory, through the contract's
        ``add_client`` hook.
    :param break_storage: makes the directory's storage fail from then on,
        through the contract's ``break_storage`` hook.
    :param shares_addresses: whether the directory has ``find_all`` and lets
        several clients share one primary address.
    :param async_directory: the asyncio directory that ``directory`` drives, if any.
    """

    directory: ClientDirectory
    add_client: Callable[..., Client]
    break_storage: Callable[[], None]
    shares_addresses: bool
    async_directory: AsyncClientDirectory | None = None


class _LoopThread:
    """An event loop in a thread of its own, for synchronous code to hand coroutines to.

    Calls may come from several threads at once: their coroutines then run
    concurrently on the one loop, as an asyncio application's tasks do.
    """

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, _T]) -> _T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=60)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


class _SyncDirectory:
    """A synchronous face on an asyncio directory.

    It has ``find_all`` and ``set_must_change`` only when the asyncio directory does.
    """

    def __init__(self, directory: Any, runner: _LoopThread) -> None:
        self._directory = directory
        self._runner = runner
        if hasattr(directory, "find_all"):
            self.find_all = self._find_all
        if hasattr(directory, "set_must_change"):
            self.set_must_change = self._set_must_change

    def find(self, kind: IdentifierKind, value: str) -> Client | None:
        found: Client | None = self._runner.run(self._directory.find(kind, value))
        return found

    def _find_all(self, kind: IdentifierKind, value: str, *, limit: int = 50) -> list[Client]:
        found: list[Client] = self._runner.run(
            self._directory.find_all(kind, value, limit=limit))
        return found

    def replace_key_hash(self, number: str, current: str, new: str) -> bool:
        replaced: bool = self._runner.run(
            self._directory.replace_key_hash(number, current, new))
        return replaced

    def _set_must_change(self, number: str, value: bool) -> None:
        self._runner.run(self._directory.set_must_change(number, value))


def _add_alice(subject: DirectoryUnderTest) -> Client:
    return subject.add_client(
        "1001", "alice@example.com", key_hash=_OLD_HASH, domains=_ALICE_DOMAINS,
        name="Alice Martin", locale="fr",
    )


def _add_bob(subject: DirectoryUnderTest) -> Client:
    return subject.add_client(
        "1002", "bob@example.net", key_hash=_CONTEXT.hash(_BOB_KEY), domains=["bob.example"],
    )


def _add_reseller_client(subject: DirectoryUnderTest, number: str, domain: str) -> Client:
    """Another client under Alice's primary address, as a reseller holds them."""
    return subject.add_client(
        number, "Alice@Example.com", key_hash=_CONTEXT.hash(f"Key-of-{number}"),
        domains=[domain], name=f"Shop {number}",
    )


def _service(directory: ClientDirectory, mailer: MemoryMailer) -> RecoveryService:
    return RecoveryService(
        directory, mailer, secret_key=_SECRET, confirm_url=_CONFIRM_URL, sender=_SENDER,
        crypt_context=_CONTEXT, rate_limits=None, delivery="sync",
    )


def _body(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert part is not None, "the mail has no plain-text part"
    return str(part.get_content())


def _token_from(message: EmailMessage) -> str:
    match = re.search(r"/recover/([A-Za-z0-9_.-]+)", _body(message))
    assert match, "no confirmation link in the mail"
    return match.group(1)


def _mailed_key(message: EmailMessage, key_hash: str) -> str:
    """The word of the credentials mail that ``key_hash`` verifies: the mailed key."""
    words = set(re.findall(r"[A-Za-z0-9]{12,}", _body(message)))
    keys: list[str] = [word for word in words if _CONTEXT.verify(word, key_hash)]
    assert keys, "the stored hash verifies no key in the credentials mail"
    return keys[0]


def _find_all_of(subject: DirectoryUnderTest) -> Callable[..., Sequence[Client]]:
    if not subject.shares_addresses:
        pytest.skip("this directory has only find")
    find_all = getattr(subject.directory, "find_all", None)
    assert callable(find_all), "a directory that shares addresses has find_all"
    return cast(Callable[..., Sequence[Client]], find_all)


def _without_domains(client: Client | None) -> Client | None:
    """``client`` as a directory that returns no domains returns it."""
    return None if client is None else dataclasses.replace(client, domains=())


class _DirectorySettings:
    """What the directory contracts share: the settings a host may change, and their hooks."""

    storage_error: ClassVar[type[BaseException]] = Exception
    """The exception a direct call raises once the storage is broken.

    The shipped directories raise :class:`~credrecovery.DirectoryError`; a
    host's may raise its storage's own."""
    shares_addresses: ClassVar[bool | None] = None
    """Whether several clients may share a primary address, with ``find_all``.

    ``None`` decides by whether the directory has ``find_all``."""

    keeps_must_change: ClassVar[bool | None] = None
    """Whether the directory stores the flag that ``set_must_change`` sets.

    ``None`` decides by whether the directory has ``set_must_change``. Set it
    false for one whose ``set_must_change`` does nothing: a
    :class:`~credrecovery.sqlalchemy.SQLAlchemyDirectory` on host tables whose
    :class:`~credrecovery.sqlalchemy.TableMapping` names no ``must_change``
    column. The tests of the flag are then skipped."""

    def _shares_addresses(self, directory: object) -> bool:
        if self.shares_addresses is None:
            return hasattr(directory, "find_all")
        return self.shares_addresses

    def _keeps_must_change(self, subject: DirectoryUnderTest) -> bool:
        if self.keeps_must_change is None:
            return callable(getattr(subject.directory, "set_must_change", None))
        return self.keeps_must_change

    def _set_must_change_of(self, subject: DirectoryUnderTest) -> Callable[[str, bool], None]:
        if not self._keeps_must_change(subject):
            pytest.skip("this directory does not keep the must-change flag")
        set_flag = getattr(subject.directory, "set_must_change", None)
        assert callable(set_flag), "a directory that keeps the flag has set_must_change"
        return cast(Callable[[str, bool], None], set_flag)

    def break_storage(self, directory: Any) -> None:
        """Make every later call of ``directory`` fail as its storage fails.

        Override it to check the directory's errors: drop its tables, close
        its connection, flip a switch. By default the test that needs it is
        skipped.

        :param directory: what your ``directory`` fixture returned.
        """
        pytest.skip("this directory has no storage that can fail")


class _DirectoryTests(_DirectorySettings):
    """The tests of the directory contract, on the ``directory_under_test`` fixture."""

    def test_satisfies_the_protocol(self, directory_under_test: DirectoryUnderTest) -> None:
        """The directory meets ClientDirectory, and an asyncio one AsyncClientDirectory too."""
        subject = directory_under_test
        assert isinstance(subject.directory, ClientDirectory)
        if hasattr(subject.directory, "set_must_change"):
            assert isinstance(subject.directory, MustChangeDirectory)
        if subject.async_directory is not None:
            assert isinstance(subject.async_directory, AsyncClientDirectory)
            names = ["find", "replace_key_hash"]
            if subject.shares_addresses:
                names.append("find_all")
            if hasattr(subject.async_directory, "set_must_change"):
                names.append("set_must_change")
            for name in names:
                method = getattr(subject.async_directory, name)
                assert inspect.iscoroutinefunction(method), name

    def test_find_by_each_kind(self, directory_under_test: DirectoryUnderTest) -> None:
        """Number, primary email and every one of several domains find the client.

        Domains are compared apart, in
        :meth:`test_returned_domains_are_all_the_clients_normalized`: a
        directory need not return them.
        """
        subject = directory_under_test
        _add_alice(subject)
        bob = _without_domains(_add_bob(subject))
        lookups = [(_NUMBER, "1001"), (_EMAIL, "alice@example.com")]
        lookups += [(_DOMAIN, domain) for domain in _ALICE_DOMAINS]
        alice = Client("1001", "alice@example.com", _OLD_HASH, "Alice Martin", "fr")
        for kind, value in lookups:
            assert _without_domains(subject.directory.find(kind, value)) == alice, (kind, value)
        for kind, value in [(_NUMBER, "1002"), (_EMAIL, "bob@example.net"),
                            (_DOMAIN, "bob.example")]:
            assert _without_domains(subject.directory.find(kind, value)) == bob, (kind, value)

    def test_returned_domains_are_all_the_clients_normalized(
        self, directory_under_test: DirectoryUnderTest,
    ) -> None:
        """A directory that returns domains returns every one of the client's, normalized, once.

        Skipped for a directory that returns none.
        """
        subject = directory_under_test
        subject.add_client("1003", "carla@example.com", key_hash=_OLD_HASH,
                           domains=["Bücher.Example.", "SHOP.CARLA.EXAMPLE"])
        subject.add_client("1004", "dario@example.com", key_hash=_OLD_HASH)
        found = subject.directory.find(_NUMBER, "1003")
        assert found is not None
        if not found.domains:
            pytest.skip("this directory does not return domains")
        assert sorted(found.domains) == ["shop.carla.example", "xn--bcher-kva.example"]
        assert len(set(found.domains)) == len(found.domains)
        for kind, value in [(_EMAIL, "carla@example.com"), (_DOMAIN, "xn--bcher-kva.example")]:
            again = subject.directory.find(kind, value)
            assert again is not None and again.domains == found.domains, (kind, value)
        without = subject.directory.find(_NUMBER, "1004")
        assert without is not None and without.domains == ()

    def test_must_change_is_set_and_cleared(
        self, directory_under_test: DirectoryUnderTest,
    ) -> None:
        """set_must_change(True) reads back by every kind, False clears it; no one else moves.

        This and the next test run when the directory keeps the flag (see
        :attr:`keeps_must_change`) and are skipped otherwise.
        """
        subject = directory_under_test
        set_flag = self._set_must_change_of(subject)
        _add_alice(subject)
        _add_bob(subject)
        alice, bob = (subject.directory.find(_NUMBER, n) for n in ("1001", "1002"))
        assert alice is not None and alice.must_change is False
        assert set_flag("1001", True) is None
        flagged = dataclasses.replace(alice, must_change=True)
        for kind, value in [(_NUMBER, "1001"), (_EMAIL, "alice@example.com"),
                            (_DOMAIN, "alice.example")]:
            assert subject.directory.find(kind, value) == flagged, (kind, value)
        assert subject.directory.find(_NUMBER, "1002") == bob
        set_flag("1001", False)
        assert subject.directory.find(_NUMBER, "1001") == alice

    def test_must_change_ignores_unknown_numbers_and_key_swaps(
        self, directory_under_test: DirectoryUnderTest,
    ) -> None:
        """An unknown number is no error; a key swap keeps the flag, the flag keeps the hash."""
        subject = directory_under_test
        set_flag = self._set_must_change_of(subject)
        _add_alice(subject)
        assert set_flag("9999", True) is None
        assert subject.directory.find(_NUMBER, "9999") is None
        set_flag("1001", True)
        stored = subject.directory.find(_NUMBER, "1001")
        assert stored is not None and stored.key_hash == _OLD_HASH
        assert subject.directory.replace_key_hash("1001", _OLD_HASH, _NEW_HASH) is True
        stored = subject.directory.find(_NUMBER, "1001")
        assert stored is not None and stored.must_change is True
        assert stored.key_hash == _NEW_HASH

    def test_misses_return_none(self, directory_under_test: DirectoryUnderTest) -> None:
        """A value that names nobody, or names a client in another kind's column, is None."""
        subject = directory_under_test
        _add_alice(subject)
        misses = [
            (_NUMBER, "9999"),
            (_EMAIL, "nobody@example.com"),
            (_DOMAIN, "nobody.example"),
            # The email is matched against the primary address only...
            (_EMAIL, "alice@alice.example"),
            # ...the primary address's domain is not one of the client's domains...
            (_DOMAIN, "example.com"),
            # ...and a value of one kind does not match another kind's column.
            (_EMAIL, "alice.example"),
            (_DOMAIN, "alice@example.com"),
            (_NUMBER, "alice"),
        ]
        for kind, value in misses:
            assert subject.directory.find(kind, value) is None, (kind, value)

    def test_stored_values_are_normalized(self, directory_under_test: DirectoryUnderTest) -> None:
        """Values added in any case or script are found by normalize_identifier's output."""
        subject = directory_under_test
        added = subject.add_client(
            " 1003 ", "Carla.Diaz@Example.COM", key_hash=_OLD_HASH,
            domains=["Bücher.Example.", "SHOP.CARLA.EXAMPLE"],
        )
        assert (added.number, added.email) == ("1003", "carla.diaz@example.com")
        lookups = [
            (_NUMBER, "1003 "),
            (_EMAIL, "CARLA.DIAZ@example.com"),
            (_DOMAIN, "BÜCHER.example"),
            (_DOMAIN, "shop.carla.example."),
        ]
        for kind, typed in lookups:
            found = subject.directory.find(kind, normalize_identifier(kind, typed))
            assert found is not None, (kind, typed)
            assert (found.number, found.email) == ("1003", "carla.diaz@example.com")
        assert subject.directory.find(_DOMAIN, "xn--bcher-kva.example") is not None
        assert subject.directory.find(_DOMAIN, "Bücher.Example.") is None

    def test_replace_key_hash_is_compare_and_set(
        self, directory_under_test: DirectoryUnderTest,
    ) -> None:
        """The hash changes only from the current one, and only the named client's."""
        subject = directory_under_test
        directory = subject.directory
        _add_alice(subject)
        _add_bob(subject)
        assert directory.replace_key_hash("1001", _OLD_HASH, _NEW_HASH) is True
        assert directory.replace_key_hash("1001", _OLD_HASH, _THIRD_HASH) is False
        assert directory.replace_key_hash("9999", _NEW_HASH, _THIRD_HASH) is False
        assert directory.find(_NUMBER, "9999") is None
        stored = directory.find(_NUMBER, "1001")
        assert stored is not None and stored.key_hash == _NEW_HASH
        assert directory.replace_key_hash("1001", _NEW_HASH, _THIRD_HASH) is True
        stored = directory.find(_NUMBER, "1001")
        assert stored is not None and stored.key_hash == _THIRD_HASH
        bob = directory.find(_NUMBER, "1002")
        assert bob is not None and _CONTEXT.verify(_BOB_KEY, bob.key_hash)

    def test_concurrent_compare_and_set_lets_one_win(
        self, directory_under_test: DirectoryUnderTest,
    ) -> None:
        """Eight threads swap the same current hash at once: exactly one succeeds."""
        subject = directory_under_test
        _add_alice(subject)
        barrier = threading.Barrier(8)
        results: dict[str, bool] = {}
        errors: list[BaseException] = []

        def swap(new: str) -> None:
            try:
                barrier.wait(timeout=10)
                results[new] = subject.directory.replace_key_hash("1001", _OLD_HASH, new)
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        candidates = [f"{_NEW_HASH}-{i}" for i in range(8)]
        threads = [threading.Thread(target=swap, args=(new,)) for new in candidates]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert errors == []
        winners = [new for new, won in results.items() if won]
        assert len(results) == 8 and len(winners) == 1
        stored = subject.directory.find(_NUMBER, "1001")
        assert stored is not None and stored.key_hash == winners[0]

    def test_storage_failure_surfaces_as_directory_error(
        self, directory_under_test: DirectoryUnderTest,
    ) -> None:
        """A failing storage makes request and confirm raise DirectoryError, hash-free."""
        subject = directory_under_test
        _add_alice(subject)
        mailer = MemoryMailer()
        service = _service(subject.directory, mailer)
        service.request("email", "alice@example.com")
        token = _token_from(mailer.outbox[0])
        subject.break_storage()
        wraps = not issubclass(self.storage_error, RecoveryError)
        for call in (
            lambda: service.request("domain", "alice.example"),
            lambda: service.confirm(token),
        ):
            with pytest.raises(DirectoryError) as caught:
                call()
            error = caught.value
            assert error.__cause__ is not None
            if wraps:
                assert isinstance(error.__cause__, self.storage_error)
            assert _OLD_HASH not in str(error) and _OLD_HASH not in repr(error)
        assert len(mailer.outbox) == 1
        direct_calls: list[Callable[[], object]] = [
            lambda: subject.directory.find(_EMAIL, "alice@example.com"),
            lambda: subject.directory.replace_key_hash("1001", _OLD_HASH, _NEW_HASH),
        ]
        if self._keeps_must_change(subject):
            set_flag = self._set_must_change_of(subject)
            direct_calls.append(lambda: set_flag("1001", True))
        for direct in direct_calls:
            with pytest.raises(self.storage_error) as caught_directly:
                direct()
            assert _OLD_HASH not in str(caught_directly.value)

    @pytest.mark.parametrize(("kind", "typed"), [
        ("domain", "Alice-Shop.EXAMPLE."),
        ("client_number", " 1001"),
        ("email", "Alice@Example.COM"),
    ])
    def test_full_flow_through_the_service(
        self, directory_under_test: DirectoryUnderTest, kind: str, typed: str,
    ) -> None:
        """Request by any kind, confirm, and the mailed key is the one stored."""
        subject = directory_under_test
        directory = subject.directory
        _add_alice(subject)
        _add_bob(subject)
        mailer = MemoryMailer()
        service = _service(directory, mailer)
        service.request(kind, typed)
        [confirmation_mail] = mailer.outbox
        assert confirmation_mail["To"].addresses[0].addr_spec == "alice@example.com"
        token = _token_from(confirmation_mail)

        confirmation = service.confirm(token)

        assert (confirmation.number, confirmation.email) == ("1001", "alice@example.com")
        assert len(mailer.outbox) == 2
        stored = directory.find(_NUMBER, "1001")
        assert stored is not None
        _mailed_key(mailer.outbox[1], stored.key_hash)
        assert not _CONTEXT.verify(_OLD_KEY, stored.key_hash)
        with pytest.raises(TokenAlreadyUsed):
            service.confirm(token)
        bob = directory.find(_NUMBER, "1002")
        assert bob is not None and _CONTEXT.verify(_BOB_KEY, bob.key_hash)

    def test_shared_primary_address_finds_every_client(
        self, directory_under_test: DirectoryUnderTest,
    ) -> None:
        """Clients may share a primary address; find_all returns them all, find the first."""
        subject = directory_under_test
        find_all = _find_all_of(subject)
        directory = subject.directory
        last = _add_reseller_client(subject, "1005", "shop5.example")
        alice = _add_alice(subject)
        middle = _add_reseller_client(subject, "1003", "shop3.example")
        bob = _add_bob(subject)

        assert list(find_all(_EMAIL, "alice@example.com")) == [alice, middle, last]
        assert directory.find(_EMAIL, "alice@example.com") == alice
        # Each client keeps its own number, key and domains.
        assert directory.find(_DOMAIN, "shop3.example") == middle
        assert directory.find(_NUMBER, "1005") == last
        assert last.key_hash != middle.key_hash
        assert list(find_all(_EMAIL, "bob@example.net")) == [bob]

    def test_find_all_stops_at_the_limit(self, directory_under_test: DirectoryUnderTest) -> None:
        """find_all returns at most ``limit`` clients, the lowest numbers first; 50 by default."""
        subject = directory_under_test
        find_all = _find_all_of(subject)
        for number in ("1005", "1001", "1004", "1002", "1003"):
            _add_reseller_client(subject, number, f"shop{number}.example")
        numbers = [client.number for client in find_all(_EMAIL, "alice@example.com")]
        assert numbers == ["1001", "1002", "1003", "1004", "1005"]
        for limit, expected in ((1, ["1001"]), (2, ["1001", "1002"]), (9, numbers)):
            found = find_all(_EMAIL, "alice@example.com", limit=limit)
            assert [client.number for client in found] == expected, limit
        for limit in (0, -1):
            with pytest.raises(ValueError, match="limit"):
                find_all(_EMAIL, "alice@example.com", limit=limit)

    def test_find_all_by_number_or_domain_is_one_client_at_most(
        self, directory_under_test: DirectoryUnderTest,
    ) -> None:
        """A number or a domain names one client; a miss of any kind is an empty list."""
        subject = directory_under_test
        find_all = _find_all_of(subject)
        alice = _add_alice(subject)
        _add_reseller_client(subject, "1003", "shop3.example")
        assert list(find_all(_NUMBER, "1001")) == [alice]
        for domain in _ALICE_DOMAINS:
            assert list(find_all(_DOMAIN, domain)) == [alice], domain
        for kind, value in [(_NUMBER, "9999"), (_EMAIL, "nobody@example.com"),
                            (_DOMAIN, "nobody.example"), (_EMAIL, "alice@alice.example"),
                            (_NUMBER, "alice")]:
            assert list(find_all(kind, value)) == [], (kind, value)

    def test_numbers_and_domains_stay_unique(
        self, directory_under_test: DirectoryUnderTest,
    ) -> None:
        """A taken number or domain is refused (ValueError), storing nothing of the new client."""
        subject = directory_under_test
        _find_all_of(subject)
        directory = subject.directory
        alice = _add_alice(subject)
        with pytest.raises(ValueError):
            subject.add_client("1001", "someone@example.org", key_hash=_NEW_HASH)
        with pytest.raises(ValueError):
            subject.add_client("1009", "alice@example.com", key_hash=_NEW_HASH,
                               domains=["new.example", "alice-shop.example"])
        assert directory.find(_NUMBER, "1009") is None
        assert directory.find(_DOMAIN, "new.example") is None
        assert directory.find(_EMAIL, "someone@example.org") is None
        assert directory.find(_NUMBER, "1001") == alice
        assert directory.find(_DOMAIN, "alice-shop.example") == alice


class _SyncHooks(_DirectorySettings):
    """How a synchronous directory contract builds ``directory_under_test``."""

    def add_client(
        self,
        directory: Any,
        number: str,
        email: str,
        *,
        key_hash: str,
        domains: Iterable[str] = (),
        name: str = "",
        locale: str | None = None,
    ) -> Client:
        """Store a client and return it as ``find`` will return it.

        Store ``number``, ``email`` and ``domains`` as
        :func:`~credrecovery.normalize_identifier` writes them. Where the
        directory lets clients share an address, raise ``ValueError`` for a
        taken number or domain, storing nothing.

        :param directory: what your ``directory`` fixture returned.
        :param number: the client number, numeric text, maybe with spaces around.
        :param email: the primary address, in any letter case.
        :param key_hash: the key hash to store as it is.
        :param domains: the client's domains, in any case or script.
        :param name: the client's display name.
        :param locale: the client's mail language, if any.
        :returns: the client as stored.
        """
        add = getattr(directory, "add_client", None)
        if add is None:
            raise NotImplementedError(
                "the directory has no add_client: override DirectoryContract.add_client")
        client: Client = add(number, email, key_hash=key_hash, domains=domains, name=name,
                             locale=locale)
        return client

    @pytest.fixture
    def directory_under_test(self, directory: Any) -> DirectoryUnderTest:
        """Your ``directory``, with the hooks the tests use."""

        def add_client(*args: Any, **kwargs: Any) -> Client:
            return self.add_client(directory, *args, **kwargs)

        return DirectoryUnderTest(directory, add_client, lambda: self.break_storage(directory),
                                  self._shares_addresses(directory))


class _AsyncHooks(_DirectorySettings):
    """How an asyncio directory contract builds ``directory_under_test``."""

    async def prepare_directory(self, directory: Any) -> None:
        """Make ``directory`` ready, on the contract's loop; by default nothing is done.

        :param directory: what your ``directory`` fixture returned.
        """

    async def close_directory(self, directory: Any) -> None:
        """Close ``directory`` on the contract's loop; by default awaits its ``close()``, if any.

        :param directory: what your ``directory`` fixture returned.
        """
        close = getattr(directory, "close", None)
        if close is not None:
            result = close()
            if inspect.isawaitable(result):
                await result

    async def add_client(
        self,
        directory: Any,
        number: str,
        email: str,
        *,
        key_hash: str,
        domains: Iterable[str] = (),
        name: str = "",
        locale: str | None = None,
    ) -> Client:
        """Store a client and return it, as :meth:`DirectoryContract.add_client` does.

        By default awaits the directory's own ``add_client``.

        :param directory: what your ``directory`` fixture returned.
        :param number: the client number, numeric text, maybe with spaces around.
        :param email: the primary address, in any letter case.
        :param key_hash: the key hash to store as it is.
        :param domains: the client's domains, in any case or script.
        :param name: the client's display name.
        :param locale: the client's mail language, if any.
        :returns: the client as stored.
        """
        add = getattr(directory, "add_client", None)
        if add is None:
            raise NotImplementedError(
                "the directory has no add_client: override AsyncDirectoryContract.add_client")
        client: Client = await add(number, email, key_hash=key_hash, domains=domains,
                                   name=name, locale=locale)
        return client

    @pytest.fixture
    def directory_under_test(self, directory: Any) -> Iterator[DirectoryUnderTest]:
        """Your ``directory`` behind a synchronous face, on a loop of the contract's own."""
        runner = _LoopThread()
        try:
            runner.run(self.prepare_directory(directory))

            def add_client(*args: Any, **kwargs: Any) -> Client:
                return runner.run(self.add_client(directory, *args, **kwargs))

            yield DirectoryUnderTest(
                cast(ClientDirectory, _SyncDirectory(directory, runner)), add_client,
                lambda: self.break_storage(directory), self._shares_addresses(directory),
                async_directory=directory,
            )
        finally:
            try:
                runner.run(self.close_directory(directory))
            finally:
                runner.stop()


class DirectoryContract(_SyncHooks, _DirectoryTests):
    """The :class:`~credrecovery.ClientDirectory` contract, for a directory of your own.

    Subclass it as ``Test...`` and define a pytest fixture named
    ``directory`` that returns (or yields, then cleans up) an empty directory.
    The tests add clients through :meth:`add_client`, whose default calls the
    directory's own ``add_client`` as the shipped directories have it;
    override it when yours stores clients another way. Client numbers are
    numeric text, so integer-keyed tables take part.

    Override :meth:`break_storage` to check that storage failures surface as
    :class:`~credrecovery.DirectoryError` through the service, and set
    :attr:`storage_error` to what a direct call then raises. The tests of
    ``find_all`` and of clients sharing a primary address run when the
    directory has ``find_all`` (or :attr:`shares_addresses` is true) and are
    skipped otherwise; those of the "must change" flag run when it has
    ``set_must_change`` (or :attr:`keeps_must_change` is true). Domains on a
    returned client are optional; those a directory returns must be all of
    the client's, normalized.
    """

class AsyncDirectoryContract(_AsyncHooks, _DirectoryTests):
    """The :class:`~credrecovery.AsyncClientDirectory` contract, for an asyncio directory.

    The same tests as :class:`DirectoryContract`, with the same hooks, run on
    an event loop of the contract's own: each call of the directory runs to
    completion there, and the concurrency test's threads hand their calls to
    that one loop at once. Define a fixture named ``directory`` that returns
    an asyncio directory that has opened nothing yet; :meth:`prepare_directory`
    and :meth:`close_directory` then run on the contract's loop, before and
    after each test.
    """

# --- timing ---------------------------------------------------------------------------------


def ks_2samp_pvalue(first: Sequence[float], second: Sequence[float]) -> float:
    """The p-value of the two-sample Kolmogorov-Smirnov test that both samples share a law.

    The statistic ``D`` is the largest gap between the two empirical
    distribution functions; the p-value is Kolmogorov's limiting distribution
    ``Q(λ) = 2 Σ (-1)^(k-1) exp(-2 k² λ²)`` at ``λ = (√e + 0.12 + 0.11/√e) D``,
    where ``e = n m / (n + m)`` (Stephens' small-sample correction, as in
    *Numerical Recipes*). Close to SciPy's ``ks_2samp(method="asymp")`` for
    samples of a few hundred values or more, which is what a timing check
    takes. Raises :class:`ValueError` when either sample is empty.
    """
    if not first or not second:
        raise ValueError("both samples need at least one value")
    a, b = sorted(first), sorted(second)
    n, m = len(a), len(b)
    i = j = 0
    gap = 0.0
    while i < n and j < m:
        # Step past every value equal to the smaller one, in both samples.
        value = min(a[i], b[j])
        while i < n and a[i] == value:
            i += 1
        while j < m and b[j] == value:
            j += 1
        gap = max(gap, abs(i / n - j / m))
    effective = math.sqrt(n * m / (n + m))
    lam = (effective + 0.12 + 0.11 / effective) * gap
    if lam < 0.2:
        return 1.0
    total = 0.0
    for k in range(1, 101):
        term = math.exp(-2.0 * k * k * lam * lam)
        total += term if k % 2 else -term
        if term < 1e-12:
            break
    return min(1.0, max(0.0, 2.0 * total))


@dataclasses.dataclass(frozen=True)
class _Timings:
    """The durations of one comparison, in nanoseconds, and its verdict."""

    label: str
    first: list[int]
    second: list[int]

    @property
    def p_value(self) -> float:
        return ks_2samp_pvalue(self.first, self.second)

    @property
    def gap(self) -> float:
        """The gap of the medians, relative to the smaller one."""
        first, second = statistics.median(self.first), statistics.median(self.second)
        return abs(first - second) / max(1.0, min(first, second))

    def describe(self, first: str, second: str) -> str:
        return (f"{self.label}: median {statistics.median(self.first) / 1000:.2f} µs {first},"
                f" {statistics.median(self.second) / 1000:.2f} µs {second},"
                f" KS p = {self.p_value:.2g}")


class _TimingTests(_DirectorySettings):
    """The timing checks, on the ``directory_under_test`` fixture."""

    timing_clients: ClassVar[int] = 200
    """How many clients the checks add, each with a number, an address and a domain."""

    timing_samples: ClassVar[int] = 1000
    """How many calls each side of a comparison times, per attempt."""

    timing_attempts: ClassVar[int] = 3
    """How many times a comparison is measured before it fails: noise passes once."""

    timing_alpha: ClassVar[float] = 0.001
    """The p-value below which a comparison counts as different."""

    timing_tolerance: ClassVar[float] = 0.03
    """The gap of medians, relative, that a comparison must also exceed to count as different.

    Two Python paths that return different results (a client, or nothing)
    differ by some tens of nanoseconds, which many samples show as
    significant; a directory that reads or decodes more on one side differs
    by far more than this.
    """

    def _add_timing_clients(self, subject: DirectoryUnderTest) -> None:
        """Clients at even positions; the odd ones, of the same shape, name nobody."""
        for n in range(self.timing_clients):
            number = 200000 + 2 * n
            subject.add_client(str(number), f"c{number}@example.com", key_hash=_OLD_HASH,
                               domains=[f"c{number}.example"], name=f"Client {number}")

    def _measure(self, calls: dict[str, _Pick]) -> dict[str, list[int]]:
        """Time ``timing_samples`` calls of each kind, interleaved in a random order.

        Each entry makes the next call to time; the order is shuffled so that
        whatever else the machine does falls on every kind alike.
        """
        plan = [name for name in calls for _ in range(self.timing_samples)]
        rng = random.Random()  # noqa: S311 - orders and picks test values
        rng.shuffle(plan)
        for name in plan[: min(len(plan), 300)]:
            calls[name]()()
        durations: dict[str, list[int]] = {name: [] for name in calls}
        clock = time.perf_counter_ns
        for name in plan:
            call = calls[name]()
            started = clock()
            call()
            durations[name].append(clock() - started)
        return durations

    def _check(self, calls: dict[str, _Pick],
               pairs: Sequence[tuple[str, str, str]]) -> None:
        """Fail unless, in one attempt, every pair of ``calls`` times alike."""
        failures: list[str] = []
        for attempt in range(1, self.timing_attempts + 1):
            durations = self._measure(calls)
            differ = [
                timings.describe(f"for {first}", f"for {second}")
                for first, second, label in pairs
                if (timings := _Timings(label, durations[first], durations[second])).p_value
                < self.timing_alpha and timings.gap > self.timing_tolerance
            ]
            if not differ:
                return
            failures.append(f"attempt {attempt}: " + "; ".join(differ))
        pytest.fail(
            f"the directory takes measurably longer on one side (p below {self.timing_alpha}"
            f" and medians more than {self.timing_tolerance:.0%} apart in each of"
            f" {self.timing_attempts} attempts of {self.timing_samples} calls a side):\n"
            + "\n".join(failures),
            pytrace=False,
        )

    def test_a_miss_costs_what_a_hit_costs(
        self, directory_under_test: DirectoryUnderTest,
    ) -> None:
        """find takes as long for a number, address or domain naming nobody as for a client's."""
        subject = directory_under_test
        self._add_timing_clients(subject)
        find = subject.directory.find
        rng = random.Random()  # noqa: S311 - orders and picks test values

        def picker(kind: IdentifierKind, template: str, parity: int) -> _Pick:
            def pick() -> Callable[[], object]:
                value = template.format(200000 + 2 * rng.randrange(self.timing_clients) + parity)
                return lambda: find(kind, value)
            return pick

        calls: dict[str, _Pick] = {}
        pairs = []
        for kind, template in ((_NUMBER, "{}"), (_EMAIL, "c{}@example.com"),
                               (_DOMAIN, "c{}.example")):
            calls[f"{kind.value} hit"] = picker(kind, template, 0)
            calls[f"{kind.value} miss"] = picker(kind, template, 1)
            pairs.append((f"{kind.value} hit", f"{kind.value} miss", f"find by {kind.value}"))
        self._check(calls, pairs)

    def test_a_shared_address_costs_what_a_miss_costs(
        self, directory_under_test: DirectoryUnderTest,
    ) -> None:
        """find_all, asked for what a mail lists, takes as long for an address that up to
        MAX_CLIENTS_PER_MAIL clients share, or one client has, as for an address nobody has."""
        subject = directory_under_test
        find_all = _find_all_of(subject)
        self._add_timing_clients(subject)
        groups = max(2, self.timing_clients // 20)
        for group in range(groups):
            address = f"s{300000 + 2 * group}@example.com"
            for member in range(MAX_CLIENTS_PER_MAIL):
                number = 400000 + group * 20 + member
                subject.add_client(str(number), address, key_hash=_OLD_HASH,
                                   domains=[f"s{number}.example"], name=f"Shop {number}")
        rng = random.Random()  # noqa: S311 - orders and picks test values
        limit = MAX_CLIENTS_PER_MAIL + 1

        def picker(template: str, base: int, count: int, parity: int,
                   ) -> _Pick:
            def pick() -> Callable[[], object]:
                value = template.format(base + 2 * rng.randrange(count) + parity)
                return lambda: find_all(_EMAIL, value, limit=limit)
            return pick

        calls = {
            "a shared address": picker("s{}@example.com", 300000, groups, 0),
            "an address nobody has": picker("s{}@example.com", 300000, groups, 1),
            "one client's address": picker("c{}@example.com", 200000, self.timing_clients, 0),
            "another address nobody has": picker("c{}@example.com", 200000,
                                                 self.timing_clients, 1),
        }
        self._check(calls, [
            ("a shared address", "an address nobody has",
             f"find_all(limit={limit}) by an address {MAX_CLIENTS_PER_MAIL} clients share"),
            ("one client's address", "another address nobody has",
             f"find_all(limit={limit}) by one client's address"),
        ])


class DirectoryTimingContract(_SyncHooks, _TimingTests):
    """Checks that your directory takes as long to find nobody as to find a client.

    The service answers a request the same way whether or not a client
    matched, so that the answer tells nothing; its time must tell nothing
    either. Subclass it as ``Test...`` with the same ``directory`` fixture and
    :meth:`add_client` hook as :class:`DirectoryContract`. It adds
    :attr:`timing_clients` clients (and, when the directory has ``find_all``,
    addresses that :data:`~credrecovery.jobs.MAX_CLIENTS_PER_MAIL` clients
    share), then times many lookups, hits and misses interleaved in a random
    order, and compares the two sides with a two-sample Kolmogorov-Smirnov
    test (:func:`ks_2samp_pvalue`): a p-value below :attr:`timing_alpha`
    with medians more than :attr:`timing_tolerance` apart, in each of
    :attr:`timing_attempts` attempts, fails the test with the medians and
    the p-value. Because the sides interleave, a busy machine
    slows both alike and does not fail it; a directory that does more work on
    one side (reads a row, decodes a record, sleeps) does.

    Misses are values of the same shape and length as the hits, and fall
    between them in every index's order, so that a lookup's cost may depend
    on where its value sorts without failing the test; it must not depend on
    whether the value is there. A directory passes when a miss reads and
    decodes as many records as a hit, such as a stand-in record it then drops
    (see the custom adapters guide). The checks take a few seconds on a local
    database; run them apart from your unit tests if need be, e.g. with a
    marker.
    """


class AsyncDirectoryTimingContract(_AsyncHooks, _TimingTests):
    """:class:`DirectoryTimingContract` for an asyncio directory.

    The same checks, with the hooks of :class:`AsyncDirectoryContract`. Each
    timed call runs to completion on the contract's event loop, so the
    hand-over to the loop's thread is timed too; it costs both sides alike.
    """

# --- mailers --------------------------------------------------------------------------------


_FROM = "panel@example.com"
_RECIPIENT = "ana.munoz@example.org"
_CC = "copia@example.net"
_BCC = "oculta@example.net"
_TEXT = "Hola Ana Muñoz,\n\nSu número de cliente: 1001\nClave: Kq7mZr2WxPd9HtNa\n"
_HTML = "<p>Hola Ana Muñoz,</p>\n<p>Su número de cliente: <b>1001</b></p>\n"

#: Whether each failure kind is worth trying again.
_TEMPORARY = {"permanent": False, "temporary": True}


@dataclasses.dataclass
class MailerUnderTest:
    """What a mailer contract test works on, built by the contract from your fixture.

    :param mailer: the mailer, with a synchronous ``send``; for an asyncio
        mailer, a face that runs its ``send`` to completion; in the background
        variants, the :class:`~credrecovery.BackgroundMailer` around yours.
    :param delivered: the messages that arrived at the far end, once a
        background mailer has drained.
    :param envelope_recipients: the envelope recipients of each message that
        arrived, where there is an envelope.
    :param fail_next: makes the next delivery attempt fail, ``"permanent"``-ly
        or ``"temporary"``-ly; ``None`` where the mailer cannot fail.
    :param async_mailer: the asyncio mailer that ``mailer`` drives, if any.
    """

    mailer: Mailer
    delivered: Callable[[], list[EmailMessage]]
    envelope_recipients: Callable[[], list[tuple[str, ...]]] | None = None
    fail_next: Callable[[str], None] | None = None
    async_mailer: AsyncMailer | None = None

    @property
    def background(self) -> bool:
        """Whether a :class:`~credrecovery.BackgroundMailer` stands in front of the mailer."""
        return isinstance(self.mailer, BackgroundMailer)


def _build_message() -> EmailMessage:
    """A complete message as the service hands it over, plus Cc and Bcc to ignore."""
    message = EmailMessage()
    message["From"] = f"Client Panel <{_FROM}>"
    message["To"] = f"Ana Muñoz <{_RECIPIENT}>"
    message["Cc"] = _CC
    message["Bcc"] = _BCC
    message["Subject"] = "Sus datos de acceso al panel de clientes"
    message["Date"] = format_datetime(datetime(2027, 1, 15, 10, 30, tzinfo=UTC))
    message["Message-ID"] = make_msgid(domain="panel.example.com")
    message.set_content(_TEXT)
    message.add_alternative(_HTML, subtype="html")
    return message


def _lines(text: str) -> list[str]:
    return text.replace("\r\n", "\n").split("\n")


def _events(caplog: pytest.LogCaptureFixture, name: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "event", None) == name]


class _AsyncSend:
    """A Mailer that runs an AsyncMailer's ``send`` to completion on the contract's loop."""

    def __init__(self, mailer: AsyncMailer, runner: asyncio.Runner) -> None:
        self._mailer = mailer
        self._runner = runner

    def send(self, message: EmailMessage) -> None:
        self._runner.run(self._mailer.send(message))


class _MailerTests:
    """The tests of the mailer contract, on the ``mailer_under_test`` fixture, and its hooks."""

    background: ClassVar[bool] = False
    """Run the tests through a :class:`~credrecovery.BackgroundMailer` around your mailer.

    Three attempts, short backoffs; the service sends confirmation mail that way
    by default."""

    def delivered(self, mailer: Any) -> list[EmailMessage]:
        """Return every message that arrived at the far end so far, oldest first.

        Read them where your mailer delivers: a test SMTP server, a fake API,
        a spool directory. This hook is required.

        :param mailer: what your ``mailer`` fixture returned.
        :returns: the messages, parsed.
        """
        raise NotImplementedError("override delivered() to say what reached the far end")

    def envelope_recipients(self, mailer: Any) -> list[tuple[str, ...]] | None:
        """Return the envelope recipients of each message that arrived, if there is an envelope.

        By default ``None``: the check of envelope recipients is left out.

        :param mailer: what your ``mailer`` fixture returned.
        :returns: one tuple of addresses for each delivered message, or ``None``.
        """
        return None

    def fail_next(self, mailer: Any, kind: str) -> None:
        """Make the next delivery attempt fail, and only that one.

        ``"permanent"`` is a failure not worth trying again (a 5xx reply),
        ``"temporary"`` one that is (a 4xx reply); the mailer must then raise
        :class:`~credrecovery.DeliveryFailed` with ``temporary`` set to match.
        By default the failure tests are skipped.

        :param mailer: what your ``mailer`` fixture returned.
        :param kind: ``"permanent"`` or ``"temporary"``.
        """
        pytest.skip("this mailer has no failure mode")

    def _has_failure_mode(self) -> bool:
        return type(self).fail_next is not _MailerTests.fail_next

    @contextlib.contextmanager
    def _under_test(self, mailer: Any, face: Mailer,
                    async_mailer: AsyncMailer | None) -> Iterator[MailerUnderTest]:
        def fail_next(kind: str) -> None:
            self.fail_next(mailer, kind)

        def envelope() -> list[tuple[str, ...]]:
            recipients = self.envelope_recipients(mailer)
            assert recipients is not None
            return recipients

        has_envelope = self.envelope_recipients(mailer) is not None
        failing = fail_next if self._has_failure_mode() else None
        if not self.background:
            yield MailerUnderTest(face, lambda: self.delivered(mailer),
                                  envelope if has_envelope else None, failing, async_mailer)
            return
        # An asyncio mailer is handed over as it is: the delivery threads run it.
        with BackgroundMailer(async_mailer or face, max_attempts=3, backoff=0.05,
                              max_backoff=0.1) as background:

            def delivered() -> list[EmailMessage]:
                assert background.flush(10), "the background mailer did not drain"
                return self.delivered(mailer)

            yield MailerUnderTest(background, delivered, envelope if has_envelope else None,
                                  failing, async_mailer)

    def test_is_a_mailer(self, mailer_under_test: MailerUnderTest) -> None:
        """The mailer meets its protocol: Mailer, or AsyncMailer for an asyncio one."""
        assert isinstance(mailer_under_test.mailer, Mailer)
        if mailer_under_test.async_mailer is not None:
            assert isinstance(mailer_under_test.async_mailer, AsyncMailer)
            assert inspect.iscoroutinefunction(mailer_under_test.async_mailer.send)

    def test_delivers_once_with_headers_and_both_parts(
        self, mailer_under_test: MailerUnderTest,
    ) -> None:
        """One message arrives, its headers and both parts as sent."""
        sent = _build_message()
        mailer_under_test.mailer.send(sent)
        [received] = mailer_under_test.delivered()
        for header in ("From", "To", "Subject", "Date", "Message-ID"):
            assert str(received[header]) == str(sent[header]), header
        assert received.get_content_type() == "multipart/alternative"
        plain = received.get_body(("plain",))
        html = received.get_body(("html",))
        assert plain is not None and html is not None
        # SMTP carries lines ending in CRLF, and the parser keeps them.
        assert _lines(plain.get_content()) == _lines(_TEXT)
        assert _lines(html.get_content()) == _lines(_HTML)

    def test_recipients_are_exactly_the_to_address(
        self, mailer_under_test: MailerUnderTest,
    ) -> None:
        """Only the To address receives the message; Cc and Bcc headers add nobody."""
        mailer_under_test.mailer.send(_build_message())
        [received] = mailer_under_test.delivered()
        assert [a.addr_spec for a in received["To"].addresses] == [_RECIPIENT]
        if mailer_under_test.envelope_recipients is not None:
            assert mailer_under_test.envelope_recipients() == [(_RECIPIENT,)]

    @pytest.mark.parametrize("kind", list(_TEMPORARY))
    def test_failure(
        self, mailer_under_test: MailerUnderTest, kind: str, caplog: pytest.LogCaptureFixture,
    ) -> None:
        """A direct mailer raises; a background one logs and, if worth it, tries again."""
        subject = mailer_under_test
        if subject.fail_next is None:
            pytest.skip("this mailer has no failure mode")
        caplog.set_level(logging.INFO, logger="credrecovery")
        temporary = _TEMPORARY[kind]
        subject.fail_next(kind)
        message = _build_message()

        if not subject.background:
            with pytest.raises(DeliveryFailed) as caught:
                subject.mailer.send(message)
            assert caught.value.temporary is temporary
            assert caught.value.__cause__ is not None
            assert subject.delivered() == []
            # The failure was the message's, not the mailer's: the next one goes through.
            subject.mailer.send(message)
            assert len(subject.delivered()) == 1
            return

        subject.mailer.send(message)  # only queues: never raises for a delivery failure
        delivered = subject.delivered()
        failed = _events(caplog, "delivery_failed")
        if temporary:
            # Retried after a backoff, and then delivered once.
            assert len(delivered) == 1
            assert failed == []
            assert len(_events(caplog, "delivery_retry")) == 1
        else:
            assert delivered == []
            [record] = failed
            assert record.levelno == logging.ERROR
            assert getattr(record, "message_id", None) == message["Message-ID"]
            assert getattr(record, "error", None) == "DeliveryFailed"
            assert _events(caplog, "delivery_retry") == []


class MailerContract(_MailerTests):
    """The :class:`~credrecovery.Mailer` contract, for a mailer of your own.

    Subclass it as ``Test...``, define a pytest fixture named ``mailer`` that
    returns (or yields, then cleans up) your mailer, and override
    :meth:`delivered` to return what reached the far end. Override
    :meth:`fail_next` to check failures (the mailer must raise
    :class:`~credrecovery.DeliveryFailed` with the right ``temporary``, and
    :class:`~credrecovery.BackgroundMailer` must retry a temporary one), and
    :meth:`envelope_recipients` where the transport has an envelope. Set
    :attr:`background` in a second subclass to run the same tests through a
    ``BackgroundMailer``.
    """

    @pytest.fixture
    def mailer_under_test(self, mailer: Mailer) -> Iterator[MailerUnderTest]:
        """Your ``mailer``, with the hooks the tests use."""
        with self._under_test(mailer, mailer, None) as subject:
            yield subject


class AsyncMailerContract(_MailerTests):
    """The :class:`~credrecovery.AsyncMailer` contract, for an asyncio mailer of your own.

    The same tests and hooks as :class:`MailerContract`; the ``mailer``
    fixture returns an asyncio mailer, whose ``send`` the contract runs to
    completion on an event loop of its own (or, with :attr:`background`, on
    the delivery threads of a :class:`~credrecovery.BackgroundMailer`).
    """

    @pytest.fixture
    def mailer_under_test(self, mailer: AsyncMailer) -> Iterator[MailerUnderTest]:
        """Your asyncio ``mailer`` behind a synchronous ``send``."""
        with asyncio.Runner() as runner, self._under_test(
            mailer, _AsyncSend(mailer, runner), mailer,
        ) as subject:
            yield subject
