"""What :class:`~credrecovery.smtp.SMTPMailer` hands smtplib: a message as smtplib would
flatten it, done ahead of time, and a 7-bit copy for a server without 8BITMIME."""

from __future__ import annotations

import copy
import email.generator
import io
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import getaddresses

__all__ = ["Flat", "flat", "has_8bit_part", "seven_bit", "smtplib_goes_smtputf8"]


@dataclass(frozen=True, slots=True)
class Flat:
    """A message's bytes on the wire, and the envelope sender its headers give."""

    wire: bytes
    sender: str


def flat(message: EmailMessage) -> Flat:
    """``message`` as :meth:`smtplib.SMTP.send_message` flattens it for an ASCII envelope,
    and the envelope sender it would take from the headers."""
    resent = message.get_all("Resent-Date")
    if resent is not None and len(resent) > 1:
        raise ValueError("message has more than one 'Resent-' header block")
    prefix = "Resent-" if resent else ""
    header = (
        message[prefix + "Sender"] if prefix + "Sender" in message else message[prefix + "From"]
    )
    sender = getaddresses([header])[0][1]
    flattened = message
    if "Bcc" in message or "Resent-Bcc" in message:
        flattened = copy.copy(message)
        del flattened["Bcc"]
        del flattened["Resent-Bcc"]
    with io.BytesIO() as out:
        email.generator.BytesGenerator(out).flatten(flattened, linesep="\r\n")
        return Flat(out.getvalue(), sender)


def has_8bit_part(message: EmailMessage) -> bool:
    return any(
        str(part.get("Content-Transfer-Encoding", "")).lower() == "8bit" for part in message.walk()
    )


def seven_bit(message: EmailMessage) -> EmailMessage:
    """A copy of ``message`` whose 8bit text parts are quoted-printable, for a server
    without 8BITMIME (RFC 6152 forbids sending it 8bit data)."""
    converted = copy.deepcopy(message)
    for part in converted.walk():
        if (
            str(part.get("Content-Transfer-Encoding", "")).lower() == "8bit"
            and part.get_content_maintype() == "text"
            and isinstance(part, EmailMessage)
        ):
            part.set_content(
                part.get_content(), subtype=part.get_content_subtype(), cte="quoted-printable"
            )
    return converted


def smtplib_goes_smtputf8(
    message: EmailMessage, envelope_sender: str | None, recipients: list[str]
) -> bool:
    """Whether :meth:`smtplib.SMTP.send_message` will add SMTPUTF8 and BODY=8BITMIME."""
    sender = envelope_sender
    if sender is None:
        header = message["Sender"] if "Sender" in message else message["From"]
        sender = getaddresses([str(header)])[0][1] if header is not None else ""
    return not (sender.isascii() and all(address.isascii() for address in recipients))
