"""The ``demo`` command: the whole flow, request to rotated key, on a throw-away SQLite file."""

from __future__ import annotations

import argparse
import re
import secrets
import tempfile
import time
from email.message import EmailMessage
from pathlib import Path

from ..adapters.memory import MemoryMailer
from ..adapters.sqlite import SQLiteDirectory
from ..exceptions import RecoveryError
from ..identifiers import IdentifierKind
from ..keys import generate_key
from ..mail.viewer import render
from ..service import RecoveryService
from ..tokens import TOKEN_IN_LINK
from ._common import DEMO_SENDER, DEMO_URL, crypt_context


def demo(_: argparse.Namespace) -> int:
    """Run the demo, printing each step and both mails; fails if the key was not rotated."""
    started = time.perf_counter()
    context = crypt_context()
    with (
        tempfile.TemporaryDirectory() as tmp,
        SQLiteDirectory(Path(tmp) / "clients.sqlite3", crypt_context=context) as directory,
    ):
        old_key = generate_key()
        directory.add_client(
            "9000",
            "ejemplo@ejemploxmundo.com.ar",
            key=old_key,
            domains=["ejemploxmundo.com.ar"],
            name="Ejemplo",
        )
        print(
            "Client 9000 created, domain ejemploxmundo.com.ar, "
            "primary address ejemplo@ejemploxmundo.com.ar.\n"
        )
        outbox = MemoryMailer()
        service = RecoveryService(
            directory,
            outbox,
            secret_key=secrets.token_urlsafe(32),
            confirm_url=DEMO_URL,
            sender=DEMO_SENDER,
            crypt_context=context,
            delivery="sync",
        )
        for kind, value in (
            (IdentifierKind.DOMAIN, "EjemploXMundo.com.ar"),
            (IdentifierKind.CLIENT_NUMBER, " 9000 "),
            (IdentifierKind.EMAIL, "Ejemplo@EjemploXMundo.com.ar"),
        ):
            service.request(kind, value)
            print(
                f"Requested recovery by {kind.value} {value!r}: "
                f"{len(outbox.outbox)} confirmation mail(s) so far."
            )
        service.request(IdentifierKind.DOMAIN, "not-a-client.example")
        print(
            "Requested recovery by an unknown domain: same answer, "
            f"still {len(outbox.outbox)} mails.\n"
        )

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
