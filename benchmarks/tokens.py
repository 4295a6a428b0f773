"""What a confirmation token costs, next to Django's password-reset tokens.

Reports, from one run:

* issuing a token (``TokenSigner.issue``) next to Django's
  ``PasswordResetTokenGenerator.make_token``, and verifying one
  (``TokenSigner.read``, alone and followed by ``TokenClaims.matches`` as a
  confirmation does, which makes it what ``check_token`` does) next to
  ``check_token``: the baselines. Both sides have one fallback signing
  key (``SECRET_KEY_FALLBACKS`` for Django, configured here with
  ``settings.configure``; its user is a plain object with the attributes
  ``check_token`` reads);
* a forged token (a genuine one with its last four characters changed)
  rejected by ``TokenSigner.read``, ``RecoveryService.check`` and
  ``RecoveryService.confirm`` on a memory directory, next to ``check_token``
  refusing the same kind of forgery, with the median and the 99th percentile
  (target: under 50 µs);
* ``hmac.digest`` over a token's signed bytes, and a valid confirmation
  (argon2id with the production profile), for scale.

The measured operations run interleaved, block by block, so that a burst of
load elsewhere on the machine falls on each of them alike.

    python benchmarks/tokens.py [--rounds 20000]
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime
from email.message import EmailMessage

from _common import header, median, percentile, table, timed_together, us

from credrecovery import Client, InvalidToken, RecoveryService, default_context
from credrecovery.identifiers import IdentifierKind
from credrecovery.memory import MemoryDirectory
from credrecovery.tokens import TokenSigner

FORGED_P99_TARGET = 50e-6


class CountingDirectory(MemoryDirectory):
    """Counts lookups, to show forged tokens never reach the directory."""

    lookups = 0

    def find(self, kind: IdentifierKind, value: str) -> Client | None:
        self.lookups += 1
        return super().find(kind, value)


class NullMailer:
    def send(self, message: EmailMessage) -> None:
        pass


class DjangoUser:
    """What ``PasswordResetTokenGenerator`` reads of a user."""

    pk = 9000
    email = "ejemplo@ejemploxmundo.com.ar"
    last_login = datetime(2025, 3, 1, 12, 30, tzinfo=UTC)

    def __init__(self, password: str) -> None:
        self.password = password

    @classmethod
    def get_email_field_name(cls) -> str:
        return "email"


def refused(fn: Callable[[str], object], token: str) -> Callable[[], None]:
    def call() -> None:
        try:
            accepted = fn(token)
        except InvalidToken:
            return
        if accepted is not False:
            raise AssertionError("a forged token was accepted")

    return call


def forged_from(token: str) -> str:
    return token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20_000)
    parser.add_argument("--confirmations", type=int, default=30)
    args = parser.parse_args()
    logging.disable(logging.CRITICAL)
    header("token costs")

    secret, old = secrets.token_urlsafe(32), secrets.token_urlsafe(32)

    from django.conf import settings

    settings.configure(
        SECRET_KEY=secret, SECRET_KEY_FALLBACKS=[old], PASSWORD_RESET_TIMEOUT=3600, USE_TZ=True
    )
    from django.contrib.auth.tokens import PasswordResetTokenGenerator

    django_tokens = PasswordResetTokenGenerator()
    key_hash = default_context().hash("x")
    user = DjangoUser(key_hash)
    django_token = django_tokens.make_token(user)
    assert django_tokens.check_token(user, django_token)
    django_forged = forged_from(django_token)

    signer = TokenSigner(secret, [old])
    client = Client("9000", "ejemplo@ejemploxmundo.com.ar", key_hash)
    token = signer.issue(client)
    forged = forged_from(token)
    signed_part = token.rsplit(".", 1)[0].encode()
    key = hashlib.sha256(secret.encode()).digest()

    directory = CountingDirectory(crypt_context=default_context())
    directory.add_client(
        "9000",
        "ejemplo@ejemploxmundo.com.ar",
        key="initial-key-123456",
        domains=["ejemploxmundo.com.ar"],
    )
    service = RecoveryService(
        directory,
        NullMailer(),
        secret_key=secret,
        fallback_secret_keys=[old],
        confirm_url="https://panel.example.com/recover/{token}",
        sender="panel@example.com",
        delivery="sync",
        rate_limits=None,
    )

    def verify() -> None:
        if not signer.read(token).matches(client):
            raise AssertionError("a genuine token did not verify")

    def confirm_valid() -> None:
        found = directory.find(IdentifierKind.CLIENT_NUMBER, "9000")
        assert found is not None
        service.confirm(service.tokens.issue(found))

    lookups_before = directory.lookups
    runs = timed_together(
        {
            "hmac": lambda: hmac.digest(key, signed_part, "sha256"),
            "make_token": lambda: django_tokens.make_token(user),
            "issue": lambda: signer.issue(client),
            "check_token": lambda: django_tokens.check_token(user, django_token),
            "read": lambda: signer.read(token),
            "verify": verify,
            "check_token forged": refused(
                lambda t: django_tokens.check_token(user, t), django_forged
            ),
            "read forged": refused(signer.read, forged),
            "check forged": refused(service.check, forged),
            "confirm forged": refused(service.confirm, forged),
        },
        args.rounds,
    )
    forged_lookups = directory.lookups - lookups_before
    rounds = len(runs["hmac"])
    valid = []
    for _ in range(args.confirmations):
        started = time.perf_counter()
        confirm_valid()
        valid.append(time.perf_counter() - started)

    def ratio(name: str, baseline: str) -> float:
        return median(runs[name]) / median(runs[baseline])

    rows = [
        ("hmac.digest over a token's signed bytes", runs["hmac"], None),
        ("Django make_token (baseline)", runs["make_token"], "make_token"),
        ("TokenSigner.issue", runs["issue"], "make_token"),
        ("Django check_token (baseline)", runs["check_token"], "check_token"),
        ("TokenSigner.read", runs["read"], "check_token"),
        ("TokenSigner.read + matches", runs["verify"], "check_token"),
        ("Django check_token, forged (baseline)", runs["check_token forged"], "check_token forged"),
        ("TokenSigner.read, forged", runs["read forged"], "check_token forged"),
        ("RecoveryService.check, forged", runs["check forged"], "check_token forged"),
        ("RecoveryService.confirm, forged", runs["confirm forged"], "check_token forged"),
        ("RecoveryService.confirm, valid", valid, None),
    ]
    table(
        ["operation", "samples", "median", "p99", "× Django"],
        [
            (
                name,
                len(s),
                us(median(s)),
                us(percentile(s, 99)),
                "" if base is None else f"{median(s) / median(runs[base]):.2f}",
            )
            for name, s, base in rows
        ],
    )
    checks = []
    for label, name, baseline in (
        ("TokenSigner.issue ≤ 1.0 × make_token", "issue", "make_token"),
        ("TokenSigner.read ≤ 1.0 × check_token", "read", "check_token"),
        ("TokenSigner.read + matches ≤ 1.0 × check_token", "verify", "check_token"),
    ):
        checks.append((label, f"{ratio(name, baseline):.2f} ×", ratio(name, baseline) <= 1.0))
    for label, name in (
        ("TokenSigner.read", "read forged"),
        ("RecoveryService.check", "check forged"),
        ("RecoveryService.confirm", "confirm forged"),
    ):
        p99 = percentile(runs[name], 99)
        checks.append((f"{label}, forged: p99 < 50 µs", us(p99), p99 < FORGED_P99_TARGET))
    table(
        ["target", "measured", "result"],
        [(label, value, "pass" if ok else "FAIL") for label, value, ok in checks],
    )
    print(f"Directory lookups made while rejecting {2 * rounds:,} forged tokens: {forged_lookups}.")


if __name__ == "__main__":
    main()
