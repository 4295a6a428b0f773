"""A credrecovery Mailer that sends through Django's email backend."""

from __future__ import annotations

import copy
import email.message
import email.policy
import smtplib
from typing import Any

from django.core import mail

from credrecovery import DeliveryFailed


class _Serializable(email.message.EmailMessage):
    """A stdlib message that also takes the ``linesep`` Django's SMTP backend passes."""

    def as_bytes(
        self,
        unixfrom: bool = False,
        policy: email.policy.Policy | None = None,
        *,
        linesep: str | None = None,
    ) -> bytes:
        policy = policy or self.policy
        if linesep is not None:
            policy = policy.clone(linesep=linesep)
        return super().as_bytes(unixfrom, policy)


class PreparedEmail(mail.EmailMessage):
    """A Django message whose MIME form is a finished stdlib message, headers and all.

    Backends take the envelope from ``from_email`` and ``to``, then send
    :meth:`message`: here the library's message itself, unchanged.
    """

    def __init__(self, prepared: email.message.EmailMessage) -> None:
        to = [address.addr_spec for address in prepared["To"].addresses]
        super().__init__(subject=str(prepared["Subject"]), from_email=str(prepared["From"]), to=to)
        self.prepared = copy.copy(prepared)
        self.prepared.__class__ = _Serializable

    def message(self, **kwargs: Any) -> email.message.EmailMessage:  # type: ignore[override]
        return self.prepared


class DjangoMailer:
    """Send each message with ``django.core.mail.get_connection(backend)``.

    ``backend`` is a dotted path, ``None`` for ``settings.EMAIL_BACKEND``.
    Failures raise :class:`DeliveryFailed`: permanent for an SMTP 5xx reply,
    temporary otherwise.
    """

    def __init__(self, backend: str | None = None) -> None:
        self.backend = backend

    def __repr__(self) -> str:
        return f"DjangoMailer(backend={self.backend!r})"

    def send(self, message: email.message.EmailMessage) -> None:
        try:
            connection = mail.get_connection(self.backend, fail_silently=False)
            sent = connection.send_messages([PreparedEmail(message)])
        except smtplib.SMTPResponseException as exc:
            raise DeliveryFailed(
                "the mail server refused the message",
                temporary=exc.smtp_code < 500,
                smtp_code=exc.smtp_code,
            ) from exc
        except (smtplib.SMTPException, OSError) as exc:
            raise DeliveryFailed("the mail server could not be reached") from exc
        if sent != 1:
            raise DeliveryFailed("the email backend did not send the message")
