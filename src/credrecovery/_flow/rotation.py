"""What the key-replacing flows share: the chosen key, its policy check, the must-change
mark, and putting the previous hash back.

:meth:`~credrecovery._flow.flows.Core._rotate` replaces a key for a
confirmation (by link or by code) and for a key change; these are its parts
that hold no key of their own.
"""

from __future__ import annotations

import logging

from .._secrets import Secret
from ..exceptions import DirectoryError, KeyRejected
from ..mail.composer import Composer
from ..models import Client
from ..policy import KeyPolicy
from .effects import Flow, Mark, Swap
from .login import SignIn

__all__ = ["Rotation"]

logger = logging.getLogger("credrecovery")


class Rotation(SignIn):
    """The parts of a key replacement, a part of :class:`~credrecovery._flow.flows.Core`."""

    key_policy: KeyPolicy
    composer: Composer
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
            logger.info("chosen key refused", extra={"event": "key_rejected",
                                                     "client": client.number,
                                                     "reasons": list(reasons)})
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
                logger.error("must-change mark not restored",
                             extra={"event": "mark_not_restored", "client": client.number})
        if not restored:
            # The token is dead then, but a new request still recovers the account.
            logger.critical("previous key could not be restored",
                            extra={"event": "restore_failed", "client": client.number})
        return bool(restored)
