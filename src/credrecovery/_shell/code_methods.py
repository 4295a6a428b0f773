"""Recovery by a typed code, as both shells offer it: ``request_code``, ``check_code``,
``confirm_code``.

Kept apart from :mod:`credrecovery.service`, as the support methods are: both
shells inherit these and drive the same flows (:mod:`credrecovery._flow.codes`),
whose attempts at a ticket the shells count with the counter of
:mod:`credrecovery.ratelimit.attempts` that :class:`WiresCodes` sets up.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from .._flow.codes import CodeFlows
from .._flow.effects import Flow
from .._flow.flows import Core
from ..codes import MAX_CODE_ATTEMPTS, CodeSigner
from ..identifiers import IdentifierKind
from ..models import Confirmation
from ..ratelimit.attempts import AsyncAttemptCounter, AttemptCounter

__all__ = ["AsyncRecoversByCode", "RecoversByCode", "WiresCodes"]


class WiresCodes:
    """The part of a shell's construction that sets the code flows up."""

    _core: Core
    codes: CodeSigner
    limiter: Any
    _attempts_class: type[AttemptCounter] | type[AsyncAttemptCounter]

    def _wire_codes(self, limiter_key: bytes, clock: Callable[[], float]) -> None:
        self._code_flows = CodeFlows(self._core, self.codes)
        # Counted in the limiter's storage, or in one of this process when limits are off.
        self._attempts: Any = self._attempts_class(
            self.limiter,
            limiter_key,
            allowed=MAX_CODE_ATTEMPTS,
            lifetime=self.codes.lifetime,
            clock=clock,
        )


class RecoversByCode:
    """Recovery by code for :class:`~credrecovery.RecoveryService`."""

    _attempts_class: type[AttemptCounter] | type[AsyncAttemptCounter] = AttemptCounter
    _code_flows: CodeFlows
    _run: Callable[[Flow[Any]], Any]

    def request_code(
        self, kind: IdentifierKind | str, value: str, *, requester: str | None = None
    ) -> str:
        """Mail a recovery code to the primary address of the client ``value`` names.

        Returns an opaque ticket (a ``str``) for the host to keep in the
        visitor's session or a hidden field, and to pass back with the code
        the visitor types. A hit and a miss return a ticket of the same
        length, after the same work: the ticket holds only what was typed.
        The mail, sent as :meth:`request` sends a link's, carries a code of
        eight symbols (``WDJH-MJHT``) for each client it lists, valid for
        ``code_max_age`` (15 minutes by default). Counts toward the same
        limits as :meth:`request`, and raises what it raises.
        """
        ticket: str = self._run(self._code_flows.request(kind, value, requester))
        return ticket

    def check_code(self, ticket: str, code: str, *, requester: str | None = None) -> Confirmation:
        """Validate the ``code`` typed for ``ticket`` without using it up.

        Case, spaces and dashes in ``code`` do not matter. Raises
        :class:`~credrecovery.InvalidCode` for a wrong code, a code of
        another ticket, a forged ticket or one whose identifier matched
        nobody, all alike; after :data:`~credrecovery.codes.MAX_CODE_ATTEMPTS`
        wrong codes the ticket is dead, the right code included. Raises
        :class:`~credrecovery.TokenExpired` for an expired ticket and
        :class:`~credrecovery.RateLimited` when ``requester`` presented too
        many bad codes or tokens (``failed_confirmations``).
        """
        confirmation: Confirmation = self._run(self._code_flows.check(ticket, code, requester))
        return confirmation

    def confirm_code(
        self, ticket: str, code: str, *, requester: str | None = None, new_key: str | None = None
    ) -> Confirmation:
        """Rotate the key of the client whose ``code`` was typed, as :meth:`confirm` does.

        Takes ``new_key`` as :meth:`confirm` does in each key mode, mails the
        same way, and puts the previous key back with
        :class:`~credrecovery.DeliveryFailed` when that mail fails (the code
        then still works). The new key makes every code and link issued
        before it invalid. Raises what :meth:`check_code` raises; a code
        already used, or one whose confirmation another call won, is
        :class:`~credrecovery.InvalidCode`.
        """
        confirmation: Confirmation = self._run(
            self._code_flows.confirm(ticket, code, requester, new_key)
        )
        return confirmation


class AsyncRecoversByCode:
    """Recovery by code for :class:`~credrecovery.AsyncRecoveryService`."""

    _attempts_class: type[AttemptCounter] | type[AsyncAttemptCounter] = AsyncAttemptCounter
    _code_flows: CodeFlows
    _run: Callable[[Flow[Any]], Awaitable[Any]]

    async def request_code(
        self, kind: IdentifierKind | str, value: str, *, requester: str | None = None
    ) -> str:
        """Mail a recovery code: :meth:`RecoveryService.request_code`, awaited."""
        ticket: str = await self._run(self._code_flows.request(kind, value, requester))
        return ticket

    async def check_code(
        self, ticket: str, code: str, *, requester: str | None = None
    ) -> Confirmation:
        """Validate a code: :meth:`RecoveryService.check_code`, awaited."""
        confirmation: Confirmation = await self._run(
            self._code_flows.check(ticket, code, requester)
        )
        return confirmation

    async def confirm_code(
        self, ticket: str, code: str, *, requester: str | None = None, new_key: str | None = None
    ) -> Confirmation:
        """Rotate the key by code: :meth:`RecoveryService.confirm_code`, awaited."""
        confirmation: Confirmation = await self._run(
            self._code_flows.confirm(ticket, code, requester, new_key)
        )
        return confirmation
