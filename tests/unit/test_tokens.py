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

from credrecovery import InvalidToken, TokenExpired
from credrecovery.models import Client
from credrecovery.tokens import _SALT, MAX_CLOCK_SKEW_SECONDS, TokenSigner, account_binding
from helpers import SECRET, FakeClock

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
    """A token stamped well after now is InvalidToken, not TokenExpired."""
    signer = TokenSigner(SECRET, clock=clock)
    clock.advance(600)
    token = signer.issue(CLIENT)
    clock.advance(-600)
    assert not isinstance(_rejection(signer, token), TokenExpired)


def test_clock_skew_allowance_is_a_minute() -> None:
    """The documented allowance for a signer whose clock runs ahead is 60 seconds."""
    assert MAX_CLOCK_SKEW_SECONDS == 60


def test_token_from_a_clock_up_to_a_minute_ahead_verifies(clock: FakeClock) -> None:
    """A token stamped up to 60 s ahead of the reader's clock reads, with its own stamp."""
    reader = TokenSigner(SECRET, clock=clock)
    for ahead in (1, 30, 60):
        token = TokenSigner(SECRET, clock=lambda a=ahead: clock() + a).issue(CLIENT)
        claims = reader.read(token)
        assert claims.number == "9000"
        assert claims.issued_at == clock() + ahead


def test_token_beyond_the_skew_allowance_is_invalid_not_expired(clock: FakeClock) -> None:
    """A token stamped 61 s ahead is InvalidToken, never TokenExpired, and chains nothing."""
    token = TokenSigner(SECRET, clock=lambda: clock() + 61).issue(CLIENT)
    exc = _rejection(TokenSigner(SECRET, clock=clock), token)
    assert type(exc) is InvalidToken
    assert exc.__cause__ is None
    assert exc.__context__ is None


def test_skewed_token_expires_max_age_after_its_stamp(clock: FakeClock) -> None:
    """A token stamped 60 s ahead still expires max_age after its own stamp."""
    token = TokenSigner(SECRET, clock=lambda: clock() + 60).issue(CLIENT)
    reader = TokenSigner(SECRET, max_age=timedelta(hours=1), clock=clock)
    clock.advance(3660)
    assert reader.read(token).number == "9000"
    clock.advance(1)
    with pytest.raises(TokenExpired):
        reader.read(token)


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
        other = itsdangerous.TimestampSigner(SECRET, salt=salt, digest_method=hashlib.sha256)
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
    [
        ("", ()),
        (b"", ()),
        (SECRET, [""]),
        (SECRET, [b""]),
        (SECRET, ""),
        (SECRET, b""),
        (SECRET, [OLD_SECRET, ""]),
    ],
)
def test_empty_secret_refused(secret: object, fallbacks: object) -> None:
    """An empty secret key, signing or fallback, raises ValueError."""
    with pytest.raises(ValueError):
        TokenSigner(secret, fallbacks)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("secret", "fallbacks"),
    [
        (None, ()),
        (12345, ()),
        ([SECRET], ()),
        (bytearray(b"k" * 32), ()),
        (SECRET, None),
        (SECRET, 12345),
        (SECRET, [None]),
        (SECRET, [OLD_SECRET, 7]),
        (SECRET, [[OLD_SECRET]]),
        (SECRET, bytearray(b"k" * 32)),
    ],
)
def test_wrongly_typed_secret_refused(secret: object, fallbacks: object) -> None:
    """A key that is not str or bytes, or fallbacks neither that nor an iterable, is TypeError."""
    with pytest.raises(TypeError) as info:
        TokenSigner(secret, fallbacks)  # type: ignore[arg-type]
    assert OLD_SECRET not in str(info.value)
    assert SECRET not in str(info.value)


