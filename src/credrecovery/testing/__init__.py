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

from ._harness import DirectoryUnderTest
from .directory import AsyncDirectoryContract, DirectoryContract
from .mailer import AsyncMailerContract, MailerContract, MailerUnderTest
from .mails import code_from, codes_from, token_from
from .timing import AsyncDirectoryTimingContract, DirectoryTimingContract, ks_2samp_pvalue

__all__ = [
    "AsyncDirectoryContract",
    "AsyncDirectoryTimingContract",
    "AsyncMailerContract",
    "DirectoryContract",
    "DirectoryTimingContract",
    "DirectoryUnderTest",
    "MailerContract",
    "MailerUnderTest",
    "code_from",
    "codes_from",
    "ks_2samp_pvalue",
    "token_from",
]
