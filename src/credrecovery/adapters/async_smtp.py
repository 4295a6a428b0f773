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
import socket
import ssl
import weakref
from email.message import EmailMessage
from typing import Any, Final

try:
    import aiosmtplib
except ImportError as exc:  # pragma: no cover - exercised with the extra missing
    raise ImportError(
        "credrecovery.async_smtp needs aiosmtplib: pip install 'credrecovery[asyncio]'"
    ) from exc

from ..exceptions import DeliveryFailed
from ._smtp_common import (
    _DSN_MAIL_OPTIONS,
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_CONNECTION_AGE,
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
from ._smtp_keep import LoopPools
from ._smtp_relay import Relay

__all__ = ["AsyncSMTPMailer"]

#: What :meth:`AsyncSMTPMailer.send` turns into DeliveryFailed.
_SEND_ERRORS: Final = (aiosmtplib.SMTPException, OSError, ValueError, email.errors.MessageError)

#: "Service not available, closing transmission channel" (RFC 5321).
_CLOSING: Final = 421
#: The longest wait for the server's answer to QUIT.
_GOODBYE: Final = 2.0


class _Client(aiosmtplib.SMTP):
    """An aiosmtplib client that tells whether the message itself has begun to go."""

    data_began = False

    async def data(self, *args: Any, **kwargs: Any) -> aiosmtplib.SMTPResponse:
        self.data_began = True
        return await super().data(*args, **kwargs)


class AsyncSMTPMailer:
    """Send messages over an SMTP connection kept open between them, as a coroutine.

    Takes exactly :class:`~credrecovery.smtp.SMTPMailer`'s arguments, with
    their meaning and checks: ``security`` ``"plain"``, ``"starttls"`` or
    ``"tls"``, a verifying ``ssl_context`` by default, no login over
    ``"plain"`` without ``allow_plain_login=True``, ``timeout`` per network
    operation, and ``envelope_sender`` as ``MAIL FROM``. STARTTLS happens only
    when ``security="starttls"`` asks for it, never by opportunity. An 8bit
    part goes with ``BODY=8BITMIME`` where the server offers it; elsewhere
    aiosmtplib re-encodes it in base64.

    Connections are kept as :class:`~credrecovery.smtp.SMTPMailer` keeps
    them (``reuse_connections``, ``idle_timeout``, ``max_connection_age``),
    each on the event loop that opened it: tasks of one loop share its kept
    connections, one mail per connection at a time, so one instance may serve
    many tasks at once. A task on that loop closes the idle ones, and a loop
    that shuts down as :func:`asyncio.run` does closes what it kept.
    Delivery threads send through :meth:`send_from_thread`, on a loop of the
    mailer's own. :meth:`aclose` (or, from a thread, :meth:`close`) closes
    the kept connections; a pickled or copied mailer carries its settings
    only.

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
        reuse_connections: bool = True,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        max_connection_age: float = DEFAULT_MAX_CONNECTION_AGE,
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
            reuse_connections=reuse_connections,
            idle_timeout=idle_timeout,
            max_connection_age=max_connection_age,
        )
        self._start()

    def _start(self) -> None:
        self._hostname: str | None = None
        self._pools: LoopPools[_Client] = LoopPools(self._settings, _retired, _aborted)
        self._relay = Relay(self._pools.aclose)
        # A mailer nobody holds any more stops its delivery threads' loop.
        weakref.finalize(self, self._relay.stop)

    def __getstate__(self) -> dict[str, Any]:
        # The settings only: a copy, or the delivery process, opens its own connections.
        return {"_settings": self._settings}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._settings = state["_settings"]
        self._start()

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
        reuse = self._settings.reuse_connections
        kept = self._pools.take() if reuse else None
        if kept is not None and kept.client.is_connected:
            client = kept.client
            client.data_began = False
            try:
                await client.rset()
                await self._transfer(client, message, recipients)
            except _SEND_ERRORS as exc:
                self._pools.lost(kept)
                await _closed(client)
                if client.data_began or not _dead(exc):
                    raise self._failure(exc, connecting=False) from exc
                # Dead before the server took anything of this mail: a new
                # connection sends it, once.
            except BaseException:
                # Cancelled mid-mail: the connection is in an unknown state.
                self._pools.lost(kept)
                _aborted(client)
                raise
            else:
                self._pools.give_back(kept)
                return
        elif kept is not None:
            self._pools.lost(kept)
            await _closed(kept.client)
        client = await self._connect()
        try:
            await self._open(client)
            await self._transfer(client, message, recipients)
        except _SEND_ERRORS as exc:
            await _closed(client)
            raise self._failure(exc, connecting=False) from exc
        except BaseException:
            _aborted(client)
            raise
        if reuse:
            self._pools.give_back(self._pools.adopt(client))
        else:
            await _retired(client)

    async def aclose(self) -> None:
        """Close the connections kept for later mails; the mailer stays usable.

        Those of the running loop say goodbye (QUIT); those kept on other
        loops, or for delivery threads, are closed as :meth:`close` does.
        """
        if self._relay.running:
            await asyncio.to_thread(self._relay.stop)
        await self._pools.aclose()

    def close(self) -> None:
        """Close the connections kept for later mails, from any thread; the mailer stays usable.

        A connection in use is closed once its mail is sent.
        """
        self._relay.stop()
        self._pools.close()

    def send_from_thread(self, message: EmailMessage) -> None:
        """:meth:`send`, from a thread without an event loop, as delivery threads call it.

        It runs on an event loop of the mailer's own, in a daemon thread, so
        that connections stay open between mails; :meth:`close` stops it.
        """
        self._relay.run(self.send, message)

    async def _connect(self) -> _Client:
        settings = self._settings
        if self._hostname is None:
            self._hostname = settings.local_hostname or await asyncio.to_thread(socket.getfqdn)
        client = _Client(
            hostname=settings.host,
            port=settings.port,
            local_hostname=self._hostname,
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
        return client

    async def _open(self, client: _Client) -> None:
        settings = self._settings
        if settings.security == "starttls":
            await _require(client, "STARTTLS")
            await client.starttls(tls_context=settings.context())
        if settings.username is not None and settings.password is not None:
            await _require(client, "AUTH")
            await client.login(settings.username, settings.password.reveal())
        # STARTTLS forgets the extensions offered before it, so ask on this channel.
        await _greet(client)

    async def _transfer(
        self, client: _Client, message: EmailMessage, recipients: list[str]
    ) -> None:
        settings = self._settings
        client.data_began = False
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


def _dead(exc: BaseException) -> bool:
    """Whether ``exc`` says the connection is gone, rather than that the server refused."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        return any(refusal.code == _CLOSING for refusal in exc.recipients)
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return exc.code == _CLOSING
    # aiosmtplib words a lost or silent connection as a ConnectionError or TimeoutError.
    return isinstance(exc, OSError)


async def _retired(client: aiosmtplib.SMTP) -> None:
    """Say goodbye (QUIT), briefly, and close."""
    with contextlib.suppress(aiosmtplib.SMTPException, OSError):
        await client.quit(timeout=min(_GOODBYE, client.timeout or _GOODBYE))
    await _closed(client)


def _aborted(client: aiosmtplib.SMTP) -> None:
    """Close at once, with no word to the server: the loop may not turn again."""
    transport = getattr(client, "transport", None)
    client.close()
    if transport is not None:
        transport.abort()


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
