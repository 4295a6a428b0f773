"""What the tests import besides pytest's fixtures: shared values, a clock, shells, mail readers.

The servers the tests start have modules of their own here, imported by name:
``helpers.smtp_server``, ``helpers.pg``, ``helpers.redis_server``,
``helpers.browser``, ``helpers.celery_app`` and ``helpers.celery_worker``; so do
the mails of the mail tests (``helpers.mail_cases``), SpamAssassin
(``helpers.spamassassin``), the notebook (``helpers.notebook``) and the work
shared by the xdist workers of a run (``helpers.once``), and the number of
examples a property test runs (``helpers.properties``).
"""

from __future__ import annotations

from helpers.clock import FakeClock
from helpers.constants import CONFIRM_URL, OLD_KEY, ROOT, SECRET, SENDER, TESTS
from helpers.mails import code_from, key_from, token_from
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
    "code_from",
    "key_from",
    "token_from",
]
