"""Command line: the end-to-end demo and operator commands on a SQLite file.

Secrets come from the environment (``CREDRECOVERY_SECRET_KEY``) rather than
the command line, where other users of the machine could read them.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import sys
import tempfile
import time
from collections.abc import Sequence
from email.message import EmailMessage
from pathlib import Path
from typing import TextIO

from . import __name__ as _package
from .exceptions import RecoveryError
from .identifiers import IdentifierKind
from .keys import default_context, generate_key
from .memory import MemoryMailer
from .protocols import Mailer
from .service import RecoveryService

SECRET_ENV = "CREDRECOVERY_SECRET_KEY"  # noqa: S105 - a variable name, not a secret
DEMO_URL = "https://panel.example.com/recover/{token}"
DEMO_SENDER = "Client Panel <panel@example.com>"


class PrintMailer:
    """A :class:`Mailer` that writes each message to a stream instead of sending it."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream

    def send(self, message: EmailMessage) -> None:
        """Print ``message`` to the stream, standard output by default."""
        print(render(message), file=self._stream or sys.stdout)


def render(message: EmailMessage) -> str:
    """Headers and the plain-text body of ``message``, readable in a terminal."""
    lines = [f"{name}: {value}" for name, value in message.items() if name != "Content-Type"]
    body = message.get_body(("plain",))
    text = body.get_content() if isinstance(body, EmailMessage) else ""
    rule = "-" * 72
    return "\n".join([rule, *lines, "", text.rstrip(), rule])


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args))
    except (RecoveryError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"python -m {_package}", description="Recover access to a client panel."
    )
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    demo = commands.add_parser("demo", help="run the whole flow on a throw-away SQLite file")
    demo.set_defaults(run=_demo)

    secret = commands.add_parser("secret", help="print a new random signing secret")
    secret.set_defaults(run=lambda _: print(secrets.token_urlsafe(32)) or 0)

    add = commands.add_parser("add-client", help="add a client to a SQLite directory")
    _db(add)
    add.add_argument("number", help="client number")
    add.add_argument("email", help="primary email address")
    add.add_argument("--domain", action="append", default=[], help="a domain; repeatable")
    add.add_argument("--name", default="", help="name used in greetings")
    add.add_argument("--locale", default=None, help="mail language, such as en or es")
    add.add_argument("--key-hash", default=None,
                     help="import an existing passlib hash instead of generating a key")
    add.set_defaults(run=_add_client)

    for name, run, helptext in (
        ("request", _request, "mail a confirmation link for an identifier"),
        ("confirm", _confirm, "confirm a token: rotate the key and mail it"),
    ):
        command = commands.add_parser(
            name, help=helptext,
            description=f"{helptext[0].upper()}{helptext[1:]}. The signing secret is read "
                        f"from ${SECRET_ENV}. Without --smtp-host, mail is printed.",
        )
        _db(command)
        if name == "request":
            command.add_argument("kind", choices=[k.value for k in IdentifierKind])
            command.add_argument("value")
        else:
            command.add_argument("token")
        command.add_argument("--confirm-url", default=DEMO_URL,
                             help="link template containing {token}")
        command.add_argument("--sender", default=DEMO_SENDER, help="From address")
        command.add_argument("--locale", default="en", help="default mail language")
        command.add_argument("--smtp-host", default=None, help="send through this SMTP server")
        command.add_argument("--smtp-port", type=int, default=25)
        command.add_argument("--smtp-security", choices=["plain", "starttls", "tls"],
                             default="plain")
        command.set_defaults(run=run)
    return parser


