"""Command line: the end-to-end demo and operator commands on a SQLite file or a database URL.

The operator commands are for support staff, who hold the database anyway, so
unlike the web form they say whether a client matched and whether the mail
left. Every expected failure prints ``error: ...`` on standard error and exits
with status 1. Secrets come from the environment (``CREDRECOVERY_SECRET_KEY``,
``CREDRECOVERY_SMTP_PASSWORD``, ``CREDRECOVERY_DATABASE_PASSWORD``) or standard
input, never from an option, where other users of the machine could read them.

:class:`PrintMailer` (from :mod:`credrecovery.adapters.printing`) and
:func:`render` (from :mod:`credrecovery.mail.viewer`) are importable from here too.
"""

from __future__ import annotations

import logging
import sqlite3
import sys
from collections.abc import Sequence

from ..adapters.printing import PrintMailer
from ..exceptions import RecoveryError
from ..mail.viewer import render
from ._commands import REDACTED_KEY
from ._common import (
    DATABASE_PASSWORD_ENV,
    DEMO_SENDER,
    DEMO_URL,
    PACKAGE,
    SECRET_ENV,
    SMTP_PASSWORD_ENV,
    CommandFailed,
    describe,
)
from ._parser import parser

__all__ = [
    "DATABASE_PASSWORD_ENV",
    "DEMO_SENDER",
    "DEMO_URL",
    "REDACTED_KEY",
    "SECRET_ENV",
    "SMTP_PASSWORD_ENV",
    "PrintMailer",
    "main",
    "render",
]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status.

    0 on success, 1 with ``error: ...`` on standard error for every expected
    failure, 2 for a usage error, 130 when interrupted.
    """
    args = parser().parse_args(argv)
    _show_log_events(logging.INFO if getattr(args, "verbose", False) else logging.WARNING)
    try:
        return int(args.run(args))
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except (CommandFailed, RecoveryError, ValueError, OSError, sqlite3.Error) as exc:
        print(f"error: {describe(exc)}", file=sys.stderr)
        return 1


def _show_log_events(level: int) -> None:
    """Print the library's log events from ``level`` up on standard error, labelled."""
    logger = logging.getLogger(PACKAGE)
    if logger.handlers:
        return  # the host configured logging itself
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("log: %(levelname)s: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(level)
