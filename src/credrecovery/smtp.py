"""A :class:`~credrecovery.Mailer` that delivers through an SMTP server with :mod:`smtplib`.

Each message gets its own connection: recovery mail is rare, and a fresh
connection never trips over one the server has silently dropped. Every failure
surfaces as :class:`~credrecovery.exceptions.DeliveryFailed`, whose ``temporary``
flag follows the SMTP reply class (4xx temporary, 5xx permanent).
"""

from __future__ import annotations

import contextlib
import email.errors
import math
import smtplib
import ssl
from email.headerregistry import AddressHeader
from email.message import EmailMessage
from email.utils import getaddresses
from typing import Final, Literal, get_args

from .exceptions import DeliveryFailed

__all__ = ["SMTPMailer", "Security"]

Security = Literal["plain", "starttls", "tls"]

_SECURITY_MODES: Final = frozenset(get_args(Security))


class _Secret:
    """A string that ``repr()`` and ``vars()`` of its holder do not print."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def __repr__(self) -> str:
        return "<secret>"

    def reveal(self) -> str:
        return self._value


class SMTPMailer:
    """Send each message over a new SMTP connection, optionally with TLS and login.

    ``security`` is ``"plain"`` (no TLS), ``"starttls"`` (upgrade with STARTTLS,
    which the server must offer) or ``"tls"`` (TLS from the first byte, usually
    port 465). ``ssl_context`` defaults to :func:`ssl.create_default_context`,
    which verifies the server certificate and host name. A login over
    ``"plain"`` would send the password in clear, so it is refused unless
    ``allow_plain_login=True`` (for a relay on a trusted local network).
    ``timeout`` applies to each network operation. The mailer keeps no
    connection, so one instance may be shared between threads.
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
    ) -> None:
        if not isinstance(host, str) or not host:
            raise ValueError("host must be a non-empty string")
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            raise ValueError("port must be an integer between 1 and 65535")
        if security not in _SECURITY_MODES:
            raise ValueError("security must be one of 'plain', 'starttls' or 'tls'")
        if ssl_context is not None and security == "plain":
            raise ValueError("ssl_context is only used with security 'starttls' or 'tls'")
        if (isinstance(timeout, bool) or not isinstance(timeout, int | float)
                or not math.isfinite(timeout) or timeout <= 0):
            raise ValueError("timeout must be a positive number of seconds")
        if username is None and password is not None:
            raise ValueError("a password was given without a username")
        if username is not None:
            if not username or password is None:
                raise ValueError("a username needs a password")
            # smtplib encodes credentials as ASCII; fail here rather than at the first send.
            if not (username.isascii() and password.isascii()):
                raise ValueError("username and password must be ASCII")
            if security == "plain" and not allow_plain_login:
                raise ValueError(
                    "logging in without TLS sends the password in clear; use 'starttls' or "
                    "'tls', or pass allow_plain_login=True for a trusted local relay"
                )
        self._host = host
        self._port = port
        self._security: Security = security
        self._username = username
        self._password = _Secret(password) if password is not None else None
        self._timeout = float(timeout)
        self._ssl_context = ssl_context
        self._local_hostname = local_hostname

    def __repr__(self) -> str:
        return (
            f"SMTPMailer(host={self._host!r}, port={self._port}, "
            f"security={self._security!r}, auth={self._username is not None})"
        )

    def send(self, message: EmailMessage) -> None:
        """Deliver ``message`` to the addresses in its ``To`` header, and to no one else.

        Raises :class:`DeliveryFailed`, with the original error as ``__cause__``.
        """
        recipients = _to_addresses(message)
        if not recipients:
            raise DeliveryFailed("the message has no To address", temporary=False)
        try:
            self._deliver(message, recipients)
        except (smtplib.SMTPException, OSError, ValueError, email.errors.MessageError) as exc:
            raise _delivery_failed(exc) from exc

    def _deliver(self, message: EmailMessage, recipients: list[str]) -> None:
        client = self._connect()
        try:
            if self._security == "starttls":
                client.starttls(context=self._context())
            if self._username is not None and self._password is not None:
                client.login(self._username, self._password.reveal())
            refused = client.send_message(message, to_addrs=recipients)
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
        if self._security == "tls":
            return smtplib.SMTP_SSL(
                self._host, self._port,
                local_hostname=self._local_hostname,
                timeout=self._timeout,
                context=self._context(),
            )
        return smtplib.SMTP(self._host, self._port, local_hostname=self._local_hostname,
                            timeout=self._timeout)

    def _context(self) -> ssl.SSLContext:
        if self._ssl_context is not None:
            return self._ssl_context
        return ssl.create_default_context()


def _to_addresses(message: EmailMessage) -> list[str]:
    """Return the addr-specs in the ``To`` header(s), without duplicates, in order."""
    found: list[str] = []
    for value in message.get_all("To", []):
        if isinstance(value, AddressHeader):
            found.extend(address.addr_spec for address in value.addresses)
        else:
            found.extend(addr for _name, addr in getaddresses([str(value)]))
    return list(dict.fromkeys(addr for addr in found if addr and addr != "<>"))


def _delivery_failed(exc: BaseException) -> DeliveryFailed:
    """Map an smtplib or socket error to a DeliveryFailed that quotes no server text."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = sorted(code for code, _reply in exc.recipients.values())
        temporary = bool(codes) and all(400 <= code < 500 for code in codes)
        shown = codes[0] if codes else "?"
        return DeliveryFailed(f"SMTP server refused the recipient ({shown})",
                              temporary=temporary)
    if isinstance(exc, smtplib.SMTPResponseException):
        temporary = 400 <= exc.smtp_code < 500
        if isinstance(exc, smtplib.SMTPAuthenticationError):
            return DeliveryFailed(f"SMTP login failed ({exc.smtp_code})", temporary=temporary)
        return DeliveryFailed(f"SMTP server answered {exc.smtp_code}", temporary=temporary)
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        if isinstance(exc.__context__, TimeoutError):
            return DeliveryFailed("SMTP server timed out", temporary=True)
        return DeliveryFailed("SMTP server closed the connection", temporary=True)
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        # Only smtplib raises this, with fixed wording that names the extension.
        missing = next((name for name in ("STARTTLS", "AUTH", "SMTPUTF8") if name in str(exc)),
                       "a needed extension")
        return DeliveryFailed(f"SMTP server does not offer {missing}", temporary=False)
    if isinstance(exc, smtplib.SMTPException):
        return DeliveryFailed(f"SMTP delivery failed ({type(exc).__name__})", temporary=False)
    if isinstance(exc, ssl.SSLCertVerificationError):
        # A certificate that fails verification will fail again until someone fixes it.
        reason = exc.verify_message or "verification failed"
        return DeliveryFailed(f"SMTP server certificate rejected: {reason}", temporary=False)
    if isinstance(exc, ssl.SSLError):
        return DeliveryFailed("TLS with the SMTP server failed", temporary=True)
    if isinstance(exc, TimeoutError):
        return DeliveryFailed("SMTP server timed out", temporary=True)
    if isinstance(exc, OSError):
        reason = exc.strerror or type(exc).__name__
        return DeliveryFailed(f"could not reach the SMTP server: {reason}", temporary=True)
    return DeliveryFailed("the message cannot be sent over SMTP", temporary=False)
