"""Replacing a key: for a confirmation (by link or by code) and for a key change.

:meth:`Rotation._rotate` swaps the hash in, reads the record back, sets the
must-change mark and sends the mail; every failure puts the previous hash and
mark back.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from email.message import EmailMessage

from .._failures import failure_details
from .._secrets import Secret
from ..events import EventKind
from ..exceptions import DeliveryFailed, DirectoryError, KeyRejected, TokenAlreadyUsed
from ..identifiers import IdentifierKind
from ..keys import generate_key
from ..mail.composer import Composer
from ..mail.headers import message_id
from ..models import Client
from ..policy import KeyPolicy
from .effects import Find, Flow, Hash, Interrupted, Mark, Send, Swap
from .login import SignIn

__all__ = ["Rotation"]

logger = logging.getLogger("credrecovery")


class Rotation(SignIn):
    """The parts of a key replacement, a part of :class:`~credrecovery._flow.flows.Core`."""

    key_policy: KeyPolicy
    composer: Composer
    sender: str
    locale: str
    key_mode: str
    _marks: bool

    def _chosen(self, new_key: str | None) -> Secret | None:
        if self.key_mode == "generate":
            if new_key is not None:
                raise ValueError("new_key is taken only with key_mode='choose'")
            return None
        if new_key is None:
            raise ValueError("with key_mode='choose', pass the client's new key as new_key")
        if not isinstance(new_key, str):
            raise TypeError("the new key must be a str")
        return Secret(new_key)

    def _check_key(self, key: Secret, client: Client) -> None:
        reasons = self.key_policy.reasons(key.reveal(), client)
        if reasons:
            logger.info(
                "chosen key refused",
                extra={"event": "key_rejected", "client": client.number, "reasons": list(reasons)},
            )
            rejected = KeyRejected(reasons)
            raise KeyRejected(reasons, self.composer.error_message(rejected, self.locale))

    def _mark(self, number: str, value: bool) -> Flow[bool]:
        """Set the directory's must-change mark, if it keeps one; whether it was set."""
        if not self._marks:
            return False
        yield from self._directory(Mark(number, value))
        return True

    def _undo(self, client: Client, new_hash: str, marked: bool) -> Flow[bool]:
        try:
            restored = yield from self._directory(Swap(client.number, new_hash, client.key_hash))
        except DirectoryError:
            restored = False
        if restored and marked:
            try:
                yield from self._directory(Mark(client.number, client.must_change))
            except DirectoryError:
                logger.error(
                    "must-change mark not restored",
                    extra={"event": "mark_not_restored", "client": client.number},
                )
        if not restored:
            # The token is dead then, but a new request still recovers the account.
            logger.critical(
                "previous key could not be restored",
                extra={"event": "restore_failed", "client": client.number},
            )
        return bool(restored)

    def _rotate(
        self,
        client: Client,
        chosen: Secret | None,
        unchanged: Callable[[Client], bool],
        *,
        requester: str | None = None,
    ) -> Flow[None]:
        """Swap in a new key hash and mail the key (or, for a chosen key, a notice).

        ``unchanged`` tells whether the record read back after the swap is
        still the account the caller meant; :class:`TokenAlreadyUsed` is
        raised when it is not, or when another swap won. Every failure leaves
        the previous hash and mark in place. Emits ``mailed`` and
        ``key_changed`` (stamped with ``requester``), or ``delivery_failed``.
        """
        mail = "credentials" if chosen is None else "key_change_notice"
        new_key = chosen if chosen is not None else Secret(generate_key())
        new_hash: str = yield Hash(new_key)
        now = datetime.fromtimestamp(self._clock(), UTC)
        message: EmailMessage | None = (
            self.composer.credentials(client, key=new_key.reveal(), sender=self.sender, now=now)
            if chosen is None
            else self.composer.key_changed(client, sender=self.sender, now=now)
        )
        # From here on only the message holds a generated key; every error path drops it.
        del new_key
        swapped = yield from self._directory(Swap(client.number, client.key_hash, new_hash))
        if not swapped:
            message = None
            raise TokenAlreadyUsed("this confirmation link was already used")
        marked = False
        try:
            current = yield from self._directory(Find(IdentifierKind.CLIENT_NUMBER, client.number))
            ours = isinstance(current, Client) and current.key_hash == new_hash
            # An account closed meanwhile gets no key: the swap is undone.
            still = ours and current.active and unchanged(current)
            if still:
                assert message is not None
                # A generated key travelled by mail: it is to be replaced at sign-in.
                marked = yield from self._mark(client.number, chosen is None)
                yield Send(message)
        except BaseException as exc:
            message = None
            restored = yield from self._undo(client, new_hash, marked)
            if isinstance(exc, DirectoryError | Interrupted) or not isinstance(exc, Exception):
                raise
            details = failure_details(exc)
            what = "credentials mail" if chosen is None else "key change notice"
            logger.error(
                "%s not sent: %s",
                what,
                details["reason"],
                extra={
                    "event": "delivery_failed",
                    "client": client.number,
                    "restored": restored,
                    **details,
                },
            )
            yield from self._emit(EventKind.DELIVERY_FAILED, reason=mail, number=client.number)
            temporary = exc.temporary if isinstance(exc, DeliveryFailed) else True
            what = "the new access details" if chosen is None else "the notice of the change"
            raise DeliveryFailed(
                f"{what} could not be mailed; nothing was changed"
                if restored
                else f"{what} could not be mailed; request a new link",
                temporary=temporary,
            ) from exc
        if not still:
            message = None
            if ours:
                yield from self._undo(client, new_hash, marked)
            raise TokenAlreadyUsed("the account changed while the key was replaced")
        assert message is not None
        logger.info(
            "mail sent",
            extra={
                "event": "mail_sent",
                "client": client.number,
                "message_id": message_id(message),
            },
        )
        yield from self._emit(EventKind.MAILED, reason=mail, number=client.number)
        yield from self._emit(
            EventKind.KEY_CHANGED,
            reason="generated" if chosen is None else "chosen",
            number=client.number,
            requester=requester,
        )
