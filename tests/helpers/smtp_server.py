"""Real SMTP servers on 127.0.0.1 for tests, built on aiosmtpd, plus throw-away TLS certificates.

Typical use::

    with running_smtp_server() as server:
        SMTPMailer(server.host, server.port).send(message)
    assert server.received[0].rcpt_tos == ("client@example.com",)

    server.handler.answer("RCPT", "451 4.3.0 Try again later")
    server.handler.stall("DATA", 2.0)

    with running_smtp_server(RecordingHandler(pipelining=True)) as server:
        ...                                         # offers PIPELINING (RFC 2920)

    with running_smtp_server(dsn=True) as server:   # offers DSN (RFC 3461)
        ...
    assert "RET=HDRS" in server.received[0].mail_options
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import re
import ssl
import threading
import weakref
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "LocalCertificate",
    "ReceivedMail",
    "RecordingHandler",
    "RunningSMTPServer",
    "make_certificate",
    "running_smtp_server",
    "started",
]

LOOPBACK = "127.0.0.1"

#: Commands whose reply a RecordingHandler can replace or delay.
HOOKED_COMMANDS = frozenset({"EHLO", "MAIL", "RCPT", "DATA"})


@dataclass(frozen=True)
class ReceivedMail:
    """One message the server accepted, with its envelope and session facts."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    content: bytes
    helo: str | None
    login: str | None
    tls: bool
    #: The MAIL FROM parameters, upper-cased, e.g. ``("BODY=8BITMIME", "RET=HDRS")``.
    mail_options: tuple[str, ...] = ()

    @property
    def message(self) -> EmailMessage:
        """The received bytes parsed as a modern :class:`EmailMessage`."""
        return message_from_bytes(self.content, policy=policy.default)


