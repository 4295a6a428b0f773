"""Confirmation jobs: what the request path hands to delivery, as plain data.

A job holds no live object and no closure, so it can cross a thread, a
process or a broker. It carries no token either: the delivery side signs each
client's link from the job's bindings, stamped with the job's time, so a miss
(a *decoy* job for a stand-in client) costs the request path exactly what a
hit does.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

__all__ = ["MAX_CLIENTS_PER_MAIL", "ConfirmationJob"]

#: The most client numbers one confirmation mail lists, when several clients
#: share one primary address.
MAX_CLIENTS_PER_MAIL = 10

_VERSION = 1
_CODE_VERSION = 2


@dataclasses.dataclass(frozen=True)
class ConfirmationJob:
    """One confirmation mail to compose and send.

    ``recipient`` is the primary address as the directory holds it; ``clients``
    pairs each client number the address serves with its account binding
    (see :func:`credrecovery.tokens.account_binding`), at most
    :data:`MAX_CLIENTS_PER_MAIL` of them; ``truncated`` tells that the address
    serves more. ``issued_at`` is when the request was made, in seconds since the
    epoch; links are stamped with it. A ``decoy`` job was made for a request
    that mails nothing (no client matched, or a limit withheld the mail): the
    delivery side composes it like any other, then drops it. A ``nonce`` makes
    it a job for a code mail (:meth:`~credrecovery.RecoveryService.request_code`):
    each client's code is made from it and the client's binding; empty, the
    mail carries links. ``by_support`` marks a job support staff made
    (:meth:`~credrecovery.RecoveryService.issue_code`, ``issue_link``): its
    code mail speaks of a code support issued, not of one asked for on a page.
    """

    recipient: str
    name: str
    language: str
    sender: str
    clients: tuple[tuple[str, str], ...]
    issued_at: float
    decoy: bool = False
    truncated: bool = False
    nonce: str = ""
    by_support: bool = False

    def __repr__(self) -> str:
        numbers = tuple(number for number, _ in self.clients)
        return f"ConfirmationJob(clients={numbers!r}, decoy={self.decoy!r})"

    def to_dict(self) -> dict[str, Any]:
        """The job as JSON-ready data.

        A code job is version 2, which a release without codes refuses
        rather than mailing a link in its place. ``by_support`` is written only
        when set, so other jobs read as before; data without it reads as
        ``False``.
        """
        data: dict[str, Any] = {
            "v": _CODE_VERSION if self.nonce else _VERSION,
            "recipient": self.recipient,
            "name": self.name,
            "language": self.language,
            "sender": self.sender,
            "clients": [list(pair) for pair in self.clients],
            "issued_at": self.issued_at,
            "decoy": self.decoy,
            "truncated": self.truncated,
        }
        if self.nonce:
            data["nonce"] = self.nonce
        if self.by_support:
            data["by_support"] = True
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ConfirmationJob:
        """Rebuild a job from :meth:`to_dict`'s output; :class:`ValueError` if malformed."""
        try:
            if data["v"] not in (_VERSION, _CODE_VERSION):
                raise ValueError("unknown job version")
            nonce = _str(data["nonce"]) if data["v"] == _CODE_VERSION else ""
            clients = tuple((_str(n), _str(b)) for n, b in data["clients"])
            job = cls(
                recipient=_str(data["recipient"]),
                name=_str(data["name"]),
                language=_str(data["language"]),
                sender=_str(data["sender"]),
                clients=clients,
                issued_at=float(data["issued_at"]),
                decoy=_bool(data["decoy"]),
                truncated=_bool(data["truncated"]),
                nonce=nonce,
                by_support=_bool(data.get("by_support", False)),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError("malformed confirmation job") from exc
        if not job.clients or (data["v"] == _CODE_VERSION and not nonce):
            raise ValueError("malformed confirmation job")
        return job


def _str(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError("expected a string")
    return value


def _bool(value: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError("expected a boolean")
    return value
