"""What the tests import besides pytest's fixtures: shared values, a clock, shells, mail readers.

The servers the tests start have modules of their own here, imported by name:
``helpers.smtp_server``, ``helpers.pg``, ``helpers.redis_server``,
``helpers.browser`` and ``helpers.celery_app``.
"""

from __future__ import annotations

from helpers.clock import FakeClock
from helpers.constants import CONFIRM_URL, OLD_KEY, ROOT, SECRET, SENDER, TESTS
from helpers.mails import key_from, token_from
from helpers.shells import KEY_MODES, SHELLS, AsyncShell, ChoosingShell, chosen_key

__all__ = [
    "CONFIRM_URL",
    "KEY_MODES",
    "OLD_KEY",
    "ROOT",
    "SECRET",
    "SENDER",
    "SHELLS",
    "TESTS",
    "AsyncShell",
    "ChoosingShell",
    "FakeClock",
    "chosen_key",
    "key_from",
    "token_from",
]
