"""Key preparation (RFC 8265 OpaqueString), the hashing around it, and the policy that reads it."""

from __future__ import annotations

import unicodedata
from typing import Any

import pytest
from passlib.context import CryptContext

from credrecovery import KeyPolicy
from credrecovery._keyprep import hash_key, verify_key
from credrecovery.keys import KEY_ALPHABET, cheap_context, generate_key, prepare_key
from credrecovery.mail.catalogue import KEY_MESSAGES, key_message
from credrecovery.models import Client
from credrecovery.policy import KEY_REASONS

COMPOSED = unicodedata.normalize("NFC", "Señor Müller's café, près de Zürich")
DECOMPOSED = unicodedata.normalize("NFD", COMPOSED)
CLIENT = Client(
    "9000",
    "ejemplo@ejemploxmundo.com.ar",
    "hash",
    domains=("ejemploxmundo.com.ar", "otro-ejemplo.com"),
)


class CountingContext(CryptContext):  # type: ignore[misc]
    """The real cheap policy, counting the verifications it runs."""

    def __init__(self) -> None:
        super().__init__(**cheap_context().to_dict())
        self.verifications = 0

    def verify_and_update(self, secret: Any, hash: Any, **kwds: Any) -> Any:
        self.verifications += 1
        return super().verify_and_update(secret, hash, **kwds)


@pytest.fixture(scope="module")
def ctx() -> CryptContext:
    return cheap_context()


# --- preparation ------------------------------------------------------------------------------


def test_both_normalization_forms_prepare_to_nfc() -> None:
    """NFD and NFC of one key prepare to the same NFC text."""
    assert prepare_key(DECOMPOSED) == prepare_key(COMPOSED) == COMPOSED


def test_non_ascii_spaces_become_plain_spaces_and_nothing_else_changes() -> None:
    """OpaqueString maps spaces only: case, width and surrounding spaces are kept."""
    assert prepare_key("a\u00a0b\u3000c\u2003d") == "a b c d"
    assert prepare_key(" Mixed Case Key ") == " Mixed Case Key "
    assert prepare_key("\uff21\uff22") == "\uff21\uff22"  # full-width letters stay full-width


def test_generated_keys_are_their_own_prepared_form() -> None:
    """Keys drawn from KEY_ALPHABET come out of preparation unchanged."""
    assert prepare_key(KEY_ALPHABET) == KEY_ALPHABET
    for _ in range(200):
        key = generate_key()
        assert prepare_key(key) == key


def test_preparation_is_idempotent() -> None:
    """A prepared key prepares to itself."""
    for key in (DECOMPOSED, "a\u00a0b", "\u2126 ohm", "\u1100\u1161 hangul"):
        assert prepare_key(prepare_key(key)) == prepare_key(key)


@pytest.mark.parametrize(
    "key",
    [
        "",
        "tab\there",
        "zero\u200bwidth",
        "over\u202eride",
        "private\ue000use",
        "unassigned\U000e0080",
        "emoji \u2764\ufe0f",
        "soft\u00adhyphen",
    ],
)
def test_refused_keys_raise_a_value_error_that_quotes_nothing(key: str) -> None:
    """A key the profile refuses raises ValueError; the message names no character of it."""
    with pytest.raises(ValueError) as excinfo:
        prepare_key(key)
    message = str(excinfo.value)
    assert message == "the key holds a character keys cannot use"
    assert excinfo.value.__cause__ is None and excinfo.value.__suppress_context__


def test_a_key_must_be_text() -> None:
    """Bytes are not a key."""
    with pytest.raises(TypeError):
        prepare_key(b"bytes key")  # type: ignore[arg-type]


# --- hashing and verification ------------------------------------------------------------------


def test_the_prepared_key_is_hashed(ctx: CryptContext) -> None:
    """hash_key hashes the prepared form: the NFC key verifies against an NFD key's hash."""
    stored = hash_key(ctx, DECOMPOSED)
    assert ctx.verify(COMPOSED, stored)
    assert not ctx.verify(DECOMPOSED, stored)
    assert verify_key(ctx, DECOMPOSED, stored) == (True, None)
    assert verify_key(ctx, COMPOSED, stored) == (True, None)
    assert verify_key(ctx, COMPOSED + "x", stored) == (False, None)


def test_an_old_hash_verifies_by_the_typed_form_and_is_upgraded(ctx: CryptContext) -> None:
    """A hash of the raw NFD key verifies when NFD is typed and gives the prepared key's hash."""
    old = ctx.hash(DECOMPOSED)
    valid, upgraded = verify_key(ctx, DECOMPOSED, old)
    assert valid and upgraded is not None
    assert ctx.verify(COMPOSED, upgraded)
    assert verify_key(ctx, COMPOSED, old) == (False, None)


def test_a_key_with_no_prepared_form_verifies_only_as_stored(ctx: CryptContext) -> None:
    """Such a key can match only a hash of itself, made before preparation; it is kept."""
    key = "emoji \u2764\ufe0f key"
    assert hash_key(ctx, key) != key
    assert verify_key(ctx, key, ctx.hash(key)) == (True, None)
    assert verify_key(ctx, key, hash_key(ctx, "emoji \u2764 key")) == (False, None)


