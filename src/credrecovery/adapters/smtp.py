"""A :class:`~credrecovery.Mailer` that delivers through an SMTP server with :mod:`smtplib`.

Each message gets its own connection: recovery mail is rare, and a fresh
connection never trips over one the server has silently dropped. Where the
server offers DSN, every message asks that a bounce carry its headers only,
never the body with the access key. Every failure surfaces as
:class:`~credrecovery.exceptions.DeliveryFailed`, whose ``temporary`` flag
follows the SMTP reply class (4xx temporary, 5xx permanent) and whose message
names the reply codes and a likely fix, never the server's own text.
"""

from __future__ import annotations

import contextlib
import copy
import email.errors
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import getaddresses
from typing import Final

from ..exceptions import DeliveryFailed
from ._smtp_common import (
    _DSN_MAIL_OPTIONS,
    _disconnected,
    _not_supported,
    _recipients_refused,
    _refused,
    _Settings,
    _Step,
    _to_addresses,
    _transport_failure,
)
from ._smtp_common import Security as Security

__all__ = ["SMTPMailer", "Security"]

#: What :meth:`SMTPMailer.send` turns into DeliveryFailed.
_SEND_ERRORS: Final = (smtplib.SMTPException, OSError, ValueError, email.errors.MessageError)


class SMTPMailer:
    """Send each message over a new SMTP connection, optionally with TLS and login.

    ``security`` is ``"plain"`` (no TLS), ``"starttls"`` (upgrade with STARTTLS,
    which the server must offer) or ``"tls"`` (TLS from the first byte, usually
    port 465). ``ssl_context`` defaults to :func:`ssl.create_default_context`,
    which verifies the server certificate and host name; to trust a private CA
    or a self-signed certificate, pass ``ssl.create_default_context(cafile=...)``.
    A login over ``"plain"`` would send the password in clear, so it is refused
    unless ``allow_plain_login=True`` (for a relay on a trusted local network).
    ``timeout`` applies to each network operation. The mailer keeps no
    connection, so one instance may be shared between threads.

    ``envelope_sender`` is the address sent as ``MAIL FROM`` (the receiving
    server records it as ``Return-Path``): bounces go there, while the
    ``From`` header stays as it is. It must be one bare address such as
    ``bounces@example.com`` with an ASCII local part; an internationalized
    domain is sent in its A-label form. Names kept for tests and local
    networks (``bounces@panel.example.test``, ``bounces@localhost``) are
    accepted like any other. With ``None``, smtplib takes the
    ``Sender`` or else the ``From`` address of each message.

    When the server offers DSN (RFC 3461), every message is sent with
    ``RET=HDRS``, so a bounce carries its headers but never its body. A server
    that does not offer DSN gets no extra parameter. A message with an 8bit
    part, as the library's text parts outside ASCII are, goes with
    ``BODY=8BITMIME`` (RFC 6152); to a server that does not offer 8BITMIME,
    a copy with those parts in quoted-printable goes instead.

    Bad settings raise :class:`ValueError` here. :meth:`send` failures raise
    :class:`DeliveryFailed`, described there.
    """

    def __init__(
        self,
        host: str,
        port: int = 25,
        *,
        security: Security = "plain",
        username: str | None = None,
        password: str | None = None,
        timeout: float = 10.0,
        ssl_context: ssl.SSLContext | None = None,
        local_hostname: str | None = None,
        allow_plain_login: bool = False,
        envelope_sender: str | None = None,
    ) -> None:
        self._settings = _Settings.checked(
            host,
            port,
            security=security,
            username=username,
            password=password,
            timeout=timeout,
            ssl_context=ssl_context,
            local_hostname=local_hostname,
            allow_plain_login=allow_plain_login,
            envelope_sender=envelope_sender,
        )

    def __repr__(self) -> str:
        return f"SMTPMailer({self._settings.describe()})"

    def send(self, message: EmailMessage) -> None:
        """Deliver ``message`` to the addresses in its ``To`` header, and to no one else.

        Raises :class:`DeliveryFailed`, with the original error as ``__cause__``.
        ``temporary`` is true for an SMTP 4xx reply, a timeout, a lost or
        refused connection; false for a 5xx reply, a rejected certificate, a
        missing extension, and ``"tls"`` aimed at a port that speaks plain
        SMTP first. ``smtp_code`` and ``enhanced_code`` are the server's reply
        codes, when it refused something. The message quotes those codes,
        with a likely fix where they point to one (a login or STARTTLS the
        server asks for, a mismatch of port and ``security``), and never the
        server's own text.
        """
        recipients = _to_addresses(message)
        if not recipients:
            raise DeliveryFailed("the message has no To address", temporary=False)
        try:
            client = self._connect()
        except _SEND_ERRORS as exc:
            raise self._failure(exc, connecting=True) from exc
        try:
            self._deliver(client, message, recipients)
        except _SEND_ERRORS as exc:
            raise self._failure(exc, connecting=False) from exc

    def _deliver(self, client: smtplib.SMTP, message: EmailMessage, recipients: list[str]) -> None:
        try:
            settings = self._settings
            if settings.security == "starttls":
                client.starttls(context=settings.context())
            if settings.username is not None and settings.password is not None:
                client.login(settings.username, settings.password.reveal())
            # STARTTLS forgets the extensions offered before it, so ask on this channel.
            client.ehlo_or_helo_if_needed()
            options = _DSN_MAIL_OPTIONS if client.has_extn("dsn") else ()
            if _has_8bit_part(message):
                if not client.has_extn("8bitmime"):
                    message = _seven_bit(message)
                elif not _smtplib_goes_smtputf8(message, settings.envelope_sender, recipients):
                    # With SMTPUTF8, smtplib declares BODY=8BITMIME itself.
                    options = (*options, "BODY=8BITMIME")
            refused = client.send_message(
                message,
                from_addr=settings.envelope_sender,
                to_addrs=recipients,
                mail_options=options,
            )
            if refused:
                raise smtplib.SMTPRecipientsRefused(refused)
            # The server has accepted the message; a failed goodbye changes nothing.
            with contextlib.suppress(smtplib.SMTPException, OSError):
                client.quit()
        finally:
            client.close()

    def _connect(self) -> smtplib.SMTP:
        # The host must go to the constructor: smtplib only records it there, and
        # TLS needs it to check the certificate. A failed connect closes its socket.
        s = self._settings
        if s.security == "tls":
            return smtplib.SMTP_SSL(
                s.host,
                s.port,
                local_hostname=s.local_hostname,
                timeout=s.timeout,
                context=s.context(),
            )
        return smtplib.SMTP(s.host, s.port, local_hostname=s.local_hostname, timeout=s.timeout)

    def _failure(self, exc: BaseException, *, connecting: bool) -> DeliveryFailed:
        """Map an smtplib or socket error to a DeliveryFailed that quotes no server text.

        ``connecting`` tells that ``exc`` came before the server's greeting
        was read (TCP connect, implicit TLS handshake, greeting).
        """
        settings = self._settings
        if isinstance(exc, smtplib.SMTPRecipientsRefused):
            return _recipients_refused(settings, list(exc.recipients.values()))
        if isinstance(exc, smtplib.SMTPResponseException):
            if isinstance(exc, smtplib.SMTPAuthenticationError):
                step: _Step = "login"
            elif isinstance(exc, smtplib.SMTPSenderRefused):
                step = "sender"
            elif isinstance(exc, smtplib.SMTPDataError):
                step = "message"
            elif isinstance(exc, smtplib.SMTPConnectError):
                step = "connection"
            elif isinstance(exc, smtplib.SMTPHeloError):
                step = "helo"
            else:
                step = "command"
            return _refused(settings, step, exc.smtp_code, exc.smtp_error)
        if isinstance(exc, smtplib.SMTPServerDisconnected):
            timed_out = isinstance(exc.__context__, TimeoutError)
            return _disconnected(settings, timed_out=timed_out, connecting=connecting)
        if isinstance(exc, smtplib.SMTPNotSupportedError):
            # Only smtplib raises this, with fixed wording that names the extension.
            return _not_supported(str(exc))
        if isinstance(exc, smtplib.SMTPException):
            return DeliveryFailed(f"SMTP delivery failed ({type(exc).__name__})", temporary=False)
        return _transport_failure(settings, exc, connecting=connecting)


def _has_8bit_part(message: EmailMessage) -> bool:
    return any(
        str(part.get("Content-Transfer-Encoding", "")).lower() == "8bit" for part in message.walk()
    )


def _seven_bit(message: EmailMessage) -> EmailMessage:
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


def _smtplib_goes_smtputf8(
    message: EmailMessage, envelope_sender: str | None, recipients: list[str]
) -> bool:
    """Whether :meth:`smtplib.SMTP.send_message` will add SMTPUTF8 and BODY=8BITMIME."""
    sender = envelope_sender
    if sender is None:
        header = message["Sender"] if "Sender" in message else message["From"]
        sender = getaddresses([str(header)])[0][1] if header is not None else ""
    return not (sender.isascii() and all(address.isascii() for address in recipients))
