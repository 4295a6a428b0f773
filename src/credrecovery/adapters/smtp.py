"""A :class:`~credrecovery.Mailer` that delivers through an SMTP server with :mod:`smtplib`.

A connection stays open for the next message (``RSET`` in between), until it
has been idle for ``idle_timeout`` seconds; one the server has dropped
meanwhile is replaced, and the message sent once over the new one. To a server
that offers PIPELINING, a message takes two round trips rather than five.
``reuse_connections=False`` gives each message its own connection. Where the
server offers DSN, every message asks that a bounce carry its headers only,
never the body with the access key. Every failure surfaces as
:class:`~credrecovery.exceptions.DeliveryFailed`, whose ``temporary`` flag
follows the SMTP reply class (4xx temporary, 5xx permanent) and whose message
names the reply codes and a likely fix, never the server's own text.
"""

from __future__ import annotations

import contextlib
import email.errors
import smtplib
import socket
import ssl
import weakref
from collections.abc import Callable
from email.message import EmailMessage
from typing import Any, Final

from ..exceptions import DeliveryFailed
from ._smtp_client import CLOSING, OK, Client, ResetRefused, TLSClient
from ._smtp_common import (
    _DSN_MAIL_OPTIONS,
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_CONNECTION_AGE,
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
from ._smtp_keep import Kept, ThreadPool
from ._smtp_message import Flat, flat, has_8bit_part, seven_bit, smtplib_goes_smtputf8

__all__ = ["SMTPMailer", "Security"]

#: What :meth:`SMTPMailer.send` turns into DeliveryFailed.
_SEND_ERRORS: Final = (smtplib.SMTPException, OSError, ValueError, email.errors.MessageError)

#: The longest wait for the server's answer to QUIT.
_GOODBYE: Final = 2.0


class SMTPMailer:
    """Send messages over an SMTP connection kept open between them, optionally with TLS and login.

    ``security`` is ``"plain"`` (no TLS), ``"starttls"`` (upgrade with STARTTLS,
    which the server must offer) or ``"tls"`` (TLS from the first byte, usually
    port 465). ``ssl_context`` defaults to :func:`ssl.create_default_context`,
    which verifies the server certificate and host name; to trust a private CA
    or a self-signed certificate, pass ``ssl.create_default_context(cafile=...)``.
    A login over ``"plain"`` would send the password in clear, so it is refused
    unless ``allow_plain_login=True`` (for a relay on a trusted local network).
    ``timeout`` applies to each network operation.

    With ``reuse_connections`` (the default), a connection stays open once
    a message has gone through it, and the next message takes it after an
    ``RSET``: no new TCP connection, TLS handshake or login. A connection idle
    for ``idle_timeout`` seconds (10 by default) is closed by a daemon thread
    of the mailer, which ends once no connection is kept; one opened
    ``max_connection_age`` seconds ago (300) is not used again. A kept
    connection that the server dropped or timed out is noticed at ``RSET``
    or ``MAIL FROM``; as nothing of the message had reached the server then,
    the message goes once over a new connection. ``reuse_connections=False``
    opens a connection for each message and closes it after (QUIT), as
    before. One instance may be shared between threads: each mail uses a
    connection of its own, and up to 8 idle ones are kept. :meth:`close`
    closes the kept connections; a pickled or copied mailer carries its
    settings only, and a process forked from this one opens its own. The
    local host name announced in ``EHLO`` (``local_hostname``, or else this
    machine's fully qualified name) is looked up once per mailer.

    ``envelope_sender`` is the address sent as ``MAIL FROM`` (the receiving
    server records it as ``Return-Path``): bounces go there, while the
    ``From`` header stays as it is. It must be one bare address such as
    ``bounces@example.com`` with an ASCII local part; an internationalized
    domain is sent in its A-label form. Names kept for tests and local
    networks (``bounces@panel.example.test``, ``bounces@localhost``) are
    accepted like any other. With ``None``, smtplib takes the
    ``Sender`` or else the ``From`` address of each message.

    When the server offers PIPELINING (RFC 2920), as Postfix, Exim and the
    large providers' relays do, ``RSET``, ``MAIL FROM``, ``RCPT TO`` and
    ``DATA`` go in one write, and the message after their answers: two round
    trips a mail instead of five, which counts most with a distant relay.
    The server receives the same envelope and bytes either way; a message
    whose envelope needs SMTPUTF8 goes a command at a time.

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
        self._pool: ThreadPool[Client] = ThreadPool(self._settings, _retire, _drop)
        self._flattened: weakref.WeakKeyDictionary[EmailMessage, Flat] = weakref.WeakKeyDictionary()
        self._written: Callable[[], None] | None = None
        # A mailer nobody holds any more closes what it kept.
        weakref.finalize(self, self._pool.close)

    def __getstate__(self) -> dict[str, Any]:
        # The settings only: a copy, or the delivery process, opens its own connections.
        return {"_settings": self._settings}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._settings = state["_settings"]
        self._start()

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
        kept = self._pool.take() if self._settings.reuse_connections else None
        if kept is not None:
            client = kept.client
            client.data_began = False
            try:
                self._transfer(client, message, recipients)
            except _SEND_ERRORS as exc:
                self._pool.lost(kept)
                _drop(client)
                if client.data_began or not _dead(exc):
                    raise self._failure(exc, connecting=False) from exc
            except BaseException:
                # A green thread's Timeout, an interrupt: the connection is in an unknown state.
                self._pool.lost(kept)
                _drop(client)
                raise
            else:
                self._keep(kept)
                return
            # The kept connection died, or refused RSET, before the server took
            # anything of this mail: a new one sends it, once.
        try:
            client = self._connect()
        except _SEND_ERRORS as exc:
            raise self._failure(exc, connecting=True) from exc
        try:
            self._open(client)
            self._transfer(client, message, recipients)
        except _SEND_ERRORS as exc:
            _drop(client)
            raise self._failure(exc, connecting=False) from exc
        except BaseException:
            _drop(client)
            raise
        if self._settings.reuse_connections:
            self._keep(self._pool.adopt(client))
        else:
            _retire(client)

    def _prepare(self, message: EmailMessage) -> None:
        """Flatten ``message`` now, so that sending this same object later skips it.

        Background delivery calls this while its workers wait on the server.
        A message the flattening fails on is left to :meth:`send`, which
        reports it.
        """
        ahead = _flat_or_none(message)
        if ahead is not None:
            self._flattened[message] = ahead

    def _when_written(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` each time a message is written, before its reply is read.

        Background delivery composes the next mail then, while the server takes
        its time, rather than while a worker's commands go back and forth.
        """
        self._written = callback

    def _keep(self, kept: Kept[Client]) -> None:
        try:
            kept.client.ask_reset()
        except BaseException as exc:
            self._pool.lost(kept)
            _drop(kept.client)
            # The mail is sent: a connection that fails now is merely not kept.
            if not isinstance(exc, smtplib.SMTPException | OSError):
                raise
        else:
            self._pool.give_back(kept)

    def close(self) -> None:
        """Close the connections kept for later mails; the mailer stays usable.

        A connection in use by another thread is closed once its mail is sent.
        """
        self._pool.close()

    def _open(self, client: Client) -> None:
        settings = self._settings
        if settings.security == "starttls":
            client.starttls(context=settings.context())
        if settings.username is not None and settings.password is not None:
            client.login(settings.username, settings.password.reveal())
        # STARTTLS forgets the extensions offered before it, so ask on this channel.
        client.ehlo_or_helo_if_needed()

    def _transfer(self, client: Client, message: EmailMessage, recipients: list[str]) -> None:
        settings = self._settings
        client.data_began = False
        client.on_message_written = self._written
        options = _DSN_MAIL_OPTIONS if client.has_extn("dsn") else ()
        if has_8bit_part(message):
            if not client.has_extn("8bitmime"):
                message = seven_bit(message)
            elif not smtplib_goes_smtputf8(message, settings.envelope_sender, recipients):
                # With SMTPUTF8, smtplib declares BODY=8BITMIME itself.
                options = (*options, "BODY=8BITMIME")
        pipelining = client.has_extn("pipelining")
        ahead = self._flattened.get(message) or (_flat_or_none(message) if pipelining else None)
        sender = settings.envelope_sender or (ahead.sender if ahead is not None else "")
        if not (sender.isascii() and all(address.isascii() for address in recipients)):
            # smtplib's SMTPUTF8 path: send_message flattens with utf8=True.
            ahead = None
        if ahead is not None and pipelining:
            refused = client.pipelined(sender, recipients, ahead.wire, options)
        elif (client.reset_asked or client.reset_due) and client.reset() != OK:
            raise ResetRefused("the server refused RSET")
        elif ahead is not None:
            # What send_message would send, flattened beforehand (see _smtp_message.flat).
            refused = client.sendmail(sender, recipients, ahead.wire, options)
        else:
            refused = client.send_message(
                message,
                from_addr=settings.envelope_sender,
                to_addrs=recipients,
                mail_options=options,
            )
        if refused:
            raise smtplib.SMTPRecipientsRefused(refused)

    def _connect(self) -> Client:
        # The host must go to the constructor: smtplib only records it there, and
        # TLS needs it to check the certificate. A failed connect closes its socket.
        s = self._settings
        if self._hostname is None:
            self._hostname = s.local_hostname or _default_local_hostname()
        if s.security == "tls":
            return TLSClient(
                s.host,
                s.port,
                local_hostname=self._hostname,
                timeout=s.timeout,
                context=s.context(),
            )
        return Client(s.host, s.port, local_hostname=self._hostname, timeout=s.timeout)

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


def _flat_or_none(message: EmailMessage) -> Flat | None:
    """``message`` flattened, or ``None`` where that fails: send_message then reports it."""
    try:
        return flat(message)
    except (*_SEND_ERRORS, TypeError, IndexError):
        return None


def _dead(exc: BaseException) -> bool:
    """Whether ``exc`` says the connection is gone, rather than that the server refused."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return any(code == CLOSING for code, _reply in exc.recipients.values())
    if isinstance(exc, smtplib.SMTPResponseException):
        return exc.smtp_code == CLOSING
    # smtplib's own errors are OSErrors too; of those only a disconnection counts.
    if isinstance(exc, smtplib.SMTPException):
        return isinstance(exc, smtplib.SMTPServerDisconnected)
    return isinstance(exc, OSError)


def _retire(client: smtplib.SMTP) -> None:
    """Say goodbye (QUIT), briefly, and close."""
    try:
        if client.sock is not None:
            client.sock.settimeout(min(_GOODBYE, client.timeout))
        client.quit()
    except (smtplib.SMTPException, OSError):
        pass
    finally:
        client.close()


def _drop(client: smtplib.SMTP) -> None:
    with contextlib.suppress(OSError):
        client.close()


def _default_local_hostname() -> str:
    """The name smtplib announces when given none, looked up as smtplib does."""
    fqdn = socket.getfqdn()
    if "." in fqdn:
        return fqdn
    address = "127.0.0.1"
    with contextlib.suppress(socket.gaierror):
        address = socket.gethostbyname(socket.gethostname())
    return f"[{address}]"
