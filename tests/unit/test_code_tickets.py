"""Code tickets and codes (credrecovery.codes): shape, signature, expiry, typing, and jobs."""

from __future__ import annotations

import collections
import json
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from itsdangerous.encoding import base64_decode

from credrecovery import ConfirmationJob, InvalidCode, TokenExpired
from credrecovery.codes import (
    CODE_ALPHABET,
    CODE_LENGTH,
    CodeSigner,
    format_code,
    normalize_code,
)
from helpers import FakeClock
from helpers.properties import examples

KEY = "test-secret-key-0123456789abcdef"
NONCE = "hk0jlyofYsrS-6a5YOea1g"
BINDING = "c2FtZSBiaW5kaW5nIGZvciB0ZXN0cw"


@pytest.fixture
def signer(clock: FakeClock) -> CodeSigner:
    return CodeSigner(KEY, clock=clock)


def test_the_alphabet_has_no_look_alikes_and_no_vowels() -> None:
    """25 symbols, none of 0 O 1 I 2 Z 8 B, nor a vowel: no code spells a word."""
    assert len(set(CODE_ALPHABET)) == len(CODE_ALPHABET) == 25
    assert not set(CODE_ALPHABET) & set("0O1I2Z8BAEU")
    assert CODE_LENGTH == 8


@pytest.mark.parametrize(
    "typed, expected",
    [
        ("WDJH-MJHT", "WDJHMJHT"),
        ("wdjh mjht", "WDJHMJHT"),
        ("  wDjH\u2013mJhT ", "WDJHMJHT"),
        ("W D J H M J H T", "WDJHMJHT"),
        ("wdjhmjht", "WDJHMJHT"),
        ("WDJH\u2212MJHT", "WDJHMJHT"),
        ("WDJH-MJH", None),
        ("WDJH-MJHTT", None),
        ("WDJH-MJH0", None),
        ("WDJH_MJHT", None),
        ("", None),
        (None, None),
        (12345678, None),
        ("W" * 65, None),
        ("ẞDJH-MJHT", None),
    ],
)
def test_normalize_code(typed: object, expected: str | None) -> None:
    """Case, spaces and dashes are dropped; anything else off the alphabet is no code."""
    assert normalize_code(typed) == expected


def test_format_code() -> None:
    assert format_code("WDJHMJHT") == "WDJH-MJHT"


def test_a_ticket_reads_back_and_hides_its_value_in_reprs(
    signer: CodeSigner, clock: FakeClock
) -> None:
    """The claims are what was issued; their repr shows neither the value nor the nonce."""
    ticket = signer.issue("email", "ana@example.com", NONCE)
    claims = signer.read(ticket)
    assert (claims.kind, claims.value, claims.nonce) == ("email", "ana@example.com", NONCE)
    assert claims.issued_at == int(clock.now)
    assert "ana@example.com" not in repr(claims) and NONCE not in repr(claims)
    assert repr(signer) == "CodeSigner(max_age=datetime.timedelta(seconds=900))"
    payload = json.loads(base64_decode(ticket.split(".")[0]))
    assert payload == ["email", "ana@example.com", NONCE]


def test_a_tickets_length_depends_on_what_was_typed_alone(signer: CodeSigner) -> None:
    """Any nonce, any second: one length for one typed value."""
    lengths = {
        len(signer.issue("domain", "ejemploxmundo.com.ar", CodeSigner.new_nonce()))
        for _ in range(50)
    }
    assert len(lengths) == 1


def test_tickets_expire_and_a_stamp_far_ahead_is_forged(
    signer: CodeSigner, clock: FakeClock
) -> None:
    """Past max_age: TokenExpired with its times; more than a minute ahead: InvalidCode."""
    ticket = signer.issue("domain", "example.com", NONCE)
    clock.advance(15 * 60)
    signer.read(ticket)
    clock.advance(1)
    with pytest.raises(TokenExpired) as caught:
        signer.read(ticket)
    assert caught.value.expired_at is not None and caught.value.issued_at is not None
    assert caught.value.expired_at - caught.value.issued_at == timedelta(minutes=15)
    ahead = FakeClock(clock.now + 61)
    early = CodeSigner(KEY, clock=ahead).issue("domain", "example.com", NONCE)
    with pytest.raises(InvalidCode):
        signer.read(early)
    ahead.now = clock.now + 59
    signer.read(CodeSigner(KEY, clock=ahead).issue("domain", "example.com", NONCE))


