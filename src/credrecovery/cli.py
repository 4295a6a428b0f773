"""Command line: the end-to-end demo and operator commands on a SQLite file.

The operator commands are for support staff, who hold the database anyway, so
unlike the web form they say whether a client matched and whether the mail
left. Every expected failure prints ``error: ...`` on standard error and exits
with status 1. Secrets come from the environment (``CREDRECOVERY_SECRET_KEY``,
``CREDRECOVERY_SMTP_PASSWORD``) or standard input, never from an option, where
other users of the machine could read them.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import logging
import math
import os
import re
import secrets
import sqlite3
import ssl
import stat
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator, Sequence
from email.headerregistry import AddressHeader
from email.message import EmailMessage
from email.utils import getaddresses
from pathlib import Path
from typing import Literal, TextIO
from urllib.parse import parse_qs, unquote, urlsplit

from passlib.context import CryptContext

from . import __name__ as _package
from . import __version__
from .adapters.memory import MemoryMailer
from .adapters.smtp import SMTPMailer
from .adapters.sqlite import SQLiteDirectory
from .exceptions import DeliveryFailed, DirectoryError, RecoveryError
from .identifiers import IdentifierKind, normalize_identifier, parse_kind
from .keys import KEY_ALPHABET, KEY_LENGTH, default_context, generate_key
from .protocols import Mailer
from .service import RecoveryService
from .tokens import TOKEN_IN_LINK

SECRET_ENV = "CREDRECOVERY_SECRET_KEY"  # noqa: S105 - a variable name, not a secret
SMTP_PASSWORD_ENV = "CREDRECOVERY_SMTP_PASSWORD"  # noqa: S105 - a variable name
DEMO_URL = "https://panel.example.com/recover/{token}"
DEMO_SENDER = "Client Panel <panel@example.com>"
#: What ``confirm`` prints instead of the new access key without ``--print-key``.
REDACTED_KEY = "[hidden; confirm with --print-key to show it]"

_PROG = f"python -m {_package}"
_SQLITE_HEADER = b"SQLite format 3\x00"
_KIND_LABELS = {
    IdentifierKind.DOMAIN: "domain",
    IdentifierKind.CLIENT_NUMBER: "client number",
    IdentifierKind.EMAIL: "primary email",
}
# Runs of letters and digits shaped like a generated access key; the ones that
# verify against the stored hash are the key.
_KEY_SHAPED = re.compile(
    rf"(?<![A-Za-z0-9])[{re.escape(KEY_ALPHABET)}]{{{KEY_LENGTH}}}(?![A-Za-z0-9])"
)


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
    """Run the command line; returns the exit status.

    0 on success, 1 with ``error: ...`` on standard error for every expected
    failure, 2 for a usage error, 130 when interrupted.
    """
    parser = _parser()
    args = parser.parse_args(argv)
    _show_log_events(logging.INFO if getattr(args, "verbose", False) else logging.WARNING)
    try:
        return int(args.run(args))
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except (_CommandFailed, RecoveryError, ValueError, OSError, sqlite3.Error) as exc:
        print(f"error: {_describe(exc)}", file=sys.stderr)
        return 1


def _show_log_events(level: int) -> None:
    """Print the library's log events from ``level`` up on standard error, labelled."""
    logger = logging.getLogger(_package)
    if logger.handlers:
        return  # the host configured logging itself
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("log: %(levelname)s: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(level)


class _CommandFailed(Exception):
    """An expected failure of a command; the message is shown as it is."""


def _describe(exc: BaseException) -> str:
    """A one-line account of ``exc`` for an operator; the library's messages carry no secret."""
    if isinstance(exc, OSError) and exc.strerror and exc.filename is not None:
        return f"{exc.filename}: {exc.strerror}"
    text = str(exc) or type(exc).__name__
    cause = exc.__cause__
    # SQLite's own messages name no bound value, and DeliveryFailed quotes no server text.
    if isinstance(exc, DirectoryError | DeliveryFailed) and isinstance(
        cause, sqlite3.Error | DeliveryFailed
    ) and str(cause):
        text = f"{text} ({cause})"
    return text


# --- arguments ---------------------------------------------------------------


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows defaults worth showing and keeps the epilog's examples as written."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False or action.default in ("", []):
            return action.help
        return super()._get_help_string(action)


_ENVIRONMENT = f"""\
environment:
  {SECRET_ENV}  the signing secret (make one with: {_PROG} secret)
  {SMTP_PASSWORD_ENV}  the SMTP password, with --smtp-username

exit status: 0 done, 1 error (printed as "error: ..."), 2 bad usage"""

_EPILOGS = {
    "demo": f"example:\n  {_PROG} demo",
    "secret": f'examples:\n  {_PROG} secret\n  export {SECRET_ENV}="$({_PROG} secret)"',
    "init": f"example:\n  {_PROG} init --db clients.sqlite3",
    "add-client": f"""\
examples:
  {_PROG} add-client --db clients.sqlite3 --create 9000 ana@example.com \\
      --domain example.com --name Ana
  printf '%s' "$HASH" | {_PROG} add-client --db clients.sqlite3 9001 \\
      bo@example.com --key-hash -""",
    "request": f"""\
examples:
  {_PROG} request --db clients.sqlite3 domain example.com
  {_PROG} request --db clients.sqlite3 email ana@example.com \\
      --smtp-host smtp.example.com --smtp-port 587 --smtp-security starttls \\
      --smtp-username panel

{_ENVIRONMENT}""",
    "confirm": f"""\
examples:
  {_PROG} confirm --db clients.sqlite3 -      (then paste the token or link)
  printf '%s' "$LINK" | {_PROG} confirm --db clients.sqlite3 - --print-key

{_ENVIRONMENT}""",
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=_PROG, description="Recover access to a client panel.",
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"{_package} {__version__}")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    def command(name: str, helptext: str, description: str = "") -> argparse.ArgumentParser:
        # The formatter keeps the epilog's layout, so descriptions are wrapped here.
        text = description or f"{helptext[0].upper()}{helptext[1:]}."
        return commands.add_parser(
            name, help=helptext, description=textwrap.fill(text, 79, break_on_hyphens=False),
            epilog=_EPILOGS[name], formatter_class=_HelpFormatter,
        )

    demo = command("demo", "run the whole flow on a throw-away SQLite file")
    demo.set_defaults(run=_demo)

    secret = command("secret", "print a new random signing secret")
    secret.set_defaults(run=_secret_command)

    init = command("init", "create a new, empty SQLite directory file",
                   "Create a new, empty SQLite directory file, readable by its owner only. "
                   "Refuses a file that already exists.")
    _db(init)
    init.set_defaults(run=_init)

    add = command("add-client", "add a client to a SQLite directory",
                  "Add a client to a SQLite directory file. Without --key-hash, a new access "
                  "key is generated and printed once.")
    _db(add)
    add.add_argument("number", help="client number")
    add.add_argument("email", help="primary email address")
    add.add_argument("--create", action="store_true",
                     help="create the file (readable by its owner only) if it does not exist")
    add.add_argument("--domain", action="append", default=[], help="a domain; repeatable")
    add.add_argument("--name", default="", help="name used in greetings")
    add.add_argument("--locale", default=None, help="mail language, such as en or es")
    add.add_argument("--key-hash", default=None, metavar="HASH",
                     help="import an existing argon2 or bcrypt hash instead of generating a "
                          "key; '-' reads it from standard input")
    add.set_defaults(run=_add_client)

    request = command(
        "request", "mail a confirmation link for an identifier",
        "Mail a confirmation link to the primary address of the client an identifier "
        "names, and say which client it was and where the mail went. Without "
        "--smtp-host, the mail is printed instead of sent.",
    )
    _db(request)
    request.add_argument("kind", choices=[k.value for k in IdentifierKind],
                         help="what the value is")
    request.add_argument("value", help="the domain, client number or email address")
    _flow_options(request)
    request.set_defaults(run=_request)

    confirm = command(
        "confirm", "confirm a token: rotate the key and mail it",
        "Confirm a token: rotate the client's access key and mail the client number "
        "with the new key. Without --smtp-host, the mail is printed, with the key "
        "hidden unless --print-key is given; the previous key stops working either way.",
    )
    _db(confirm)
    confirm.add_argument("token", help="the token, or the whole link; '-' reads either from "
                                       "standard input, out of sight of ps and shell history")
    confirm.add_argument("--print-key", action="store_true",
                         help="show the new key in the printed mail (without --smtp-host)")
    _flow_options(confirm)
    confirm.set_defaults(run=_confirm)
    return parser


def _db(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", required=True, type=Path, metavar="FILE",
                        help="SQLite directory file")
    parser.add_argument("--lock-timeout", type=_seconds, default=5.0, metavar="SECONDS",
                        help="how long to wait for a lock another process holds on FILE "
                             "before failing")


def _seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or seconds < 0:
        raise argparse.ArgumentTypeError(f"not a number of seconds, 0 or more: {text!r}")
    return seconds


def _flow_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--confirm-url", default=DEMO_URL,
                        help="link template containing {token}")
    parser.add_argument("--sender", default=DEMO_SENDER, help="From address")
    parser.add_argument("--locale", default="en", help="default mail language")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="also print the library's INFO log events, not just warnings")
    smtp = parser.add_argument_group("SMTP")
    smtp.add_argument("--smtp-host", default=None,
                      help="send through this SMTP server instead of printing the mail")
    smtp.add_argument("--smtp-port", type=int, default=25, help="SMTP port")
    smtp.add_argument("--smtp-security", choices=["plain", "starttls", "tls"], default="plain",
                      help="plain, STARTTLS upgrade, or TLS from the first byte")
    smtp.add_argument("--smtp-username", default=None, metavar="NAME",
                      help=f"log in as NAME, with the password from ${SMTP_PASSWORD_ENV}; "
                           "needs starttls or tls")
    smtp.add_argument("--smtp-cafile", default=None, type=Path, metavar="PEM",
                      help="trust the CA certificates in PEM instead of the system's")


