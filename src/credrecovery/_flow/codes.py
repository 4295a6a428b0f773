"""Recovery by a typed code: ``request_code``, ``check_code`` and ``confirm_code``.

Written once, as the other flows are, on the parts of :class:`~credrecovery._flow.flows.Core`:
a code request is a recovery request whose job carries a nonce (so delivery
mails codes instead of links), and a confirmed code replaces the key with the
same rotation, rollback included. What is the codes' own lives here: the
ticket, the attempts it has left, and finding the client whose code was
typed at the cost a miss has too.
"""

from __future__ import annotations

import dataclasses
import hmac
import logging

from ..codes import CodeSigner, TicketClaims, normalize_code
from ..events import EventKind
from ..exceptions import DirectoryError, InvalidCode, TokenAlreadyUsed
from ..identifiers import IdentifierKind, normalize_identifier, parse_kind
from ..jobs import MAX_CLIENTS_PER_MAIL
from ..mail.messages import mailbox
from ..models import Client, Confirmation
from ..tokens import account_binding
from .checks import _log_unusable
from .effects import Attempt, Flow, Refund
from .flows import _NOBODY, Core

__all__ = ["CodeFlows"]

logger = logging.getLogger("credrecovery")

_INVALID = "the code is not valid"


class CodeFlows:
    """The code flows of one service, on its :class:`Core` and its :class:`CodeSigner`."""

    def __init__(self, core: Core, codes: CodeSigner) -> None:
        self._core = core
        self._codes = codes

    def request(self, kind: IdentifierKind | str, value: str, requester: str | None) -> Flow[str]:
        """Mail codes (a decoy's on a miss) and return the ticket; see
        :meth:`RecoveryService.request_code`."""
        nonce = CodeSigner.new_nonce()
        yield from self._core.request(kind, value, requester, nonce=nonce)
        # The request normalized both already, or raised.
        parsed = parse_kind(kind)
        return self._codes.issue(parsed.value, normalize_identifier(parsed, value), nonce)

    def check(self, ticket: str, code: str, requester: str | None) -> Flow[Confirmation]:
        """Validate ``code`` without using it up; see :meth:`RecoveryService.check_code`."""
        _, client = yield from self._verified(ticket, code, requester)
        return Confirmation(client.number, client.email)

    def confirm(
        self, ticket: str, code: str, requester: str | None, new_key: str | None = None
    ) -> Flow[Confirmation]:
        """Rotate the key as :meth:`Core.confirm` does; see :meth:`RecoveryService.confirm_code`."""
        core = self._core
        chosen = core._chosen(new_key)
        _, client = yield from self._verified(ticket, code, requester)
        if chosen is not None:
            core._check_key(chosen, client)
        binding = account_binding(client)
        with core._exclusive(client.number) as busy:
            if busy:
                yield from core._reject(InvalidCode(_INVALID), "reused", requester, client.number)

            def unchanged(current: Client) -> bool:
                # The primary address the code went to is still the account's.
                before = dataclasses.replace(current, key_hash=client.key_hash)
                return current.number == client.number and hmac.compare_digest(
                    account_binding(before), binding
                )

            try:
                yield from core._rotate(client, chosen, unchanged, requester=requester)
            except TokenAlreadyUsed:
                yield from core._reject(InvalidCode(_INVALID), "reused", requester, client.number)
        logger.info(
            "recovery confirmed by code; access key rotated",
            extra={"event": "confirmed", "client": client.number},
        )
        yield from core._emit(
            EventKind.CONFIRMED, reason="code", number=client.number, requester=requester
        )
        return Confirmation(client.number, client.email)

    def _verified(
        self, ticket: str, code: str, requester: str | None
    ) -> Flow[tuple[TicketClaims, Client]]:
        """The ticket's claims and the client whose code ``code`` is; else the error raised.

        A wrong code, a ticket out of attempts and a ticket naming nobody are
        one error, :class:`InvalidCode`, after the same work.
        """
        core = self._core
        claims = yield from core._opened(self._codes.read, ticket, requester)
        # Counted before the comparison: of many attempts at once, no more
        # than the allowance are compared. A right code gives it back.
        lifetime = None if claims.max_age is None else self._codes.lifetime_of(claims)
        if not (yield Attempt(claims.nonce, lifetime)):
            logger.warning("code ticket out of attempts", extra={"event": "code_attempts"})
            yield from core._reject(InvalidCode(_INVALID), "wrong_code", requester)
        try:
            client = yield from self._match(claims, code)
        except DirectoryError:
            # The directory's failure is no guess: the attempt is given back.
            yield Refund(claims.nonce, lifetime)
            raise
        if client is None:
            yield from core._reject(InvalidCode(_INVALID), "wrong_code", requester)
        assert client is not None
        yield Refund(claims.nonce, lifetime)
        return claims, client

    def _match(self, claims: TicketClaims, code: str) -> Flow[Client | None]:
        """The client the ticket names whose code ``code`` is, if any.

        Looks the identifier up as the request did, and computes and compares
        the code of every slot the request worked on, under every key, so that
        a miss, a wrong code and a right one cost alike.
        """
        core = self._core
        try:
            kind = IdentifierKind(claims.kind)
        except ValueError:
            return None
        clients, _ = yield from core._lookup(kind, claims.value)
        target = clients or [_NOBODY]
        slots = core._padded(target, target[0], core._slots(kind, MAX_CLIENTS_PER_MAIL))
        typed = normalize_code(code) or ""
        match: Client | None = None
        for index, candidate in enumerate(slots):
            for expected in self._codes.candidates(claims.nonce, account_binding(candidate)):
                same = hmac.compare_digest(expected, typed)
                if same and match is None and index < len(clients):
                    match = candidate
        if match is not None:
            try:
                mailbox(match.email)
            except ValueError:
                _log_unusable(match.number, "the primary address is not a valid email address")
                return None
        return match
