"""The exceptions: the data they carry, pickling, and the catalogue of form messages."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po, write_po

from credrecovery import (
    DeliveryFailed,
    DirectoryError,
    InvalidCode,
    InvalidIdentifier,
    InvalidToken,
    KeyRejected,
    RateLimited,
    RecoveryError,
    RecoveryService,
    TokenAlreadyUsed,
    TokenExpired,
)
from credrecovery.i18n import PACKAGED_CATALOGS
from credrecovery.memory import MemoryMailer
from credrecovery.models import Client
from credrecovery.policy import KEY_REASONS
from credrecovery.tokens import TokenSigner, account_binding
from helpers import ROOT, SECRET, FakeClock, token_from

CLIENT = Client(
    number="9000",
    email="ejemplo@ejemploxmundo.com.ar",
    key_hash="$argon2id$v=19$m=8,t=1,p=1$c2FsdA$aGFzaA",
    name="Ana Example",
)
# Mid-second on purpose: a stamp keeps the whole second only.
SIGNED = 1_800_000_000.75
SIGNED_AT = datetime(2027, 1, 15, 8, 0, tzinfo=UTC)


def _expired(signer: TokenSigner, token: str) -> TokenExpired:
    with pytest.raises(TokenExpired) as info:
        signer.read(token)
    return info.value


def _secret_free(error: Exception, token: str) -> None:
    parts = [token, SECRET, *(part for part in token.split(".") if len(part) > 4)]
    shown = [str(error), repr(error), pickle.dumps(error).decode("latin-1")]
    assert not [part for part in parts for text in shown if part in text]


# --- TokenExpired says when ----------------------------------------------------


def test_expired_token_carries_when_it_was_signed_and_when_it_expired() -> None:
    """issued_at is the signer's clock at signing, to the second, in UTC; expired_at max_age on."""
    clock = FakeClock(SIGNED)
    signer = TokenSigner(SECRET, max_age=timedelta(minutes=30), clock=clock)
    token = signer.issue(CLIENT)
    clock.advance(1801)
    error = _expired(signer, token)
    assert error.issued_at == datetime.fromtimestamp(1_800_000_000, UTC)
    assert error.issued_at is not None and error.issued_at.utcoffset() == timedelta(0)
    assert error.expired_at == error.issued_at + timedelta(minutes=30)
    assert str(error) == "the confirmation link has expired"
    _secret_free(error, token)


def test_expired_token_signed_later_carries_its_stamp() -> None:
    """A link signed by delivery at a later time carries the stamp it was given, the request's."""
    clock = FakeClock(SIGNED + 7200)
    signer = TokenSigner(SECRET, clock=clock)
    token = signer.issue_for(
        CLIENT.number, account_binding(CLIENT), issued_at=SIGNED_AT.timestamp()
    )
    error = _expired(signer, token)
    assert error.issued_at == SIGNED_AT
    assert error.expired_at == SIGNED_AT + timedelta(hours=1)


@pytest.mark.shells("sync", "async")
def test_service_check_and_confirm_raise_expired_with_the_request_time(
    make_service: Callable[..., RecoveryService],
    mailer: MemoryMailer,
    clock: FakeClock,
) -> None:
    """Through either service, both check and confirm give the token's own times."""
    service = make_service()
    clock.now = SIGNED
    service.request("client_number", "9000")
    token = token_from(mailer.outbox[-1])
    clock.advance(3601)
    for attempt in (service.check, service.confirm):
        with pytest.raises(TokenExpired) as info:
            attempt(token)
        assert info.value.issued_at == datetime.fromtimestamp(1_800_000_000, UTC)
        assert info.value.expired_at == info.value.issued_at + timedelta(hours=1)
        _secret_free(info.value, token)


def test_constructors_stay_compatible() -> None:
    """Errors a host builds by hand, as before, still build; the new fields default to None."""
    assert str(TokenExpired()) == ""
    bare = TokenExpired("the confirmation link has expired")
    assert (bare.issued_at, bare.expired_at) == (None, None)
    assert isinstance(bare, InvalidToken)
    assert RateLimited("per_requester", 30.0).retry_after == 30.0
    assert KeyRejected(("too_short",)).reasons == ("too_short",)
    assert DeliveryFailed("down", temporary=False).temporary is False
    assert DirectoryError(sqlstate="23505").sqlstate == "23505"
    assert InvalidIdentifier(code="empty").code == "empty"


