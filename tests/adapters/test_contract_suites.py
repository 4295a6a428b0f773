"""The contract suites of credrecovery.testing catch adapters that break the contract.

A host's test module, written to a temporary directory, subclasses the
suites for adapters that each get one rule wrong; pytest runs it in a
subprocess, and exactly the tests for that rule fail.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

HOST_TESTS = '''
import time

import pytest

from credrecovery import IdentifierKind
from credrecovery.memory import MemoryDirectory, MemoryMailer
from credrecovery.testing import DirectoryContract, MailerContract


class ReadThenWrite(MemoryDirectory):
    """Reads the hash, then writes it: two confirmations can both win."""

    def replace_key_hash(self, number, current, new):
        client = self.find(IdentifierKind.CLIENT_NUMBER, number)
        if client is None or client.key_hash != current:
            return False
        time.sleep(0.05)
        return super().replace_key_hash(number, client.key_hash, new) or True


class OwnerOfTheAddress(MemoryDirectory):
    """Takes the primary address's domain for one of the client's domains."""

    def __init__(self):
        super().__init__()
        self.address_domains = {}

    def add_client(self, number, email, **fields):
        client = super().add_client(number, email, **fields)
        self.address_domains.setdefault(client.email.rpartition("@")[2], client.number)
        return client

    def find(self, kind, value):
        found = super().find(kind, value)
        if found is None and kind is IdentifierKind.DOMAIN and value in self.address_domains:
            found = super().find(IdentifierKind.CLIENT_NUMBER, self.address_domains[value])
        return found


class ForgetsTheFlag(MemoryDirectory):
    """Swapping the key clears the must-change flag."""

    def replace_key_hash(self, number, current, new):
        replaced = super().replace_key_hash(number, current, new)
        if replaced:
            self.set_must_change(number, False)
        return replaced


class CopiesEveryone(MemoryMailer):
    """Puts the Cc and Bcc addresses on the envelope too."""

    def __init__(self):
        super().__init__()
        self.envelopes = []

    def send(self, message):
        headers = [message[h] for h in ("To", "Cc", "Bcc") if message[h] is not None]
        self.envelopes.append(tuple(a.addr_spec for h in headers for a in h.addresses))
        super().send(message)


class TestReadThenWrite(DirectoryContract):
    @pytest.fixture
    def directory(self):
        return ReadThenWrite()


class TestOwnerOfTheAddress(DirectoryContract):
    @pytest.fixture
    def directory(self):
        return OwnerOfTheAddress()


class TestForgetsTheFlag(DirectoryContract):
    @pytest.fixture
    def directory(self):
        return ForgetsTheFlag()


class TestCopiesEveryone(MailerContract):
    @pytest.fixture
    def mailer(self):
        return CopiesEveryone()

    def delivered(self, mailer):
        return list(mailer.outbox)

    def envelope_recipients(self, mailer):
        return mailer.envelopes
'''


@pytest.mark.slow  # runs pytest in a fresh interpreter
def test_each_broken_rule_fails_its_tests(tmp_path: Path) -> None:
    (tmp_path / "test_host.py").write_text(textwrap.dedent(HOST_TESTS), encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rf", "test_host.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    failed = set(re.findall(r"^FAILED test_host\.py::(\S+)", result.stdout, re.MULTILINE))
    assert result.returncode == 1, result.stdout + result.stderr
    assert failed == {
        "TestReadThenWrite::test_concurrent_compare_and_set_lets_one_win",
        "TestOwnerOfTheAddress::test_misses_return_none",
        "TestForgetsTheFlag::test_must_change_ignores_unknown_numbers_and_key_swaps",
        "TestCopiesEveryone::test_recipients_are_exactly_the_to_address",
    }, result.stdout
