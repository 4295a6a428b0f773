"""The notebook walkthrough as a plain script: the whole recovery flow in memory.

Run it with ``python examples/notebook.py``. Each ``# %%`` marks a notebook cell.
Nothing leaves the process: clients live in a MemoryDirectory and mail lands in a
MemoryMailer's outbox.
"""

# %% Setup: one client, one service.
from __future__ import annotations

import logging
import re
import secrets
import sys
from email.message import EmailMessage

from credrecovery import IdentifierKind, RecoveryService, TokenAlreadyUsed, cheap_context
from credrecovery.memory import MemoryDirectory, MemoryMailer

# Show the library's log events; every record it logs carries an ``event`` field.
handler = logging.StreamHandler(sys.stdout)
handler.setFormatter(logging.Formatter("  [log] %(levelname)s %(event)s: %(message)s"))
logging.getLogger("credrecovery").addHandler(handler)
logging.getLogger("credrecovery").setLevel(logging.INFO)

# cheap_context() is a deliberately weak argon2 profile, used here for speed only.
# Production code leaves crypt_context out and gets the default argon2id policy.
context = cheap_context()
OLD_KEY = "Initial-Key-7fQ2xZ"

directory = MemoryDirectory(crypt_context=context)
directory.add_client(
    "9000",
    "Ejemplo@EjemploXMundo.com.ar",  # stored normalized: lower-cased
    key=OLD_KEY,
    domains=["ejemploxmundo.com.ar"],
    name="Ejemplo",
)
mailer = MemoryMailer()
service = RecoveryService(
    directory,
    mailer,
    secret_key=secrets.token_urlsafe(32),  # in an application: read it from the environment
    confirm_url="https://panel.example.com/recover/{token}",
    sender="Client Panel <panel@example.com>",
    crypt_context=context,
)


def text_of(message: EmailMessage) -> str:
    """The decoded plain-text part of a message."""
    body = message.get_body(("plain",))
    assert isinstance(body, EmailMessage)
    return str(body.get_content())


def show(message: EmailMessage) -> None:
    """Print a message's main headers and its plain-text body."""
    for header in ("From", "To", "Subject"):
        print(f"{header}: {message[header]}")
    print()
    print(text_of(message).rstrip())
    print("-" * 72)


# %% The client asks by domain; someone else asks for an address that is not a client.
# Both calls return None: the caller learns nothing about who is a client.
print(service.request("domain", "EjemploXMundo.com.ar", requester="192.0.2.10"))
print(service.request(IdentifierKind.EMAIL, "someone@not-a-client.example", requester="192.0.2.66"))

# Confirmation mails are sent by a background thread; wait for it.
service.flush()
print(f"{len(mailer.outbox)} message(s) in the outbox")
show(mailer.outbox[0])

# %% The client opens the link. The page checks the token without using it up...
match = re.search(r"https://panel\.example\.com/recover/(\S+)", text_of(mailer.outbox[0]))
assert match is not None
token = match.group(1)
print(service.check(token, requester="192.0.2.10"))

# %% ...and the "Confirm" button rotates the key and mails it with the client number.
confirmation = service.confirm(token, requester="192.0.2.10")
print(confirmation)
show(mailer.outbox[-1])

# %% The new key works, the old one does not, and the link is dead.
key_match = re.search(r"Access key: (\S+)", text_of(mailer.outbox[-1]))
assert key_match is not None
new_key = key_match.group(1)
client = directory.find(IdentifierKind.CLIENT_NUMBER, "9000")
assert client is not None
print("old key accepted:", context.verify(OLD_KEY, client.key_hash))
print("new key accepted:", context.verify(new_key, client.key_hash))
assert not context.verify(OLD_KEY, client.key_hash)
assert context.verify(new_key, client.key_hash)
try:
    service.confirm(token)
except TokenAlreadyUsed as exc:
    print(f"using the link again: {type(exc).__name__} ({exc}), HTTP {exc.http_status}")
else:
    raise AssertionError("a used link worked twice")

# %% Shut down: deliver whatever is still queued and stop the worker thread.
service.close()