# --- pickling --------------------------------------------------------------


ERRORS = [
    TokenExpired(
        "the confirmation link has expired",
        issued_at=SIGNED_AT,
        expired_at=SIGNED_AT + timedelta(hours=1),
    ),
    TokenExpired(),
    InvalidToken("the confirmation link is not valid"),
    TokenAlreadyUsed("this confirmation link was already used"),
    InvalidCode("the code is not valid"),
    KeyRejected(("too_short", "breached")),
    KeyRejected(("too_short",), "La clave es demasiado corta."),
    InvalidIdentifier(kind="domain", code="bad_domain"),
    InvalidIdentifier("Use the panel's number.", code="not_text"),
    RateLimited("failed_confirmations", 42.5),
    DeliveryFailed("refused", temporary=False, smtp_code=550, enhanced_code="5.1.1"),
    DirectoryError(sqlstate="23505", constraint="clients_email_key"),
]


@pytest.mark.parametrize("error", ERRORS, ids=lambda error: type(error).__name__)
def test_errors_pickle_with_their_data(error: RecoveryError) -> None:
    """An error crossing processes (a task queue's result) keeps its type, message and data."""
    for protocol in range(2, pickle.HIGHEST_PROTOCOL + 1):
        restored = pickle.loads(pickle.dumps(error, protocol))
        assert type(restored) is type(error)
        assert restored.args == error.args
        assert str(restored) == str(error)
        assert vars(restored) == vars(error)
        assert restored.http_status == error.http_status


# --- the catalogue of form messages ---------------------------------------------


def test_old_import_paths_reach_the_catalogue() -> None:
    """The names moved beside the catalogs and still import from credrecovery.exceptions."""
    from credrecovery.exceptions import IDENTIFIER_MESSAGES, KEY_MESSAGES, N_
    from credrecovery.mail import catalogue

    assert IDENTIFIER_MESSAGES is catalogue.IDENTIFIER_MESSAGES
    assert KEY_MESSAGES is catalogue.KEY_MESSAGES
    assert N_("Type a value.") == "Type a value."
    assert set(KEY_MESSAGES) == set(KEY_REASONS)


def test_key_refusal_in_a_second_language() -> None:
    """message_in gives a refusal's reasons in Spanish, English for an unknown language."""
    error = KeyRejected(("too_short", "breached", "house_rule"))
    assert error.message_in("es-AR") == (
        "La clave es demasiado corta. "
        "Esta clave apareció en una filtración de datos. Elija otra. house_rule"
    )
    assert error.message_in("de") == str(error)
    assert InvalidIdentifier(code="empty").message_in("es") == "Escriba un valor."


def test_key_refusal_in_a_hosts_language(tmp_path: Path) -> None:
    """A host's catalog adds a language to key refusals, as it does to the mails."""
    catalog = Catalog(locale="pt_BR", domain="credrecovery")
    catalog.add("The key is too short.", "A chave é curta demais.")
    directory = tmp_path / "pt_BR" / "LC_MESSAGES"
    directory.mkdir(parents=True)
    with (directory / "credrecovery.po").open("wb") as stream:
        write_po(stream, catalog)
    error = KeyRejected(("too_short",))
    assert error.message_in("pt-BR", tmp_path) == "A chave é curta demais."
    assert error.message_in("pt-BR") == "The key is too short."


def test_every_form_message_is_extracted_and_translated() -> None:
    """pybabel, mapped by babel.cfg, finds each form message; the packaged catalogs have them."""
    from credrecovery.exceptions import IDENTIFIER_MESSAGES, KEY_MESSAGES

    with (ROOT / "babel.cfg").open() as stream:
        method_map, options_map = parse_mapping_cfg(stream)
    python_only = [(pattern, method) for pattern, method in method_map if method == "python"]
    extracted = {message for _, _, message, *_ in extract_from_dir(ROOT, python_only, options_map)}
    with (PACKAGED_CATALOGS / "es" / "LC_MESSAGES" / "credrecovery.po").open("rb") as stream:
        spanish = read_po(stream)
    with (PACKAGED_CATALOGS / "credrecovery.pot").open("rb") as stream:
        template = read_po(stream)
    for text in [*IDENTIFIER_MESSAGES.values(), *KEY_MESSAGES.values()]:
        assert text in extracted
        assert template.get(text) is not None
        entry = spanish.get(text)
        assert entry is not None and entry.string and not entry.fuzzy
