"""The wire format of link tokens and code tickets: what earlier releases issued still verifies.

The tokens and tickets below were issued by the release before tokens were
signed without itsdangerous's per-call layers (``git show`` of that
``tokens.py`` and ``codes.py``, run with ``SECRET`` and a clock at ``NOW``).
Links already in clients' inboxes during an upgrade depend on them.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import itsdangerous
import pytest
from itsdangerous.encoding import base64_encode

from credrecovery import (
    AsyncRecoveryService,
    InvalidCode,
    InvalidToken,
    RecoveryService,
    TokenExpired,
)
from credrecovery.codes import CodeSigner
from credrecovery.memory import MemoryDirectory, MemoryMailer
from credrecovery.models import Client
from credrecovery.tokens import _SALT, TokenSigner, account_binding
from helpers import CONFIRM_URL, SECRET, SENDER

OLD_SECRET = "old-signing-key-fedcba9876543210"
NOW = 1_800_000_000.0
CLIENT = Client(
    number="9000",
    email="ejemplo@ejemploxmundo.com.ar",
    key_hash="$argon2id$v=19$m=8,t=1,p=1$ZXhhbXBsZXNhbHQ$P8y2nLxw0yq3S3m0m9kQ1A",
    name="Ana Example",
)
BINDING = "JWDuIxdnQPGq8iag5Umhlg"
ODD_NUMBER = 'n\u00famero "9"\\'
NONCE = "bm9uY2Utbm9uY2Utbm9uYw"
# Issued by the previous release, as described above.
PLAIN = (
    "WyI5MDAwIiwiSldEdUl4ZG5RUEdxOGlhZzVVbWhsZyJd.a0nSAA."
    "f3CemJhnPOoyK50uPFfmJY8-lNYw2lJj4vzjuWL734A"
)
OWN_MAX_AGE = (
    "WyI5MDAwIiwiSldEdUl4ZG5RUEdxOGlhZzVVbWhsZyIsMTcyODAwXQ.a0nSAA."
    "GXFX0-SJR2l57fqN3qHJTBbtivy1WJ6yxBtrXmxTIsk"
)
FROM_OLD_KEY = (
    "WyI5MDAwIiwiSldEdUl4ZG5RUEdxOGlhZzVVbWhsZyJd.a0nSAA."
    "7XMwgAkQ45G37VUZa2pQ7lmQYvGDbg9r4sr6Yiqh-yU"
)
ODD = (
    "WyJuXHUwMGZhbWVybyBcIjlcIlxcIiwiSldEdUl4ZG5RUEdxOGlhZzVVbWhsZyJd.a0nSAA."
    "lsxR0ofc1cJEOoX7yaJmulQCaYTb_Nt9Dv2JvquTPZQ"
)
TICKET = (
    "WyJlbWFpbCIsImFuYUBlamVtcGxvLmNvbSIsImJtOXVZMlV0Ym05dVkyVXRibTl1WXciXQ.a0nSAA."
    "fqMov-mpvcPIcT2WttDB4P9o-IoAgecRSrkl01yLKNs"
)
TICKET_OWN_MAX_AGE = (
    "WyJjbGllbnRfbnVtYmVyIiwiOTAwMCIsImJtOXVZMlV0Ym05dVkyVXRibTl1WXciLDE4MDBd.a0nSAA."
    "tf6rglHvtGfCyHerA75ltIakNtlOU422yAgC01gXXBk"
)
CODE = "77XYYCHT"


def _at(seconds: float) -> Callable[[], float]:
    return lambda: seconds


def test_binding_is_unchanged() -> None:
    """account_binding gives what the previous release gave: tokens in flight still match."""
    assert account_binding(CLIENT) == BINDING


def test_previous_release_tokens_verify() -> None:
    """Tokens of the previous release read back, each with its claims and stamp."""
    signer = TokenSigner(SECRET, [OLD_SECRET], clock=_at(NOW + 30))
    for token, number in ((PLAIN, "9000"), (OWN_MAX_AGE, "9000"), (FROM_OLD_KEY, "9000")):
        claims = signer.read(token)
        assert claims.number == number
        assert claims.matches(CLIENT)
        assert claims.issued_at == NOW
    assert signer.read(ODD).number == ODD_NUMBER


def test_previous_release_tokens_keep_their_expiry() -> None:
    """A token of the previous release expires as it did, its own max_age included,
    and TokenExpired carries its stamp and expiry as aware UTC datetimes."""
    issued = datetime.fromtimestamp(NOW, UTC)
    for token, max_age in ((PLAIN, 3600), (OWN_MAX_AGE, 2 * 86400)):
        assert TokenSigner(SECRET, clock=_at(NOW + max_age)).read(token).number == "9000"
        with pytest.raises(TokenExpired) as info:
            TokenSigner(SECRET, clock=_at(NOW + max_age + 1)).read(token)
        assert info.value.issued_at == issued
        assert info.value.expired_at == issued + timedelta(seconds=max_age)
        assert info.value.__context__ is None


def test_the_format_is_unchanged() -> None:
    """The same inputs and second give the previous release's very tokens and tickets."""
    signer = TokenSigner(SECRET, [OLD_SECRET], clock=_at(NOW))
    assert signer.issue(CLIENT) == PLAIN
    assert signer.issue_for("9000", BINDING, max_age=timedelta(days=2)) == OWN_MAX_AGE
    assert signer.issue_for(ODD_NUMBER, BINDING) == ODD
    assert TokenSigner(OLD_SECRET, clock=_at(NOW)).issue(CLIENT) == FROM_OLD_KEY
    codes = CodeSigner(SECRET, clock=_at(NOW))
    assert codes.issue("email", "ana@ejemplo.com", NONCE) == TICKET
    max_age = timedelta(minutes=30)
    assert codes.issue("client_number", "9000", NONCE, max_age=max_age) == TICKET_OWN_MAX_AGE


