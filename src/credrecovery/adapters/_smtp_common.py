"""What both SMTP mailers share: their checked settings and the failure each reply maps to.

:class:`_Settings` checks a mailer's arguments once, for the smtplib and the
asyncio mailer alike, the keeping of connections included (see ``_smtp_keep``).
The functions below word a server's refusal, a lost connection or a TLS or
socket error as one :class:`DeliveryFailed`, whichever client met it:
temporary for a 4xx reply, permanent for a 5xx, with the reply codes and a
likely fix, never the server's own text.
"""

from __future__ import annotations

import dataclasses
import math
import re
import ssl
from email.headerregistry import AddressHeader
from email.message import EmailMessage
from email.utils import getaddresses
from typing import Final, Literal, get_args

from .._secrets import Secret as _Secret
from ..exceptions import DeliveryFailed
from ..identifiers import check_address

Security = Literal["plain", "starttls", "tls"]

_SECURITY_MODES: Final = frozenset(get_args(Security))

#: RFC 3461: a bounce returns the headers only, so never the new access key.
_DSN_MAIL_OPTIONS: Final = ("RET=HDRS",)

#: An RFC 3463 ``class.subject.detail`` code, as it opens a reply's text (RFC 2034).
_ENHANCED_CODE: Final = re.compile(r"([245])\.(0|[1-9][0-9]{0,2})\.(0|[1-9][0-9]{0,2})(?=\s|$)")

#: OpenSSL's reasons when the first bytes of a TLS handshake are not TLS at all,
#: as when the server greets in clear text (OpenSSL 3.2 and later report the second).
_NOT_TLS_REASONS: Final = frozenset({"WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE"})

#: The port registered for mail submission over implicit TLS (RFC 8314).
_IMPLICIT_TLS_PORT: Final = 465

#: Seconds a kept connection may wait unused before the mailer closes it.
DEFAULT_IDLE_TIMEOUT: Final = 10.0
#: Seconds after its opening when a kept connection is no longer used.
DEFAULT_MAX_CONNECTION_AGE: Final = 300.0

_STARTTLS_HINT: Final = "the server may require STARTTLS: use security='starttls'"
_LOGIN_HINT: Final = "the server may require a login: set username and password"


#: The step of the dialogue an SMTP server refused; each names it in the message.
_Step = Literal["login", "sender", "message", "connection", "helo", "command"]

_STEP_WORDS: Final[dict[str, str]] = {
    "sender": "SMTP server refused the sender",
    "message": "SMTP server refused the message",
    "connection": "SMTP server refused the connection",
    "helo": "SMTP server refused EHLO and HELO",
    "command": "SMTP server refused a command",
}


