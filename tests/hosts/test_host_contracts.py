"""The library's contract suites, run as a host runs them on its own classes.

docs/custom-adapters.md tells a host to check its directory and mailer with
``credrecovery.testing``: the directory contract, the timing contract (a miss
costs what a hit costs) and the mailer contract, here on the panel's
``CustomersDirectory`` written from that page and on a plain outbox mailer,
the latter also behind the ``BackgroundMailer`` that default delivery puts in
front of it.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterable
from email.message import EmailMessage
from pathlib import Path

import pytest

from credrecovery import Client
from credrecovery.testing import DirectoryContract, DirectoryTimingContract, MailerContract
from hosts.host_app import CustomersDirectory, OutboxMailer, add_customer, create_panel_database


class PanelHooks:
    """How the suites reach the panel's tables: its own sign-up, and a dropped table."""

    storage_error = sqlite3.Error

    @pytest.fixture
    def directory(self, tmp_path: Path) -> CustomersDirectory:
        path = str(tmp_path / "panel.sqlite3")
        create_panel_database(path)
        return CustomersDirectory(path)

    def add_client(
        self,
        directory: CustomersDirectory,
        number: str,
        email: str,
        *,
        key_hash: str,
        domains: Iterable[str] = (),
        name: str = "",
        locale: str | None = None,
    ) -> Client:
        return add_customer(
            directory._path, number, email, key_hash, domains=domains, name=name, language=locale
        )

    def break_storage(self, directory: CustomersDirectory) -> None:
        with contextlib.closing(sqlite3.connect(directory._path, isolation_level=None)) as conn:
            conn.execute("DROP TABLE customer_domains")
            conn.execute("DROP TABLE customers")


class TestPanelDirectory(PanelHooks, DirectoryContract):
    """The directory contract on the panel's own tables."""


@pytest.mark.slow
class TestPanelDirectoryTiming(PanelHooks, DirectoryTimingContract):
    """The timing contract on the panel's own tables: its miss reads a row too."""

    timing_samples = 400


class TestOutboxMailer(MailerContract):
    """The mailer contract on a host's list outbox."""

    @pytest.fixture
    def mailer(self) -> OutboxMailer:
        return OutboxMailer()

    def delivered(self, mailer: OutboxMailer) -> list[EmailMessage]:
        return mailer.outbox


class TestOutboxMailerInBackground(TestOutboxMailer):
    """The same, behind a BackgroundMailer: the host's own outbox fills."""

    background = True
