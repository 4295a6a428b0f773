"""What the commands share: names, the expected failure, hashing, mailers and the service."""

from __future__ import annotations

import argparse
import os
import sqlite3
import ssl
from email.headerregistry import AddressHeader
from email.message import EmailMessage
from email.utils import getaddresses

from passlib.context import CryptContext

from .. import __name__ as _package
from ..adapters.smtp import SMTPMailer
from ..exceptions import DeliveryFailed, DirectoryError
from ..keys import default_context
from ..protocols import ClientDirectory, Mailer
from ..service import RecoveryService

SECRET_ENV = "CREDRECOVERY_SECRET_KEY"  # noqa: S105 - a variable name, not a secret
SMTP_PASSWORD_ENV = "CREDRECOVERY_SMTP_PASSWORD"  # noqa: S105 - a variable name
DATABASE_PASSWORD_ENV = "CREDRECOVERY_DATABASE_PASSWORD"  # noqa: S105 - a variable name
DEMO_URL = "https://panel.example.com/recover/{token}"
DEMO_SENDER = "Client Panel <panel@example.com>"
PACKAGE = _package
PROG = f"python -m {_package}"


class CommandFailed(Exception):
    """An expected failure of a command; the message is shown as it is."""


def describe(exc: BaseException) -> str:
    """A one-line account of ``exc`` for an operator; the library's messages carry no secret."""
    if isinstance(exc, OSError) and exc.strerror and exc.filename is not None:
        return f"{exc.filename}: {exc.strerror}"
    text = str(exc) or type(exc).__name__
    cause = exc.__cause__
    # SQLite's own messages name no bound value, and DeliveryFailed quotes no server text.
    if (
        isinstance(exc, DirectoryError | DeliveryFailed)
        and isinstance(cause, sqlite3.Error | DeliveryFailed)
        and str(cause)
    ):
        text = f"{text} ({cause})"
    return text


def crypt_context() -> CryptContext:
    """The hashing policy every command stores and checks keys with: the production one."""
    return default_context()


def secret_key() -> str:
    """The signing secret from the environment; fails naming the variable when it is unset."""
    secret = os.environ.get(SECRET_ENV)
    if not secret:
        raise CommandFailed(f"set {SECRET_ENV} (try: {PROG} secret)")
    return secret


def smtp_mailer(args: argparse.Namespace) -> SMTPMailer | None:
    """The SMTP mailer the options ask for, or ``None`` to print mail instead."""
    if not args.smtp_host:
        if args.smtp_username is not None or args.smtp_cafile is not None:
            raise CommandFailed("--smtp-username and --smtp-cafile need --smtp-host")
        return None
    password = None
    if args.smtp_username is not None:
        password = os.environ.get(SMTP_PASSWORD_ENV)
        if not password:
            raise CommandFailed(f"--smtp-username needs the password in ${SMTP_PASSWORD_ENV}")
        if args.smtp_security == "plain":
            raise CommandFailed(
                "--smtp-username needs --smtp-security starttls or tls: "
                "a login without TLS sends the password in clear"
            )
    context = None
    if args.smtp_cafile is not None:
        if args.smtp_security == "plain":
            raise CommandFailed("--smtp-cafile needs --smtp-security starttls or tls")
        try:
            context = ssl.create_default_context(cafile=os.fspath(args.smtp_cafile))
        except OSError as exc:
            reason = exc.strerror or str(exc) or type(exc).__name__
            raise CommandFailed(
                f"cannot load CA certificates from {args.smtp_cafile}: {reason}"
            ) from None
    return SMTPMailer(
        args.smtp_host,
        args.smtp_port,
        security=args.smtp_security,
        username=args.smtp_username,
        password=password,
        ssl_context=context,
    )


def service(
    args: argparse.Namespace, directory: ClientDirectory, mailer: Mailer, secret: str
) -> RecoveryService:
    """A synchronous service on ``directory`` with the flow options of ``args``, unlimited."""
    return RecoveryService(
        directory,
        mailer,
        secret_key=secret,
        confirm_url=args.confirm_url,
        sender=args.sender,
        locale=args.locale,
        delivery="sync",
        rate_limits=None,
        crypt_context=crypt_context(),
    )


class Recorder:
    """A :class:`Mailer` that passes messages on and keeps what left and what failed.

    The service logs and swallows a failed confirmation mail, as the web form
    needs; the command line reports it.
    """

    def __init__(self, mailer: Mailer) -> None:
        self._mailer = mailer
        self.sent: list[EmailMessage] = []
        self.error: Exception | None = None

    def send(self, message: EmailMessage) -> None:
        """Send ``message`` through the wrapped mailer, remembering the outcome."""
        try:
            self._mailer.send(message)
        except Exception as exc:
            self.error = exc
            raise
        self.sent.append(message)


def failure_reason(exc: Exception) -> str:
    """Why a mail was not sent, without quoting the mail."""
    # Another mailer's message might quote the mail, link included: name its type only.
    if isinstance(exc, DeliveryFailed | OSError):
        return describe(exc)
    return f"the mailer raised {type(exc).__name__}"


def recipients(message: EmailMessage) -> str:
    """The addresses ``message`` is for, comma-separated, or ``nobody``."""
    found: list[str] = []
    for value in message.get_all("To", []):
        if isinstance(value, AddressHeader):
            found.extend(address.addr_spec for address in value.addresses)
        else:
            found.extend(addr for _name, addr in getaddresses([str(value)]))
    return ", ".join(found) or "nobody"
