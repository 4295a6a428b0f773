"""The directory contract: what every client directory does, sync or async."""

from __future__ import annotations

import dataclasses
import inspect
import threading
from collections.abc import Callable
from typing import Any

import pytest

from ..adapters.memory import MemoryMailer
from ..exceptions import DirectoryError, RecoveryError, TokenAlreadyUsed
from ..identifiers import normalize_identifier
from ..models import Client
from ..protocols import (
    AsyncClientDirectory,
    ClientDirectory,
    MustChangeDirectory,
)
from ._closed_accounts import _ClosedAccountTests
from ._harness import (
    _ALICE_DOMAINS,
    _BOB_KEY,
    _CONTEXT,
    _DOMAIN,
    _EMAIL,
    _NEW_HASH,
    _NUMBER,
    _OLD_HASH,
    _OLD_KEY,
    _THIRD_HASH,
    DirectoryUnderTest,
    _add_alice,
    _add_bob,
    _AsyncHooks,
    _mailed_key,
    _service,
    _SyncHooks,
    _without_domains,
)
from ._shared_addresses import _SharedAddressTests
from .mails import token_from


class _DirectoryTests(_ClosedAccountTests, _SharedAddressTests):
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
        for kind, value in [
            (_NUMBER, "1002"),
            (_EMAIL, "bob@example.net"),
            (_DOMAIN, "bob.example"),
        ]:
            assert _without_domains(subject.directory.find(kind, value)) == bob, (kind, value)

    def test_returned_domains_are_all_the_clients_normalized(
        self,
        directory_under_test: DirectoryUnderTest,
    ) -> None:
        """A directory that returns domains returns every one of the client's, normalized, once.

        Skipped for a directory that returns none.
        """
        subject = directory_under_test
        subject.add_client(
            "1003",
            "carla@example.com",
            key_hash=_OLD_HASH,
            domains=["Bücher.Example.", "SHOP.CARLA.EXAMPLE"],
        )
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
        self,
        directory_under_test: DirectoryUnderTest,
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
        for kind, value in [
            (_NUMBER, "1001"),
            (_EMAIL, "alice@example.com"),
            (_DOMAIN, "alice.example"),
        ]:
            assert subject.directory.find(kind, value) == flagged, (kind, value)
        assert subject.directory.find(_NUMBER, "1002") == bob
        set_flag("1001", False)
        assert subject.directory.find(_NUMBER, "1001") == alice

    def test_must_change_ignores_unknown_numbers_and_key_swaps(
        self,
        directory_under_test: DirectoryUnderTest,
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
            " 1003 ",
            "Carla.Diaz@Example.COM",
            key_hash=_OLD_HASH,
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
        self,
        directory_under_test: DirectoryUnderTest,
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
        self,
        directory_under_test: DirectoryUnderTest,
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
        self,
        directory_under_test: DirectoryUnderTest,
    ) -> None:
        """A failing storage makes request and confirm raise DirectoryError, hash-free."""
        subject = directory_under_test
        _add_alice(subject)
        mailer = MemoryMailer()
        service = _service(subject.directory, mailer)
        service.request("email", "alice@example.com")
        token = token_from(mailer.outbox[0])
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

    def test_close_is_idempotent_and_final(
        self,
        directory_under_test: DirectoryUnderTest,
    ) -> None:
        """close() may be called twice; then every call raises, and the service's too.

        Skipped for a directory without ``close`` (nor ``aclose``). A call
        raises :attr:`storage_error`, the service
        :class:`~credrecovery.DirectoryError`; see :attr:`refuses_after_close`.
        """
        subject = directory_under_test
        if subject.close is None:
            pytest.skip("this directory has no close()")
        _add_alice(subject)
        subject.close()
        subject.close()
        if not self.refuses_after_close:
            return
        directory: Any = subject.directory
        calls: list[tuple[str, tuple[object, ...]]] = [
            ("find", (_EMAIL, "alice@example.com")),
            ("find", (_NUMBER, "9999")),
            ("replace_key_hash", ("1001", _OLD_HASH, _NEW_HASH)),
            ("find_all", (_EMAIL, "alice@example.com")),
            ("set_must_change", ("1001", True)),
        ]
        for name, args in calls:
            if callable(getattr(directory, name, None)):
                with pytest.raises(self.storage_error) as caught:
                    getattr(directory, name)(*args)
                assert _OLD_HASH not in str(caught.value), name
        mailer = MemoryMailer()
        with pytest.raises(DirectoryError):
            _service(subject.directory, mailer).request("client_number", "1001")
        assert mailer.outbox == []

    @pytest.mark.parametrize(
        ("kind", "typed"),
        [
            ("domain", "Alice-Shop.EXAMPLE."),
            ("client_number", " 1001"),
            ("email", "Alice@Example.COM"),
        ],
    )
    def test_full_flow_through_the_service(
        self,
        directory_under_test: DirectoryUnderTest,
        kind: str,
        typed: str,
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
        token = token_from(confirmation_mail)

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
    ``set_must_change`` (or :attr:`keeps_must_change` is true); those of
    closed accounts, which come back with ``active`` false, when it has
    ``set_active`` (see :attr:`closes_accounts`). Domains on a
    returned client are optional; those a directory returns must be all of
    the client's, normalized. A directory with ``close`` must let it be
    called twice and then refuse every call (see :attr:`refuses_after_close`);
    one without ``close`` skips that test.
    """


class AsyncDirectoryContract(_AsyncHooks, _DirectoryTests):
    """The :class:`~credrecovery.AsyncClientDirectory` contract, for an asyncio directory.

    The same tests as :class:`DirectoryContract`, with the same hooks, run on
    an event loop of the contract's own: each call of the directory runs to
    completion there, and the concurrency test's threads hand their calls to
    that one loop at once. Define a fixture named ``directory`` that returns
    an asyncio directory that has opened nothing yet; :meth:`prepare_directory`
    and :meth:`close_directory` then run on the contract's loop, before and
    after each test. The close test closes it through :meth:`close_directory`
    when it has ``aclose`` or ``close``.
    """
