"""The smtplib client of :class:`~credrecovery.smtp.SMTPMailer`: it knows whether the
message itself has begun to go, resets a kept connection, and pipelines a mail's
commands to a server that offers PIPELINING (RFC 2920)."""

from __future__ import annotations

import re
import smtplib
from collections.abc import Callable
from typing import Final

__all__ = ["CLOSING", "OK", "Client", "ResetRefused", "TLSClient"]

OK: Final = 250
_WILL_FORWARD: Final = 251
_START_INPUT: Final = 354
#: "Service not available, closing transmission channel" (RFC 5321).
CLOSING: Final = 421
#: A line of the message that begins with a dot, which DATA doubles (RFC 5321, 4.5.2).
_LEADING_DOT: Final = re.compile(rb"(?m)^\.")


class Client(smtplib.SMTP):
    """An smtplib client that tells whether the message itself has begun to go.

    A kept connection is reset (RSET) once a mail is through. Without
    PIPELINING the command goes at once and its answer is read before the
    next mail, so that the round trip happens while the connection waits
    rather than while a mail does; with PIPELINING it goes in one write with
    the next mail's commands.
    """

    data_began = False
    #: RSET is sent and its answer not yet read.
    reset_asked = False
    #: RSET is to go ahead of the next mail's commands.
    reset_due = False
    #: Called once a message is written, while its reply is awaited.
    on_message_written: Callable[[], None] | None = None

    def data(self, msg: bytes) -> tuple[int, bytes]:  # type: ignore[override]
        # sendmail, the only caller, hands bytes.
        self.putcmd("data")
        code, reply = self.getreply()
        if code != _START_INPUT:
            raise smtplib.SMTPDataError(code, reply)
        return self._message(msg)

    def _message(self, wire: bytes) -> tuple[int, bytes]:
        """Write ``wire`` after DATA was accepted, as smtplib does, and read the reply."""
        self.data_began = True
        # Most mails have no line to double, and looking costs a fifth of the sub.
        quoted = wire
        if wire.startswith(b".") or b"\n." in wire:
            quoted = _LEADING_DOT.sub(b"..", wire)
        if not quoted.endswith(b"\r\n"):
            quoted += b"\r\n"
        self.send(quoted + b".\r\n")
        if self.on_message_written is not None:
            self.on_message_written()
        return self.getreply()

    def ask_reset(self) -> None:
        if self.has_extn("pipelining"):
            self.reset_due = True
        else:
            self.putcmd("rset")
            self.reset_asked = True

    def reset(self) -> int:
        """The server's reply code to the RSET asked after the last mail, or sent now."""
        if self.reset_due:
            self.reset_due = False
            return self.rset()[0]
        self.reset_asked = False
        return self.getreply()[0]

    def pipelined(
        self, sender: str, recipients: list[str], wire: bytes, options: tuple[str, ...]
    ) -> dict[str, tuple[int, bytes]]:
        """:meth:`sendmail` of flattened ``wire`` with two round trips, to a server offering
        PIPELINING (RFC 2920): MAIL FROM, RCPT TO and DATA go in one write, then the message.

        Raises what :meth:`sendmail` raises, on the first reply that refuses. The
        replies after it stay unread: the caller drops a connection that failed.
        """
        if self.has_extn("size"):
            options = (f"size={len(wire)}", *options)
        optionlist = "".join(f" {option}" for option in options)
        group = [
            *(["rset\r\n"] if self.reset_due else []),
            _command("mail", f"FROM:{smtplib.quoteaddr(sender)}{optionlist}"),
            *(_command("rcpt", f"TO:{smtplib.quoteaddr(address)}") for address in recipients),
            _command("data"),
        ]
        self.send("".join(group))
        self.reset_asked, self.reset_due = self.reset_asked or self.reset_due, False
        if self.reset_asked and self.reset() != OK:
            raise ResetRefused("the server refused RSET")
        code, reply = self.getreply()
        if code != OK:
            raise smtplib.SMTPSenderRefused(code, reply, sender)
        refused: dict[str, tuple[int, bytes]] = {}
        for address in recipients:
            code, reply = self.getreply()
            if code not in (OK, _WILL_FORWARD):
                refused[address] = (code, reply)
            if code == CLOSING or len(refused) == len(recipients):
                raise smtplib.SMTPRecipientsRefused(refused)
        code, reply = self.getreply()
        if code != _START_INPUT:
            raise smtplib.SMTPDataError(code, reply)
        code, reply = self._message(wire)
        if code != OK:
            raise smtplib.SMTPDataError(code, reply)
        return refused


class ResetRefused(smtplib.SMTPServerDisconnected):
    """A kept connection answered RSET with a refusal: it is not used again."""


def _command(verb: str, arguments: str = "") -> str:
    """One command line as :meth:`smtplib.SMTP.putcmd` sends it, refusing a line break."""
    line = f"{verb} {arguments}" if arguments else verb
    if "\r" in line or "\n" in line:
        raise ValueError("an SMTP command may not contain a line break")
    return line + "\r\n"


class TLSClient(Client, smtplib.SMTP_SSL):
    """:class:`Client` over TLS from the first byte."""
