"""The recovery flows, written once as pure logic that asks for its effects.

In the manner of h11: each flow is a generator that yields an *effect* (a
frozen dataclass: look a client up, swap a key hash, count a limiter hit,
hash a key, hand delivery a job, send a mail) and receives its result, or the
exception it raised, thrown back in. :class:`~credrecovery.RecoveryService`
and :class:`~credrecovery.AsyncRecoveryService` are thin drivers that perform
the effects, one synchronously and one with ``await``. Everything that keeps a
hit and a miss alike, the rollback, the wrapping of directory failures and
which limit applies when live here only (a limiter's storage failure is the
limiters' own to meet, alike in both shells).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable, Sequence
from typing import NoReturn, TypeVar

from passlib.context import CryptContext

from .._failures import failure_details
from ..events import EventKind
from ..exceptions import (
    InvalidIdentifier,
    InvalidToken,
    RateLimited,
    TokenAlreadyUsed,
    TokenExpired,
)
from ..identifiers import IdentifierKind, normalize_identifier, parse_kind
from ..jobs import MAX_CLIENTS_PER_MAIL, ConfirmationJob
from ..keys import default_context
from ..mail.composer import Composer
from ..mail.messages import mailbox
from ..models import Client, Confirmation
from ..policy import KeyPolicy
from ..tokens import TokenClaims, TokenSigner, account_binding
from .checks import _log_unusable, _shared_name, _usable, checked_sender
from .driver import advance, run
from .effects import (
    Effect,
    Find,
    FindAll,
    Flow,
    HitClient,
    HitMailbox,
    Interrupted,
    Submit,
    Test,
)
from .guards import asked_by
from .limits import LimitName
from .rotation import Rotation
from .support import Support

# The effects and the driver stay importable from here, as from the flat module this was.
__all__ = ["Core", "Effect", "Flow", "Interrupted", "advance", "checked_sender", "run"]

logger = logging.getLogger("credrecovery")
_T = TypeVar("_T")

# Stands in for a client when nothing matched, so that a miss builds, hands
# over and composes exactly what a hit does.
_NOBODY = Client(number="0", email="nobody@example.com", key_hash="-" * 97)


# --- the flows ----------------------------------------------------------------------------


class Core(Support, Rotation):
    """The flows of one service: ``request``, ``check`` and ``confirm`` here,
    ``authenticate`` and ``change_key`` from :class:`~credrecovery._flow.login.SignIn`,
    and ``issue_link`` and ``issue_code`` from :class:`~credrecovery._flow.support.Support`.

    Holds no I/O object: only the token signer, the composer's settings, the
    hashing policy (to know its schemes), and the in-process registry of
    confirmations under way.
    """

    def __init__(
        self,
        *,
        tokens: TokenSigner,
        composer: Composer,
        sender: str,
        locale: str,
        clock: Callable[[], float],
        limited: bool,
        finds_all: bool,
        key_mode: str = "generate",
        key_policy: KeyPolicy | None = None,
        marks: bool = False,
        crypt_context: CryptContext | None = None,
    ) -> None:
        self.key_mode = key_mode
        self.key_policy = key_policy if key_policy is not None else KeyPolicy()
        self._marks = marks
        self.tokens = tokens
        self.composer = composer
        self.sender = sender
        self.locale = locale
        self._clock = clock
        self._limited = limited
        self._finds_all = finds_all
        self._confirming: set[str] = set()
        self._confirming_lock = threading.Lock()
        self._crypt_context = crypt_context if crypt_context is not None else default_context()
        # A stand-in hash for each scheme, made at the first sign-in that needs it.
        self._stand_ins: dict[str, str] = {}

    # request ------------------------------------------------------------------------------

    def request(
        self, kind: IdentifierKind | str, value: str, requester: str | None, nonce: str = ""
    ) -> Flow[None]:
        """Hand delivery one job, a decoy on a miss; see :meth:`RecoveryService.request`.

        With a ``nonce`` the job is for a code mail (:mod:`credrecovery._flow.codes`).
        """
        if requester is not None:
            try:
                yield from self._enforce(LimitName.PER_REQUESTER, requester)
            except RateLimited:
                yield from self._emit(
                    EventKind.REQUESTED, reason="rate_limited", requester=requester
                )
                raise
        try:
            kind = parse_kind(kind)
            normalized = normalize_identifier(kind, value)
        except InvalidIdentifier as exc:
            # Raised in the service's language; a panel may ask exc.message_in().
            exc.args = (self.composer.error_message(exc, self.locale),)
            raise
        identifier = f"{kind.value}:{normalized}"
        named_allowed = yield from self._hit(
            LimitName.PER_IDENTIFIER,
            identifier if requester is None else asked_by(identifier, requester),
        )
        clients, truncated = yield from self._lookup(kind, normalized)
        # From here on a miss works on the stand-in exactly as a hit works on
        # its clients, computing what it will not use, so both cost the same.
        found = bool(clients)
        target = clients if found else [_NOBODY]
        first = target[0]
        by_address, by_value = first.email.lower(), f"?{kind.value}:{normalized}"
        # Every slot a mail could list is worked on, the empty ones on copies
        # of the first client, so that an address clients share up to the cap
        # costs what one client and a miss cost.
        padded = self._padded(target, first, self._slots(kind, MAX_CLIENTS_PER_MAIL))
        name = _shared_name(padded)
        bindings = tuple((c.number, account_binding(c)) for c in padded)
        withheld = yield from self._withheld(
            by_address if found else by_value, found, requester, named_allowed
        )
        job = ConfirmationJob(
            recipient=first.email,
            name=name if found else "",
            language=self.composer.language_for(first.locale, self.locale),
            sender=self.sender,
            clients=bindings[: len(target)],
            issued_at=self._clock(),
            decoy=not found or withheld is not None,
            truncated=truncated,
            nonce=nonce,
        )
        queued = True
        try:
            yield Submit(job)
        except Interrupted:
            raise
        except Exception as exc:  # noqa: BLE001 - never reveal that the client exists
            # Logged for a decoy as well, so that a full queue costs both paths alike.
            details = failure_details(exc)
            logger.error(
                "confirmation mail not queued: %s",
                details["reason"],
                extra={
                    "event": "mail_dropped",
                    "client": None if job.decoy else first.number,
                    **details,
                },
            )
            queued = job.decoy
        # One event on every path; its reason is the enumeration signal, for the hook only.
        reason = "miss" if not found else "hit" if withheld is None else "withheld"
        yield from self._emit(
            EventKind.REQUESTED,
            reason=reason,
            number=first.number if found else None,
            requester=requester,
        )
        if not queued:
            yield from self._emit(
                EventKind.DELIVERY_FAILED, reason="confirmation", number=first.number
            )
        elif not found:
            logger.info(
                "recovery requested for an unknown identifier",
                extra={"event": "unknown_identifier", "kind": kind.value},
            )
        elif withheld is not None:
            logger.warning(
                "recovery mail withheld by rate limit",
                extra={"event": "throttled", "limit": withheld.value},
            )
        else:
            logger.info(
                "recovery requested",
                extra={"event": "requested", "kind": kind.value, "client": first.number},
            )

    def _withheld(
        self, counted: str, found: bool, requester: str | None, named_allowed: bool
    ) -> Flow[LimitName | None]:
        """The limit that withholds the mail, if one does.

        ``counted`` is the client's address, or on a miss the value it named,
        so that both paths create and touch counters alike. ``per_client``
        counts each requester apart, so that no requester uses up another's
        mails; ``per_mailbox`` counts everyone, and only mails about to leave.
        """
        if requester is None:
            client_allowed = yield from self._limit(HitClient(counted, found))
        else:
            client_allowed = yield from self._hit(
                LimitName.PER_CLIENT, asked_by(counted, requester)
            )
        sends = named_allowed and client_allowed
        # Touched either way, counted only when sending: a requester held back
        # by its own limits spends nothing of the mailbox's, at the same cost.
        mailbox_allowed = yield from self._limit(HitMailbox(counted, found, sends))
        if not named_allowed:
            return LimitName.PER_IDENTIFIER
        if not client_allowed:
            return LimitName.PER_CLIENT
        return None if mailbox_allowed else LimitName.PER_MAILBOX

    def _lookup(self, kind: IdentifierKind, value: str) -> Flow[tuple[list[Client], bool]]:
        """The usable clients ``value`` names, and whether more were left out.

        As many records are checked whatever the directory returned: every
        slot of the lookup, a stand-in where nothing came back, so that a
        miss costs what a hit does, and an address clients share up to the
        cap what one client does.
        """
        if kind is IdentifierKind.EMAIL and self._finds_all:
            found: Sequence[object] = yield from self._directory(FindAll(kind, value))
        else:
            one = yield from self._directory(Find(kind, value))
            found = [] if one is None else [one]
        checked = [
            _usable(record)
            for record in self._padded(found, _NOBODY, self._slots(kind, MAX_CLIENTS_PER_MAIL + 1))
        ]
        clients = [c for c in checked[: len(found)] if c is not None]
        return clients[:MAX_CLIENTS_PER_MAIL], len(clients) > MAX_CLIENTS_PER_MAIL

    def _slots(self, kind: IdentifierKind, shared: int) -> int:
        """How many slots a lookup of ``kind`` fills: ``shared`` where find_all is asked."""
        return shared if kind is IdentifierKind.EMAIL and self._finds_all else 1

    @staticmethod
    def _padded(items: Sequence[_T], filler: _T, slots: int) -> list[_T]:
        """``items``, then ``filler`` as often as it takes to fill ``slots``."""
        return [*items, *[filler] * (slots - len(items))]

    # check and confirm --------------------------------------------------------------------

    def check(self, token: str, requester: str | None) -> Flow[Confirmation]:
        """Validate ``token`` without using it up; see :meth:`RecoveryService.check`."""
        _, client = yield from self._verified(token, requester)
        return Confirmation(client.number, client.email)

    def confirm(
        self, token: str, requester: str | None, new_key: str | None = None
    ) -> Flow[Confirmation]:
        """Rotate the key and mail it, or the notice; see :meth:`RecoveryService.confirm`."""
        chosen = self._chosen(new_key)
        claims, client = yield from self._verified(token, requester)
        if chosen is not None:
            self._check_key(chosen, client)
        with self._exclusive(client.number) as busy:
            if busy:
                yield from self._reject(
                    TokenAlreadyUsed("this confirmation link is already being used"),
                    "reused",
                    requester,
                    client.number,
                )

            def unchanged(current: Client) -> bool:
                return claims.matches(dataclasses.replace(current, key_hash=client.key_hash))

            try:
                yield from self._rotate(client, chosen, unchanged, requester=requester)
            except TokenAlreadyUsed as exc:
                yield from self._reject(exc, "reused", requester, client.number)
        logger.info(
            "recovery confirmed; access key rotated",
            extra={"event": "confirmed", "client": client.number},
        )
        yield from self._emit(
            EventKind.CONFIRMED, reason="link", number=client.number, requester=requester
        )
        return Confirmation(client.number, client.email)

    def _opened(self, read: Callable[[str], _T], token: str, requester: str | None) -> Flow[_T]:
        """``read(token)``, a link token or a code ticket, behind the failed-confirmations
        limit; an expired or invalid one is counted against the requester and raised."""
        if requester is not None:
            allowed = yield from self._limit(Test(LimitName.FAILED_CONFIRMATIONS, requester))
            if not allowed:
                yield from self._emit(
                    EventKind.REJECTED, reason="rate_limited", requester=requester
                )
                yield from self._throttle(LimitName.FAILED_CONFIRMATIONS, requester)
        # Rejected outside the except blocks: the flow yields while rejecting.
        error: InvalidToken
        try:
            return read(token)
        except TokenExpired as exc:
            error, event = exc, "expired"
        except InvalidToken as exc:
            error, event = exc, "invalid"
        try:
            return (yield from self._reject(error, event, requester))
        finally:
            # The error's traceback holds this frame: left named here, the two
            # would make a cycle that only the garbage collector frees, and a
            # flood of forged tokens would keep it busy.
            del error

    def _verified(self, token: str, requester: str | None) -> Flow[tuple[TokenClaims, Client]]:
        claims = yield from self._opened(self.tokens.read, token, requester)
        found = yield from self._directory(Find(IdentifierKind.CLIENT_NUMBER, claims.number))
        client = _usable(found)
        if client is not None:
            try:
                mailbox(client.email)
            except ValueError:
                _log_unusable(client.number, "the primary address is not a valid email address")
                client = None
        if client is None:
            yield from self._reject(
                InvalidToken("the confirmation link is not valid"),
                "invalid",
                requester,
                claims.number,
            )
        assert client is not None
        if not claims.matches(client):
            yield from self._reject(
                TokenAlreadyUsed("this confirmation link was already used"),
                "reused",
                requester,
                client.number,
            )
        return claims, client

    def _reject(
        self, error: InvalidToken, event: str, requester: str | None, number: str | None = None
    ) -> Flow[NoReturn]:
        """Log, count and raise ``error``, emitting ``rejected`` with ``event`` as reason."""
        logger.info("confirmation refused", extra={"event": event})
        # Counted, then decided: of many failures at once, only as many as
        # the limit allows are answered with the token's own error.
        allowed = requester is None or (
            yield from self._hit(LimitName.FAILED_CONFIRMATIONS, requester)
        )
        yield from self._emit(
            EventKind.REJECTED,
            number=number,
            requester=requester,
            reason=("rate_limited" if not allowed else "used" if event == "reused" else event),
        )
        if requester is not None and not allowed:
            yield from self._throttle(LimitName.FAILED_CONFIRMATIONS, requester)
        try:
            raise error
        finally:
            del error  # no cycle through this frame either (see _opened)
