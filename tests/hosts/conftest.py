"""Fixtures of the host suite, self-contained: a host does not use the project's own."""

from __future__ import annotations

from pathlib import Path

import pytest

from hosts.host_app import DOMAIN, EMAIL, add_customer, create_panel_database, old_key_hash


@pytest.fixture
def panel_db(tmp_path: Path) -> str:
    """The panel's SQLite file, holding client 9000 <ana@example.com> with one domain."""
    path = str(tmp_path / "panel.sqlite3")
    create_panel_database(path)
    add_customer(path, "9000", EMAIL, old_key_hash(), domains=[DOMAIN], name="Ana Example")
    return path
