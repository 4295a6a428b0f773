"""Recovery by a typed code: request_code, check_code and confirm_code, end to end."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from passlib.context import CryptContext

from credrecovery import (
    DeliveryFailed,
    IdentifierKind,
    InvalidCode,
    InvalidToken,
    TokenAlreadyUsed,
    TokenExpired,
)
from credrecovery.codes import CODE_ALPHABET, MAX_CODE_ATTEMPTS
from credrecovery.memory import MemoryDirectory, MemoryMailer
from helpers import OLD_KEY, FakeClock, code_from, key_from, token_from
from helpers.properties import examples

pytestmark = [pytest.mark.shells("sync", "async"), pytest.mark.key_modes("generate", "choose")]

MakeService = Callable[..., Any]
NUMBER = "9000"
DOMAIN = "ejemploxmundo.com.ar"
# As long as DOMAIN, and nobody's.
UNKNOWN = "ejemploxmundo.com.uy"


def _text(message: Any) -> str:
    return str(message.get_body(("plain",)).get_content())


def _wrong(code: str) -> str:
    """Another code of the same shape."""
    first = CODE_ALPHABET[(CODE_ALPHABET.index(code[0]) + 1) % len(CODE_ALPHABET)]
    return first + code[1:]


def _stored_hash(directory: MemoryDirectory) -> str:
    client = directory.find(IdentifierKind.CLIENT_NUMBER, NUMBER)
    assert client is not None
    return client.key_hash


# --- the flow ----------------------------------------------------------------------------


def test_a_typed_code_recovers_the_account(
    make_service: MakeService,
    mailer: MemoryMailer,
    key_mode: str,
) -> None:
    """The code mailed to the primary address checks, then confirms: the new key signs in."""
    service = make_service()
    ticket = service.request_code("domain", DOMAIN)
    assert isinstance(ticket, str)
    mail = mailer.outbox[-1]
    assert mail["To"].addresses[0].addr_spec == "ejemplo@ejemploxmundo.com.ar"
    code = code_from(mail)
    assert re.fullmatch(rf"[{CODE_ALPHABET}]{{4}}-[{CODE_ALPHABET}]{{4}}", code)
    assert "/recover/" not in _text(mail)
    checked = service.check_code(ticket, code)
    assert (checked.number, checked.email) == (NUMBER, "ejemplo@ejemploxmundo.com.ar")
    assert service.authenticate(NUMBER, OLD_KEY) is not None  # checking changed nothing
    confirmed = service.confirm_code(ticket, code)
    assert confirmed == checked
    key = key_from(mailer.outbox[-1])
    assert service.authenticate(NUMBER, key) is not None
    assert service.authenticate(NUMBER, OLD_KEY) is None
    promise = (
        "To choose a new access key"
        if key_mode == "choose"
        else "To get your client number and a new access key"
    )
    assert promise in _text(mail)


@pytest.mark.parametrize(
    "kind, value", [("client_number", NUMBER), ("email", "EJEMPLO@ejemploxmundo.com.ar")]
)
def test_every_kind_of_identifier_gets_a_code(
    make_service: MakeService,
    mailer: MemoryMailer,
    kind: str,
    value: str,
) -> None:
    """The ticket names the client however it was asked for; the value is normalized."""
    service = make_service()
    ticket = service.request_code(kind, value)
    assert service.check_code(ticket, code_from(mailer.outbox[-1])).number == NUMBER


def test_typing_is_forgiving(make_service: MakeService, mailer: MemoryMailer) -> None:
    """Case, spaces and dashes of any kind do not matter; another shape is a wrong code."""
    service = make_service()
    ticket = service.request_code("domain", DOMAIN)
    code = code_from(mailer.outbox[-1])
    plain = code.replace("-", "")
    for typed in (
        code.lower(),
        plain,
        f" {plain[:4]} {plain[4:]} ",
        f"{plain[:4]}\u2013{plain[4:]}",
        " ".join(plain),
        code.lower().replace("-", " - "),
    ):
        assert service.check_code(ticket, typed).number == NUMBER
    for typed in ("", plain[:7], plain + "C", "0" + plain[1:], "código", code + "\n" * 100):
        with pytest.raises(InvalidCode):
            service.check_code(ticket, typed)


def test_the_ticket_of_a_miss_is_a_hits_twin(
    make_service: MakeService,
    mailer: MemoryMailer,
) -> None:
    """A miss returns a ticket of the same length and mails nothing; every code on it,
    the real code of a hit included, is refused exactly as a wrong code is."""
    service = make_service()
    hit = service.request_code("domain", DOMAIN)
    code = code_from(mailer.outbox[-1])
    sent = len(mailer.outbox)
    miss = service.request_code("domain", UNKNOWN)
    assert len(mailer.outbox) == sent
    assert len(miss) == len(hit)
    errors = []
    for ticket, typed in ((miss, code), (miss, _wrong(code)), (hit, _wrong(code))):
        with pytest.raises(InvalidToken) as caught:
            service.check_code(ticket, typed)
        errors.append((type(caught.value), str(caught.value), caught.value.http_status))
    assert len(set(errors)) == 1
    assert errors[0][0] is InvalidCode


def test_a_code_of_another_ticket_is_refused(
    make_service: MakeService,
    mailer: MemoryMailer,
) -> None:
    """Each request has codes of its own: one ticket's code is wrong for another."""
    service = make_service()
    first = service.request_code("domain", DOMAIN)
    first_code = code_from(mailer.outbox[-1])
    second = service.request_code("domain", DOMAIN)
    second_code = code_from(mailer.outbox[-1])
    assert first_code != second_code
    with pytest.raises(InvalidCode):
        service.check_code(second, first_code)
    assert service.check_code(first, first_code).number == NUMBER
    assert service.check_code(second, second_code).number == NUMBER


