"""Normalization and validation of the three recovery identifiers."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from credrecovery import IdentifierKind, InvalidIdentifier, RecoveryError, normalize_identifier

pytestmark = pytest.mark.shells("sync", "async")

KINDS = list(IdentifierKind)
KIND_VALUES = ["domain", "client_number", "email"]
CLIENT_NUMBER = re.compile(r"[A-Za-z0-9_-]{1,32}")


# --- domains ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("münchen.de", "xn--mnchen-3ya.de"),
        ("MÜNCHEN.DE", "xn--mnchen-3ya.de"),
        ("München.De.", "xn--mnchen-3ya.de"),
        ("xn--mnchen-3ya.de", "xn--mnchen-3ya.de"),
        ("EjemploXMundo.COM.ar", "ejemploxmundo.com.ar"),
        ("example.com.", "example.com"),
        ("  example.com  ", "example.com"),
        ("example.com\u3002", "example.com"),
        ("example.com\uff0e", "example.com"),
    ],
)
def test_domain_normalized_to_lowercase_a_label(raw: str, expected: str) -> None:
    """Domains become lower-case IDNA A-labels without a trailing dot."""
    assert normalize_identifier(IdentifierKind.DOMAIN, raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "localhost",
        "-bad-.com",
        "exa mple.com",
        "a_b.com",
        "example..com",
        "example.com..",
        "http://example.com",
        "example.com/path",
        "@example.com",
        "a" * 64 + ".com",
        ("a" * 62 + ".") * 4 + "com",
    ],
)
def test_malformed_domain_refused(raw: str) -> None:
    """Malformed, single-label or over-long domains raise InvalidIdentifier."""
    with pytest.raises(InvalidIdentifier) as info:
        normalize_identifier("domain", raw)
    assert info.value.kind == "domain"


# --- emails ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Ana.Example@Ejemplo.COM", "ana.example@ejemplo.com"),
        ("EJEMPLO@EJEMPLOXMUNDO.COM.AR", "ejemplo@ejemploxmundo.com.ar"),
        ("  ana@example.com ", "ana@example.com"),
        ("JOSÉ@Ejemplo.com", "josé@ejemplo.com"),
        ("Jose@MÜNCHEN.de", "jose@münchen.de"),
        ("jose@xn--mnchen-3ya.de", "jose@münchen.de"),
    ],
)
def test_email_lowercased_whole(raw: str, expected: str) -> None:
    """Emails are syntax-checked and lower-cased, local part included."""
    assert normalize_identifier(IdentifierKind.EMAIL, raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "no-at-sign",
        "a@",
        "@example.com",
        "a@@example.com",
        "a b@example.com",
        "a@b",
        "Ana <ana@example.com>",
        "ana@example..com",
    ],
)
def test_malformed_email_refused(raw: str) -> None:
    """Email syntax errors raise InvalidIdentifier."""
    with pytest.raises(InvalidIdentifier) as info:
        normalize_identifier("email", raw)
    assert info.value.kind == "email"


# --- client numbers --------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("9000", "9000"),
        ("  9000 ", "9000"),
        ("\t9000\t", "9000"),
        ("AB-12_x", "AB-12_x"),
        ("a" * 32, "a" * 32),
        ("7", "7"),
    ],
)
def test_client_number_stripped_and_kept(raw: str, expected: str) -> None:
    """Client numbers are stripped and otherwise kept as typed."""
    assert normalize_identifier(IdentifierKind.CLIENT_NUMBER, raw) == expected


@pytest.mark.parametrize(
    "raw", ["a" * 33, "12.3", "9 000", "90/00", "\u0661\u0662\u0663", "n\u00famero", "#9000"]
)
def test_malformed_client_number_refused(raw: str) -> None:
    """Client numbers outside 1-32 of [A-Za-z0-9_-] raise InvalidIdentifier."""
    with pytest.raises(InvalidIdentifier) as info:
        normalize_identifier("client_number", raw)
    assert info.value.kind == "client_number"


# --- kinds -----------------------------------------------------------------


def test_identifier_kind_values() -> None:
    """IdentifierKind values are the strings a form posts."""
    assert {k.value for k in IdentifierKind} == set(KIND_VALUES)
    assert IdentifierKind.DOMAIN == "domain"
    assert IdentifierKind.CLIENT_NUMBER == "client_number"
    assert IdentifierKind.EMAIL == "email"


@pytest.mark.parametrize(
    ("kind", "raw"),
    [("domain", "Example.COM"), ("client_number", " 9000 "), ("email", "A@Example.com")],
)
def test_plain_string_kind_same_as_enum(kind: str, raw: str) -> None:
    """A plain-string kind normalizes exactly like its IdentifierKind member."""
    assert normalize_identifier(kind, raw) == normalize_identifier(IdentifierKind(kind), raw)


@pytest.mark.parametrize("kind", ["phone", "", "DOMAIN", "Email", None, 3])
def test_unknown_kind_refused(kind: object) -> None:
    """An unknown kind raises InvalidIdentifier with kind None."""
    with pytest.raises(InvalidIdentifier) as info:
        normalize_identifier(kind, "example.com")  # type: ignore[arg-type]
    assert info.value.kind is None


# --- refusals shared by all kinds ------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("raw", ["", "   ", "\t"])
def test_empty_value_refused(kind: IdentifierKind, raw: str) -> None:
    """Empty or blank values raise InvalidIdentifier."""
    with pytest.raises(InvalidIdentifier):
        normalize_identifier(kind, raw)


@pytest.mark.parametrize(
    ("kind", "raw"),
    [
        (IdentifierKind.DOMAIN, "example.com\r\n"),
        (IdentifierKind.DOMAIN, "example.com\x00"),
        (IdentifierKind.EMAIL, "a@example.com\nBcc: x@evil.com"),
        (IdentifierKind.EMAIL, "a@example.com\r"),
        (IdentifierKind.EMAIL, "a\x00@example.com"),
        (IdentifierKind.CLIENT_NUMBER, "9000\n"),
        (IdentifierKind.CLIENT_NUMBER, "90\r00"),
        (IdentifierKind.CLIENT_NUMBER, "9000\x00"),
    ],
)
def test_line_breaks_and_nul_refused(kind: IdentifierKind, raw: str) -> None:
    """CR, LF and NUL are refused even where stripping would remove them."""
    with pytest.raises(InvalidIdentifier):
        normalize_identifier(kind, raw)


@pytest.mark.parametrize("kind", KINDS)
def test_over_long_value_refused(kind: IdentifierKind) -> None:
    """Values over the input bound raise InvalidIdentifier."""
    raw = {
        IdentifierKind.DOMAIN: "a." * 200 + "com",
        IdentifierKind.EMAIL: "a" * 400 + "@example.com",
        IdentifierKind.CLIENT_NUMBER: " " * 400 + "9000",
    }[kind]
    with pytest.raises(InvalidIdentifier):
        normalize_identifier(kind, raw)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("raw", [None, b"example.com", 9000])
def test_non_text_value_refused(kind: IdentifierKind, raw: object) -> None:
    """Values that are not str raise InvalidIdentifier."""
    with pytest.raises(InvalidIdentifier):
        normalize_identifier(kind, raw)  # type: ignore[arg-type]


def test_invalid_identifier_is_value_error_and_recovery_error() -> None:
    """InvalidIdentifier is caught both as ValueError and as RecoveryError."""
    with pytest.raises(ValueError):
        normalize_identifier("email", "nope")
    with pytest.raises(RecoveryError):
        normalize_identifier("email", "nope")
    assert issubclass(InvalidIdentifier, ValueError)
    assert issubclass(InvalidIdentifier, RecoveryError)


@pytest.mark.parametrize(
    ("kind", "raw"),
    [
        ("domain", "secretvalue-zq_x.invalid-"),
        ("email", "secretvalue-zq x@example.com"),
        ("client_number", "secretvalue-zq.x"),
        ("domain", "secretvalue-zq\n.com"),
        ("phone", "secretvalue-zq"),
        ("email", "secretvalue-zq" * 30),
    ],
)
def test_error_message_does_not_echo_value(kind: str, raw: str) -> None:
    """The InvalidIdentifier message never repeats the submitted value."""
    with pytest.raises(InvalidIdentifier) as info:
        normalize_identifier(kind, raw)
    assert "secretvalue" not in str(info.value)
    assert "secretvalue" not in repr(info.value)
    assert str(info.value)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    "raw",
    [
        "a" * 1_000_000,
        "a." * 500_000,
        "a" * 999_988 + "@example.com",
        "\u00fc" * 1_000_000,
        " " * 1_000_000,
    ],
)
def test_megabyte_value_refused_quickly(kind: IdentifierKind, raw: str) -> None:
    """A 1 MB value is refused in well under 0.1 s, before any parser runs."""
    start = time.perf_counter()
    with pytest.raises(InvalidIdentifier):
        normalize_identifier(kind, raw)
    assert time.perf_counter() - start < 0.1


# --- properties ------------------------------------------------------------

_label = st.text(
    st.characters(categories=["Ll", "Lu", "Lo", "Nd"]) | st.just("-"), min_size=1, max_size=12
)
_domains = st.lists(_label, min_size=2, max_size=4).map(".".join)
_local = st.text(
    st.characters(categories=["Ll", "Lu", "Lo", "Nd"]) | st.sampled_from(".+-_"),
    min_size=1,
    max_size=20,
)
_emails = st.builds(lambda local, domain: f"{local}@{domain}", _local, _domains)
_numbers = st.from_regex(r"\s*[A-Za-z0-9_-]{1,40}\s*", fullmatch=True)
_by_kind = {
    IdentifierKind.DOMAIN: _domains
    | _domains.map(str.upper)
    | _domains.map(lambda d: d + ".")
    | _domains.map(lambda d: d + "\u3002"),
    IdentifierKind.EMAIL: _emails | _emails.map(str.upper),
    IdentifierKind.CLIENT_NUMBER: _numbers,
}
_values = st.text() | _domains | _emails | _numbers


@st.composite
def _kind_and_value(draw: st.DrawFn) -> tuple[IdentifierKind, str]:
    kind = draw(st.sampled_from(KINDS))
    return kind, draw(_by_kind[kind] | st.text())


@settings(max_examples=200, deadline=None)
@given(_kind_and_value())
@example((IdentifierKind.EMAIL, "\u03ab\u0300@0.A"))  # lowercases to a string that is not NFC
def test_normalize_is_idempotent(case: tuple[IdentifierKind, str]) -> None:
    """Normalizing an already normalized value returns it unchanged."""
    kind, value = case
    try:
        once = normalize_identifier(kind, value)
    except InvalidIdentifier:
        return
    assert normalize_identifier(kind, once) == once
    assert normalize_identifier(kind.value, once) == once
    assert once == once.strip()
    if kind is IdentifierKind.DOMAIN:
        assert once.isascii()
        assert once == once.lower()
        assert not once.endswith(".")
    elif kind is IdentifierKind.EMAIL:
        assert once == once.lower()
    else:
        assert CLIENT_NUMBER.fullmatch(once)


@settings(max_examples=200, deadline=None)
@given(kind=st.sampled_from([*KINDS, *KIND_VALUES]) | st.text(max_size=20), value=_values)
def test_only_invalid_identifier_escapes(kind: str, value: str) -> None:
    """Arbitrary text never raises anything but InvalidIdentifier."""
    try:
        result = normalize_identifier(kind, value)
    except InvalidIdentifier as exc:
        assert isinstance(exc, ValueError)
        return
    assert isinstance(result, str)
    assert result


# --- codes and languages ----------------------------------------------------------------------

_CODE_CASES = [
    ("colour", "example.com", "unknown_kind", None),
    ("domain", 42, "not_text", "domain"),
    ("email", "a" * 400 + "@example.com", "too_long", "email"),
    ("client_number", "90\r\n00", "bad_characters", "client_number"),
    ("domain", "exa\x00mple.com", "bad_characters", "domain"),
    ("email", "   ", "empty", "email"),
    ("domain", "localhost", "bad_domain", "domain"),
    ("domain", "-bad-.com", "bad_domain", "domain"),
    ("email", "not-an-address", "bad_email", "email"),
    ("client_number", "90 00", "bad_client_number", "client_number"),
]

_SPANISH = {
    "unknown_kind": "Elija un nombre de dominio, un número de cliente o una dirección de correo.",
    "not_text": "El valor debe ser texto.",
    "too_long": "El valor es demasiado largo.",
    "bad_characters": "El valor contiene un salto de línea o un carácter nulo.",
    "empty": "Escriba un valor.",
    "bad_domain": "Este no es un nombre de dominio válido.",
    "bad_email": "Esta no es una dirección de correo válida.",
    "bad_client_number": "Un número de cliente tiene de 1 a 32 letras, dígitos, '-' o '_'.",
}


@pytest.mark.parametrize(("kind", "value", "code", "kind_attr"), _CODE_CASES)
def test_every_refusal_has_a_code(
    kind: str, value: object, code: str, kind_attr: str | None
) -> None:
    """Each case says what is wrong in ``code``; the message stays English by default."""
    with pytest.raises(InvalidIdentifier) as info:
        normalize_identifier(kind, value)  # type: ignore[arg-type]
    assert info.value.code == code
    assert info.value.kind == kind_attr
    assert str(info.value) == info.value.message_in("en")
    assert str(info.value).isascii()


@pytest.mark.parametrize(("kind", "value", "code", "kind_attr"), _CODE_CASES)
def test_message_in_another_language(
    kind: str, value: object, code: str, kind_attr: str | None
) -> None:
    """message_in gives the message in a panel's language: es, es-AR, or English otherwise."""
    with pytest.raises(InvalidIdentifier) as info:
        normalize_identifier(kind, value)  # type: ignore[arg-type]
    assert info.value.message_in("es") == _SPANISH[code]
    assert info.value.message_in("es-AR") == _SPANISH[code]
    assert info.value.message_in("de") == str(info.value)
    assert info.value.message_in(None) == str(info.value)