def test_previous_release_tickets_verify() -> None:
    """Code tickets of the previous release read back, and their codes match."""
    codes = CodeSigner(SECRET, clock=_at(NOW + 60))
    claims = codes.read(TICKET)
    assert (claims.kind, claims.value, claims.nonce) == ("email", "ana@ejemplo.com", NONCE)
    assert claims.issued_at == NOW
    assert claims.max_age is None
    assert codes.read(TICKET_OWN_MAX_AGE).max_age == timedelta(minutes=30)
    assert codes.code(claims.nonce, BINDING) == CODE
    with pytest.raises(TokenExpired) as info:
        CodeSigner(SECRET, clock=_at(NOW + 15 * 60 + 1)).read(TICKET)
    assert info.value.issued_at == datetime.fromtimestamp(NOW, UTC)
    with pytest.raises(InvalidCode):
        CodeSigner(OLD_SECRET, clock=_at(NOW)).read(TICKET)


def _itsdangerous_signer(secret: str) -> itsdangerous.TimestampSigner:
    signer = itsdangerous.TimestampSigner(secret, salt=_SALT, digest_method=hashlib.sha256)
    signer.get_timestamp = lambda: int(NOW)  # type: ignore[method-assign]
    return signer


def test_tokens_are_itsdangerous_timestamp_signatures() -> None:
    """itsdangerous's TimestampSigner, same key and salt, verifies our tokens and makes
    ones we read: the scheme is itsdangerous's, not a lookalike."""
    reference = _itsdangerous_signer(SECRET)
    value, stamp = reference.unsign(PLAIN, return_timestamp=True)
    assert value == PLAIN.rsplit(".", 2)[0].encode()
    assert stamp == datetime.fromtimestamp(NOW, UTC)
    assert reference.sign(value).decode() == PLAIN
    payload = base64_encode(b'["9001","' + BINDING.encode() + b'",600]')
    theirs = _itsdangerous_signer(OLD_SECRET).sign(payload).decode()
    claims = TokenSigner(SECRET, [OLD_SECRET], clock=_at(NOW + 600)).read(theirs)
    assert (claims.number, claims.binding, claims.issued_at) == ("9001", BINDING, NOW)
    with pytest.raises(TokenExpired):
        TokenSigner(SECRET, [OLD_SECRET], clock=_at(NOW + 601)).read(theirs)


@pytest.mark.parametrize("position", [-1, -45])
def test_non_canonical_spellings_refused(position: int) -> None:
    """A signature or stamp spelled otherwise, decoding to the same bytes, is refused."""
    signer = TokenSigner(SECRET, clock=_at(NOW))
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    index = alphabet.index(PLAIN[position])
    for spare in (1, 2, 3):
        respelled = alphabet[index ^ spare]
        token = PLAIN[:position] + respelled + (PLAIN[position + 1 :] if position != -1 else "")
        with pytest.raises(InvalidToken):
            signer.read(token)


@pytest.fixture
def garbage() -> Iterator[list[object]]:
    """What the garbage collector would have to free, from the test's own calls only."""
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        yield gc.garbage
    finally:
        gc.set_debug(0)
        gc.garbage.clear()


def _credrecovery_frames(objects: list[object]) -> list[object]:
    return [o for o in objects if "credrecovery" in repr(getattr(o, "f_code", ""))]


@pytest.mark.slow  # garbage collections over many refusals
def test_refusing_a_forgery_leaves_no_cycle(
    directory: MemoryDirectory, mailer: MemoryMailer, garbage: list[object]
) -> None:
    """A refused link is freed as soon as it is dropped, by either service: a flood of
    forged tokens does not keep the garbage collector busy (whose pauses were the
    slowest rejections)."""
    options: dict[str, Any] = {
        "secret_key": SECRET,
        "fallback_secret_keys": [OLD_SECRET],
        "confirm_url": CONFIRM_URL,
        "sender": SENDER,
        "delivery": "sync",
        "rate_limits": None,
    }
    forged = PLAIN[:-4] + "AAAA"
    service = RecoveryService(directory, mailer, **options)
    for call in (service.check, service.confirm):
        for _ in range(3):
            with pytest.raises(InvalidToken):
                call(forged)
    gc.collect()
    assert _credrecovery_frames(garbage) == []

    async def refuse_async() -> None:
        service = AsyncRecoveryService(directory, mailer, **options)
        for call in (service.check, service.confirm):
            for _ in range(3):
                with pytest.raises(InvalidToken):
                    await call(forged)

    asyncio.run(refuse_async())
    gc.collect()
    assert _credrecovery_frames(garbage) == []