# --- attempts ----------------------------------------------------------------------------


def test_the_third_wrong_code_kills_the_ticket(
    make_service: MakeService,
    mailer: MemoryMailer,
) -> None:
    """After three wrong codes even the right one is refused; a new request starts afresh."""
    assert MAX_CODE_ATTEMPTS == 3
    service = make_service()
    ticket = service.request_code("domain", DOMAIN)
    code = code_from(mailer.outbox[-1])
    for _ in range(3):
        with pytest.raises(InvalidCode):
            service.check_code(ticket, _wrong(code))
    for call in (service.check_code, service.confirm_code):
        with pytest.raises(InvalidCode) as caught:
            call(ticket, code)
        assert str(caught.value) == "the code is not valid"
    assert service.authenticate(NUMBER, OLD_KEY) is not None
    fresh = service.request_code("domain", DOMAIN)
    assert service.check_code(fresh, code_from(mailer.outbox[-1])).number == NUMBER


def test_right_codes_spend_no_attempt(make_service: MakeService, mailer: MemoryMailer) -> None:
    """Checking the right code any number of times, then two typos, still confirms."""
    service = make_service()
    ticket = service.request_code("domain", DOMAIN)
    code = code_from(mailer.outbox[-1])
    for _ in range(5):
        service.check_code(ticket, code)
    for _ in range(2):
        with pytest.raises(InvalidCode):
            service.check_code(ticket, _wrong(code))
    assert service.confirm_code(ticket, code).number == NUMBER


def test_rate_limits_off_still_count_attempts(
    make_service: MakeService,
    mailer: MemoryMailer,
) -> None:
    """rate_limits=None turns the limits off, never the attempts a ticket has."""
    service = make_service(rate_limits=None)
    ticket = service.request_code("domain", DOMAIN)
    code = code_from(mailer.outbox[-1])
    for _ in range(3):
        with pytest.raises(InvalidCode):
            service.check_code(ticket, _wrong(code))
    with pytest.raises(InvalidCode):
        service.check_code(ticket, code)


# --- expiry ------------------------------------------------------------------------------