@dataclass
class RecordingHandler:
    """An aiosmtpd handler that keeps accepted mail and can misbehave on request.

    ``replies`` maps a command (``EHLO``, ``MAIL``, ``RCPT``, ``DATA``) to the
    reply the server gives instead of accepting it; ``delays`` maps a command
    to seconds the server waits before answering it; ``refused`` maps a
    recipient address to the reply its ``RCPT`` gets. On a server started with
    ``dsn=True`` its EHLO reply also lists ``DSN``. With ``pipelining`` it
    offers PIPELINING (RFC 2920), as Postfix and the large providers do;
    aiosmtpd reads pipelined commands in order, but does not say so itself.
    """

    received: list[ReceivedMail] = field(default_factory=list)
    replies: dict[str, str] = field(default_factory=dict)
    delays: dict[str, float] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)
    pipelining: bool = False

    def answer(self, command: str, reply: str) -> None:
        """Answer ``command`` with ``reply``, e.g. ``answer("RCPT", "550 5.1.1 No such user")``."""
        self.replies[_hooked(command)] = reply

    def stall(self, command: str, seconds: float) -> None:
        """Wait ``seconds`` before answering ``command``."""
        self.delays[_hooked(command)] = seconds

    def refuse(self, address: str, reply: str) -> None:
        """Answer ``RCPT TO:<address>`` with ``reply``, accepting other recipients."""
        self.refused[address] = reply

    async def _intercept(self, command: str) -> str | None:
        delay = self.delays.get(command)
        if delay:
            await asyncio.sleep(delay)
        return self.replies.get(command)

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        reply = await self._intercept("EHLO")
        if reply is not None:
            return [reply]
        session.host_name = hostname
        # Before the closing "250 HELP" line, which has no dash.
        if isinstance(server, _DSNSession):
            responses.insert(len(responses) - 1, "250-DSN")
        if self.pipelining:
            responses.insert(len(responses) - 1, "250-PIPELINING")
        return responses

    async def handle_MAIL(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        reply = await self._intercept("MAIL")
        if reply is not None:
            return reply
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        reply = await self._intercept("RCPT")
        if reply is None:
            reply = self.refused.get(address)
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        reply = await self._intercept("DATA")
        if reply is not None:
            return reply
        auth = session.auth_data
        content = envelope.original_content or b""
        self.received.append(
            ReceivedMail(
                mail_from=envelope.mail_from or "",
                rcpt_tos=tuple(envelope.rcpt_tos),
                content=content,
                helo=session.host_name,
                login=auth.login.decode() if isinstance(auth, LoginPassword) else None,
                tls=session.ssl is not None,
                mail_options=tuple(envelope.mail_options),
            )
        )
        return "250 OK"


def _hooked(command: str) -> str:
    command = command.upper()
    if command not in HOOKED_COMMANDS:
        raise ValueError(f"only {sorted(HOOKED_COMMANDS)} can be intercepted")
    return command


@dataclass(frozen=True)
class RunningSMTPServer:
    """Where a server started by :func:`running_smtp_server` listens."""

    host: str
    port: int
    handler: RecordingHandler

    @property
    def received(self) -> list[ReceivedMail]:
        return self.handler.received


#: RFC 3461's parameters of MAIL FROM, each ``keyword=value`` after a space.
_DSN_MAIL_PARAMETER = re.compile(r" +(RET|ENVID)=(\S*)", re.IGNORECASE)


class _DSNSession(SMTP):
    """An SMTP session that offers DSN (RFC 3461) and accepts ``RET`` and ``ENVID`` in MAIL.

    aiosmtpd answers 555 to MAIL parameters it does not know, so they are
    checked and taken out here, then added to the envelope's ``mail_options``
    once the MAIL command has been accepted. RCPT's ``NOTIFY`` and ``ORCPT``
    are not accepted.
    """

    async def smtp_MAIL(self, arg: str | None) -> None:
        if arg is None or self.session is None or not self.session.extended_smtp:
            await super().smtp_MAIL(arg)
            return
        found = [(keyword.upper(), value) for keyword, value in _DSN_MAIL_PARAMETER.findall(arg)]
        keywords = [keyword for keyword, _value in found]
        if (
            len(set(keywords)) != len(keywords)
            or any(
                keyword == "RET" and value.upper() not in ("FULL", "HDRS")
                for keyword, value in found
            )
            or any(keyword == "ENVID" and not value for keyword, value in found)
        ):
            await self.push("501 5.5.4 Invalid DSN parameter")
            return
        envelope = self.envelope
        started = envelope is not None and bool(envelope.mail_from)
        await super().smtp_MAIL(_DSN_MAIL_PARAMETER.sub("", arg))
        if envelope is not None and envelope.mail_from and not started:
            envelope.mail_options.extend(f"{keyword}={value.upper()}" for keyword, value in found)


class _LoopbackController(Controller):
    """A Controller that may bind port 0: it learns the real port before probing it.

    ``session_class`` is the SMTP class that serves each connection.
    """

    session_class: type[SMTP] = SMTP

    def factory(self) -> SMTP:
        session = self.session_class(self.handler, **self.SMTP_kwargs)
        self._sessions().add(session)
        return session

    def _sessions(self) -> weakref.WeakSet[SMTP]:
        if not hasattr(self, "_open_sessions"):
            self._open_sessions: weakref.WeakSet[SMTP] = weakref.WeakSet()
        return self._open_sessions

    def stop(self, no_assert: bool = False) -> None:
        # A real server hangs up on its clients as it stops (a mailer may keep
        # its connection open); aiosmtpd would leave their sockets open.
        if self.loop.is_running():
            done = threading.Event()

            def hang_up() -> None:
                for session in list(self._sessions()):
                    transport = session.transport
                    if isinstance(transport, asyncio.Transport):
                        transport.abort()
                # After the sockets' own closing, which abort() schedules.
                self.loop.call_soon(done.set)

            self.loop.call_soon_threadsafe(hang_up)
            done.wait(5)
        super().stop(no_assert)

    def _trigger_server(self) -> None:
        assert isinstance(self.server, asyncio.Server)
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()  # type: ignore[no-untyped-call]


def _authenticator(users: Mapping[str, str]) -> Any:
    def authenticate(
        server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if isinstance(auth_data, LoginPassword):
            login = auth_data.login.decode("utf-8", "replace")
            if login in users and users[login] == auth_data.password.decode("utf-8", "replace"):
                return AuthResult(success=True, auth_data=auth_data)
        return AuthResult(success=False, handled=False)

    return authenticate


@contextmanager
def running_smtp_server(
    handler: RecordingHandler | None = None,
    *,
    implicit_tls: ssl.SSLContext | None = None,
    starttls: ssl.SSLContext | None = None,
    users: Mapping[str, str] | None = None,
    auth_require_tls: bool = True,
    smtputf8: bool = False,
    dsn: bool = False,
    port: int = 0,
) -> Iterator[RunningSMTPServer]:
    """Run an SMTP server on 127.0.0.1 and a free port for the ``with`` block.

    ``implicit_tls`` makes it speak TLS from the first byte; ``starttls``
    offers STARTTLS with that context. ``users`` (login → password) enables
    AUTH PLAIN/LOGIN, which by default is only offered once TLS is on.
    ``smtputf8`` offers SMTPUTF8. ``dsn`` offers DSN and accepts its ``RET``
    and ``ENVID`` MAIL parameters, recorded in ``ReceivedMail.mail_options``;
    without it, MAIL parameters other than ``BODY``, ``SIZE`` and ``SMTPUTF8``
    get a 555. ``port`` binds that port instead of a free one (binding can
    fail: below 1024 it needs privileges). The server thread is stopped and
    joined on exit.
    """
    handler = handler if handler is not None else RecordingHandler()
    kwargs: dict[str, Any] = {"auth_require_tls": auth_require_tls, "enable_SMTPUTF8": smtputf8}
    if starttls is not None:
        kwargs["tls_context"] = starttls
    if users is not None:
        kwargs["authenticator"] = _authenticator(dict(users))
    controller = _LoopbackController(
        handler,
        hostname=LOOPBACK,
        port=port,
        ssl_context=implicit_tls,
        server_hostname="localhost",
        **kwargs,
    )
    if dsn:
        controller.session_class = _DSNSession
    with started(controller):
        yield RunningSMTPServer(LOOPBACK, controller.port, handler)


@contextmanager
def started(controller: Controller) -> Iterator[Controller]:
    """``controller`` serving within, stopped after; a start that fails halfway stops too."""
    try:
        controller.start()
    except BaseException:
        controller.stop(no_assert=True)
        raise
    try:
        yield controller
    finally:
        controller.stop()


@dataclass(frozen=True)
class LocalCertificate:
    """A private CA and a server certificate it signed for localhost and 127.0.0.1."""

    ca_path: Path
    cert_path: Path
    key_path: Path

    def server_context(self) -> ssl.SSLContext:
        """A server-side context presenting the certificate."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert_path, self.key_path)
        return context

    def client_context(self) -> ssl.SSLContext:
        """A verifying client context that trusts only the private CA."""
        return ssl.create_default_context(cafile=str(self.ca_path))


def make_certificate(directory: Path) -> LocalCertificate:
    """Write a fresh CA and a localhost/127.0.0.1 server certificate into ``directory``."""
    now = datetime.datetime.now(datetime.UTC)
    validity = (now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=1))

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "credrecovery test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(validity[0])
        .not_valid_after(validity[1])
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )

    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(validity[0])
        .not_valid_after(validity[1])
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address(LOOPBACK)),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )

    pem = serialization.Encoding.PEM
    result = LocalCertificate(
        directory / "ca.pem", directory / "server.pem", directory / "server.key"
    )
    result.ca_path.write_bytes(ca_cert.public_bytes(pem))
    result.cert_path.write_bytes(cert.public_bytes(pem))
    result.key_path.write_bytes(
        key.private_bytes(
            pem,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return result