def test_codes_are_eight_symbols_spread_over_the_alphabet(signer: CodeSigner) -> None:
    """Deterministic for a nonce and a binding; every symbol turns up at every place."""
    assert signer.code(NONCE, BINDING) == signer.code(NONCE, BINDING)
    assert signer.code(NONCE, BINDING) != signer.code(NONCE, BINDING + "x")
    places: list[collections.Counter[str]] = [collections.Counter() for _ in range(CODE_LENGTH)]
    for n in range(2000):
        code = signer.code(f"nonce-{n}", BINDING)
        assert len(code) == CODE_LENGTH and set(code) <= set(CODE_ALPHABET)
        for place, symbol in zip(places, code, strict=True):
            place[symbol] += 1
    for place in places:
        assert set(place) == set(CODE_ALPHABET)
        assert max(place.values()) < 2 * min(place.values())


def test_codes_follow_the_key_rotation(clock: FakeClock) -> None:
    """The newest key makes the mail's code; a fallback's code still matches."""
    old = CodeSigner("an-old-key-0123456789abcdef0123456", clock=clock)
    new = CodeSigner(KEY, ["an-old-key-0123456789abcdef0123456"], clock=clock)
    assert new.code(NONCE, BINDING) != old.code(NONCE, BINDING)
    assert new.candidates(NONCE, BINDING) == (new.code(NONCE, BINDING), old.code(NONCE, BINDING))
    new.read(old.issue("domain", "example.com", NONCE))


@settings(max_examples=examples(300), deadline=None)
@given(position=st.integers(0, 200), replacement=st.characters(), extra=st.text(max_size=4))
def test_any_tampered_ticket_is_invalid(position: int, replacement: str, extra: str) -> None:
    """Changing one character, or adding some, gives InvalidCode: never claims, never expiry."""
    signer = CodeSigner(KEY, clock=FakeClock())
    ticket = signer.issue("domain", "ejemploxmundo.com.ar", NONCE)
    position %= len(ticket)
    if replacement == ticket[position]:
        replacement = "A" if ticket[position] != "A" else "B"
    for forged in (ticket[:position] + replacement + ticket[position + 1 :], ticket + extra + "x"):
        with pytest.raises(InvalidCode):
            signer.read(forged)


@settings(max_examples=examples(200), deadline=None)
@given(st.one_of(st.text(max_size=300), st.binary(max_size=50), st.integers(), st.none()))
def test_anything_else_is_an_invalid_ticket(value: object) -> None:
    with pytest.raises(InvalidCode):
        CodeSigner(KEY, clock=FakeClock()).read(value)


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="code_max_age"):
        CodeSigner(KEY, max_age=timedelta(seconds=-1))
    with pytest.raises(TypeError):
        CodeSigner(1234)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        CodeSigner("")


# --- code jobs ----------------------------------------------------------------------------


def _job(nonce: str = "") -> ConfirmationJob:
    return ConfirmationJob(
        recipient="ana@example.com",
        name="Ana",
        language="es",
        sender="panel@example.com",
        clients=(("9000", BINDING),),
        issued_at=1_800_000_000.0,
        nonce=nonce,
    )


def test_a_code_job_is_version_two_and_round_trips() -> None:
    """A link job keeps version 1 and no nonce; a code job is version 2 with it."""
    link = _job()
    assert link.to_dict()["v"] == 1 and "nonce" not in link.to_dict()
    assert ConfirmationJob.from_dict(link.to_dict()) == link
    code = _job(NONCE)
    assert code.to_dict()["v"] == 2 and code.to_dict()["nonce"] == NONCE
    assert ConfirmationJob.from_dict(code.to_dict()) == code
    assert NONCE not in repr(code)
    for broken in (
        {**code.to_dict(), "nonce": ""},
        {**code.to_dict(), "nonce": 5},
        {k: v for k, v in code.to_dict().items() if k != "nonce"},
        {**code.to_dict(), "v": 3},
    ):
        with pytest.raises(ValueError):
            ConfirmationJob.from_dict(broken)