def test_codes_expire_after_fifteen_minutes_by_default(
    make_service: MakeService,
    mailer: MemoryMailer,
    clock: FakeClock,
) -> None:
    """The mail says 15 minutes; a second past them the ticket is TokenExpired."""
    service = make_service()
    ticket = service.request_code("domain", DOMAIN)
    mail = mailer.outbox[-1]
    assert "expires in 15 minutes" in _text(mail)
    code = code_from(mail)
    clock.advance(15 * 60)
    assert service.check_code(ticket, code).number == NUMBER
    clock.advance(1)
    for typed in (code, _wrong(code)):
        with pytest.raises(TokenExpired) as caught:
            service.check_code(ticket, typed)
        assert caught.value.expired_at is not None
    assert service.authenticate(NUMBER, OLD_KEY) is not None


def test_code_max_age_is_configurable(
    make_service: MakeService,
    mailer: MemoryMailer,
    clock: FakeClock,
) -> None:
    """code_max_age sets the codes' life and the mail's wording; links keep theirs."""
    service = make_service(code_max_age=timedelta(minutes=3))
    ticket = service.request_code("domain", DOMAIN)
    code = code_from(mailer.outbox[-1])
    assert "expires in 3 minutes" in _text(mailer.outbox[-1])
    service.request("domain", DOMAIN)
    token = token_from(mailer.outbox[-1])
    clock.advance(3 * 60 + 1)
    with pytest.raises(TokenExpired):
        service.confirm_code(ticket, code)
    assert service.check(token).number == NUMBER
    with pytest.raises(ValueError, match="code_max_age"):
        make_service(code_max_age=timedelta(0))


# --- single use ----------------------------------------------------------------------------


def test_a_confirmed_code_kills_every_other_code_and_link(
    make_service: MakeService,
    mailer: MemoryMailer,
) -> None:
    """The new key changes the binding: earlier links, other tickets and this code all die."""
    service = make_service()
    service.request("domain", DOMAIN)
    token = token_from(mailer.outbox[-1])
    other = service.request_code("domain", DOMAIN)
    other_code = code_from(mailer.outbox[-1])
    ticket = service.request_code("client_number", NUMBER)
    code = code_from(mailer.outbox[-1])
    service.confirm_code(ticket, code)
    with pytest.raises(TokenAlreadyUsed):
        service.check(token)
    for pair in ((other, other_code), (ticket, code)):
        with pytest.raises(InvalidCode):
            service.check_code(*pair)
    with pytest.raises(InvalidCode):
        service.confirm_code(ticket, code)


def test_a_confirmed_link_kills_the_codes(
    make_service: MakeService,
    mailer: MemoryMailer,
) -> None:
    """Whichever way the key was replaced, the codes mailed before are dead."""
    service = make_service()
    ticket = service.request_code("domain", DOMAIN)
    code = code_from(mailer.outbox[-1])
    service.request("domain", DOMAIN)
    service.confirm(token_from(mailer.outbox[-1]))
    with pytest.raises(InvalidCode):
        service.confirm_code(ticket, code)


def test_concurrent_confirmations_of_one_code_rotate_once(
    make_service: MakeService,
    mailer: MemoryMailer,
    directory: MemoryDirectory,
    ctx: CryptContext,
) -> None:
    """Of eight threads confirming one code, one wins; the others get InvalidCode."""
    service = make_service()
    ticket = service.request_code("domain", DOMAIN)
    code = code_from(mailer.outbox[-1])
    sent = len(mailer.outbox)
    barrier = threading.Barrier(8)
    outcomes: list[object] = []
    lock = threading.Lock()

    def confirm() -> None:
        barrier.wait(10)
        try:
            result: object = service.confirm_code(ticket, code)
        except InvalidCode as exc:
            result = exc
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=confirm) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    wins = [o for o in outcomes if not isinstance(o, InvalidCode)]
    assert len(outcomes) == 8 and len(wins) == 1
    assert len(mailer.outbox) == sent + 1
    assert ctx.verify(key_from(mailer.outbox[-1]), _stored_hash(directory))


# --- the second mail fails ------------------------------------------------------------------


class FlakyMailer(MemoryMailer):
    """Sends until ``fail`` is set, then refuses every mail as a temporary failure."""

    fail = False

    def send(self, message: Any) -> None:
        if self.fail:
            raise DeliveryFailed("the server is down", temporary=True)
        super().send(message)


