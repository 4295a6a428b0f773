"""The service methods for support staff, which both shells share: :meth:`issue_link`.

Kept apart from :mod:`credrecovery.service` so that each shell's module stays
one screenful of settings and visitor-facing methods; both shells inherit
these, driving the same flow (:mod:`credrecovery._flow.support`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from ._flow.effects import Flow
from ._flow.flows import Core

__all__ = ["AsyncIssuesLinks", "IssuesLinks"]


class IssuesLinks:
    """:meth:`issue_link` for :class:`~credrecovery.RecoveryService`."""

    _core: Core
    _run: Callable[[Flow[Any]], Any]

    def issue_link(self, number: str, *, max_age: timedelta | None = None, send: bool = True,
                   operator: str | None = None) -> str:
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


class AsyncIssuesLinks:
    """:meth:`issue_link` for :class:`~credrecovery.AsyncRecoveryService`."""

    _core: Core
    _run: Callable[[Flow[Any]], Awaitable[Any]]

    async def issue_link(self, number: str, *, max_age: timedelta | None = None,
                         send: bool = True, operator: str | None = None) -> str:
        """A link for support staff: :meth:`RecoveryService.issue_link`, awaited."""
        link: str = await self._run(self._core.issue_link(number, max_age, send, operator))
        return link
