"""The directory contract's tests of ``find_all``: clients sharing a primary address,
the limit, and numbers and domains that stay unique."""

from __future__ import annotations

import pytest

from ._harness import (
    _ALICE_DOMAINS,
    _DOMAIN,
    _EMAIL,
    _NEW_HASH,
    _NUMBER,
    DirectoryUnderTest,
    _add_alice,
    _add_bob,
    _add_reseller_client,
    _DirectorySettings,
    _find_all_of,
)


class _SharedAddressTests(_DirectorySettings):
    """The tests of ``find_all``, a part of the directory contract."""

    def test_shared_primary_address_finds_every_client(
        self,
        directory_under_test: DirectoryUnderTest,
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
        self,
        directory_under_test: DirectoryUnderTest,
    ) -> None:
        """A number or a domain names one client; a miss of any kind is an empty list."""
        subject = directory_under_test
        find_all = _find_all_of(subject)
        alice = _add_alice(subject)
        _add_reseller_client(subject, "1003", "shop3.example")
        assert list(find_all(_NUMBER, "1001")) == [alice]
        for domain in _ALICE_DOMAINS:
            assert list(find_all(_DOMAIN, domain)) == [alice], domain
        for kind, value in [
            (_NUMBER, "9999"),
            (_EMAIL, "nobody@example.com"),
            (_DOMAIN, "nobody.example"),
            (_EMAIL, "alice@alice.example"),
            (_NUMBER, "alice"),
        ]:
            assert list(find_all(kind, value)) == [], (kind, value)

    def test_numbers_and_domains_stay_unique(
        self,
        directory_under_test: DirectoryUnderTest,
    ) -> None:
        """A taken number or domain is refused (ValueError), storing nothing of the new client."""
        subject = directory_under_test
        _find_all_of(subject)
        directory = subject.directory
        alice = _add_alice(subject)
        with pytest.raises(ValueError):
            subject.add_client("1001", "someone@example.org", key_hash=_NEW_HASH)
        with pytest.raises(ValueError):
            subject.add_client(
                "1009",
                "alice@example.com",
                key_hash=_NEW_HASH,
                domains=["new.example", "alice-shop.example"],
            )
        assert directory.find(_NUMBER, "1009") is None
        assert directory.find(_DOMAIN, "new.example") is None
        assert directory.find(_EMAIL, "someone@example.org") is None
        assert directory.find(_NUMBER, "1001") == alice
        assert directory.find(_DOMAIN, "alice-shop.example") == alice
