"""What the contract suites share: the directory under test, its hooks and fixed values."""

from __future__ import annotations

import dataclasses
import inspect
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from email.message import EmailMessage
from typing import Any, ClassVar, TypeVar, cast

import pytest

from ..adapters.memory import MemoryMailer
from ..identifiers import IdentifierKind
from ..keys import cheap_context
from ..models import Client
from ..protocols import (
    AsyncClientDirectory,
    ClientDirectory,
)
from ..service import RecoveryService
from ._bridge import _LoopThread, _SyncDirectory

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
    :param close: closes the directory (its ``close()``, or for an asyncio
        one the contract's ``close_directory`` hook); ``None`` when it has
        neither ``close`` nor ``aclose``.
    """

    directory: ClientDirectory
    add_client: Callable[..., Client]
    break_storage: Callable[[], None]
    shares_addresses: bool
    async_directory: AsyncClientDirectory | None = None
    close: Callable[[], None] | None = None


def _add_alice(subject: DirectoryUnderTest) -> Client:
    return subject.add_client(
        "1001",
        "alice@example.com",
        key_hash=_OLD_HASH,
        domains=_ALICE_DOMAINS,
        name="Alice Martin",
        locale="fr",
    )


def _add_bob(subject: DirectoryUnderTest) -> Client:
    return subject.add_client(
        "1002",
        "bob@example.net",
        key_hash=_CONTEXT.hash(_BOB_KEY),
        domains=["bob.example"],
    )


def _add_reseller_client(subject: DirectoryUnderTest, number: str, domain: str) -> Client:
    """Another client under Alice's primary address, as a reseller holds them."""
    return subject.add_client(
        number,
        "Alice@Example.com",
        key_hash=_CONTEXT.hash(f"Key-of-{number}"),
        domains=[domain],
        name=f"Shop {number}",
    )


def _service(directory: ClientDirectory, mailer: MemoryMailer) -> RecoveryService:
    return RecoveryService(
        directory,
        mailer,
        secret_key=_SECRET,
        confirm_url=_CONFIRM_URL,
        sender=_SENDER,
        crypt_context=_CONTEXT,
        rate_limits=None,
        delivery="sync",
    )


def _body(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert part is not None, "the mail has no plain-text part"
    return str(part.get_content())


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


def _active_of(subject: DirectoryUnderTest) -> str | None:
    """How the directory knows closed accounts: ``"column"``, ``"condition"`` or ``None``."""
    directory = subject.async_directory or subject.directory
    if not callable(getattr(directory, "set_active", None)):
        return None
    # The SQLAlchemy directories: their mapping says whether and how.
    active = getattr(getattr(directory, "mapping", None), "active", "column")
    if active is None:
        return None
    return "column" if isinstance(active, str) else "condition"


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

    refuses_after_close: ClassVar[bool] = True
    """Whether every call after ``close()`` raises :attr:`storage_error`.

    Set it false for a directory whose ``close()`` releases its connections
    but opens them again on demand: the close test then checks only that
    ``close()`` may be called twice."""

    closes_accounts: ClassVar[bool | None] = None
    """Whether the directory returns closed accounts, with ``Client.active`` false.

    The :meth:`add_client` hook then gets ``active=False`` for a closed
    client. ``None`` decides by whether the directory has ``set_active``
    (for a :class:`~credrecovery.sqlalchemy.SQLAlchemyDirectory`, whether
    its :class:`~credrecovery.sqlalchemy.TableMapping` names ``active``).
    The tests of closed accounts are skipped when it is false."""

    sets_active: ClassVar[bool | None] = None
    """Whether ``set_active`` opens and closes accounts.

    ``None`` decides as :attr:`closes_accounts` does; a SQLAlchemy directory
    whose ``TableMapping.active`` is a condition has a ``set_active`` that
    refuses. The test of ``set_active`` is skipped when it is false."""

    def _closes_accounts(self, subject: DirectoryUnderTest) -> bool:
        if self.closes_accounts is None:
            return _active_of(subject) is not None
        return self.closes_accounts

    def _set_active_of(self, subject: DirectoryUnderTest) -> Callable[[str, bool], None]:
        sets = self.sets_active
        if sets is None:
            sets = self._closes_accounts(subject) and _active_of(subject) != "condition"
        if not sets:
            pytest.skip("this directory does not open and close accounts with set_active")
        set_active = getattr(subject.directory, "set_active", None)
        assert callable(set_active), "a directory that opens and closes accounts has set_active"
        return cast(Callable[[str, bool], None], set_active)

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
        active: bool = True,
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
        :param active: false for a closed account; given only when
            :attr:`closes_accounts` holds.
        :returns: the client as stored.
        """
        add = getattr(directory, "add_client", None)
        if add is None:
            raise NotImplementedError(
                "the directory has no add_client: override DirectoryContract.add_client"
            )
        # Passed only for a closed client: a host's add_client may not take it.
        closed: dict[str, bool] = {} if active else {"active": False}
        client: Client = add(
            number, email, key_hash=key_hash, domains=domains, name=name, locale=locale, **closed
        )
        return client

    @pytest.fixture
    def directory_under_test(self, directory: Any) -> DirectoryUnderTest:
        """Your ``directory``, with the hooks the tests use."""

        def add_client(*args: Any, **kwargs: Any) -> Client:
            return self.add_client(directory, *args, **kwargs)

        close = getattr(directory, "close", None)
        return DirectoryUnderTest(
            directory,
            add_client,
            lambda: self.break_storage(directory),
            self._shares_addresses(directory),
            close=close if callable(close) else None,
        )


class _AsyncHooks(_DirectorySettings):
    """How an asyncio directory contract builds ``directory_under_test``."""

    async def prepare_directory(self, directory: Any) -> None:
        """Make ``directory`` ready, on the contract's loop; by default nothing is done.

        :param directory: what your ``directory`` fixture returned.
        """

    async def close_directory(self, directory: Any) -> None:
        """Close ``directory`` on the contract's loop; by default awaits its ``aclose()``, or
        else its ``close()``, if it has one.

        It may run twice, after a test that closed the directory itself.

        :param directory: what your ``directory`` fixture returned.
        """
        close = getattr(directory, "aclose", None) or getattr(directory, "close", None)
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
        active: bool = True,
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
        :param active: false for a closed account; given only when
            :attr:`closes_accounts` holds.
        :returns: the client as stored.
        """
        add = getattr(directory, "add_client", None)
        if add is None:
            raise NotImplementedError(
                "the directory has no add_client: override AsyncDirectoryContract.add_client"
            )
        closed: dict[str, bool] = {} if active else {"active": False}
        client: Client = await add(
            number, email, key_hash=key_hash, domains=domains, name=name, locale=locale, **closed
        )
        return client

    @pytest.fixture
    def directory_under_test(self, directory: Any) -> Iterator[DirectoryUnderTest]:
        """Your ``directory`` behind a synchronous face, on a loop of the contract's own."""
        runner = _LoopThread()
        try:
            runner.run(self.prepare_directory(directory))

            def add_client(*args: Any, **kwargs: Any) -> Client:
                return runner.run(self.add_client(directory, *args, **kwargs))

            def close() -> None:
                runner.run(self.close_directory(directory))

            closes = any(callable(getattr(directory, name, None)) for name in ("aclose", "close"))
            yield DirectoryUnderTest(
                cast(ClientDirectory, _SyncDirectory(directory, runner)),
                add_client,
                lambda: self.break_storage(directory),
                self._shares_addresses(directory),
                async_directory=directory,
                close=close if closes else None,
            )
        finally:
            try:
                runner.run(self.close_directory(directory))
            finally:
                runner.stop()
