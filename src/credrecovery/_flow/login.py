"""The sign-in flows: ``authenticate`` and ``change_key``, throttled and of one cost.

Failures are counted through the limiters, and checked before the directory
is asked or a hash computed, keyed by the number as typed and normalized,
whether or not it exists. Three limits apply (see
:class:`~credrecovery.RateLimits`): one requester against one number and one
requester across numbers refuse outright; one number across requesters only
slows down: over it, a requester that already failed against the number is
refused while one that has not still gets its attempt, so that whoever
guesses cannot lock the client out.

Every sign-in verifies the typed key once for each scheme the hashing policy
verifies: the stored hash for its own scheme, a stand-in hash for every other
one, and stand-ins for all of them when the number names nobody. An unknown
number, a wrong key on a current hash and a wrong key on a legacy one thus
cost the same.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from passlib.context import CryptContext

from .._secrets import Secret
from ..events import Event, EventKind
from ..exceptions import InvalidIdentifier, TokenAlreadyUsed
from ..identifiers import IdentifierKind, normalize_identifier
from ..keys import generate_key
from ..models import Client, Login
from .checks import _usable
from .effects import Claim, Clear, Emit, Find, Flow, Hit, StandIn, Swap, Test, Verify
from .guards import Guarded, asked_by
from .limits import LimitName

__all__ = ["SignIn", "stand_in_hash"]

logger = logging.getLogger("credrecovery")

# What a miss checks, as a hit checks the record it found.
_NOBODY = Client(number="0", email="nobody@example.com", key_hash="-" * 97)


def stand_in_hash(context: CryptContext, scheme: str) -> str:
    """A hash of a fresh random key under ``scheme``, with ``context``'s settings for it."""
    return str(context.handler(scheme).hash(generate_key()))