def _db(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", required=True, type=Path, help="SQLite directory file")


def _service(args: argparse.Namespace) -> RecoveryService:
    from .sqlite import SQLiteDirectory

    secret = os.environ.get(SECRET_ENV)
    if not secret:
        raise ValueError(f"set {SECRET_ENV} (try: python -m {_package} secret)")
    mailer: Mailer = PrintMailer()
    if args.smtp_host:
        from .smtp import SMTPMailer

        mailer = SMTPMailer(args.smtp_host, args.smtp_port, security=args.smtp_security)
    return RecoveryService(
        SQLiteDirectory(args.db), mailer, secret_key=secret, confirm_url=args.confirm_url,
        sender=args.sender, locale=args.locale, delivery="sync", rate_limits=None,
    )


def _add_client(args: argparse.Namespace) -> int:
    from .sqlite import SQLiteDirectory

    key = None if args.key_hash else generate_key()
    with SQLiteDirectory(args.db) as directory:
        client = directory.add_client(
            args.number, args.email, key=key, key_hash=args.key_hash,
            domains=args.domain, name=args.name, locale=args.locale,
        )
    print(f"added client {client.number} <{client.email}>")
    if key is not None:
        print(f"initial access key: {key}")
    return 0


def _request(args: argparse.Namespace) -> int:
    _service(args).request(args.kind, args.value)
    print("request accepted: if the identifier belongs to a client, a link was mailed")
    return 0


def _confirm(args: argparse.Namespace) -> int:
    result = _service(args).confirm(args.token)
    print(f"confirmed: new access details mailed to client {result.number}")
    return 0


def _demo(_: argparse.Namespace) -> int:
    from .sqlite import SQLiteDirectory

    started = time.perf_counter()
    context = default_context()
    with tempfile.TemporaryDirectory() as tmp, SQLiteDirectory(
        Path(tmp) / "clients.sqlite3", crypt_context=context
    ) as directory:
        old_key = generate_key()
        directory.add_client(
            "9000", "ejemplo@ejemploxmundo.com.ar", key=old_key,
            domains=["ejemploxmundo.com.ar"], name="Ejemplo",
        )
        print("Client 9000 created, domain ejemploxmundo.com.ar, "
              "primary address ejemplo@ejemploxmundo.com.ar.\n")
        outbox = MemoryMailer()
        service = RecoveryService(
            directory, outbox, secret_key=secrets.token_urlsafe(32), confirm_url=DEMO_URL,
            sender=DEMO_SENDER, crypt_context=context, delivery="sync",
        )
        for kind, value in (
            (IdentifierKind.DOMAIN, "EjemploXMundo.com.ar"),
            (IdentifierKind.CLIENT_NUMBER, " 9000 "),
            (IdentifierKind.EMAIL, "Ejemplo@EjemploXMundo.com.ar"),
        ):
            service.request(kind, value)
            print(f"Requested recovery by {kind.value} {value!r}: "
                  f"{len(outbox.outbox)} confirmation mail(s) so far.")
        service.request(IdentifierKind.DOMAIN, "not-a-client.example")
        print("Requested recovery by an unknown domain: same answer, "
              f"still {len(outbox.outbox)} mails.\n")

        confirmation = outbox.outbox[-1]
        print("The latest confirmation mail:")
        print(render(confirmation))
        token = _token_in(confirmation)
        print("\nThe client follows the link; the page confirms it.")
        service.confirm(token)
        credentials = outbox.outbox[-1]
        print("The credentials mail:")
        print(render(credentials))

        new_key = _key_in(credentials)
        client = directory.find(IdentifierKind.CLIENT_NUMBER, "9000")
        assert client is not None
        old_works = context.verify(old_key, client.key_hash)
        new_works = context.verify(new_key, client.key_hash)
        print(f"\nOld key accepted: {old_works}. New key accepted: {new_works}.")
        try:
            service.confirm(_token_in(outbox.outbox[0]))
        except RecoveryError as exc:
            print(f"An earlier confirmation link now fails: {type(exc).__name__}.")
        else:
            raise AssertionError("an earlier token still worked")
        if old_works or not new_works:
            raise AssertionError("the key was not rotated")
    print(f"\nDemo finished in {time.perf_counter() - started:.2f} s.")
    return 0


def _token_in(message: EmailMessage) -> str:
    match = re.search(r"/recover/([\w.-]+)", render(message))
    if match is None:
        raise AssertionError("no link in the confirmation mail")
    return match.group(1)


def _key_in(message: EmailMessage) -> str:
    match = re.search(r"Access key: (\S+)", render(message))
    if match is None:
        raise AssertionError("no key in the credentials mail")
    return match.group(1)
