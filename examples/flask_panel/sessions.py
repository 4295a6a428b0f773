"""When each client's sessions stop being valid: set by the service's events, read per page.

A session remembers when it was signed in. When a client's key changes (a
recovery confirmed by link or by code, or a change of key in the panel), the
service reports a ``key_changed`` event, and :meth:`SessionEpochs.on_event`
records its time for that client: every session signed in before it ends at
its next page. The times live in a table of the panel's own SQLite file, so
that every process serving the panel sees them.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from credrecovery import Event, EventKind

__all__ = ["SessionEpochs"]

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS panel_session_epochs "
    "(number TEXT PRIMARY KEY, valid_after REAL NOT NULL)"
)


class SessionEpochs:
    """Per client, the time before which its sessions were signed in with an old key."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        with self._connection() as connection:
            connection.execute(_SCHEMA)

    @contextlib.contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        # One short connection per call: the hook runs on the service's event thread.
        connection = sqlite3.connect(self.path, timeout=5, isolation_level=None)
        try:
            yield connection
        finally:
            connection.close()

    def on_event(self, event: Event) -> None:
        """The services' ``on_event``: a key change ends the client's earlier sessions."""
        if event.kind is EventKind.KEY_CHANGED and event.number is not None:
            self.end_sessions(event.number, event.time.timestamp())

    def end_sessions(self, number: str, before: float) -> None:
        """End every session of client ``number`` signed in before ``before`` (epoch seconds)."""
        with self._connection() as connection:
            connection.execute(
                "INSERT INTO panel_session_epochs (number, valid_after) VALUES (?, ?) "
                "ON CONFLICT (number) DO UPDATE SET "
                "valid_after = max(valid_after, excluded.valid_after)",
                (number, before),
            )

    def valid(self, number: str, signed_in_at: float) -> bool:
        """Whether a session of client ``number`` signed in at ``signed_in_at`` still holds."""
        with self._connection() as connection:
            row = connection.execute(
                "SELECT valid_after FROM panel_session_epochs WHERE number = ?", (number,)
            ).fetchone()
        return row is None or signed_in_at >= float(row[0])
