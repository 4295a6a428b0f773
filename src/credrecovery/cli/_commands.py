"""The operator commands: secret, init, add-client, request and confirm."""

from __future__ import annotations

import argparse
import getpass
import re
import secrets
import sys
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from passlib.context import CryptContext

from ..adapters.memory import MemoryMailer
from ..adapters.printing import PrintMailer
from ..exceptions import DeliveryFailed
from ..identifiers import IdentifierKind, normalize_identifier, parse_kind
from ..keys import KEY_ALPHABET, KEY_LENGTH, generate_key
from ..mail.viewer import render
from ..models import Client
from ..protocols import ClientDirectory
from ._common import (
    CommandFailed,
    Recorder,
    crypt_context,
    failure_reason,
    recipients,
    secret_key,
    service,
    smtp_mailer,
)
from ._files import open_directory, open_named

#: What ``confirm`` prints instead of the new access key without ``--print-key``.
REDACTED_KEY = "[hidden; confirm with --print-key to show it]"

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


def secret_command(_: argparse.Namespace) -> int:
    """``secret``: print a new random signing secret."""
    print(secrets.token_urlsafe(32))
    return 0


def init(args: argparse.Namespace) -> int:
    """``init``: create a new, empty directory file."""
    with open_directory(args.db, timeout=args.lock_timeout, create="new"):
        pass
    print(f"created an empty client directory in {args.db}")
    return 0


def add_client(args: argparse.Namespace) -> int:
    """``add-client``: add a client, printing a generated key once."""
    key_hash = args.key_hash
    if key_hash == "-":
        key_hash = sys.stdin.read().strip()
    if key_hash is not None:
        _check_key_hash(key_hash, crypt_context())
    key = None if key_hash is not None else generate_key()
    with open_directory(
        args.db, timeout=args.lock_timeout, create="if-missing" if args.create else "never"
    ) as directory:
        client = directory.add_client(
            args.number,
            args.email,
            key=key,
            key_hash=key_hash,
            domains=args.domain,
            name=args.name,
            locale=args.locale,
        )
    print(f"added client {client.number} <{client.email}>")
    if key is not None:
        print(f"initial access key: {key}")
    return 0


def _check_key_hash(key_hash: str, context: CryptContext) -> None:
    """Refuse a hash the policy cannot verify keys against; the message never quotes it."""
    refused = CommandFailed(
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


def request(args: argparse.Namespace) -> int:
    """``request``: issue a link (or a code) for the client an identifier names; mail or
    print it."""
    secret = secret_key()
    kind = parse_kind(args.kind)
    value = normalize_identifier(kind, args.value)
    smtp = None if args.link_only else smtp_mailer(args)
    what = "recovery code" if args.code else "confirmation link"
    with open_named(args) as directory:
        client = _named_client(directory, kind, value)
        recovery = service(args, directory, smtp if smtp is not None else PrintMailer(), secret)
        options: dict[str, Any] = {
            "max_age": args.max_age,
            "send": not args.link_only,
            "operator": args.operator,
        }
        try:
            if args.code:
                issued = recovery.issue_code(client.number, **options)
                shown = [f"code: {issued.code}", f"ticket: {issued.ticket}"]
            else:
                link = recovery.issue_link(client.number, **options)
                shown = [link] if args.link_only else []
        except DeliveryFailed as exc:
            cause = exc.__cause__ if isinstance(exc.__cause__, Exception) else exc
            raise CommandFailed(
                f"the {'code' if args.code else 'confirmation'} mail for client "
                f"{client.number} was not sent: {failure_reason(cause)}"
            ) from None
    for line in shown:
        print(line)
    if args.link_only:
        default = recovery.codes.max_age if args.code else recovery.tokens.max_age
        until = datetime.now(UTC) + (args.max_age or default)
        print(
            f"{what} for client {client.number} printed above, not mailed; "
            f"it works until {until:%Y-%m-%d %H:%M} UTC"
        )
    elif smtp is None:
        print(
            f"{what} for client {client.number} printed above, not sent; "
            f"it is addressed to {client.email}"
        )
    else:
        print(f"{what} for client {client.number} mailed to {client.email}")
    return 0


def _named_client(directory: Any, kind: IdentifierKind, value: str) -> Client:
    """The one client ``value`` names; fails when none does, or several share an address."""
    find_all = getattr(directory, "find_all", None)
    if kind is IdentifierKind.EMAIL and callable(find_all):
        found = list(find_all(kind, value))
    else:
        one = directory.find(kind, value)
        found = [] if one is None else [one]
    if not found:
        raise CommandFailed(f"no client has the {_KIND_LABELS[kind]} {value}")
    if len(found) > 1:
        numbers = ", ".join(client.number for client in found)
        raise CommandFailed(
            f"clients {numbers} share the primary email {value}: name one by client_number"
        )
    client: Client = found[0]
    return client


def confirm(args: argparse.Namespace) -> int:
    """``confirm``: rotate the key a token (or a ticket and its code) names and mail, or
    print, the new one."""
    secret = secret_key()
    if (args.ticket is None) != (args.code is None):
        raise CommandFailed("--ticket and --code go together")
    token = _token_from(args.token) if args.ticket is None else None
    ticket = _token_from(args.ticket, "ticket") if args.ticket is not None else None
    smtp = smtp_mailer(args)
    outbox = MemoryMailer()
    recorder = Recorder(smtp if smtp is not None else outbox)
    with open_named(args) as directory:
        recovery = service(args, directory, recorder, secret)
        if ticket is not None:
            result = recovery.confirm_code(ticket, args.code)
        else:
            assert token is not None
            result = recovery.confirm(token)
        if smtp is not None:
            print(
                f"confirmed: new access details for client {result.number} mailed to "
                f"{recipients(recorder.sent[-1])}"
            )
            return 0
        text = render(outbox.outbox[-1])
        if not args.print_key:
            text = _hide_key(text, directory, result.number, recovery.crypt_context)
    print(text)
    print(
        f"confirmed: the access key of client {result.number} was rotated; the mail "
        "above was printed, not sent"
    )
    if not args.print_key:
        print(
            "warning: the new key is hidden and the previous key no longer works: "
            "request a new link and confirm it with --print-key to show a key",
            file=sys.stderr,
        )
    return 0


def _token_from(argument: str, what: str = "token") -> str:
    """The token in ``argument``: itself, a pasted link, or ``-`` for standard input.

    A ``ticket`` is taken as it is, or from standard input.
    """
    text = argument
    if argument == "-":
        prompt = "token or link: " if what == "token" else f"{what}: "
        text = getpass.getpass(prompt) if sys.stdin.isatty() else sys.stdin.read()
    text = text.strip()
    if what == "token" and "://" in text:
        parts = urlsplit(text)
        query = parse_qs(parts.query).get("token")
        if query:
            text = query[-1]
        else:
            segments = [segment for segment in parts.path.split("/") if segment]
            text = unquote(segments[-1]) if segments else ""
    if not text:
        raise CommandFailed(f"no {what} given")
    return text


def _hide_key(text: str, directory: ClientDirectory, number: str, context: CryptContext) -> str:
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
        raise CommandFailed(
            f"the access key of client {number} was rotated, but the new key "
            "could not be found in the mail to hide it, so the mail is not "
            "printed; the client needs a new recovery link"
        )
    return text