# --- pieces the commands share --------------------------------------------------


def _secret_key() -> str:
    secret = os.environ.get(SECRET_ENV)
    if not secret:
        raise _CommandFailed(f"set {SECRET_ENV} (try: {_PROG} secret)")
    return secret


def _smtp_mailer(args: argparse.Namespace) -> SMTPMailer | None:
    """The SMTP mailer the options ask for, or ``None`` to print mail instead."""
    if not args.smtp_host:
        if args.smtp_username is not None or args.smtp_cafile is not None:
            raise _CommandFailed("--smtp-username and --smtp-cafile need --smtp-host")
        return None
    password = None
    if args.smtp_username is not None:
        password = os.environ.get(SMTP_PASSWORD_ENV)
        if not password:
            raise _CommandFailed(f"--smtp-username needs the password in ${SMTP_PASSWORD_ENV}")
        if args.smtp_security == "plain":
            raise _CommandFailed("--smtp-username needs --smtp-security starttls or tls: "
                                 "a login without TLS sends the password in clear")
    context = None
    if args.smtp_cafile is not None:
        if args.smtp_security == "plain":
            raise _CommandFailed("--smtp-cafile needs --smtp-security starttls or tls")
        try:
            context = ssl.create_default_context(cafile=os.fspath(args.smtp_cafile))
        except OSError as exc:
            reason = exc.strerror or str(exc) or type(exc).__name__
            raise _CommandFailed(
                f"cannot load CA certificates from {args.smtp_cafile}: {reason}"
            ) from None
    return SMTPMailer(args.smtp_host, args.smtp_port, security=args.smtp_security,
                      username=args.smtp_username, password=password, ssl_context=context)


