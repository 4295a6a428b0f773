"""Composing confirmation mails from jobs, on the delivery side of the flow.

The request path hands delivery a plain :class:`~credrecovery.jobs.ConfirmationJob`.
A :class:`Composer`, built by the service from its own settings, signs each
client's link from the job and renders the mail, wherever delivery runs: a
thread of the web process, or a task queue's worker.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage

from .jobs import ConfirmationJob
from .messages import confirmation_message
from .models import Client
from .tokens import TokenSigner

__all__ = ["Composer"]


class Composer:
    """Turn a :class:`ConfirmationJob` into the finished confirmation mail.

    ``job_keys`` are symmetric keys derived from the service's signing keys,
    newest first, for delivery queues that must seal jobs before they cross a
    broker.
    """

    def __init__(
        self,
        signer: TokenSigner,
        *,
        confirm_url: str,
        clock: Callable[[], float],
        secret_keys: Sequence[str | bytes],
    ) -> None:
        self._signer = signer
        self._confirm_url = confirm_url
        self._clock = clock
        self.job_keys: tuple[bytes, ...] = tuple(
            hashlib.sha256(b"credrecovery.jobs\x00" + _bytes(key)).digest() for key in secret_keys
        )

    def __repr__(self) -> str:
        return f"Composer(confirm_url={self._confirm_url!r})"

    @property
    def max_age(self) -> timedelta:
        """How long the links it signs stay valid."""
        return self._signer.max_age

    def confirmation(self, job: ConfirmationJob) -> EmailMessage:
        """The mail for ``job``; :class:`ValueError` when its address cannot be mailed."""
        links = [
            (number, self._confirm_url.replace(
                "{token}", self._signer.issue_for(number, binding, issued_at=job.issued_at)))
            for number, binding in job.clients
        ]
        now = self._clock()
        # The deadline counts from the request, not from when delivery got to it.
        remaining = max(60.0, job.issued_at + self._signer.max_age.total_seconds() - now)
        recipient = Client(job.clients[0][0], job.recipient, "", name=job.name)
        return confirmation_message(
            recipient,
            links=links,
            truncated=job.truncated,
            expires_in=timedelta(seconds=remaining),
            sender=job.sender,
            language=job.language,
            now=datetime.fromtimestamp(now, UTC),
        )


def _bytes(key: str | bytes) -> bytes:
    return key if isinstance(key, bytes) else key.encode("utf-8")
