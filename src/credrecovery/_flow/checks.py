"""Checks on what a directory returns, and on the sender a service is given."""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence

from .._text import has_control
from ..mail.messages import mailbox
from ..models import Client

__all__ = ["checked_sender"]

logger = logging.getLogger("credrecovery")


def _usable(record: object) -> Client | None:
    """``record`` if the service can use it; else ``None``.

    A record the service cannot read is logged at ERROR. A closed account
    (``active`` false) is no error: it is ``None`` without a word, so that
    every flow treats it as it treats a client that does not exist.
    """
    if record is None:
        return None
    problem = _problem(record)
    if problem is None:
        assert isinstance(record, Client)
        # Checked after the whole record, so that a closed one costs what an open one does.
        return record if record.active else None
    number = getattr(record, "number", None)
    _log_unusable(number if isinstance(number, str) and number.isprintable() else None, problem)
    return None


def _problem(record: object) -> str | None:
    """What makes a directory record unusable, or ``None``."""
    if not isinstance(record, Client):
        return f"the directory returned a {type(record).__name__}, not a Client"
    fields = {
        "number": record.number,
        "email": record.email,
        "key_hash": record.key_hash,
        "name": record.name,
        "locale": record.locale,
    }
    for field, value in fields.items():
        if value is None and field in ("name", "locale"):
            continue
        if not isinstance(value, str):
            return f"{field} is {'missing' if value is None else 'not text'}"
        if not value and field in ("number", "email", "key_hash"):
            return f"{field} is empty"
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return f"{field} is not valid UTF-8"
    # Lone surrogates (undecodable bytes) are not printable either.
    for field, value in (
        ("number", record.number),
        ("email", record.email),
        ("key_hash", record.key_hash),
    ):
        if not value.isprintable():
            return f"{field} holds control characters"
    return None


def _log_unusable(number: str | None, problem: str) -> None:
    logger.error(
        "unusable client record: %s",
        problem,
        extra={"event": "unusable_record", "client": number, "reason": problem},
    )


def _shared_name(clients: Sequence[Client]) -> str:
    # One greeting for the mailbox: a name only when every client has it.
    names = {c.name for c in clients}
    return names.pop() if len(names) == 1 else ""


def checked_sender(sender: object) -> str:
    """``sender`` as one mailbox with an A-label domain; :class:`ValueError` otherwise."""
    if not isinstance(sender, str) or has_control(sender):
        raise ValueError(
            "sender must be one email address, optionally with a name, "
            "without line breaks or control characters"
        )
    return _checked_sender(sender)


@functools.lru_cache(maxsize=64)
def _checked_sender(sender: str) -> str:
    # Parsing a mailbox costs about a millisecond, and every service checks its
    # sender: the processes that build many services (tests, workers) check each once.
    import email.policy

    parsed = email.policy.default.header_factory("From", sender)
    if parsed.defects or len(parsed.addresses) != 1 or not parsed.addresses[0].username:
        raise ValueError("sender must be one email address, optionally with a name")
    name, address = parsed.addresses[0].display_name, parsed.addresses[0].addr_spec
    try:
        checked = mailbox(address, name)
    except ValueError:
        raise ValueError("sender is not a valid email address") from None
    if not checked.username.isascii():
        raise ValueError("sender's mailbox name must be ASCII")
    if name and checked.display_name != name:
        raise ValueError("sender's display name must be printable text")
    return str(checked)