@dataclasses.dataclass(frozen=True)
class _Settings:
    """An SMTP mailer's checked settings, shared by the smtplib and asyncio mailers."""

    host: str
    port: int
    security: Security
    username: str | None
    password: _Secret | None = dataclasses.field(repr=False)
    timeout: float
    ssl_context: ssl.SSLContext | None
    local_hostname: str | None
    envelope_sender: str | None
    reuse_connections: bool = True
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT
    max_connection_age: float = DEFAULT_MAX_CONNECTION_AGE

    @classmethod
    def checked(
        cls,
        host: str,
        port: int,
        *,
        security: Security,
        username: str | None,
        password: str | None,
        timeout: float,
        ssl_context: ssl.SSLContext | None,
        local_hostname: str | None,
        allow_plain_login: bool,
        envelope_sender: str | None,
        reuse_connections: bool = True,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        max_connection_age: float = DEFAULT_MAX_CONNECTION_AGE,
    ) -> _Settings:
        """Validate the mailer's arguments; raises :class:`ValueError` on a bad one."""
        if not isinstance(host, str) or not host:
            raise ValueError("host must be a non-empty string")
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            raise ValueError("port must be an integer between 1 and 65535")
        if security not in _SECURITY_MODES:
            raise ValueError("security must be one of 'plain', 'starttls' or 'tls'")
        if ssl_context is not None and security == "plain":
            raise ValueError("ssl_context is only used with security 'starttls' or 'tls'")
        for name, seconds in (
            ("timeout", timeout),
            ("idle_timeout", idle_timeout),
            ("max_connection_age", max_connection_age),
        ):
            if not _positive_seconds(seconds):
                raise ValueError(f"{name} must be a positive number of seconds")
        if not isinstance(reuse_connections, bool):
            raise ValueError("reuse_connections must be True or False")
        if username is None and password is not None:
            raise ValueError("a password was given without a username")
        if username is not None:
            if not username or password is None:
                raise ValueError("a username needs a password")
            # SMTP AUTH encodes credentials as ASCII; fail here rather than at the first send.
            if not (username.isascii() and password.isascii()):
                raise ValueError("username and password must be ASCII")
            if security == "plain" and not allow_plain_login:
                raise ValueError(
                    "logging in without TLS sends the password in clear; use 'starttls' or "
                    "'tls', or pass allow_plain_login=True for a trusted local relay"
                )
        return cls(
            host=host,
            port=port,
            security=security,
            username=username,
            password=_Secret(password) if password is not None else None,
            timeout=float(timeout),
            ssl_context=ssl_context,
            local_hostname=local_hostname,
            envelope_sender=(
                None if envelope_sender is None else _checked_envelope_sender(envelope_sender)
            ),
            reuse_connections=reuse_connections,
            idle_timeout=float(idle_timeout),
            max_connection_age=float(max_connection_age),
        )

    def describe(self) -> str:
        """The settings a repr shows: never the password, nor the login's name."""
        text = (
            f"host={self.host!r}, port={self.port}, security={self.security!r}, "
            f"auth={self.username is not None}"
        )
        return text if self.reuse_connections else f"{text}, reuse_connections=False"

    def context(self) -> ssl.SSLContext:
        if self.ssl_context is not None:
            return self.ssl_context
        return ssl.create_default_context()


def _positive_seconds(value: object) -> bool:
    return (
        not isinstance(value, bool)
        and isinstance(value, int | float)
        and math.isfinite(value)
        and value > 0
    )


def _disconnected(settings: _Settings, *, timed_out: bool, connecting: bool) -> DeliveryFailed:
    """The server went silent or away; before its greeting, a port mismatch is likely."""
    what = "SMTP server timed out" if timed_out else "SMTP server closed the connection"
    if not connecting:
        return DeliveryFailed(what, temporary=True)
    # An implicit-TLS server waits for a handshake that a plain client never starts.
    if settings.security != "tls" and settings.port == _IMPLICIT_TLS_PORT:
        return DeliveryFailed(
            f"{what} before its greeting: port {settings.port} usually expects TLS "
            "from the first byte; use security='tls'",
            temporary=True,
        )
    return DeliveryFailed(f"{what} before its greeting", temporary=True)


def _not_supported(text: str) -> DeliveryFailed:
    """A needed extension is missing; ``text`` is the client library's own fixed wording."""
    missing = next(
        (name for name in ("STARTTLS", "AUTH", "SMTPUTF8") if name in text), "a needed extension"
    )
    return DeliveryFailed(f"SMTP server does not offer {missing}", temporary=False)


def _transport_failure(
    settings: _Settings, exc: BaseException, *, connecting: bool
) -> DeliveryFailed:
    """Map a TLS, socket or message error, whichever SMTP client met it."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        # A certificate that fails verification will fail again until someone fixes it.
        reason = exc.verify_message or "verification failed"
        return DeliveryFailed(f"SMTP server certificate rejected: {reason}", temporary=False)
    if isinstance(exc, ssl.SSLError):
        if connecting and settings.security == "tls" and exc.reason in _NOT_TLS_REASONS:
            # The server spoke clear text: it will every time, until the settings change.
            return DeliveryFailed(
                f"TLS handshake with port {settings.port} failed: the server may expect "
                "STARTTLS; use security='starttls'",
                temporary=False,
            )
        return DeliveryFailed("TLS with the SMTP server failed", temporary=True)
    if isinstance(exc, TimeoutError):
        return DeliveryFailed("SMTP server timed out", temporary=True)
    if isinstance(exc, OSError):
        reason = exc.strerror or type(exc).__name__
        return DeliveryFailed(f"could not reach the SMTP server: {reason}", temporary=True)
    return DeliveryFailed("the message cannot be sent over SMTP", temporary=False)


def _recipients_refused(
    settings: _Settings, replies: list[tuple[int, bytes | str]]
) -> DeliveryFailed:
    """Every refused recipient's ``(code, reply)``; the highest code decides."""
    if not replies:
        return DeliveryFailed("SMTP server refused the recipient", temporary=False)
    temporary = all(400 <= code < 500 for code, _reply in replies)
    # The highest code is the one that decided: any 5xx makes the failure permanent.
    code, reply = max(replies, key=lambda item: item[0])
    return _coded(settings, "SMTP server refused the recipient", code, reply, temporary)


