"""Confirmation tokens: signing, tamper resistance, expiry and key rotation."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import string
from datetime import timedelta
from urllib.parse import quote

import itsdangerous
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from itsdangerous.encoding import base64_decode, base64_encode

from conftest import SECRET, FakeClock
from credrecovery import InvalidToken, TokenExpired
from credrecovery.models import Client
from credrecovery.tokens import _SALT, TokenSigner

OLD_SECRET = "old-signing-key-fedcba9876543210"
NEW_SECRET = "new-signing-key-0f1e2d3c4b5a6978"
NOW = 1_800_000_000.0
URL_SAFE = string.ascii_letters + string.digits + "-_"
CLIENT = Client(
    number="9000",
    email="ejemplo@ejemploxmundo.com.ar",
    key_hash="$argon2id$v=19$m=8,t=1,p=1$ZXhhbXBsZXNhbHQ$P8y2nLxw0yq3S3m0m9kQ1A",
    name="Ana Example",
)


def _fixed_clock() -> float:
    return NOW


SIGNER = TokenSigner(SECRET, clock=_fixed_clock)
TOKEN = SIGNER.issue(CLIENT)


def _substrings(text: str, length: int = 4) -> set[str]:
    return {text[i : i + length] for i in range(len(text) - length + 1)}


def _rejection(signer: TokenSigner, token: object) -> InvalidToken:
    with pytest.raises(InvalidToken) as info:
        signer.read(token)
    return info.value


# --- round trip and shape --------------------------------------------------


def test_issue_read_roundtrip() -> None:
    """A freshly issued token reads back as its client's claims."""
    claims = SIGNER.read(TOKEN)
    assert claims.number == "9000"
    assert claims.matches(CLIENT)
    assert claims.issued_at == NOW


def test_claims_stop_matching_when_account_changes() -> None:
    """Claims no longer match once the key hash, email or number changes."""
    claims = SIGNER.read(TOKEN)
    assert not claims.matches(dataclasses.replace(CLIENT, key_hash=CLIENT.key_hash + "x"))
    assert not claims.matches(dataclasses.replace(CLIENT, email="other@ejemploxmundo.com.ar"))
    assert not claims.matches(dataclasses.replace(CLIENT, number="9001"))
    assert claims.matches(dataclasses.replace(CLIENT, name="Renamed", locale="es"))


