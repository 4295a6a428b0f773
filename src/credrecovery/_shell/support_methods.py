"""The service methods for support staff, which both shells share: :meth:`issue_link`
and :meth:`issue_code`.

Kept apart from :mod:`credrecovery.service` so that each shell's module stays
one screenful of settings and visitor-facing methods; both shells inherit
these, driving the same flow (:mod:`credrecovery._flow.support`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from .._flow.effects import Flow
from .._flow.flows import Core
from ..codes import CodeSigner, IssuedCode

__all__ = ["AsyncIssuesLinks", "IssuesLinks"]


class IssuesLinks:
    """:meth:`issue_link` and :meth:`issue_code` for :class:`~credrecovery.RecoveryService`."""

    _core: Core
    codes: CodeSigner
    _run: Callable[[Flow[Any]], Any]

    def issue_link(
        self,
        number: str,
        *,
        max_age: timedelta | None = None,
        send: bool = True,
        operator: str | None = None,
    ) -> str:
        """The confirmation link of client ``number``, for support staff; mailed if ``send``.

        The link is the one a request would mail to the primary address: it
        confirms as :meth:`confirm` does and dies when the key changes. It
        expires ``max_age`` from now (a second or more), by default
        ``token_max_age``. Logged (``link_issued``) and reported to
        ``on_event`` (``issued``) with ``operator``, whoever the support tool
        says asked. For a support tool only: unlike :meth:`request` it says
        what is wrong. Raises :class:`~credrecovery.UnknownClient` when no
        open client has the number, :class:`~credrecovery.InvalidIdentifier`
        for a malformed one, :class:`~credrecovery.DeliveryFailed` when the
        mail did not leave (no link is returned then), and
        :class:`~credrecovery.DirectoryError` when the directory fails.
        """
        link: str = self._run(self._core.issue_link(number, max_age, send, operator))
        return link

    def issue_code(
        self,
        number: str,
        *,
        max_age: timedelta | None = None,
        send: bool = True,
        operator: str | None = None,
    ) -> IssuedCode:
        """Client ``number``'s recovery code and its ticket, for support staff; mailed if ``send``.

        The code is the one a code request would mail to the primary address,
        returned for the operator to read to the client over the phone; the
        ticket goes with it to :meth:`check_code` and :meth:`confirm_code`,
        which take it as they take any other, in either key mode. It dies when
        the key changes, and has three attempts, as any other. It expires
        ``max_age`` from now (a second or more, carried in the signed
        ticket), by default ``code_max_age``. Logged (``code_issued``) and
        reported to ``on_event`` (``issued``, reason ``code_mailed`` or
        ``code_not_mailed``) with ``operator``; neither the ticket nor the
        code is. Raises what :meth:`issue_link` raises, when it raises it.
        """
        issued: IssuedCode = self._run(
            self._core.issue_code(number, max_age, send, operator, self.codes)
        )
        return issued


class AsyncIssuesLinks:
    """:meth:`issue_link` and :meth:`issue_code` for :class:`~credrecovery.AsyncRecoveryService`."""

    _core: Core
    codes: CodeSigner
    _run: Callable[[Flow[Any]], Awaitable[Any]]

    async def issue_link(
        self,
        number: str,
        *,
        max_age: timedelta | None = None,
        send: bool = True,
        operator: str | None = None,
    ) -> str:
        """A link for support staff: :meth:`RecoveryService.issue_link`, awaited."""
        link: str = await self._run(self._core.issue_link(number, max_age, send, operator))
        return link

    async def issue_code(
        self,
        number: str,
        *,
        max_age: timedelta | None = None,
        send: bool = True,
        operator: str | None = None,
    ) -> IssuedCode:
        """A code for support staff: :meth:`RecoveryService.issue_code`, awaited."""
        issued: IssuedCode = await self._run(
            self._core.issue_code(number, max_age, send, operator, self.codes)
        )
        return issued
