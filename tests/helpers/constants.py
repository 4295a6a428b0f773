"""The values the tests share: service settings, the seeded client's key, the project's folders."""

from __future__ import annotations

from pathlib import Path

__all__ = ["CONFIRM_URL", "OLD_KEY", "ROOT", "SECRET", "SENDER", "TESTS"]

SECRET = "test-secret-key-0123456789abcdef"
CONFIRM_URL = "https://panel.example.com/recover/{token}"
SENDER = "Client Panel <panel@example.com>"
#: The access key of client 9000 in the ``directory`` fixture.
OLD_KEY = "Old-Access-Key-2024"

#: The ``tests`` folder: on ``sys.path``, so ``helpers`` imports from anywhere.
TESTS = Path(__file__).resolve().parents[1]
#: The project's root: README.md, docs/, examples/, src/.
ROOT = TESTS.parent