@pytest.mark.parametrize("fallback", [OLD_SECRET, OLD_SECRET.encode()])
def test_a_str_or_bytes_fallback_is_one_key(fallback: str | bytes) -> None:
    """fallback_secret_keys="old-secret" is that one key, never one key per character."""
    rotated = TokenSigner(NEW_SECRET, fallback, clock=_fixed_clock)
    single_char = OLD_SECRET[0]
    _rejection(rotated, TokenSigner(single_char, clock=_fixed_clock).issue(CLIENT))
    for char in set(OLD_SECRET):
        _rejection(rotated, TokenSigner(char, clock=_fixed_clock).issue(CLIENT))
    token = TokenSigner(OLD_SECRET, clock=_fixed_clock).issue(CLIENT)
    assert rotated.read(token).number == "9000"


def test_fallbacks_from_any_iterable() -> None:
    """Fallback keys may come as a tuple, a generator or a mix of str and bytes."""
    token = TokenSigner(OLD_SECRET, clock=_fixed_clock).issue(CLIENT)
    for fallbacks in ((OLD_SECRET,), (k for k in [OLD_SECRET]), [b"other-key", OLD_SECRET]):
        assert TokenSigner(NEW_SECRET, fallbacks, clock=_fixed_clock).read(token).number == "9000"


@pytest.mark.parametrize("token", [None, TOKEN.encode("ascii"), 12345, ["a"], ""])
def test_non_str_token_rejected(token: object) -> None:
    """A token that is not a non-empty str raises InvalidToken."""
    _rejection(SIGNER, token)


# --- issuing from a binding ------------------------------------------------


def test_issue_for_is_issue_byte_for_byte(clock: FakeClock) -> None:
    """issue(client) and issue_for(number, binding) give the same token at the same time."""
    binding = account_binding(CLIENT)
    assert SIGNER.issue_for(CLIENT.number, binding) == TOKEN
    assert SIGNER.issue_for(CLIENT.number, binding, issued_at=NOW) == TOKEN
    clock.now = NOW + 999
    later = TokenSigner(SECRET, clock=clock)
    assert later.issue_for(CLIENT.number, binding, issued_at=NOW) == TOKEN
    assert later.issue_for(CLIENT.number, binding, issued_at=NOW + 0.75) == TOKEN
    assert later.issue(CLIENT) == later.issue_for(CLIENT.number, binding)
    assert later.issue(CLIENT) != TOKEN


def test_issue_for_stamps_the_given_time(clock: FakeClock) -> None:
    """A token issued later for an earlier request carries, and expires from, that time."""
    requested_at = clock()
    clock.advance(600)
    signer = TokenSigner(SECRET, max_age=timedelta(hours=1), clock=clock)
    token = signer.issue_for(CLIENT.number, account_binding(CLIENT), issued_at=requested_at)
    claims = signer.read(token)
    assert claims.issued_at == requested_at
    assert claims.matches(CLIENT)
    clock.advance(3000)
    assert signer.read(token).number == "9000"
    clock.advance(1)
    with pytest.raises(TokenExpired):
        signer.read(token)


@pytest.mark.parametrize("issued_at", [-1.0, float("nan"), float("inf"), float("-inf"), 2.0**64])
def test_issue_for_refuses_an_impossible_time(issued_at: float) -> None:
    """A negative, non-finite or out-of-range issued_at raises ValueError."""
    with pytest.raises(ValueError):
        SIGNER.issue_for(CLIENT.number, account_binding(CLIENT), issued_at=issued_at)


@pytest.mark.parametrize(
    ("number", "binding", "issued_at"),
    [
        (9000, "b" * 22, None),
        ("9000", None, None),
        ("9000", "b" * 22, "1800000000"),
        ("9000", "b" * 22, True),
    ],
)
def test_issue_for_refuses_wrong_types(number: object, binding: object, issued_at: object) -> None:
    """A number or binding that is not a str, or an issued_at that is not a number, is TypeError."""
    with pytest.raises(TypeError):
        SIGNER.issue_for(number, binding, issued_at=issued_at)  # type: ignore[arg-type]


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