class SignIn(Guarded):
    """The sign-in flows, a part of :class:`~credrecovery._flow.flows.Core`."""

    _crypt_context: CryptContext
    _stand_ins: dict[str, str]
    _clock: Callable[[], float]

    if TYPE_CHECKING:

        def _check_key(self, key: Secret, client: Client) -> None: ...

        def _rotate(
            self,
            client: Client,
            chosen: Secret | None,
            unchanged: Callable[[Client], bool],
            *,
            requester: str | None = None,
        ) -> Flow[None]: ...

    def _emit(
        self,
        kind: EventKind,
        *,
        reason: str | None = None,
        number: str | None = None,
        requester: str | None = None,
        operator: str | None = None,
    ) -> Flow[None]:
        """Queue an event for the host's hook, stamped now on the service's clock."""
        yield Emit(
            Event(
                kind,
                datetime.fromtimestamp(self._clock(), UTC),
                reason,
                number,
                requester,
                operator,
            )
        )

    def authenticate(
        self, number: str, key: str, requester: str | None = None
    ) -> Flow[Login | None]:
        """Check a login; see :meth:`RecoveryService.authenticate`."""
        client = yield from self._signed_in(number, key, requester)
        if client is None:
            return None
        logger.info("login", extra={"event": "login", "client": client.number})
        yield from self._emit(EventKind.SIGNED_IN, number=client.number, requester=requester)
        return Login(client.number, client.email, must_change=client.must_change)

    def change_key(
        self, number: str, key: str, new_key: str, requester: str | None = None
    ) -> Flow[Login | None]:
        """Replace a client's key with one it chose; see :meth:`RecoveryService.change_key`."""
        if not isinstance(new_key, str):
            raise TypeError("the new key must be a str")
        chosen = Secret(new_key)
        client = yield from self._signed_in(number, key, requester)
        if client is None:
            return None
        self._check_key(chosen, client)
        with self._exclusive(client.number) as busy:
            try:
                if busy:
                    raise TokenAlreadyUsed("this key is already being changed")
                yield from self._rotate(
                    client,
                    chosen,
                    lambda current: current.email == client.email,
                    requester=requester,
                )
            except TokenAlreadyUsed:
                logger.info(
                    "key change refused: the key changed meanwhile",
                    extra={"event": "login_refused"},
                )
                yield from self._emit(
                    EventKind.SIGNIN_FAILED,
                    reason="changed_meanwhile",
                    number=client.number,
                    requester=requester,
                )
                return None
        logger.info("access key changed", extra={"event": "key_changed", "client": client.number})
        return Login(client.number, client.email, must_change=False)

    def _signed_in(self, number: str, key: str, requester: str | None) -> Flow[Client | None]:
        """The client whose number and key these are, with its hash as now stored; else None.

        Raises :class:`RateLimited`, before anything is looked up or hashed,
        when a sign-in limit refuses the attempt.
        """
        try:
            normalized: str | None = normalize_identifier(IdentifierKind.CLIENT_NUMBER, number)
        except InvalidIdentifier:
            normalized = None
        # Counted under what was typed, whether or not it names anyone.
        typed = normalized if normalized is not None else str(number)
        yield from self._admit(typed, requester)
        record = None
        if normalized is not None:
            record = yield from self._directory(Find(IdentifierKind.CLIENT_NUMBER, normalized))
        # A miss checks a stand-in record, as a hit checks the one it found.
        checked = _usable(record if record is not None else _NOBODY)
        client = checked if record is not None else None
        valid, upgraded = yield from self._key_checked(key, client)
        if client is None or not valid:
            logger.info("login refused", extra={"event": "login_refused"})
            yield from self._emit(
                EventKind.SIGNIN_FAILED,
                reason="unknown" if client is None else "wrong_key",
                number=None if client is None else client.number,
                requester=requester,
            )
            yield from self._failed(typed, requester)
            return None
        if requester is not None:
            yield from self._limit(Clear(LimitName.FAILED_SIGNINS, asked_by(typed, requester)))
        if upgraded is not None and (
            yield from self._directory(Swap(client.number, client.key_hash, upgraded))
        ):
            client = dataclasses.replace(client, key_hash=upgraded)
        return client

    # limits -------------------------------------------------------------------------------

    def _admit(self, number: str, requester: str | None) -> Flow[None]:
        """Refuse an attempt the sign-in limits do not allow; else count it for its pair.

        A requester's attempt on a number is counted before it is made, and
        cleared again on success, so that of attempts made at once no more
        get through than the limit allows.
        """
        if requester is not None:
            name = LimitName.FAILED_SIGNINS_PER_REQUESTER
            if not (yield from self._limit(Test(name, requester))):
                yield from self._signin_throttled(name, requester, requester)
        crowded = not (yield from self._limit(Test(LimitName.FAILED_SIGNINS_PER_CLIENT, number)))
        if requester is None:
            if crowded:
                yield from self._signin_throttled(
                    LimitName.FAILED_SIGNINS_PER_CLIENT, number, requester
                )
            return
        pair = asked_by(number, requester)
        if crowded:
            # Slow down, never lock: a requester with no failure against this
            # number takes its one attempt, filling its own counter at once.
            if not (yield from self._limit(Claim(LimitName.FAILED_SIGNINS, pair))):
                yield from self._signin_throttled(
                    LimitName.FAILED_SIGNINS_PER_CLIENT, number, requester
                )
        elif not (yield from self._limit(Hit(LimitName.FAILED_SIGNINS, pair))):
            yield from self._signin_throttled(LimitName.FAILED_SIGNINS, pair, requester)

    def _signin_throttled(self, name: LimitName, value: str, requester: str | None) -> Flow[None]:
        """Report the refusal, then raise :class:`RateLimited` for limit ``name``."""
        yield from self._emit(EventKind.SIGNIN_THROTTLED, reason=name.value, requester=requester)
        yield from self._throttle(name, value)

    def _failed(self, number: str, requester: str | None) -> Flow[None]:
        """Count a failure against the limits that count across pairs."""
        if requester is not None:
            yield from self._hit(LimitName.FAILED_SIGNINS_PER_REQUESTER, requester)
        yield from self._hit(LimitName.FAILED_SIGNINS_PER_CLIENT, number)

    # verification -------------------------------------------------------------------------

    def _key_checked(self, key: str, client: Client | None) -> Flow[tuple[bool, str | None]]:
        """``(valid, upgraded hash or None)`` for ``client``'s hash; one verification a scheme."""
        secret = Secret(key if isinstance(key, str) else "")
        context = self._crypt_context
        schemes = context.schemes()
        # Nobody is checked as a client whose hash is the first scheme's stand-in.
        own_hash = (
            client.key_hash if client is not None else (yield from self._stand_in(schemes[0]))
        )
        own = context.identify(own_hash, required=False)
        outcome: tuple[bool, str | None] = (False, None)
        for scheme in schemes:
            stored = own_hash if scheme == own else (yield from self._stand_in(scheme))
            try:
                valid, upgraded = yield Verify(secret, stored)
            except (ValueError, TypeError):
                valid, upgraded = False, None
            if client is not None and scheme == own:
                outcome = (bool(valid), upgraded)
        return outcome

    def _stand_in(self, scheme: str) -> Flow[str]:
        stand_in = self._stand_ins.get(scheme)
        if stand_in is None:
            # Made once, at the first sign-in; a race makes it twice, harmlessly.
            stand_in = yield StandIn(scheme)
            self._stand_ins[scheme] = stand_in
        return stand_in