def _service(args: argparse.Namespace, directory: SQLiteDirectory, mailer: Mailer,
             secret: str) -> RecoveryService:
    return RecoveryService(
        directory, mailer, secret_key=secret, confirm_url=args.confirm_url,
        sender=args.sender, locale=args.locale, delivery="sync", rate_limits=None,
        crypt_context=default_context(),
    )


class _Recorder:
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


def _failure_reason(exc: Exception) -> str:
    # Another mailer's message might quote the mail, link included: name its type only.
    if isinstance(exc, DeliveryFailed | OSError):
        return _describe(exc)
    return f"the mailer raised {type(exc).__name__}"


def _recipients(message: EmailMessage) -> str:
    found: list[str] = []
    for value in message.get_all("To", []):
        if isinstance(value, AddressHeader):
            found.extend(address.addr_spec for address in value.addresses)
        else:
            found.extend(addr for _name, addr in getaddresses([str(value)]))
    return ", ".join(found) or "nobody"


# --- SQLite files ----------------------------------------------------------------


@contextlib.contextmanager
def _directory(
    path: Path, *, timeout: float, create: Literal["never", "if-missing", "new"] = "never"
) -> Iterator[SQLiteDirectory]:
    """Open the SQLite directory at ``path``, creating the file only as ``create`` allows.

    A file created here is mode 0600, as are its ``-wal`` and ``-shm``; should
    the command then fail, the new file is removed again. ``timeout`` is how
    many seconds each call waits for a lock another connection holds.
    """
    created = False
    if create != "never":
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        except FileExistsError:
            if create == "new" and not path.is_dir():
                raise _CommandFailed(f"{path} already exists") from None
        else:
            os.close(fd)
            created = True
    if not created:
        _check_existing(path)
    try:
        with _private_umask():
            directory = SQLiteDirectory(path, crypt_context=default_context(),
                                        timeout=timeout)
    except BaseException:
        if created:
            _remove(path)
        raise
    try:
        with directory:
            yield directory
    except BaseException:
        if created:
            _remove(path)
        raise


