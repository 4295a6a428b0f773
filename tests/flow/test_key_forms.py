"""Keys in any Unicode form, prepared (RFC 8265 OpaqueString) before checks, hashing, sign-in.

Through the real services, both shells: a chosen key signs in whichever
normalization form it is typed in, the policy refuses what a person cannot
see, and hashes stored before preparation keep signing in and are upgraded.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from typing import Any

import pytest
from passlib.context import CryptContext

from credrecovery import KeyRejected
from credrecovery.identifiers import IdentifierKind
from credrecovery.keys import prepare_key
from credrecovery.memory import MemoryDirectory, MemoryMailer
from credrecovery.models import Client
from helpers import OLD_KEY, token_from

pytestmark = pytest.mark.shells("sync", "async")

MakeService = Callable[..., Any]
NUMBER = "9000"
# "Señor Müller's café, près de Zürich": every accent in it composes.
COMPOSED = unicodedata.normalize("NFC", "Señor Müller's café, près de Zürich")
DECOMPOSED = unicodedata.normalize("NFD", COMPOSED)


def _link(service: Any, mailer: MemoryMailer) -> str:
    service.request("client_number", NUMBER)
    return token_from(mailer.outbox[-1])


def _stored(directory: MemoryDirectory, number: str = NUMBER) -> Client:
    client = directory.find(IdentifierKind.CLIENT_NUMBER, number)
    assert client is not None
    return client


def test_the_two_forms_differ() -> None:
    """The fixture keys are really two different strings of one key."""
    assert COMPOSED != DECOMPOSED
    assert len(DECOMPOSED) > len(COMPOSED)


@pytest.mark.parametrize(
    ("chosen", "typed"),
    [(COMPOSED, DECOMPOSED), (DECOMPOSED, COMPOSED)],
    ids=["nfc-then-nfd", "nfd-then-nfc"],
)
def test_a_chosen_key_signs_in_typed_in_the_other_form(
    make_service: MakeService,
    mailer: MemoryMailer,
    directory: MemoryDirectory,
    ctx: CryptContext,
    chosen: str,
    typed: str,
) -> None:
    """confirm(new_key=NFC) signs in with NFD, and NFD with NFC; the prepared key is stored."""
    service = make_service(key_mode="choose").service
    assert service.confirm(_link(service, mailer), new_key=chosen).number == NUMBER
    assert ctx.verify(COMPOSED, _stored(directory).key_hash)
    assert service.authenticate(NUMBER, typed) is not None
    assert service.authenticate(NUMBER, chosen) is not None
    assert service.authenticate(NUMBER, OLD_KEY) is None
    assert service.authenticate(NUMBER, COMPOSED.upper()) is None  # letters keep their case


@pytest.mark.parametrize(
    ("chosen", "typed"),
    [(COMPOSED, DECOMPOSED), (DECOMPOSED, COMPOSED)],
    ids=["nfc-then-nfd", "nfd-then-nfc"],
)
def test_change_key_takes_either_form_both_ways(
    make_service: MakeService,
    directory: MemoryDirectory,
    chosen: str,
    typed: str,
) -> None:
    """A key set by change_key() in one form signs in and changes again in the other."""
    service = make_service(key_mode="choose").service
    assert service.change_key(NUMBER, OLD_KEY, chosen) is not None
    assert service.authenticate(NUMBER, typed) is not None
    # The current key, typed in the other form, is accepted to change it again.
    assert service.change_key(NUMBER, typed, "another long passphrase, plain") is not None
    assert service.authenticate(NUMBER, "another long passphrase, plain") is not None
    assert service.authenticate(NUMBER, chosen) is None


def test_a_no_break_space_reads_as_a_space(make_service: MakeService) -> None:
    """OpaqueString maps every non-ASCII space to U+0020: a key typed with either signs in."""
    service = make_service(key_mode="choose").service
    assert service.change_key(NUMBER, OLD_KEY, "lunes\u00a0martes miércoles") is not None
    assert service.authenticate(NUMBER, "lunes martes miércoles") is not None
    assert service.authenticate(NUMBER, "lunes\u3000martes miércoles") is not None


def test_an_old_hash_of_a_decomposed_key_verifies_and_is_upgraded(
    make_service: MakeService,
    directory: MemoryDirectory,
    ctx: CryptContext,
) -> None:
    """A hash made of the key as typed, before preparation, verifies by that form, once.

    The successful sign-in stores the hash of the prepared key, after which
    both forms sign in.
    """
    old_hash = ctx.hash(DECOMPOSED)  # how a chosen key was stored before
    directory.add_client("7100", "old@example.com", key_hash=old_hash)
    service = make_service()
    assert service.authenticate("7100", COMPOSED) is None  # the old hash knows one form
    assert _stored(directory, "7100").key_hash == old_hash
    assert service.authenticate("7100", DECOMPOSED) is not None
    upgraded = _stored(directory, "7100").key_hash
    assert upgraded != old_hash
    assert ctx.verify(COMPOSED, upgraded) and not ctx.verify(DECOMPOSED, upgraded)
    assert service.authenticate("7100", COMPOSED) is not None
    assert service.authenticate("7100", DECOMPOSED) is not None
    assert _stored(directory, "7100").key_hash == upgraded


def test_an_old_bcrypt_hash_of_a_decomposed_key_moves_to_the_current_scheme(
    make_service: MakeService,
    directory: MemoryDirectory,
    ctx: CryptContext,
) -> None:
    """A bcrypt hash of the typed form gives way to an argon2 hash of the prepared key."""
    directory.add_client(
        "7200", "older@example.com", key_hash=ctx.handler("bcrypt").hash(DECOMPOSED)
    )
    service = make_service()
    assert service.authenticate("7200", DECOMPOSED) is not None
    upgraded = _stored(directory, "7200").key_hash
    assert upgraded.startswith("$argon2") and ctx.verify(COMPOSED, upgraded)


def test_an_old_key_the_preparation_refuses_still_signs_in(
    make_service: MakeService,
    directory: MemoryDirectory,
    ctx: CryptContext,
) -> None:
    """An emoji with its variation selector was a valid chosen key; its hash keeps working.

    Only the key exactly as stored signs in; it is not rehashed, having no
    prepared form, and the policy refuses it as a new key.
    """
    emoji_key = "I \u2764\ufe0f my hosting company"
    with pytest.raises(ValueError):
        prepare_key(emoji_key)
    old_hash = ctx.hash(emoji_key)
    directory.add_client("7300", "emoji@example.com", key_hash=old_hash)
    service = make_service(key_mode="choose").service
    assert service.authenticate("7300", emoji_key) is not None
    assert service.authenticate("7300", "I \u2764 my hosting company") is None
    assert _stored(directory, "7300").key_hash == old_hash
    with pytest.raises(KeyRejected) as excinfo:
        service.change_key("7300", emoji_key, emoji_key)
    assert excinfo.value.reasons == ("unusable_characters",)


@pytest.mark.parametrize(
    "key",
    ["\u200b" * 15, "a\u202eb" * 5, "\x00" * 3, ""],
    ids=["zero-width", "override", "nulls", "empty"],
)
def test_a_key_the_preparation_refuses_is_a_wrong_key_at_sign_in(
    service: Any,
    directory: MemoryDirectory,
    key: str,
) -> None:
    """authenticate() answers None for a key with no prepared form, and changes nothing."""
    before = _stored(directory).key_hash
    assert service.authenticate(NUMBER, key) is None
    assert service.authenticate("9999", key) is None
    assert _stored(directory).key_hash == before


def test_add_client_stores_the_prepared_key(
    make_service: MakeService,
    directory: MemoryDirectory,
    ctx: CryptContext,
) -> None:
    """A key a host adds in NFD is hashed prepared: it signs in in both forms from the start."""
    directory.add_client("7400", "new@example.com", key=DECOMPOSED)
    assert ctx.verify(COMPOSED, _stored(directory, "7400").key_hash)
    service = make_service()
    assert service.authenticate("7400", COMPOSED) is not None
    assert service.authenticate("7400", DECOMPOSED) is not None


@pytest.mark.parametrize(
    ("key", "reasons"),
    [
        ("\u200b" * 15, ("invisible",)),
        ("\u202e" * 15, ("invisible",)),
        ("\ue000" * 15, ("invisible",)),
        (" " * 15, ("invisible",)),
        ("a" + "\u0301" * 14, ("too_short",)),
        ("a long passphrase\u200b of mine", ("unusable_characters",)),
        ("my number is \uff19\uff10\uff10\uff10 ok!", ("contains_client_number",)),
    ],
    ids=[
        "zero-width",
        "override",
        "private-use",
        "spaces",
        "marks",
        "hidden-inside",
        "full-width-number",
    ],
)
def test_the_policy_refuses_what_a_person_cannot_see(
    make_service: MakeService,
    mailer: MemoryMailer,
    directory: MemoryDirectory,
    key: str,
    reasons: tuple[str, ...],
) -> None:
    """confirm() refuses these keys with their reasons; the link still takes a good key."""
    service = make_service(key_mode="choose").service
    token = _link(service, mailer)
    before = _stored(directory).key_hash
    with pytest.raises(KeyRejected) as excinfo:
        service.confirm(token, new_key=key)
    assert excinfo.value.reasons == reasons
    assert _stored(directory).key_hash == before
    assert service.confirm(token, new_key=COMPOSED).number == NUMBER


def test_length_counts_alike_in_both_forms(make_service: MakeService) -> None:
    """15 accented letters pass in NFC and in NFD; 14 fail in both."""
    service = make_service(key_mode="choose").service
    for form in ("NFC", "NFD"):
        with pytest.raises(KeyRejected) as excinfo:
            service.change_key(NUMBER, OLD_KEY, unicodedata.normalize(form, "é" * 14))
        assert excinfo.value.reasons == ("too_short",)
    assert service.change_key(NUMBER, OLD_KEY, unicodedata.normalize("NFD", "é" * 15)) is not None
    assert service.authenticate(NUMBER, "é" * 15) is not None


def test_the_new_refusals_come_in_spanish(make_service: MakeService) -> None:
    """A Spanish service words the new reasons in Spanish; message_in gives English."""
    service = make_service(key_mode="choose", locale="es").service
    with pytest.raises(KeyRejected) as excinfo:
        service.change_key(NUMBER, OLD_KEY, " " * 20)
    assert str(excinfo.value) == (
        "La clave no tiene nada visible: solo espacios o caracteres invisibles."
    )
    assert excinfo.value.message_in("en") == (
        "The key has nothing visible in it: only spaces or invisible characters."
    )
    with pytest.raises(KeyRejected) as excinfo:
        service.change_key(NUMBER, OLD_KEY, "una clave larga\u200b y mía")
    assert str(excinfo.value).startswith(
        "La clave contiene un carácter que no puede usarse en una clave"
    )