def test_every_code_has_a_spanish_message() -> None:
    """The Spanish catalog covers every code the library raises."""
    from credrecovery.exceptions import IDENTIFIER_MESSAGES

    assert set(IDENTIFIER_MESSAGES) == set(_SPANISH)
    for code in IDENTIFIER_MESSAGES:
        assert InvalidIdentifier(code=code).message_in("es") == _SPANISH[code]


def test_the_old_constructor_still_works() -> None:
    """A host's own InvalidIdentifier(message, kind=...) keeps its text, with code "invalid"."""
    error = InvalidIdentifier("Use the panel's number.", kind="client_number")
    assert str(error) == "Use the panel's number."
    assert error.kind == "client_number"
    assert error.code == "invalid"
    assert error.message_in("es") == "Use the panel's number."


def test_a_host_catalog_translates_the_messages(tmp_path: Path) -> None:
    """message_in(language, catalogs=...) reads a host's catalog, as the service does."""
    from babel.messages.catalog import Catalog
    from babel.messages.pofile import write_po

    catalog = Catalog(locale="pt_BR", domain="credrecovery")
    catalog.add("Type a value.", "Digite um valor.")
    target = tmp_path / "pt_BR" / "LC_MESSAGES"
    target.mkdir(parents=True)
    with (target / "credrecovery.po").open("wb") as stream:
        write_po(stream, catalog)
    error = InvalidIdentifier(code="empty")
    assert error.message_in("pt-BR", tmp_path) == "Digite um valor."
    assert error.message_in("pt-BR") == "Type a value."


@pytest.mark.parametrize(
    ("locale", "expected"),
    [
        ("es", "Este no es un nombre de dominio válido."),
        ("es_MX", "Este no es un nombre de dominio válido."),
        ("en", "This is not a valid domain name."),
    ],
)
def test_the_service_raises_in_its_own_language(
    make_service: Callable[..., Any], locale: str, expected: str
) -> None:
    """A service with locale="es" raises Spanish messages; the code and kind stay."""
    service = make_service(locale=locale)
    with pytest.raises(InvalidIdentifier) as info:
        service.request("domain", "localhost")
    assert str(info.value) == expected
    assert info.value.code == "bad_domain"
    assert info.value.kind == "domain"
    assert info.value.message_in("en") == "This is not a valid domain name."
    with pytest.raises(InvalidIdentifier) as kind_info:
        service.request("colour", "blue")
    assert kind_info.value.code == "unknown_kind"
    assert str(kind_info.value) == InvalidIdentifier(code="unknown_kind").message_in(locale)