@settings(max_examples=100, deadline=None)
@given(
    number=st.from_regex(r"[A-Za-z0-9_-]{1,32}", fullmatch=True),
    email=st.emails(),
    key_hash=st.text(min_size=1, max_size=120),
)
def test_token_url_safe_and_roundtrips(number: str, email: str, key_hash: str) -> None:
    """Tokens use only URL-safe characters and read back for any client."""
    client = Client(number, email.lower(), key_hash)
    token = SIGNER.issue(client)
    assert re.fullmatch(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+", token)
    assert quote(token, safe="") == token
    claims = SIGNER.read(token)
    assert claims.number == number
    assert claims.matches(client)


def test_payload_carries_number_but_no_email_or_hash() -> None:
    """The readable payload holds the number and nothing of the email or key hash."""
    payload_text = base64_decode(TOKEN.split(".")[0]).decode("utf-8")
    payload = json.loads(payload_text)
    assert payload[0] == "9000"
    assert "9000" in payload_text
    for secret in (CLIENT.email, CLIENT.key_hash):
        leaked = _substrings(secret) & (_substrings(payload_text) | _substrings(TOKEN))
        assert not leaked, f"payload or token shares {leaked!r}"


# --- tampering -------------------------------------------------------------

_replacement = st.sampled_from(URL_SAFE + ".=+/") | st.characters()


@settings(max_examples=300, deadline=None)
@given(position=st.integers(0, len(TOKEN) - 1), replacement=_replacement)
def test_any_single_character_change_rejected(position: int, replacement: str) -> None:
    """Changing any one character of a token makes it invalid."""
    if replacement == TOKEN[position]:
        replacement = "A" if TOKEN[position] != "A" else "B"
    forged = TOKEN[:position] + replacement + TOKEN[position + 1 :]
    _rejection(SIGNER, forged)


def test_every_url_safe_single_character_change_rejected() -> None:
    """Every position changed to every other URL-safe or base64 character is invalid."""
    accepted = []
    for position, original in enumerate(TOKEN):
        for replacement in URL_SAFE + ".=+/":
            if replacement == original:
                continue
            forged = TOKEN[:position] + replacement + TOKEN[position + 1 :]
            try:
                SIGNER.read(forged)
            except InvalidToken:
                continue
            accepted.append((position, replacement))
    assert accepted == []


@settings(max_examples=200, deadline=None)
@given(cut=st.integers(1, len(TOKEN)), from_start=st.booleans())
def test_truncated_token_rejected(cut: int, from_start: bool) -> None:
    """A token with characters cut from either end is invalid."""
    forged = TOKEN[cut:] if from_start else TOKEN[:-cut]
    _rejection(SIGNER, forged)


@settings(max_examples=200, deadline=None)
@given(extra=st.text(min_size=1, max_size=8), at_start=st.booleans())
def test_extended_token_rejected(extra: str, at_start: bool) -> None:
    """A token with characters added at either end is invalid."""
    forged = extra + TOKEN if at_start else TOKEN + extra
    _rejection(SIGNER, forged)


def test_over_long_token_rejected() -> None:
    """A megabyte of token-shaped text is refused."""
    _rejection(SIGNER, TOKEN + "A" * 1_000_000)


# --- expiry ----------------------------------------------------------------


def test_valid_at_max_age_expired_after(clock: FakeClock) -> None:
    """A token reads at exactly max_age and is TokenExpired one second later."""
    signer = TokenSigner(SECRET, max_age=timedelta(hours=1), clock=clock)
    token = signer.issue(CLIENT)
    clock.advance(3600)
    assert signer.read(token).number == "9000"
    clock.advance(1)
    with pytest.raises(TokenExpired):
        signer.read(token)


def test_custom_max_age_honoured(clock: FakeClock) -> None:
    """max_age sets the validity window."""
    signer = TokenSigner(SECRET, max_age=timedelta(minutes=5), clock=clock)
    token = signer.issue(CLIENT)
    clock.advance(300)
    signer.read(token)
    clock.advance(1)
    with pytest.raises(TokenExpired):
        signer.read(token)


def test_token_from_the_future_rejected(clock: FakeClock) -> None:
    """A token stamped later than now is refused."""
    signer = TokenSigner(SECRET, clock=clock)
    clock.advance(600)
    token = signer.issue(CLIENT)
    clock.advance(-600)
    _rejection(signer, token)


@pytest.mark.parametrize("max_age", [timedelta(0), timedelta(seconds=-1)])
def test_non_positive_max_age_refused(max_age: timedelta) -> None:
    """A zero or negative max_age raises ValueError."""
    with pytest.raises(ValueError):
        TokenSigner(SECRET, max_age=max_age)


# --- signing keys ----------------------------------------------------------


def test_old_key_verifies_only_while_in_fallbacks() -> None:
    """A token from the old key reads while it is a fallback, and not once dropped."""
    token = TokenSigner(OLD_SECRET, clock=_fixed_clock).issue(CLIENT)
    rotated = TokenSigner(NEW_SECRET, [OLD_SECRET], clock=_fixed_clock)
    assert rotated.read(token).number == "9000"
    _rejection(TokenSigner(NEW_SECRET, clock=_fixed_clock), token)


def test_rotated_signer_signs_with_new_key() -> None:
    """A rotated signer issues tokens that the new key alone verifies."""
    rotated = TokenSigner(NEW_SECRET, [OLD_SECRET], clock=_fixed_clock)
    token = rotated.issue(CLIENT)
    assert TokenSigner(NEW_SECRET, clock=_fixed_clock).read(token).number == "9000"
    _rejection(TokenSigner(OLD_SECRET, clock=_fixed_clock), token)


def test_bytes_secret_equivalent_to_str() -> None:
    """A bytes secret verifies what the same str secret signed."""
    token = TokenSigner(SECRET.encode(), clock=_fixed_clock).issue(CLIENT)
    assert SIGNER.read(token).number == "9000"


def test_other_salt_rejected() -> None:
    """Same key, same payload, other salt: the token is refused."""
    payload = TOKEN.split(".")[0]
    for salt in ("itsdangerous.Signer", "credrecovery.other-purpose"):
        other = itsdangerous.TimestampSigner(
            SECRET, salt=salt, digest_method=hashlib.sha256
        )
        other.get_timestamp = lambda: int(NOW)  # type: ignore[method-assign]
        forged = other.sign(payload).decode("ascii")
        assert forged != TOKEN
        _rejection(SIGNER, forged)


def test_itsdangerous_serializer_token_rejected() -> None:
    """A token from URLSafeTimedSerializer with the same key is refused."""
    forged = itsdangerous.URLSafeTimedSerializer(SECRET).dumps(["9000", "x" * 22])
    _rejection(SIGNER, forged)
    forged_sha256 = itsdangerous.URLSafeTimedSerializer(
        SECRET, signer_kwargs={"digest_method": hashlib.sha256}
    ).dumps(["9000", "x" * 22])
    _rejection(SIGNER, forged_sha256)


@pytest.mark.parametrize(
    "payload",
    [b"not json", b'{"n": "9000"}', b'["9000"]', b'["9000", 5]', b'["a", "b", "c"]', b"null"],
)
def test_genuinely_signed_bad_payload_rejected(payload: bytes) -> None:
    """A correctly signed token with a malformed payload is InvalidToken."""
    signer = itsdangerous.TimestampSigner(SECRET, salt=_SALT, digest_method=hashlib.sha256)
    signer.get_timestamp = lambda: int(NOW)  # type: ignore[method-assign]
    forged = signer.sign(base64_encode(payload)).decode("ascii")
    exc = _rejection(SIGNER, forged)
    assert exc.__cause__ is None
    assert exc.__context__ is None


@pytest.mark.parametrize(
    ("secret", "fallbacks"),
    [("", ()), (b"", ()), (SECRET, [""]), (SECRET, [b""]), (None, ()), (SECRET, [None])],
)
def test_empty_secret_refused(secret: object, fallbacks: object) -> None:
    """An empty or missing secret key raises ValueError."""
    with pytest.raises(ValueError):
        TokenSigner(secret, fallbacks)  # type: ignore[arg-type]


@pytest.mark.parametrize("token", [None, TOKEN.encode("ascii"), 12345, ["a"], ""])
def test_non_str_token_rejected(token: object) -> None:
    """A token that is not a non-empty str raises InvalidToken."""
    _rejection(SIGNER, token)


# --- nothing leaks ---------------------------------------------------------


def _bad_tokens(clock: FakeClock) -> list[tuple[TokenSigner, str]]:
    signer = TokenSigner(SECRET, clock=clock)
    genuine = signer.issue(CLIENT)
    expired_signer = TokenSigner(SECRET, max_age=timedelta(seconds=1), clock=lambda: NOW + 5)
    tampered = genuine[:-3] + ("AAA" if not genuine.endswith("AAA") else "BBB")
    other_key = TokenSigner(NEW_SECRET, clock=clock).issue(CLIENT)
    return [
        (signer, tampered),
        (expired_signer, genuine),
        (signer, other_key),
        (signer, genuine + "."),
        (signer, "garbage-token-value"),
    ]


def test_read_errors_do_not_carry_the_token(clock: FakeClock) -> None:
    """Errors from read chain nothing and never mention the token."""
    for signer, token in _bad_tokens(clock):
        exc = _rejection(signer, token)
        assert exc.__cause__ is None
        assert exc.__context__ is None
        assert exc.__traceback__ is not None
        for text in (str(exc), repr(exc), *map(str, exc.args)):
            assert token not in text
            for part in token.split("."):
                if len(part) > 3:
                    assert part not in text


def test_expired_error_is_token_expired(clock: FakeClock) -> None:
    """An expired genuine token raises TokenExpired specifically."""
    expired_signer = TokenSigner(SECRET, max_age=timedelta(seconds=1), clock=lambda: NOW + 5)
    with pytest.raises(TokenExpired):
        expired_signer.read(TOKEN)


def test_repr_hides_secrets() -> None:
    """repr(TokenSigner) shows neither the secret nor a fallback key."""
    signer = TokenSigner(NEW_SECRET, [OLD_SECRET])
    text = repr(signer) + str(signer)
    assert NEW_SECRET not in text
    assert OLD_SECRET not in text
    assert "TokenSigner" in text
