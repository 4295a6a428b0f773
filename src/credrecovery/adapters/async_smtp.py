"""An :class:`~credrecovery.AsyncMailer` that delivers through an SMTP server with aiosmtplib.

:class:`AsyncSMTPMailer` is :class:`~credrecovery.smtp.SMTPMailer` for an
event loop: the same settings, checked the same way, the same envelope, DSN
and SMTPUTF8 handling, and the same :class:`~credrecovery.DeliveryFailed`
for the same server reply, codes and hints included, never the server's text.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.errors
import os
import ssl
from email.message import EmailMessage
from typing import Final

try:
    import aiosmtplib
except ImportError as exc:  # pragma: no cover - exercised with the extra missing
    raise ImportError(
        "credrecovery.async_smtp needs aiosmtplib: pip install 'credrecovery[asyncio]'"
    ) from exc

from ..exceptions import DeliveryFailed
from ._smtp_common import (
    _DSN_MAIL_OPTIONS,
    Security,
    _disconnected,
    _not_supported,
    _recipients_refused,
    _refused,
    _Settings,
    _Step,
    _to_addresses,
    _transport_failure,
)

__all__ = ["AsyncSMTPMailer"]

#: What :meth:`AsyncSMTPMailer.send` turns into DeliveryFailed.
_SEND_ERRORS: Final = (aiosmtplib.SMTPException, OSError, ValueError, email.errors.MessageError)


class AsyncSMTPMailer:
    """Send each message over a new SMTP connection, as a coroutine.

    Takes exactly :class:`~credrecovery.smtp.SMTPMailer`'s arguments, with
    their meaning and checks: ``security`` ``"plain"``, ``"starttls"`` or
    ``"tls"``, a verifying ``ssl_context`` by default, no login over
    ``"plain"`` without ``allow_plain_login=True``, ``timeout`` per network
    operation, and ``envelope_sender`` as ``MAIL FROM``. STARTTLS happens only
    when ``security="starttls"`` asks for it, never by opportunity. An 8bit
    part goes with ``BODY=8BITMIME`` where the server offers it; elsewhere
    aiosmtplib re-encodes it in base64. The mailer keeps no connection, so
    one instance may serve many tasks at once.

    Bad settings raise :class:`ValueError` here. :meth:`send` failures raise
    :class:`DeliveryFailed`, as :meth:`SMTPMailer.send
    <credrecovery.smtp.SMTPMailer.send>` describes.
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
        return f"AsyncSMTPMailer({self._settings.describe()})"

    async def send(self, message: EmailMessage) -> None:
        """Deliver ``message`` to the addresses in its ``To`` header, and to no one else.

        Raises :class:`DeliveryFailed` with the original error as
        ``__cause__``, exactly as :class:`~credrecovery.smtp.SMTPMailer` does
        for the same failure.
        """
        recipients = _to_addresses(message)
        if not recipients:
            raise DeliveryFailed("the message has no To address", temporary=False)
        settings = self._settings
        client = aiosmtplib.SMTP(
            hostname=settings.host,
            port=settings.port,
            local_hostname=settings.local_hostname,
            timeout=settings.timeout,
            use_tls=settings.security == "tls",
            start_tls=False,
            tls_context=settings.context() if settings.security != "plain" else None,
        )
        try:
            await client.connect()
        except _SEND_ERRORS as exc:
            await _closed(client)
            raise self._failure(exc, connecting=True) from exc
        try:
            await self._deliver(client, message, recipients)
        except _SEND_ERRORS as exc:
            raise self._failure(exc, connecting=False) from exc

    async def _deliver(
        self, client: aiosmtplib.SMTP, message: EmailMessage, recipients: list[str]
    ) -> None:
        settings = self._settings
        try:
            if settings.security == "starttls":
                await _require(client, "STARTTLS")
                await client.starttls(tls_context=settings.context())
            if settings.username is not None and settings.password is not None:
                await _require(client, "AUTH")
                await client.login(settings.username, settings.password.reveal())
            # STARTTLS forgets the extensions offered before it, so ask on this channel.
            await _greet(client)
            options = list(_DSN_MAIL_OPTIONS) if client.supports_extension("dsn") else []
            refused, _reply = await client.send_message(
                message,
                sender=settings.envelope_sender,
                recipients=recipients,
                mail_options=options,
            )
            if refused:
                raise aiosmtplib.SMTPRecipientsRefused(
                    [
                        aiosmtplib.SMTPRecipientRefused(reply.code, reply.message, address)
                        for address, reply in refused.items()
                    ]
                )
            # The server has accepted the message; a failed goodbye changes nothing.
            with contextlib.suppress(aiosmtplib.SMTPException, OSError):
                await client.quit()
        finally:
            await _closed(client)

    def _failure(self, exc: BaseException, *, connecting: bool) -> DeliveryFailed:
        """Map an aiosmtplib or socket error onto SMTPMailer's DeliveryFailed for it."""
        settings = self._settings
        if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
            return _recipients_refused(settings, [(r.code, r.message) for r in exc.recipients])
        if isinstance(exc, aiosmtplib.SMTPRecipientRefused):
            return _recipients_refused(settings, [(exc.code, exc.message)])
        if isinstance(exc, aiosmtplib.SMTPResponseException):
            if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
                step: _Step = "login"
            elif isinstance(exc, aiosmtplib.SMTPSenderRefused):
                step = "sender"
            elif isinstance(exc, aiosmtplib.SMTPDataError):
                step = "message"
            elif isinstance(exc, aiosmtplib.SMTPConnectResponseError):
                step = "connection"
            elif isinstance(exc, aiosmtplib.SMTPHeloError):
                step = "helo"
            else:
                step = "command"
            return _refused(settings, step, exc.code, exc.message)
        if isinstance(exc, aiosmtplib.SMTPConnectTimeoutError):
            # aiosmtplib folds a silent greeting into its connect timeout; smtplib
            # reports it as a disconnection, and so does SMTPMailer.
            if isinstance(exc.__cause__, aiosmtplib.SMTPTimeoutError):
                return _disconnected(settings, timed_out=True, connecting=True)
            return _transport_failure(settings, TimeoutError(), connecting=connecting)
        if isinstance(exc, aiosmtplib.SMTPConnectError):
            cause = exc.__cause__
            if isinstance(cause, aiosmtplib.SMTPServerDisconnected):
                return _disconnected(settings, timed_out=False, connecting=True)
            if isinstance(cause, OSError):
                return _transport_failure(settings, _with_reason(cause), connecting=True)
            return _disconnected(settings, timed_out=False, connecting=True)
        if isinstance(exc, aiosmtplib.SMTPTimeoutError):
            return _disconnected(settings, timed_out=True, connecting=connecting)
        if isinstance(exc, aiosmtplib.SMTPServerDisconnected):
            return _disconnected(settings, timed_out=False, connecting=connecting)
        if isinstance(exc, aiosmtplib.SMTPNotSupported):
            # aiosmtplib's wording is fixed too, and names the extension.
            return _not_supported(str(exc))
        if isinstance(exc, aiosmtplib.SMTPException):
            return DeliveryFailed(f"SMTP delivery failed ({type(exc).__name__})", temporary=False)
        return _transport_failure(settings, exc, connecting=connecting)


