"""The command line's arguments: one subcommand each, with its help, defaults and examples."""

from __future__ import annotations

import argparse
import getpass
import math
import textwrap
from datetime import timedelta
from pathlib import Path

from .. import __version__
from ..identifiers import IdentifierKind
from . import _commands
from ._common import (
    DATABASE_PASSWORD_ENV,
    DEMO_SENDER,
    DEMO_URL,
    PACKAGE,
    PROG,
    SECRET_ENV,
    SMTP_PASSWORD_ENV,
)
from ._demo import demo


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows defaults worth showing and keeps the epilog's examples as written."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False or action.default in ("", []):
            return action.help
        return super()._get_help_string(action)


_ENVIRONMENT = f"""\
environment:
  {SECRET_ENV}  the signing secret (make one with: {PROG} secret)
  {SMTP_PASSWORD_ENV}  the SMTP password, with --smtp-username
  {DATABASE_PASSWORD_ENV}  the database password, with --database-url

exit status: 0 done, 1 error (printed as "error: ..."), 2 bad usage"""

_EPILOGS = {
    "demo": f"example:\n  {PROG} demo",
    "secret": f'examples:\n  {PROG} secret\n  export {SECRET_ENV}="$({PROG} secret)"',
    "init": f"example:\n  {PROG} init --db clients.sqlite3",
    "add-client": f"""\
examples:
  {PROG} add-client --db clients.sqlite3 --create 9000 ana@example.com \\
      --domain example.com --name Ana
  printf '%s' "$HASH" | {PROG} add-client --db clients.sqlite3 9001 \\
      bo@example.com --key-hash -""",
    "request": f"""\
examples:
  {PROG} request --db clients.sqlite3 domain example.com
  {PROG} request --db clients.sqlite3 email ana@example.com \\
      --smtp-host smtp.example.com --smtp-port 587 --smtp-security starttls \\
      --smtp-username panel
  {PROG} request --database-url postgresql+psycopg://support@db.internal/panel \\
      client_number 9000 --link-only --max-age 3d
  {PROG} request --db clients.sqlite3 client_number 9000 --code --no-mail

{_ENVIRONMENT}""",
    "confirm": f"""\
examples:
  {PROG} confirm --db clients.sqlite3 -      (then paste the token or link)
  printf '%s' "$LINK" | {PROG} confirm --db clients.sqlite3 - --print-key
  printf '%s' "$TICKET" | {PROG} confirm --db clients.sqlite3 --ticket - \\
      --code WDJH-MJHT

{_ENVIRONMENT}""",
}


