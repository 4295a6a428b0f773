"""The support flows: ``issue_link`` and ``issue_code``, for a client a support operator names.

Support staff act for a client they already know, so these flows say plainly
when the number is unknown or the account closed, and raise when the mail
does not leave, where the anonymous ``request`` does neither. The link is the
one a request would mail, and the code the one a code request would mail
(each bound to the account's current state, so a key change kills it), with
an expiry of its own when one is given.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from .._failures import failure_details
from ..codes import CodeSigner, IssuedCode, format_code
from ..events import EventKind
from ..exceptions import DeliveryFailed, UnknownClient
from ..identifiers import IdentifierKind, normalize_identifier
from ..jobs import ConfirmationJob
from ..mail.composer import Composer
from ..mail.headers import message_id
from ..tokens import account_binding
from .checks import _usable
from .effects import Find, Flow, Interrupted, Send
from .login import SignIn

__all__ = ["Support"]

logger = logging.getLogger("credrecovery")


class Support(SignIn):
    """The support flows, a part of :class:`~credrecovery._flow.flows.Core`."""

    composer: Composer
    sender: str
    locale: str

    def issue_link(
        self, number: str, max_age: timedelta | None, send: bool, operator: str | None
    ) -> Flow[str]:
        """The confirmation link for client ``number``; see :meth:`RecoveryService.issue_link`."""
        _, job = yield from self._support_job(number, max_age)
        client_number, binding = job.clients[0]
        link = self.composer.link(client_number, binding, job.issued_at, max_age=max_age)
        if send:
            yield from self._mail_now(job, max_age)
        logger.info(
            "confirmation link issued by support",
            extra={
                "event": "link_issued",
                "client": client_number,
                "operator": operator,
                "mailed": send,
            },
        )
        yield from self._emit(
            EventKind.ISSUED,
            reason="mailed" if send else "not_mailed",
            number=client_number,
            operator=operator,
        )
        return link

    def issue_code(
        self,
        number: str,
        max_age: timedelta | None,
        send: bool,
        operator: str | None,
        codes: CodeSigner,
    ) -> Flow[IssuedCode]:
        """A ticket and the code of client ``number``, made by ``codes``; see
        :meth:`RecoveryService.issue_code`."""
        nonce = codes.new_nonce()
        normalized, job = yield from self._support_job(number, max_age, nonce)
        client_number, binding = job.clients[0]
        # The ticket names the client as a code request by number would, so
        # check_code finds it the way it finds any other.
        issued = IssuedCode(
            codes.issue(IdentifierKind.CLIENT_NUMBER.value, normalized, nonce, max_age=max_age),
            format_code(codes.code(nonce, binding)),
        )
        if send:
            yield from self._mail_now(job, max_age)
        logger.info(
            "recovery code issued by support",
            extra={
                "event": "code_issued",
                "client": client_number,
                "operator": operator,
                "mailed": send,
            },
        )
        yield from self._emit(
            EventKind.ISSUED,
            reason="code_mailed" if send else "code_not_mailed",
            number=client_number,
            operator=operator,
        )
        return issued

    def _support_job(
        self, number: str, max_age: timedelta | None, nonce: str = ""
    ) -> Flow[tuple[str, ConfirmationJob]]:
        """The number normalized and the job of the open client it names, stamped now;
        :class:`UnknownClient` when there is none."""
        if max_age is not None and max_age < timedelta(seconds=1):
            raise ValueError("max_age must be a second or more")
        normalized = normalize_identifier(IdentifierKind.CLIENT_NUMBER, number)
        record = yield from self._directory(Find(IdentifierKind.CLIENT_NUMBER, normalized))
        if record is None:
            raise UnknownClient(f"no client has the number {normalized}", number=normalized)
        client = _usable(record)
        if client is None:
            raise UnknownClient(
                f"client {normalized} is closed, or its record cannot be used", number=normalized
            )
        job = ConfirmationJob(
            recipient=client.email,
            name=client.name,
            sender=self.sender,
            language=self.composer.language_for(client.locale, self.locale),
            clients=((client.number, account_binding(client)),),
            issued_at=self._clock(),
            nonce=nonce,
            by_support=True,
        )
        return normalized, job

    def _mail_now(self, job: ConfirmationJob, max_age: timedelta | None) -> Flow[None]:
        """Send ``job``'s mail now; :class:`DeliveryFailed` when it does not leave."""
        number = job.clients[0][0]
        try:
            message = self.composer.confirmation(job, max_age=max_age)
        except ValueError:
            message = None
        try:
            if message is None:
                raise DeliveryFailed(
                    "the client's primary address cannot be mailed", temporary=False
                )
            yield Send(message)
        except Interrupted:
            raise
        except Exception as exc:
            details = failure_details(exc)
            logger.error(
                "confirmation mail not sent: %s",
                details["reason"],
                extra={"event": "delivery_failed", "client": number, **details},
            )
            yield from self._emit(EventKind.DELIVERY_FAILED, reason="confirmation", number=number)
            if message is None:
                raise
            known = exc if isinstance(exc, DeliveryFailed) else None
            raise DeliveryFailed(
                "the confirmation mail could not be sent",
                temporary=known.temporary if known is not None else True,
                smtp_code=known.smtp_code if known is not None else None,
                enhanced_code=known.enhanced_code if known is not None else None,
            ) from exc
        logger.info(
            "mail sent",
            extra={"event": "mail_sent", "client": number, "message_id": message_id(message)},
        )
        yield from self._emit(EventKind.MAILED, reason="confirmation", number=number)
