"""The names of the rate limits: the flows apply them, the limiters count them."""

from __future__ import annotations

import enum

__all__ = ["LimitName"]


class LimitName(enum.StrEnum):
    """The rate limits, named as the fields of :class:`~credrecovery.RateLimits`.

    A member is a ``str`` equal to its value, so ``exc.limit == "per_requester"``
    and log fields compared as strings keep working; ``str()`` and formatting
    give the value.

    Recovery (:meth:`~credrecovery.RecoveryService.request`, ``check``, ``confirm``):

    * ``PER_REQUESTER``: recovery requests from one requester. Over it,
      :class:`~credrecovery.RateLimited`.
    * ``PER_IDENTIFIER``: requests from one requester naming one identifier
      value (from everyone when no requester is given). Over it, nothing is
      mailed and the answer is unchanged.
    * ``PER_CLIENT``: confirmation mails to one client asked for by one
      requester (by everyone when no requester is given). Over it, nothing is
      mailed and the answer is unchanged.
    * ``FAILED_CONFIRMATIONS``: invalid, expired or reused tokens from one
      requester. Over it, :class:`~credrecovery.RateLimited`.
    * ``PER_MAILBOX``: confirmation mails to one primary address, whoever
      asked. Over it, nothing is mailed and the answer is unchanged.

    Sign-in (:meth:`~credrecovery.RecoveryService.authenticate`, ``change_key``):

    * ``FAILED_SIGNINS``: failed sign-ins of one requester against one
      client number. Over it, :class:`~credrecovery.RateLimited`.
    * ``FAILED_SIGNINS_PER_REQUESTER``: failed sign-ins of one requester,
      whatever the number. Over it, :class:`~credrecovery.RateLimited`.
    * ``FAILED_SIGNINS_PER_CLIENT``: failed sign-ins against one client
      number, from everyone. Over it, a requester that already failed against
      that number gets :class:`~credrecovery.RateLimited`; one that has not
      still gets an attempt, so that nobody can lock a client out.
    """

    PER_REQUESTER = "per_requester"
    PER_IDENTIFIER = "per_identifier"
    PER_CLIENT = "per_client"
    FAILED_CONFIRMATIONS = "failed_confirmations"
    PER_MAILBOX = "per_mailbox"
    FAILED_SIGNINS = "failed_signins"
    FAILED_SIGNINS_PER_REQUESTER = "failed_signins_per_requester"
    FAILED_SIGNINS_PER_CLIENT = "failed_signins_per_client"
