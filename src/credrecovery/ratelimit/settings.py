""":class:`RateLimits`: the limits, as ``limits`` strings, and where they are counted."""

from __future__ import annotations

import dataclasses

from limits import parse

from .._flow.limits import LimitName

__all__ = ["RateLimits"]


@dataclasses.dataclass(frozen=True)
class RateLimits:
    """The limits, as ``limits`` strings, and where they are counted.

    Recovery:

    * ``per_requester``: recovery requests from one requester (say, an IP).
      Over it, :class:`RateLimited`.
    * ``per_identifier``: requests from one requester naming one identifier
      value, known or not. Over it, nothing is mailed and the answer is
      unchanged.
    * ``per_client``: confirmation mails to one client asked for by one
      requester, however the client was named. Over it, nothing is mailed and
      the answer is unchanged.
    * ``failed_confirmations``: invalid, expired or reused tokens presented by
      one requester. Over it, :class:`RateLimited`.
    * ``per_mailbox``: confirmation mails to one primary address, whoever
      asked: the bound on what many requesters together can mail a client.
      Over it, nothing is mailed and the answer is unchanged.

    ``per_identifier`` and ``per_client`` count each requester apart, so that
    no one requester can use up a client's mails; with ``requester=None``
    they count everyone together.

    Sign-in (:meth:`~credrecovery.RecoveryService.authenticate` and
    :meth:`~credrecovery.RecoveryService.change_key`), counting failures and
    checked before any lookup or hash:

    * ``failed_signins``: failures of one requester against one client
      number. Over it, :class:`RateLimited`. A success clears it.
    * ``failed_signins_per_requester``: failures of one requester, whatever
      the number: against a spray of numbers. Over it, :class:`RateLimited`.
    * ``failed_signins_per_client``: failures against one client number, from
      every requester. Over it the client is slowed down, never locked: a
      requester that failed against that number within its
      ``failed_signins`` window gets :class:`RateLimited`, one that has not
      gets one attempt. With ``requester=None`` it is the only sign-in limit,
      and over it every attempt is refused: pass the requester.

    ``storage_uri`` is ``"memory://"`` for one process, or a Redis URI such as
    ``"redis://127.0.0.1:6379/0"`` for workers that share limits. Counting uses
    the sliding-window-counter strategy, whose keys expire and are reclaimed.

    With ``"memory://"``, the counters of clients that exist for
    ``per_mailbox``, and for ``per_client`` without a requester, live in a
    store of their own, apart from everything else (the other limits, and
    counters of values that matched nobody). A spray of misses, however large,
    never writes to that store and so cannot evict a real client's counter.
    ``memory_max_keys`` caps each of the two stores (the cap is per store, not
    split): at about 300 bytes a counter, some 70 MiB for the shared store at
    the default, and as much again at most for the clients' store, which
    holds a few counters for each client mailed within the last windows.
    Past its cap a store forgets its oldest counters first, so a spray makes
    the limits more lenient instead of growing memory; a cap comfortably
    above three times the number of clients keeps every client's counter.
    ``memory_max_keys`` has no effect on Redis, which expires keys itself.

    With Redis every counter, of clients and misses alike, is a key in the one
    server, and every key carries a TTL. Run that Redis with
    ``maxmemory-policy noeviction`` and a ``maxmemory`` with headroom. Because
    every key has a TTL, the ``volatile-*`` policies may evict any of them, and
    ``volatile-ttl`` evicts those nearest expiry first: the oldest counters, a
    real client's among them, which is what a spray is after. Under
    ``noeviction`` a full Redis refuses writes instead, so the limiter fails
    open and logs ``limiter_error`` at ERROR, loudly, until keys expire.

    :class:`LimitName` names the limits, as these fields are named. The
    fields added after ``memory_max_keys`` come last, so that positional
    arguments keep their meaning.
    """

    per_requester: str = "20/minute"
    per_identifier: str = "5/hour"
    per_client: str = "3/hour"
    failed_confirmations: str = "20/minute"
    storage_uri: str = "memory://"
    memory_max_keys: int = 250_000
    per_mailbox: str = "10/hour"
    failed_signins: str = "5/15 minutes"
    failed_signins_per_requester: str = "30/hour"
    failed_signins_per_client: str = "50/hour"

    def __post_init__(self) -> None:
        for field in LimitName:
            try:
                parse(getattr(self, field.value))
            except ValueError as exc:
                raise ValueError(f"RateLimits.{field} is not a valid limit string") from exc
        if self.memory_max_keys < 1:
            raise ValueError("RateLimits.memory_max_keys must be at least 1")
