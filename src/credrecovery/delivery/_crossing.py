"""What may cross into the delivery process: the pickled mailer and composer, checked."""

from __future__ import annotations

import pickle
import pickletools
import sys
from typing import Any


def _rebuilt_from_settings(mailer: object) -> bool:
    """Whether ``mailer`` is one of the library's SMTP mailers, which a child rebuilds.

    A host's subclass may hold state of its own, so only the exact classes count.
    """
    from ..adapters.smtp import SMTPMailer

    # Imported only where aiosmtplib is, and so loaded by any AsyncSMTPMailer.
    async_smtp = sys.modules.get("credrecovery.adapters.async_smtp")
    async_class = getattr(async_smtp, "AsyncSMTPMailer", None)
    return type(mailer) is SMTPMailer or (async_class is not None and type(mailer) is async_class)


class _CannotCross(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _crossing(config: dict[str, Any]) -> bytes:
    """``config`` pickled for the delivery process; :class:`_CannotCross` says what cannot go."""
    for name in ("mailer", "composer"):
        what = f"the {name} ({type(config[name]).__name__})"
        try:
            pickled = pickle.dumps(config[name])
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            raise _CannotCross(f"{what} cannot be pickled") from exc
        if _names_main(pickled):
            # Another process cannot import a script's or a notebook's own classes.
            raise _CannotCross(
                f"{what} uses a class of __main__, which another process cannot import"
            )
    return pickle.dumps(config)


def _names_main(pickled: bytes) -> bool:
    """Whether ``pickled`` names a class of ``__main__``."""
    strings: list[str] = []
    for opcode, argument, _ in pickletools.genops(pickled):
        if isinstance(argument, str):
            strings.append(argument)
        module = None
        if opcode.name == "GLOBAL" and isinstance(argument, str):
            module = argument.partition(" ")[0]
        elif opcode.name == "STACK_GLOBAL" and len(strings) > 1:
            module = strings[-2]
        if module == "__main__":
            return True
    return False