@pytest.mark.parametrize(
    ("typed", "verifications"),
    [
        (COMPOSED + "!", 1),  # already prepared: one verification
        (DECOMPOSED + "!", 2),  # prepared form, then the typed form
        ("zero\u200bwidth key", 1),  # no prepared form: the typed form alone
    ],
)
def test_a_wrong_key_costs_what_its_own_form_decides(typed: str, verifications: int) -> None:
    """The work for a wrong key depends on what was typed, never on the account it is tried on."""
    counting = CountingContext()
    accounts = [
        counting.hash(COMPOSED),
        counting.hash("Old-Access-Key-2024"),
        counting.hash(DECOMPOSED),
        counting.hash(generate_key()),
    ]
    for stored in accounts:
        counting.verifications = 0
        assert verify_key(counting, typed, stored) == (False, None)
        assert counting.verifications == verifications


# --- the policy ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "reasons"),
    [
        ("\u200b" * 15, ("invisible",)),
        ("\u202e" * 15, ("invisible",)),
        ("\ue000" * 15, ("invisible",)),
        ("\U000e0080" * 15, ("invisible",)),
        (" " * 15, ("invisible",)),
        ("\u3000" * 15, ("invisible",)),
        ("\x00" * 15, ("bad_characters", "invisible")),
        ("a" + "\u0301" * 14, ("too_short",)),
        ("a" + "\u200b" * 14, ("too_short", "unusable_characters")),
        ("tab\tinside a long enough key", ("bad_characters",)),
        ("a long passphrase\u200b of mine", ("unusable_characters",)),
        ("I \u2764\ufe0f my hosting company", ("unusable_characters",)),
        ("my number is \uff19\uff10\uff10\uff10 ok!", ("contains_client_number",)),
        ("\uff25\uff2a\uff25\uff2d\uff30\uff2c\uff2f is my name, ok", ("contains_email",)),
        ("my host: EJEMPLOXMUNDO", ("contains_email", "contains_domain")),
        ("", ("too_short",)),
    ],
    ids=[
        "zero-width",
        "override",
        "private-use",
        "unassigned",
        "spaces",
        "ideographic-spaces",
        "nulls",
        "marks",
        "zero-width-padding",
        "tab",
        "hidden-inside",
        "emoji-selector",
        "full-width-number",
        "full-width-local-part",
        "domain-in-capitals",
        "empty",
    ],
)
def test_reasons(key: str, reasons: tuple[str, ...]) -> None:
    """Each key is refused for exactly these reasons."""
    assert KeyPolicy().reasons(key, CLIENT) == reasons


def test_length_counts_what_a_person_sees() -> None:
    """Marks drawn over a letter do not count, in either form; spacing marks and spaces do."""
    policy = KeyPolicy()
    for form in ("NFC", "NFD"):
        assert policy.reasons(unicodedata.normalize(form, "é" * 15), CLIENT) == ()
        assert policy.reasons(unicodedata.normalize(form, "é" * 14), CLIENT) == ("too_short",)
    # q + combining ring (no precomposed form): one character a person sees.
    assert policy.reasons("q\u030a" * 14, CLIENT) == ("too_short",)
    assert policy.reasons("q\u030a" * 15, CLIENT) == ()
    # Devanagari KA + VOWEL SIGN I (Mc, spacing): both take a place on the line.
    assert policy.reasons("\u0915\u093f" * 8, CLIENT) == ()
    assert policy.reasons("fifteen chars..", CLIENT) == ()
    assert policy.reasons("a b c d e f g h", CLIENT) == ()


def test_the_maximum_counts_every_code_point() -> None:
    """Marks cannot pad a key past the maximum, even as they do not count toward the minimum."""
    assert KeyPolicy().reasons("a" + "\u0301" * 200, CLIENT) == ("too_short", "too_long")


def test_the_breached_check_gets_the_prepared_key() -> None:
    """The host's callable sees the form that is hashed: NFC, plain spaces."""
    seen: list[str] = []

    def breached(key: str) -> bool:
        seen.append(key)
        return False

    policy = KeyPolicy(breached=breached)
    assert policy.reasons(DECOMPOSED + "\u00a0ok", CLIENT) == ()
    assert seen == [COMPOSED + " ok"]
    assert policy.reasons("\u200b" * 20, CLIENT) == ("invisible",)
    assert len(seen) == 1


def test_the_new_reasons_have_messages_in_every_shipped_language() -> None:
    """invisible and unusable_characters have English texts and Spanish translations."""
    assert set(KEY_MESSAGES) == set(KEY_REASONS)
    for code in ("invisible", "unusable_characters"):
        english = key_message([code], "en")
        spanish = key_message([code], "es")
        assert english == KEY_MESSAGES[code]
        assert spanish != english and spanish.startswith("La clave")