def _check_existing(path: Path) -> None:
    """Refuse, before SQLite sees it, a path that is missing or not a SQLite file."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise _CommandFailed(
            f"{path} does not exist (create it with: {_PROG} init --db {path})"
        ) from None
    if stat.S_ISDIR(mode):
        raise _CommandFailed(f"{path} is a directory, not a SQLite file")
    if not stat.S_ISREG(mode):
        raise _CommandFailed(f"{path} is not a regular file")
    with open(path, "rb") as file:
        header = file.read(len(_SQLITE_HEADER))
    # An empty file is an empty SQLite database.
    if header and header != _SQLITE_HEADER:
        raise _CommandFailed(f"{path} is not a SQLite database")


@contextlib.contextmanager
def _private_umask() -> Iterator[None]:
    # SQLite creates -wal and -shm on first open; nobody else may read them.
    previous = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(previous)


def _remove(path: Path) -> None:
    for name in (os.fspath(path), f"{os.fspath(path)}-wal", f"{os.fspath(path)}-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name)


# --- commands ----------------------------------------------------------------------


def _secret_command(_: argparse.Namespace) -> int:
    print(secrets.token_urlsafe(32))
    return 0


def _init(args: argparse.Namespace) -> int:
    with _directory(args.db, timeout=args.lock_timeout, create="new"):
        pass
    print(f"created an empty client directory in {args.db}")
    return 0


def _add_client(args: argparse.Namespace) -> int:
    key_hash = args.key_hash
    if key_hash == "-":
        key_hash = sys.stdin.read().strip()
    if key_hash is not None:
        _check_key_hash(key_hash, default_context())
    key = None if key_hash is not None else generate_key()
    with _directory(args.db, timeout=args.lock_timeout,
                    create="if-missing" if args.create else "never") as directory:
        client = directory.add_client(
            args.number, args.email, key=key, key_hash=key_hash,
            domains=args.domain, name=args.name, locale=args.locale,
        )
    print(f"added client {client.number} <{client.email}>")
    if key is not None:
        print(f"initial access key: {key}")
    return 0


def _check_key_hash(key_hash: str, context: CryptContext) -> None:
    """Refuse a hash the policy cannot verify keys against; the message never quotes it."""
    refused = _CommandFailed(
        "--key-hash is not a hash the hashing policy can verify (argon2 or bcrypt expected)"
    )
    try:
        handler = context.identify(key_hash, resolve=True)
    except (ValueError, TypeError):
        raise refused from None
    if handler is None:
        raise refused
    try:
        handler.from_string(key_hash)
    except (ValueError, TypeError):
        raise refused from None


def _request(args: argparse.Namespace) -> int:
    secret = _secret_key()
    kind = parse_kind(args.kind)
    value = normalize_identifier(kind, args.value)
    smtp = _smtp_mailer(args)
    recorder = _Recorder(smtp if smtp is not None else PrintMailer())
    with _directory(args.db, timeout=args.lock_timeout) as directory:
        client = directory.find(kind, value)
        if client is None:
            raise _CommandFailed(f"no client has the {_KIND_LABELS[kind]} {value}")
        _service(args, directory, recorder, secret).request(kind, value)
    if recorder.error is not None:
        raise _CommandFailed(f"the confirmation mail for client {client.number} was not "
                             f"sent: {_failure_reason(recorder.error)}")
    if not recorder.sent:
        raise _CommandFailed(f"no confirmation mail was sent for client {client.number}: "
                             "its record or primary address cannot be used (see the log)")
    to = _recipients(recorder.sent[-1])
    if smtp is None:
        print(f"confirmation link for client {client.number} printed above, not sent; "
              f"it is addressed to {to}")
    else:
        print(f"confirmation link for client {client.number} mailed to {to}")
    return 0


def _confirm(args: argparse.Namespace) -> int:
    secret = _secret_key()
    token = _token_from(args.token)
    smtp = _smtp_mailer(args)
    outbox = MemoryMailer()
    recorder = _Recorder(smtp if smtp is not None else outbox)
    with _directory(args.db, timeout=args.lock_timeout) as directory:
        service = _service(args, directory, recorder, secret)
        result = service.confirm(token)
        if smtp is not None:
            print(f"confirmed: new access details for client {result.number} mailed to "
                  f"{_recipients(recorder.sent[-1])}")
            return 0
        text = render(outbox.outbox[-1])
        if not args.print_key:
            text = _hide_key(text, directory, result.number, service.crypt_context)
    print(text)
    print(f"confirmed: the access key of client {result.number} was rotated; the mail "
          "above was printed, not sent")
    if not args.print_key:
        print("warning: the new key is hidden and the previous key no longer works: "
              "request a new link and confirm it with --print-key to show a key",
              file=sys.stderr)
    return 0


def _token_from(argument: str) -> str:
    """The token in ``argument``: itself, a pasted link, or ``-`` for standard input."""
    text = argument
    if argument == "-":
        text = getpass.getpass("token or link: ") if sys.stdin.isatty() else sys.stdin.read()
    text = text.strip()
    if "://" in text:
        parts = urlsplit(text)
        query = parse_qs(parts.query).get("token")
        if query:
            text = query[-1]
        else:
            segments = [segment for segment in parts.path.split("/") if segment]
            text = unquote(segments[-1]) if segments else ""
    if not text:
        raise _CommandFailed("no token given")
    return text


def _hide_key(text: str, directory: SQLiteDirectory, number: str,
              context: CryptContext) -> str:
    """``text`` with the key that verifies against client ``number``'s hash hidden.

    Fails, printing nothing of the mail, if no such key is found in it.
    """
    client = directory.find(IdentifierKind.CLIENT_NUMBER, number)
    hidden = 0

    def hide(match: re.Match[str]) -> str:
        nonlocal hidden
        if client is not None and context.verify(match.group(0), client.key_hash):
            hidden += 1
            return REDACTED_KEY
        return match.group(0)

    text = _KEY_SHAPED.sub(hide, text)
    if not hidden:
        raise _CommandFailed(f"the access key of client {number} was rotated, but the new key "
                             "could not be found in the mail to hide it, so the mail is not "
                             "printed; the client needs a new recovery link")
    return text


def _demo(_: argparse.Namespace) -> int:
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
    if (match := TOKEN_IN_LINK.search(render(message))) is None:
        raise AssertionError("no link in the confirmation mail")
    return match.group(1)


def _key_in(message: EmailMessage) -> str:
    match = re.search(r"Access key:\s+(\S+)", render(message))
    if match is None:
        raise AssertionError("no key in the credentials mail")
    return match.group(1)
