"""The directory contract's tests of closed accounts: read back closed, unknown to the service."""

from __future__ import annotations

import dataclasses
from email.message import EmailMessage

import pytest

from ..adapters.memory import MemoryMailer
from ..exceptions import InvalidToken
from ..identifiers import IdentifierKind
from ..models import Client
from ..service import RecoveryService
from ..tokens import TOKEN_IN_LINK
from ._harness import (
    _CONTEXT,
    _DOMAIN,
    _EMAIL,
    _NEW_HASH,
    _NUMBER,
    _OLD_HASH,
    _OLD_KEY,
    DirectoryUnderTest,
    _add_alice,
    _add_bob,
    _add_reseller_client,
    _body,
    _DirectorySettings,
    _find_all_of,
    _service,
    _without_domains,
)

_CARLA = ("1003", "carla@example.com", "carla.example")


def _add_carla(subject: DirectoryUnderTest, *, active: bool) -> Client:
    number, email, domain = _CARLA
    if active:
        return subject.add_client(number, email, key_hash=_OLD_HASH, domains=[domain])
    return subject.add_client(number, email, key_hash=_OLD_HASH, domains=[domain], active=False)


def _carla_lookups() -> list[tuple[IdentifierKind, str]]:
    number, email, domain = _CARLA
    return [(_NUMBER, number), (_EMAIL, email), (_DOMAIN, domain)]


def _listed(service: RecoveryService, message: EmailMessage) -> list[str]:
    """The client numbers a confirmation mail has a link for, each link checked."""
    tokens = [match.group(1) for match in TOKEN_IN_LINK.finditer(_body(message))]
    return sorted({service.check(token).number for token in tokens})


class _ClosedAccountTests(_DirectorySettings):
    """Closed accounts: stored and read back closed, and treated as unknown by the service.

    They run when the directory knows closed accounts (see
    :attr:`closes_accounts`), and are skipped otherwise.
    """

    def _closing(self, subject: DirectoryUnderTest) -> None:
        if not self._closes_accounts(subject):
            pytest.skip("this directory does not know closed accounts")

    def test_a_closed_account_reads_back_closed(
        self,
        directory_under_test: DirectoryUnderTest,
    ) -> None:
        """A client added closed is found, by every kind, with ``active`` false; others open."""
        subject = directory_under_test
        self._closing(subject)
        alice = _add_alice(subject)
        carla = _add_carla(subject, active=False)
        assert alice.active is True and carla.active is False
        for kind, value in _carla_lookups():
            found = subject.directory.find(kind, value)
            assert found is not None and found.number == "1003", (kind, value)
            assert found.active is False, (kind, value)
            assert _without_domains(found) == _without_domains(carla), (kind, value)
        opened = subject.directory.find(_NUMBER, "1001")
        assert opened is not None and opened.active is True
        if subject.shares_addresses:
            [listed] = _find_all_of(subject)(_EMAIL, "carla@example.com")
            assert listed.active is False

    def test_set_active_closes_and_reopens(
        self,
        directory_under_test: DirectoryUnderTest,
    ) -> None:
        """set_active(False) closes one client alone, True reopens it; a key swap keeps it.

        An unknown number is no error. Runs when the directory opens and
        closes accounts (see :attr:`sets_active`).
        """
        subject = directory_under_test
        self._closing(subject)
        set_active = self._set_active_of(subject)
        alice = _without_domains(_add_alice(subject))
        bob = _without_domains(_add_bob(subject))
        assert alice is not None
        assert set_active("1001", False) is None
        closed = dataclasses.replace(alice, active=False)
        for kind, value in [
            (_NUMBER, "1001"),
            (_EMAIL, "alice@example.com"),
            (_DOMAIN, "alice.example"),
        ]:
            assert _without_domains(subject.directory.find(kind, value)) == closed, kind
        assert _without_domains(subject.directory.find(_NUMBER, "1002")) == bob
        assert subject.directory.replace_key_hash("1001", _OLD_HASH, _NEW_HASH) is True
        stored = subject.directory.find(_NUMBER, "1001")
        assert stored is not None and stored.active is False and stored.key_hash == _NEW_HASH
        assert set_active("9999", False) is None
        assert subject.directory.find(_NUMBER, "9999") is None
        set_active("1001", True)
        assert _without_domains(subject.directory.find(_NUMBER, "1001")) == (
            dataclasses.replace(alice, key_hash=_NEW_HASH)
        )

    def test_a_closed_account_is_unknown_to_the_service(
        self,
        directory_under_test: DirectoryUnderTest,
    ) -> None:
        """No mail by any kind, a link issued for it refused, its right key signs in nobody."""
        subject = directory_under_test
        self._closing(subject)
        _add_alice(subject)
        _add_carla(subject, active=False)
        mailer = MemoryMailer()
        service = _service(subject.directory, mailer)
        for kind, value in _carla_lookups():
            service.request(kind, value)
        assert mailer.outbox == []
        closed = subject.directory.find(_NUMBER, "1003")
        assert closed is not None
        # A link minted exactly as a request mails one, as an old mail may hold.
        token = service.tokens.issue(closed)
        for call in (service.check, service.confirm):
            with pytest.raises(InvalidToken) as refused:
                call(token)
            assert type(refused.value) is InvalidToken
        stored = subject.directory.find(_NUMBER, "1003")
        assert stored is not None and stored.key_hash == _OLD_HASH
        assert service.authenticate("1003", _OLD_KEY) is None
        assert mailer.outbox == []
        signed_in = service.authenticate("1001", _OLD_KEY)
        assert signed_in is not None and signed_in.number == "1001"

    def test_closing_an_account_kills_its_links_and_reopening_revives_it(
        self,
        directory_under_test: DirectoryUnderTest,
    ) -> None:
        """A link mailed while open is refused once the account is closed, works once reopened."""
        subject = directory_under_test
        self._closing(subject)
        set_active = self._set_active_of(subject)
        _add_carla(subject, active=True)
        mailer = MemoryMailer()
        service = _service(subject.directory, mailer)
        service.request("client_number", "1003")
        [mail] = mailer.outbox
        [token] = [match.group(1) for match in TOKEN_IN_LINK.finditer(_body(mail))]
        set_active("1003", False)
        with pytest.raises(InvalidToken):
            service.confirm(token)
        assert service.authenticate("1003", _OLD_KEY) is None
        set_active("1003", True)
        assert service.authenticate("1003", _OLD_KEY) is not None
        assert service.confirm(token).number == "1003"
        stored = subject.directory.find(_NUMBER, "1003")
        assert stored is not None and not _CONTEXT.verify(_OLD_KEY, stored.key_hash)

    def test_a_shared_address_mails_its_open_clients_only(
        self,
        directory_under_test: DirectoryUnderTest,
    ) -> None:
        """Of clients sharing an address, the closed ones are left out; all closed, no mail."""
        subject = directory_under_test
        self._closing(subject)
        _find_all_of(subject)
        _add_alice(subject)
        _add_reseller_client(subject, "1005", "shop5.example")
        subject.add_client(
            "1004", "alice@example.com", key_hash=_OLD_HASH, domains=["shop4.example"], active=False
        )
        subject.add_client("1006", "dana@example.com", key_hash=_OLD_HASH, active=False)
        subject.add_client("1007", "dana@example.com", key_hash=_OLD_HASH, active=False)
        mailer = MemoryMailer()
        service = _service(subject.directory, mailer)
        service.request("email", "alice@example.com")
        [mail] = mailer.outbox
        assert _listed(service, mail) == ["1001", "1005"]
        service.request("email", "dana@example.com")
        assert len(mailer.outbox) == 1