def _refused(settings: _Settings, step: _Step, code: int, reply: bytes | str) -> DeliveryFailed:
    """The server refused ``step`` with ``code``; ``reply`` is read for its enhanced code only."""
    temporary = 400 <= code < 500
    if step == "login":
        enhanced = _enhanced_code(code, reply)
        return DeliveryFailed(
            f"SMTP login failed ({_codes(code, enhanced)})",
            temporary=temporary,
            smtp_code=code,
            enhanced_code=enhanced,
        )
    return _coded(settings, _STEP_WORDS[step], code, reply, temporary)


def _coded(
    settings: _Settings, what: str, code: int, reply: bytes | str, temporary: bool
) -> DeliveryFailed:
    enhanced = _enhanced_code(code, reply)
    text = f"{what} ({_codes(code, enhanced)})"
    hint = _hint(settings, code, enhanced)
    if hint is not None:
        text = f"{text}; {hint}"
    return DeliveryFailed(text, temporary=temporary, smtp_code=code, enhanced_code=enhanced)


def _hint(settings: _Settings, code: int, enhanced: str | None) -> str | None:
    """The likely fix a refusal's codes point to, judged from the mailer's settings."""
    if code == 530 and settings.security == "plain":
        # 530 is both "must issue STARTTLS first" and "authentication required";
        # either way this library logs in only over TLS, so TLS comes first.
        return _STARTTLS_HINT
    if settings.username is not None:
        return None
    if code in (530, 535):
        return _LOGIN_HINT
    if (
        enhanced is not None
        and enhanced.startswith("5.7.")
        and not _is_sender_authentication(enhanced)
    ):
        return _LOGIN_HINT
    return None


def _checked_envelope_sender(value: object) -> str:
    """Return ``value`` as one bare address in ASCII (A-label domain), or raise ValueError."""
    if not isinstance(value, str):
        raise ValueError("envelope_sender must be a string")
    try:
        checked = check_address(value, smtputf8=False)
    except ValueError as exc:
        # The validator's reason names the offending characters, not the value.
        raise ValueError(f"envelope_sender must be one bare email address: {exc}") from None
    if checked.ascii_email is None:
        raise ValueError("envelope_sender must be one bare email address in ASCII")
    return checked.ascii_email


def _enhanced_code(smtp_code: int, reply: bytes | str) -> str | None:
    """Return the RFC 3463 code that opens ``reply``, if its class agrees with ``smtp_code``."""
    text = reply.decode("ascii", "replace") if isinstance(reply, bytes) else reply
    match = _ENHANCED_CODE.match(text)
    if match is None or match.group(1) != str(smtp_code)[:1]:
        return None
    return match.group(0)


def _codes(smtp_code: int, enhanced: str | None) -> str:
    return str(smtp_code) if enhanced is None else f"{smtp_code} {enhanced}"


def _is_sender_authentication(enhanced: str) -> bool:
    # 5.7.20 to 5.7.29 (RFC 7372 and later) report checks of the sender's domain
    # and host: DKIM, SPF, DMARC, reverse DNS, null MX. A login changes none.
    return 20 <= int(enhanced.rsplit(".", 1)[1]) <= 29


def _to_addresses(message: EmailMessage) -> list[str]:
    """Return the addr-specs in the ``To`` header(s), without duplicates, in order."""
    found: list[str] = []
    for value in message.get_all("To", []):
        if isinstance(value, AddressHeader):
            found.extend(address.addr_spec for address in value.addresses)
        else:
            found.extend(addr for _name, addr in getaddresses([str(value)]))
    return list(dict.fromkeys(addr for addr in found if addr and addr != "<>"))
