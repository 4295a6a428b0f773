"""Where Celery workers record the jobs they deliver, so that each job is mailed once.

A job the broker hands out again, or that someone replays, finds its record
and is not mailed twice. :class:`RedisDeliveryRecords` keeps the records in
Redis; a host may bring any :class:`DeliveryRecords`.
"""

from __future__ import annotations

import dataclasses
import secrets
from typing import Protocol, runtime_checkable

try:
    import redis
except ImportError as exc:  # pragma: no cover - exercised with the extra missing
    raise ImportError(
        "credrecovery.celery needs Celery and cryptography: pip install 'credrecovery[celery]'"
    ) from exc

from ..exceptions import DeliveryFailed

__all__ = ["Claim", "DeliveryRecords", "RedisDeliveryRecords"]


@dataclasses.dataclass(frozen=True)
class Claim:
    """What :meth:`DeliveryRecords.claim` found.

    ``token`` is set when the caller now holds the job's lease and must end
    it with :meth:`~DeliveryRecords.finish` or :meth:`~DeliveryRecords.release`;
    ``done`` is true when the job has ended already (mailed, dropped or given
    up); otherwise another worker holds a lease that ends in ``wait`` seconds.
    """

    token: str | None
    done: bool = False
    wait: float = 0.0

    def __repr__(self) -> str:
        return f"Claim(held={self.token is not None}, done={self.done}, wait={self.wait})"


@runtime_checkable
class DeliveryRecords(Protocol):
    """Where workers record the jobs they deliver, shared by every worker of a service.

    ``name`` is a job's digest (:meth:`JobSealer.open`): 32 hexadecimal
    digits that reveal nothing of the job. Each call must be atomic across
    workers; any exception it raises counts as a temporary failure of the
    job.
    """

    def claim(self, name: str, lease: float) -> Claim:
        """Take ``name`` for ``lease`` seconds unless it is done or another holds it."""

    def finish(self, name: str, token: str, keep: float) -> None:
        """Mark ``name`` done for ``keep`` seconds, whoever holds it now."""

    def release(self, name: str, token: str) -> None:
        """Give ``name`` up, if ``token`` still holds it, so that a retry takes it again."""


class RedisDeliveryRecords:
    """:class:`DeliveryRecords` in Redis: one string key per job.

    The key is ``prefix`` followed by the job's digest; its value is
    ``sending:`` and 32 random hexadecimal digits while a worker holds the
    lease (``SET NX PX``, expiring with the lease), then ``done`` (``SET EX``)
    for as long as the job could still open. ``client`` is a
    :class:`redis.Redis` or a URL (``redis://``, ``rediss://``, ``unix://``);
    a URL connects on first use, in the worker, never in the web process.
    :meth:`close` ends the connections of a client built from the URL.
    """

    _RELEASE = (
        "if redis.call('GET', KEYS[1]) == ARGV[1] then "
        "return redis.call('DEL', KEYS[1]) end return 0"
    )

    def __init__(
        self, client: redis.Redis | str, *, prefix: str = "credrecovery:delivered:"
    ) -> None:
        self._url = client if isinstance(client, str) else None
        self._client = None if isinstance(client, str) else client
        self._closed = False
        self.prefix = prefix

    def __repr__(self) -> str:
        # The URL may hold a password.
        return f"RedisDeliveryRecords(prefix={self.prefix!r})"

    @property
    def client(self) -> redis.Redis:
        """The Redis client, connected from the URL on first use.

        Raises :class:`~credrecovery.DeliveryFailed` once closed.
        """
        if self._closed:
            raise DeliveryFailed("the delivery records are closed", temporary=False)
        if self._client is None:
            assert self._url is not None
            self._client = redis.Redis.from_url(self._url)
        return self._client

    def close(self) -> None:
        """Refuse every later call; idempotent. Closes a client built from the URL.

        A :class:`redis.Redis` the host passed is left open, for the host to
        close. A worker counts a call refused as a temporary failure of its job.
        """
        self._closed = True
        client, built = self._client, self._url is not None
        if built and client is not None:
            self._client = None
            client.close()

    def claim(self, name: str, lease: float) -> Claim:
        """``SET key sending:<random> NX PX lease``; else what holds the key, and for how long."""
        key = self.prefix + name
        token = "sending:" + secrets.token_hex(16)
        for _ in range(3):
            if self.client.set(key, token, nx=True, px=max(1, round(lease * 1000))):
                return Claim(token)
            with self.client.pipeline(transaction=True) as pipe:
                pipe.get(key)
                pipe.pttl(key)
                value, ttl = pipe.execute()
            if value == b"done":
                return Claim(None, done=True)
            if value is not None:
                return Claim(None, wait=max(ttl, 0) / 1000)
            # The lease ran out between the two calls: try again.
        return Claim(None, wait=0.1)

    def finish(self, name: str, token: str, keep: float) -> None:
        """``SET key done EX keep``."""
        self.client.set(self.prefix + name, "done", ex=max(1, round(keep)))

    def release(self, name: str, token: str) -> None:
        """Delete the key if it still holds ``token`` (one Lua script, atomic)."""
        self.client.eval(self._RELEASE, 1, self.prefix + name, token)