def test_a_failed_credentials_mail_leaves_the_code_working(
    make_service: MakeService,
    directory: MemoryDirectory,
) -> None:
    """The previous key is put back, DeliveryFailed raised, and the same code confirms later."""
    flaky = FlakyMailer()
    service = make_service(mailer=flaky)
    ticket = service.request_code("domain", DOMAIN)
    code = code_from(flaky.outbox[-1])
    before = _stored_hash(directory)
    flaky.fail = True
    for _ in range(MAX_CODE_ATTEMPTS + 1):
        with pytest.raises(DeliveryFailed) as caught:
            service.confirm_code(ticket, code)
        assert "nothing was changed" in str(caught.value)
    assert _stored_hash(directory) == before
    flaky.fail = False
    assert service.confirm_code(ticket, code).number == NUMBER
    assert service.authenticate(NUMBER, key_from(flaky.outbox[-1])) is not None


# --- shared addresses ----------------------------------------------------------------------


def test_a_shared_address_gets_one_code_per_client(
    make_service: MakeService,
    mailer: MemoryMailer,
    directory: MemoryDirectory,
) -> None:
    """One mail lists each client number with a code of its own; each code rotates its client."""
    shared = "agencia@ejemploxmundo.com.ar"
    for number in ("9101", "9102"):
        directory.add_client(number, shared, key=f"Key-Of-Client-{number}")
    service = make_service()
    ticket = service.request_code("email", shared)
    mail = mailer.outbox[-1]
    text = _text(mail)
    codes = dict(re.findall(r"Client number (\d+):\n(\S+)", text))
    assert set(codes) == {"9101", "9102"}
    assert codes["9101"] != codes["9102"]
    assert service.check_code(ticket, codes["9102"]).number == "9102"
    assert service.confirm_code(ticket, codes["9101"]).number == "9101"
    assert service.authenticate("9102", "Key-Of-Client-9102") is not None
    # 9102's binding did not change: its code still confirms.
    assert service.confirm_code(ticket, codes["9102"]).number == "9102"


# --- signing-key rotation ----------------------------------------------------------------


def test_codes_survive_a_signing_key_rotation(
    make_service: MakeService,
    mailer: MemoryMailer,
) -> None:
    """A ticket and code made under the old key confirm on a service that only verifies it."""
    old = make_service(secret_key="an-old-secret-key-0123456789abcdef")
    ticket = old.request_code("domain", DOMAIN)
    code = code_from(mailer.outbox[-1])
    new = make_service(
        secret_key="a-new-secret-key-0123456789abcdef!",
        fallback_secret_keys=["an-old-secret-key-0123456789abcdef"],
    )
    assert new.check_code(ticket, code).number == NUMBER
    stranger = make_service(secret_key="a-new-secret-key-0123456789abcdef!")
    with pytest.raises(InvalidCode):
        stranger.check_code(ticket, code)


# --- a tampered ticket ---------------------------------------------------------------------


@settings(
    max_examples=examples(40),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    position=st.integers(0, 10_000), replacement=st.characters(codec="utf-8"), cut=st.integers(0, 3)
)
def test_a_tampered_ticket_is_refused_even_with_the_right_code(
    make_service: MakeService,
    mailer: MemoryMailer,
    position: int,
    replacement: str,
    cut: int,
) -> None:
    """Any changed, cut or lengthened ticket is InvalidCode, whatever code comes with it."""
    service = make_service()
    ticket = service.request_code("domain", DOMAIN)
    code = code_from(mailer.outbox[-1])
    position %= len(ticket)
    if replacement == ticket[position]:
        replacement = "A" if ticket[position] != "A" else "B"
    forged = ticket[:position] + replacement + ticket[position + 1 :]
    for candidate in (forged, ticket[: len(ticket) - cut - 1], ticket + replacement * (cut + 1)):
        with pytest.raises(InvalidCode):
            service.check_code(candidate, code)
    assert service.check_code(ticket, code).number == NUMBER