async def _greet(client: aiosmtplib.SMTP) -> None:
    """EHLO, or HELO if the server refuses it, unless this channel has greeted already."""
    if client.is_ehlo_or_helo_needed:
        try:
            await client.ehlo()
        except aiosmtplib.SMTPHeloError:
            await client.helo()


async def _require(client: aiosmtplib.SMTP, extension: str) -> None:
    """Raise SMTPNotSupported, naming ``extension``, unless the server offers it.

    Checked here rather than left to aiosmtplib, whose error for a missing
    STARTTLS or AUTH is a bare SMTPException: the mapping must tell it apart.
    """
    await _greet(client)
    if not client.supports_extension(extension):
        raise aiosmtplib.SMTPNotSupported(f"the server does not offer {extension}")


def _with_reason(error: OSError) -> OSError:
    """``error`` with its errno's standard wording, as a blocking socket reports it.

    asyncio words a refused connect as "Connect call failed (address)"; the
    socket module says "Connection refused", which SMTPMailer's message quotes.
    """
    if isinstance(error, ssl.SSLError) or error.errno is None:
        return error
    return OSError(error.errno, os.strerror(error.errno))


async def _closed(client: aiosmtplib.SMTP) -> None:
    """Close ``client``'s connection and let the loop finish closing its socket.

    A transport only closes on the loop's next turn; a loop that ends first
    leaves the socket open until the garbage collector warns about it.
    """
    transport = getattr(client, "transport", None)
    client.close()
    if transport is not None:
        # A TLS transport would otherwise wait for the peer's goodbye.
        transport.abort()
    for _ in range(2):
        await asyncio.sleep(0)
