"""Composing the mails: confirmation mails from jobs, on the delivery side of the flow.

The request path hands delivery a plain :class:`~credrecovery.jobs.ConfirmationJob`.
A :class:`Composer`, built by the service from its own settings, signs each
client's link (or, for a code job, makes each client's code) from the job and
renders the mail, wherever delivery runs: a
thread of the web process, a delivery process, or a task queue's worker. It
renders the credentials mail too, and knows which languages the catalogs
offer.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Any

import jinja2

from .._derivation import derive_key
from ..codes import CodeSigner, format_code
from ..exceptions import InvalidIdentifier, KeyRejected
from ..jobs import ConfirmationJob
from ..models import Client
from ..tokens import TokenSigner
from .branding import Branding
from .messages import MailRenderer

__all__ = ["Composer"]


# About one signature in 4,000 holds a run that spam filters read as a Bitcoin
# address (SpamAssassin's __BITCOIN_ID body rule, +1.0). Such a link is signed
# again a second earlier, which changes the signature and shortens the link's
# life by that second; decoys go through the same steps.
_LOOKS_LIKE_BITCOIN = re.compile(
    r"\b(?<!=)(?:[13](?:(?:[-_=\s][a-km-zA-HJ-NP-Z1-9]){29,34}|[a-km-zA-HJ-NP-Z1-9]{29,34})"
    r"|bc1[ac-hj-np-z02-9]{30,90})\b"
)
_RESIGNS = 5


class Composer:
    """Turn a :class:`ConfirmationJob` into the finished confirmation mail.

    ``job_keys`` are symmetric keys derived from the service's signing keys,
    newest first, for delivery queues that must seal jobs before they cross a
    broker. ``branding``, ``templates``, ``catalogs``, ``locale`` and
    ``key_mode`` are as for :class:`~credrecovery.RecoveryService`; ``codes``
    makes the codes of code jobs (by default a
    :class:`~credrecovery.codes.CodeSigner` on ``secret_keys`` whose codes
    last 15 minutes). It pickles as plain settings; template environments and
    catalogs load again on first use.
    """

    def __init__(
        self,
        signer: TokenSigner,
        *,
        confirm_url: str,
        clock: Callable[[], float],
        secret_keys: Sequence[str | bytes],
        branding: Branding | None = None,
        templates: str | os.PathLike[str] | jinja2.BaseLoader | None = None,
        catalogs: str | os.PathLike[str] | None = None,
        locale: str = "en",
        codes: CodeSigner | None = None,
        key_mode: str = "generate",
    ) -> None:
        self._signer = signer
        self._codes = (
            codes if codes is not None else CodeSigner(secret_keys[0], secret_keys[1:], clock=clock)
        )
        self._chooses = key_mode == "choose"
        self._confirm_url = confirm_url
        self._clock = clock
        self.job_keys: tuple[bytes, ...] = tuple(derive_key(key, "jobs") for key in secret_keys)
        self.renderer = MailRenderer(
            branding=branding, templates=templates, catalogs=catalogs, locale=locale
        )

    def __repr__(self) -> str:
        return f"Composer(confirm_url={self._confirm_url!r})"

    @property
    def max_age(self) -> timedelta:
        """How long the links it signs stay valid."""
        return self._signer.max_age

    @property
    def languages(self) -> frozenset[str]:
        """The locales the mails can be written in: packaged, or added by the host."""
        return self.renderer.languages

    def language_for(self, *preferences: str | None) -> str:
        """The first of ``preferences`` there is a catalog for, else the service's, else English.

        Each is tried as given (``pt_BR``), then as its language alone (``pt``).
        """
        return self.renderer.language_for(*preferences)

    def error_message(
        self, error: InvalidIdentifier | KeyRejected, language: str | None = None
    ) -> str:
        """``error``'s message in ``language``, else the service's, using the host's catalogs."""
        return self.renderer.error_message(error, language)

    def confirmation(
        self, job: ConfirmationJob, *, max_age: timedelta | None = None
    ) -> EmailMessage:
        """The mail for ``job``; :class:`ValueError` when its address cannot be mailed.

        Its links stay valid ``max_age``, by default the signer's. A code job
        (one with a nonce) carries codes instead, valid ``max_age``, by
        default as long as the composer's code signer says, and worded for
        support staff's codes when the job is ``by_support``.
        """
        if job.nonce:
            return self._code_mail(job, max_age)
        links = [
            (number, self._link(number, binding, job.issued_at, max_age))
            for number, binding in job.clients
        ]
        valid = self._signer.max_age if max_age is None else max_age
        return self.renderer.confirmation(links=links, **self._common(job, valid))

    @property
    def code_max_age(self) -> timedelta:
        """How long the codes it makes stay valid."""
        return self._codes.max_age

    def _code_mail(self, job: ConfirmationJob, max_age: timedelta | None) -> EmailMessage:
        codes = [
            (number, format_code(self._codes.code(job.nonce, binding)))
            for number, binding in job.clients
        ]
        valid = self._codes.max_age if max_age is None else max_age
        return self.renderer.code(
            codes=codes, by_support=job.by_support, **self._common(job, valid)
        )

    def _common(self, job: ConfirmationJob, valid: timedelta) -> dict[str, Any]:
        """What a link mail and a code mail are both rendered with."""
        now = self._clock()
        # The deadline counts from the request, not from when delivery got to it.
        remaining = max(60.0, job.issued_at + valid.total_seconds() - now)
        return {
            "recipient": job.recipient,
            "name": job.name,
            "truncated": job.truncated,
            "expires_in": timedelta(seconds=remaining),
            "sender": job.sender,
            "language": job.language,
            "now": datetime.fromtimestamp(now, UTC),
            "chooses": self._chooses,
        }

    def link(
        self, number: str, binding: str, issued_at: float, *, max_age: timedelta | None = None
    ) -> str:
        """The confirmation link for client ``number`` in the state ``binding`` digests,
        stamped ``issued_at``, valid for ``max_age`` (by default the signer's)."""
        return self._link(number, binding, issued_at, max_age)

    def _link(
        self, number: str, binding: str, issued_at: float, max_age: timedelta | None = None
    ) -> str:
        for earlier in range(_RESIGNS):
            link = self._confirm_url.replace(
                "{token}",
                self._signer.issue_for(
                    number, binding, issued_at=issued_at - earlier, max_age=max_age
                ),
            )
            if not _LOOKS_LIKE_BITCOIN.search(link):
                break
        return link

    def credentials(
        self, client: Client, *, key: str, sender: str, now: datetime | None = None
    ) -> EmailMessage:
        """The mail carrying ``client``'s number and new ``key``, in the client's language.

        Of ``client`` only the number, the address, the name and the locale
        reach the mail. Raises :class:`ValueError` when the address cannot be
        mailed.
        """
        return self.renderer.credentials(key=key, **self._addressed(client, sender, now))

    def key_changed(
        self, client: Client, *, sender: str, now: datetime | None = None
    ) -> EmailMessage:
        """The notice that ``client``'s key was changed, carrying no key, in its language.

        Takes of ``client`` what :meth:`credentials` takes.
        """
        return self.renderer.key_changed(**self._addressed(client, sender, now))

    def _addressed(self, client: Client, sender: str, now: datetime | None) -> dict[str, Any]:
        moment = now if now is not None else datetime.fromtimestamp(self._clock(), UTC)
        return {
            "recipient": client.email,
            "name": client.name,
            "number": client.number,
            "sender": sender,
            "language": self.language_for(client.locale),
            "now": moment,
        }