def parser() -> argparse.ArgumentParser:
    """The parser of the whole command line; each subcommand sets ``run`` to its function."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Recover access to a client panel.",
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"{PACKAGE} {__version__}")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    def command(name: str, helptext: str, description: str = "") -> argparse.ArgumentParser:
        # The formatter keeps the epilog's layout, so descriptions are wrapped here.
        text = description or f"{helptext[0].upper()}{helptext[1:]}."
        return commands.add_parser(
            name,
            help=helptext,
            description=textwrap.fill(text, 79, break_on_hyphens=False),
            epilog=_EPILOGS[name],
            formatter_class=_HelpFormatter,
        )

    command("demo", "run the whole flow on a throw-away SQLite file").set_defaults(run=demo)

    secret = command("secret", "print a new random signing secret")
    secret.set_defaults(run=_commands.secret_command)

    init = command(
        "init",
        "create a new, empty SQLite directory file",
        "Create a new, empty SQLite directory file, readable by its owner only. "
        "Refuses a file that already exists.",
    )
    _db(init)
    init.set_defaults(run=_commands.init)

    add = command(
        "add-client",
        "add a client to a SQLite directory",
        "Add a client to a SQLite directory file. Without --key-hash, a new access "
        "key is generated and printed once.",
    )
    _db(add)
    add.add_argument("number", help="client number")
    add.add_argument("email", help="primary email address")
    add.add_argument(
        "--create",
        action="store_true",
        help="create the file (readable by its owner only) if it does not exist",
    )
    add.add_argument("--domain", action="append", default=[], help="a domain; repeatable")
    add.add_argument("--name", default="", help="name used in greetings")
    add.add_argument("--locale", default=None, help="mail language, such as en or es")
    add.add_argument(
        "--key-hash",
        default=None,
        metavar="HASH",
        help="import an existing argon2 or bcrypt hash instead of generating a "
        "key; '-' reads it from standard input",
    )
    add.set_defaults(run=_commands.add_client)

    request = command(
        "request",
        "mail a confirmation link (or a code) for an identifier",
        "Mail a confirmation link (with --code, a recovery code) to the primary address "
        "of the client an identifier names, and say which client it was and where the "
        "mail went. Without --smtp-host, the mail is printed instead of sent; with "
        "--link-only, only the link is printed, for the operator to pass on. A code is "
        "printed with its ticket, which confirm --ticket takes with the code.",
    )
    _directory_options(request)
    request.add_argument(
        "kind", choices=[k.value for k in IdentifierKind], help="what the value is"
    )
    request.add_argument("value", help="the domain, client number or email address")
    request.add_argument(
        "--max-age",
        type=_duration,
        default=None,
        metavar="DURATION",
        help="how long the link stays valid, such as 900 (seconds), 90m, "
        "12h or 3d; by default an hour (a code: 15 minutes)",
    )
    request.add_argument(
        "--operator",
        default=_login_name(),
        metavar="NAME",
        help="who issues the link, for the log and the event",
    )
    request.add_argument(
        "--code",
        action="store_true",
        help="issue a recovery code instead of a link, and print it with its ticket",
    )
    request.add_argument(
        "--link-only",
        "--no-mail",
        dest="link_only",
        action="store_true",
        help="print the link (or the code) instead of mailing it",
    )
    _flow_options(request)
    request.set_defaults(run=_commands.request)

    confirm = command(
        "confirm",
        "confirm a token: rotate the key and mail it",
        "Confirm a token (or a code, with the ticket it was issued with): rotate the "
        "client's access key and mail the client number with the new key. Without "
        "--smtp-host, the mail is printed, with the key hidden unless --print-key is "
        "given; the previous key stops working either way.",
    )
    _directory_options(confirm)
    confirmed = confirm.add_mutually_exclusive_group(required=True)
    confirmed.add_argument(
        "token",
        nargs="?",
        help="the token, or the whole link; '-' reads either from "
        "standard input, out of sight of ps and shell history",
    )
    confirmed.add_argument(
        "--ticket",
        default=None,
        help="instead of a token: the ticket of a code (request --code "
        "prints it); '-' reads it from standard input",
    )
    confirm.add_argument(
        "--code", default=None, help="the code the ticket goes with, such as WDJH-MJHT"
    )
    confirm.add_argument(
        "--print-key",
        action="store_true",
        help="show the new key in the printed mail (without --smtp-host)",
    )
    _flow_options(confirm)
    confirm.set_defaults(run=_commands.confirm)
    return parser


def _db(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--db", required=True, type=Path, metavar="FILE", help="SQLite directory file"
    )
    parser.add_argument(
        "--lock-timeout",
        type=_seconds,
        default=5.0,
        metavar="SECONDS",
        help="how long to wait for a lock another process holds on FILE before failing",
    )


def _directory_options(parser: argparse.ArgumentParser) -> None:
    """``--db FILE`` or ``--database-url URL``, one of them required, and ``--lock-timeout``."""
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--db", type=Path, metavar="FILE", help="SQLite directory file")
    where.add_argument(
        "--database-url",
        metavar="URL",
        help="a SQLAlchemy URL of a database holding the directory's own "
        f"tables, such as postgresql+psycopg://support@db/panel; the "
        f"password, if any, from ${DATABASE_PASSWORD_ENV}",
    )
    parser.add_argument(
        "--lock-timeout",
        type=_seconds,
        default=5.0,
        metavar="SECONDS",
        help="how long to wait for a lock another process holds on FILE before failing",
    )


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _duration(text: str) -> timedelta:
    """``900``, ``90m``, ``12h`` or ``3d``: a whole number of seconds, minutes, hours or days."""
    number, unit = (text[:-1], text[-1]) if text[-1:] in _UNITS else (text, "s")
    if not (number.isascii() and number.isdigit()) or int(number) < 1:
        raise argparse.ArgumentTypeError(f"not a duration such as 900, 90m, 12h or 3d: {text!r}")
    return timedelta(seconds=int(number) * _UNITS[unit])


def _login_name() -> str | None:
    try:
        return getpass.getuser()
    except (OSError, KeyError, ImportError):
        return None


def _seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or seconds < 0:
        raise argparse.ArgumentTypeError(f"not a number of seconds, 0 or more: {text!r}")
    return seconds


def _flow_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--confirm-url", default=DEMO_URL, help="link template containing {token}")
    parser.add_argument("--sender", default=DEMO_SENDER, help="From address")
    parser.add_argument("--locale", default="en", help="default mail language")
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="also print the library's INFO log events, not just warnings",
    )
    smtp = parser.add_argument_group("SMTP")
    smtp.add_argument(
        "--smtp-host",
        default=None,
        help="send through this SMTP server instead of printing the mail",
    )
    smtp.add_argument("--smtp-port", type=int, default=25, help="SMTP port")
    smtp.add_argument(
        "--smtp-security",
        choices=["plain", "starttls", "tls"],
        default="plain",
        help="plain, STARTTLS upgrade, or TLS from the first byte",
    )
    smtp.add_argument(
        "--smtp-username",
        default=None,
        metavar="NAME",
        help=f"log in as NAME, with the password from ${SMTP_PASSWORD_ENV}; needs starttls or tls",
    )
    smtp.add_argument(
        "--smtp-cafile",
        default=None,
        type=Path,
        metavar="PEM",
        help="trust the CA certificates in PEM instead of the system's",
    )
