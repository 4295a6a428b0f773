"""The confirmation and credentials mails: headers, languages, content and injection."""

from __future__ import annotations

import email
import email.parser
import email.policy
import email.utils
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import parsedate_to_datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from passlib.context import CryptContext

from credrecovery import (
    Client,
    IdentifierKind,
    InvalidToken,
    RecoveryService,
    cheap_context,
)
from credrecovery.i18n import PACKAGED_CATALOGS, available_languages, negotiate
from credrecovery.memory import MemoryDirectory, MemoryMailer
from credrecovery.messages import confirmation_message, credentials_message
from helpers import CONFIRM_URL, SENDER, FakeClock, key_from, token_from
from helpers.properties import examples

pytestmark = pytest.mark.shells("sync", "async")

PRIMARY = "ejemplo@ejemploxmundo.com.ar"
NOW = datetime(2027, 1, 15, 12, 0, tzinfo=UTC)
RECIPIENT_HEADERS = ("cc", "bcc", "resent-to", "resent-cc", "resent-bcc", "reply-to")
_CHEAP = cheap_context()
EN_CONFIRM_SUBJECT = "Confirm your client panel recovery request"
ES_CONFIRM_SUBJECT = "Confirme su pedido de recuperación de acceso"
EN_CREDENTIALS_SUBJECT = "Your client panel access details"
ES_CREDENTIALS_SUBJECT = "Sus datos de acceso al panel de clientes"


def _plain(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert part is not None
    return part.get_content()


def _html(message: EmailMessage) -> str:
    part = message.get_body(("html",))
    assert part is not None
    return part.get_content()


def _reparse(message: EmailMessage) -> EmailMessage:
    parsed = email.message_from_bytes(message.as_bytes(), policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def _assert_only_primary_recipient(message: EmailMessage, primary: str) -> None:
    parsed = _reparse(message)
    assert len(parsed.keys()) == len(message.keys())
    assert [k.lower() for k, _ in parsed.items()] == [k.lower() for k, _ in message.items()]
    assert parsed.get_all("To") is not None
    assert len(parsed.get_all("To")) == 1
    addresses = parsed["To"].addresses
    assert [a.addr_spec for a in addresses] == [primary]
    for name in RECIPIENT_HEADERS:
        assert parsed.get_all(name) is None, name
    for part in parsed.walk():
        if part is not parsed:
            assert part.get_all("To") is None
            assert part.get_all("Bcc") is None


def _confirmation(mailer: MemoryMailer, service: RecoveryService) -> EmailMessage:
    service.request("client_number", "9000")
    assert len(mailer.outbox) == 1
    return mailer.outbox[0]


def _credentials(mailer: MemoryMailer, service: RecoveryService) -> EmailMessage:
    service.request("client_number", "9000")
    service.confirm(token_from(mailer.outbox[0]))
    assert len(mailer.outbox) == 2
    return mailer.outbox[1]


# --- headers and structure -------------------------------------------------


@pytest.mark.parametrize("which", ["confirmation", "credentials"])
def test_headers_and_alternatives(
    which: str, service: RecoveryService, mailer: MemoryMailer, clock: FakeClock
) -> None:
    """Both mails come From the sender, To the primary only, dated, with text and HTML."""
    build = _confirmation if which == "confirmation" else _credentials
    message = build(mailer, service)
    assert message["From"] == SENDER
    assert [a.addr_spec for a in message["To"].addresses] == [PRIMARY]
    assert message["Subject"]
    assert message["Message-ID"]
    assert message["Message-ID"].startswith("<") and message["Message-ID"].endswith(">")
    assert parsedate_to_datetime(message["Date"]).timestamp() == clock.now
    assert message.get_content_type() == "multipart/alternative"
    types = [part.get_content_type() for part in message.iter_parts()]
    assert types == ["text/plain", "text/html"]
    _assert_only_primary_recipient(message, PRIMARY)


def test_message_ids_unique(service: RecoveryService, mailer: MemoryMailer) -> None:
    """Each mail gets its own Message-ID."""
    for _ in range(3):
        service.request("client_number", "9000")
    ids = {m["Message-ID"] for m in mailer.outbox}
    assert len(ids) == 3


# --- content ---------------------------------------------------------------


def test_confirmation_content_english(service: RecoveryService, mailer: MemoryMailer) -> None:
    """The confirmation mail has the link, the expiry and what to do if not requested."""
    message = _confirmation(mailer, service)
    assert message["Subject"] == EN_CONFIRM_SUBJECT
    text = _plain(message)
    token = token_from(message)
    link = CONFIRM_URL.replace("{token}", token)
    assert link in text
    assert f'href="{link}"' in _html(message)
    assert "expires in 1 hour" in text
    assert "UTC" in text
    assert "If you did not ask for this, ignore this message" in text
    assert "Hello Ana Example," in text


def test_confirmation_expiry_follows_max_age(
    make_service: Callable[..., RecoveryService], mailer: MemoryMailer
) -> None:
    """The expiry wording reflects token_max_age."""
    service = make_service(token_max_age=timedelta(days=1, hours=2, minutes=30))
    message = _confirmation(mailer, service)
    assert "expires in 1 day, 2 hours, and 30 minutes" in _plain(message)


def test_credentials_content_english(service: RecoveryService, mailer: MemoryMailer) -> None:
    """The credentials mail has the number, the new key and what the change means."""
    message = _credentials(mailer, service)
    assert message["Subject"] == EN_CREDENTIALS_SUBJECT
    text = _plain(message)
    key = key_from(message)
    assert "Client number: 9000" in text
    assert f"Access key:\n{key}\n" in text
    assert "previous access key no longer works" in text
    assert "If you did not ask for this" in text
    assert "contact support" in text
    html_text = _html(message)
    assert key in html_text
    assert "9000" in html_text


def _client_with_locale(directory: MemoryDirectory, locale: str | None) -> None:
    directory.add_client(
        "5150", "locale@example.com", key="Some-Key-ABCDEFG", locale=locale, name="Eva"
    )


@pytest.mark.parametrize(
    ("client_locale", "service_locale", "spanish"),
    [
        ("es_AR", "en", True),
        ("es-AR", "en", True),
        ("es", "en", True),
        ("ES_ar.UTF-8", "en", True),
        (None, "es", True),
        ("", "es_MX", True),
        ("fr_FR", "es", True),
        ("en_US", "es", False),
        ("fr", "de", False),
        (None, "en", False),
        ("zz", "xx", False),
    ],
)
def test_language_choice(
    make_service: Callable[..., RecoveryService],
    directory: MemoryDirectory,
    mailer: MemoryMailer,
    client_locale: str | None,
    service_locale: str,
    spanish: bool,
) -> None:
    """The client's locale picks the language, else the service's, else English."""
    _client_with_locale(directory, client_locale)
    service = make_service(locale=service_locale)
    service.request("email", "locale@example.com")
    confirm = mailer.outbox[0]
    service.confirm(token_from(confirm))
    credentials = mailer.outbox[1]
    if spanish:
        assert confirm["Subject"] == ES_CONFIRM_SUBJECT
        assert "Hola, Eva:" in _plain(confirm)
        assert "vence en 1 hora" in _plain(confirm)
        assert "Si usted no hizo este pedido" in _plain(confirm)
        assert credentials["Subject"] == ES_CREDENTIALS_SUBJECT
        assert "Número de cliente: 5150" in _plain(credentials)
        assert "Su clave anterior ya no funciona" in _plain(credentials)
        assert key_from(credentials) in _plain(credentials)
    else:
        assert confirm["Subject"] == EN_CONFIRM_SUBJECT
        assert "Hello Eva," in _plain(confirm)
        assert credentials["Subject"] == EN_CREDENTIALS_SUBJECT
        assert "Client number: 5150" in _plain(credentials)


@pytest.mark.parametrize(
    ("preferences", "expected"),
    [
        (("es_AR",), "es"),
        (("es-AR",), "es"),
        (("es",), "es"),
        (("ES",), "es"),
        ((None, "es"), "es"),
        (("pt_BR", "es"), "es"),
        (("pt_BR", "fr"), "en"),
        (("",), "en"),
        ((), "en"),
        (("english",), "en"),
        (("espanol",), "en"),
    ],
)
def test_negotiate_with_the_packaged_catalogs(
    preferences: tuple[str | None, ...], expected: str
) -> None:
    """The first language a packaged catalog offers wins, else English."""
    assert negotiate(preferences, available_languages((str(PACKAGED_CATALOGS),))) == expected


def test_html_escapes_name(
    make_service: Callable[..., RecoveryService],
    directory: MemoryDirectory,
    mailer: MemoryMailer,
) -> None:
    """A name holding markup is escaped in the HTML part."""
    directory.add_client(
        "6660", "xss@example.com", key="Some-Key-ABCDEFG", name="<script>alert('x')</script> & co"
    )
    service = make_service()
    service.request("client_number", "6660")
    service.confirm(token_from(mailer.outbox[0]))
    for message in mailer.outbox:
        html_text = _html(message)
        assert "<script>" not in html_text
        assert "&lt;script&gt;" in html_text
        assert "&amp; co" in html_text
        _assert_only_primary_recipient(message, "xss@example.com")


def test_anonymous_greeting(
    make_service: Callable[..., RecoveryService],
    directory: MemoryDirectory,
    mailer: MemoryMailer,
) -> None:
    """A client without a name, or with only control characters, is greeted plainly."""
    directory.add_client("6661", "anon@example.com", key="Some-Key-ABCDEFG", name="\r\n\t")
    make_service().request("client_number", "6661")
    assert _plain(mailer.outbox[0]).startswith("Hello,\n")


# --- header injection ------------------------------------------------------

_names = st.text() | st.builds(
    lambda a, sep, b: a + sep + b,
    st.text(max_size=20),
    st.sampled_from(
        [
            "\r\n",
            "\n",
            "\r",
            "\x00",
            "\r\nBcc: x@evil.com\r\n",
            "\nCc: y@evil.com",
            "\r\n\r\n",
            "\u2028",
            "\x85",
            "\x0b",
        ]
    ),
    st.text(max_size=20),
)


@settings(max_examples=examples(120), deadline=None)
@given(name=_names, language=st.sampled_from(["en", "es"]))
def test_names_cannot_inject_headers(name: str, language: str) -> None:
    """No display name adds a header or a recipient to either mail."""
    client = Client("9000", PRIMARY, "hash", name=name)
    messages = [
        confirmation_message(
            client,
            link="https://panel.example.com/recover/abc.def.ghi",
            expires_in=timedelta(hours=1),
            sender=SENDER,
            language=language,
            now=NOW,
        ),
        credentials_message(
            client, key="ABCDEFGHJKMNPQRS", sender=SENDER, language=language, now=NOW
        ),
    ]
    for message in messages:
        _assert_only_primary_recipient(message, PRIMARY)
        assert "\r" not in str(message["To"]) and "\n" not in str(message["To"])


@settings(max_examples=examples(25), deadline=None)
@given(name=_names)
def test_names_cannot_inject_headers_end_to_end(name: str) -> None:
    """Through the service, a hostile name still reaches only the primary address."""
    directory = MemoryDirectory(crypt_context=_CHEAP)
    directory.add_client("9000", PRIMARY, key_hash="$argon2id$placeholder", name=name)
    mailer = MemoryMailer()
    service = RecoveryService(
        directory,
        mailer,
        secret_key="s" * 32,
        confirm_url=CONFIRM_URL,
        sender=SENDER,
        crypt_context=_CHEAP,
        delivery="sync",
        rate_limits=None,
    )
    service.request("client_number", "9000")
    service.confirm(token_from(mailer.outbox[0]))
    assert len(mailer.outbox) == 2
    for message in mailer.outbox:
        _assert_only_primary_recipient(message, PRIMARY)


class _FixedDirectory:
    """A host directory holding one client exactly as given, unvalidated."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.replace_calls = 0

    def find(self, kind: IdentifierKind, value: str) -> Client | None:
        if kind is IdentifierKind.CLIENT_NUMBER and value == self.client.number:
            return self.client
        return None

    def replace_key_hash(self, number: str, current: str, new: str) -> bool:
        self.replace_calls += 1
        if number != self.client.number or current != self.client.key_hash:
            return False
        self.client = Client(
            self.client.number, self.client.email, new, self.client.name, self.client.locale
        )
        return True


@pytest.mark.parametrize(
    "bad_email",
    [
        "a@b.com\r\nBcc: x@evil.com",
        "a@b.com\nBcc: x@evil.com",
        "a@b.com\rCc: x@evil.com",
        "a@b.com\x00x@evil.com",
        "a@b.com, x@evil.com",
        "x@evil.com\x00",
        "",
        "a@",
        "a@b@c",
        "a@[",
        "<a@b.com>",
    ],
)
def test_injected_email_never_mailed(
    bad_email: str,
    make_service: Callable[..., RecoveryService],
    mailer: MemoryMailer,
    ctx: CryptContext,
) -> None:
    """A primary email carrying headers or a second address is a miss: never mailed, nor rotated."""
    old_hash = ctx.hash("Old-Access-Key-2024")
    directory = _FixedDirectory(Client("4242", bad_email, old_hash, name="Mallory"))
    service = make_service(directory=directory)
    assert service.request("client_number", "4242") is None
    assert mailer.outbox == []
    token = service.tokens.issue(directory.client)
    with pytest.raises(InvalidToken) as excinfo:
        service.confirm(token)
    assert type(excinfo.value) is InvalidToken
    assert mailer.outbox == []
    assert directory.client.key_hash == old_hash
    assert directory.replace_calls == 0


@settings(max_examples=examples(200), deadline=None)
@given(
    address=st.text(max_size=40)
    | st.builds(lambda a, b: f"{a}@{b}", st.text(max_size=15), st.text(max_size=15))
)
def test_any_directory_email_yields_one_recipient_or_value_error(address: str) -> None:
    """Any directory email gives a mail with one recipient, or a ValueError."""
    client = Client("9000", address, "hash", name="Ana")
    try:
        message = confirmation_message(
            client,
            link="https://panel.example.com/recover/abc.def.ghi",
            expires_in=timedelta(hours=1),
            sender=SENDER,
            language="en",
            now=NOW,
        )
    except ValueError:
        return
    parsed = _reparse(message)
    assert len(parsed.keys()) == len(message.keys())
    assert len(parsed.get_all("To")) == 1
    assert len(parsed["To"].addresses) == 1
    for name in RECIPIENT_HEADERS:
        assert parsed.get_all(name) is None, name


# --- one recipient however the name folds -----------------------------------

_HOSTILE_NAMES = [
    "Ana Example, attacker@evil.example, Customer Since 2019 - Premium Hosting Plan",
    '"Ana" <attacker@evil.example>, "Example Customer Of Long Standing" <x@y.z>',
    "Ana; attacker@evil.example; group:x@evil.example;",
    "=?utf-8?b?YXR0YWNrZXJAZXZpbC5leGFtcGxl?= <attacker@evil.example>, long enough to fold",
    "José Müller, attacker@evil.example, 顧客 " * 4,
    "a" * 300 + ", attacker@evil.example",
]
_specials = st.text(alphabet=st.sampled_from([*',;:<>@"()[]\\. =?', "a", "é", " "]), max_size=120)


def _both_parsers_see_only(raw: bytes, primary: str) -> None:
    modern = email.message_from_bytes(raw, policy=email.policy.default)
    assert [a.addr_spec for a in modern["To"].addresses] == [primary]
    legacy = email.message_from_bytes(raw, policy=email.policy.compat32)
    assert [addr for _, addr in email.utils.getaddresses(legacy.get_all("To"))] == [primary]
    strict = email.parser.BytesParser(policy=email.policy.strict).parsebytes(raw)
    assert [a.addr_spec for a in strict["To"].addresses] == [primary]


@pytest.mark.parametrize("name", _HOSTILE_NAMES)
def test_a_long_name_with_commas_folds_to_one_recipient(name: str) -> None:
    """The serialized To parses back to the primary address alone, with two parsers."""
    client = Client("9000", PRIMARY, "hash", name=name)
    for message in (
        confirmation_message(
            client,
            link="https://panel.example.com/recover/abc.def.ghi",
            expires_in=timedelta(hours=1),
            sender=SENDER,
            language="en",
            now=NOW,
        ),
        credentials_message(client, key="ABCDEFGHJKMNPQRS", sender=SENDER, language="es", now=NOW),
    ):
        raw = message.as_bytes()
        _both_parsers_see_only(raw, PRIMARY)
        assert b"attacker@evil.example" not in raw.split(b"\r\n\r\n")[0].split(b"\n\n")[0]


@settings(max_examples=examples(150), deadline=None)
@given(name=_specials | _names, repeat=st.integers(1, 4))
def test_any_name_folds_to_one_recipient(name: str, repeat: int) -> None:
    """Whatever the name holds and however long, To parses back to one address."""
    client = Client("9000", PRIMARY, "hash", name=name * repeat)
    message = credentials_message(
        client, key="ABCDEFGHJKMNPQRS", sender=SENDER, language="en", now=NOW
    )
    _both_parsers_see_only(message.as_bytes(), PRIMARY)


@pytest.mark.parametrize("which", ["confirmation", "credentials"])
def test_both_mails_are_marked_automated(
    which: str, service: RecoveryService, mailer: MemoryMailer
) -> None:
    """Auto-Submitted and X-Auto-Response-Suppress keep responders from answering."""
    build = _confirmation if which == "confirmation" else _credentials
    parsed = _reparse(build(mailer, service))
    assert parsed["Auto-Submitted"] == "auto-generated"
    assert parsed["X-Auto-Response-Suppress"] == "All"


def test_a_shared_address_lists_each_client_with_its_link() -> None:
    """One mail lists every client number with a link of its own, and says when it is cut."""
    client = Client("9000", PRIMARY, "hash", name="Agencia")
    links = [
        ("9000", "https://panel.example.com/recover/a.b.c"),
        ("9001", "https://panel.example.com/recover/d.e.f"),
    ]
    for language, label in (("en", "Client number"), ("es", "Número de cliente")):
        message = confirmation_message(
            client,
            links=links,
            truncated=True,
            expires_in=timedelta(hours=1),
            sender=SENDER,
            language=language,
            now=NOW,
        )
        text = _plain(message)
        for number, link in links:
            assert f"{label} {number}:\n{link}" in text
            assert link in _html(message)
        assert ("more client accounts" in text) if language == "en" else ("más cuentas" in text)


@pytest.mark.parametrize("override", ["\u202e", "\u202d", "\u2066", "\u2067", "\u2068", "\u2069"])
def test_bidi_overrides_do_not_reach_the_mail(override: str) -> None:
    """A name cannot flip the text around it: bidi overrides and isolates are dropped."""
    client = Client("9000", PRIMARY, "hash", name=f"Ana {override}moc.elpmaxe")
    message = credentials_message(
        client, key="ABCDEFGHJKMNPQRS", sender=SENDER, language="en", now=NOW
    )
    assert override not in str(message["To"])
    for part in message.walk():
        if part.get_content_maintype() == "text":
            assert override not in part.get_content()
    assert "Ana moc.elpmaxe" in message.get_body(("plain",)).get_content()


def test_a_link_that_reads_as_a_bitcoin_address_is_signed_again(clock: FakeClock) -> None:
    """A run spam filters read as a Bitcoin address makes the link re-signed a second earlier."""
    import re
    import secrets as random_source

    from credrecovery import ConfirmationJob, RecoveryService
    from credrecovery.tokens import TokenSigner

    bitcoin = re.compile(r"\b(?<!=)[13][a-km-zA-HJ-NP-Z1-9]{29,34}\b")
    service = RecoveryService(
        MemoryDirectory(crypt_context=_CHEAP),
        MemoryMailer(),
        secret_key="s" * 32,
        confirm_url=CONFIRM_URL,
        sender=SENDER,
        delivery="sync",
        rate_limits=None,
        clock=clock,
    )
    signer = TokenSigner("s" * 32, clock=clock)
    while True:  # about one binding in 4,000 signs to such a run
        binding = random_source.token_hex(16)
        if bitcoin.search(signer.issue_for("9000", binding, issued_at=clock())):
            break
    job = ConfirmationJob(
        recipient=PRIMARY,
        name="",
        language="en",
        sender=SENDER,
        clients=(("9000", binding),),
        issued_at=clock(),
    )
    link = token_from(service.composer.confirmation(job))
    assert not bitcoin.search(link)
    assert link in [signer.issue_for("9000", binding, issued_at=clock() - k) for k in (1, 2, 3)]
    assert signer.read(link).number == "9000"


# --- links readable in the raw message ---------------------------------------

QUERY_CONFIRM_URL = "https://panel.example.com/recover?token={token}&lang=es"
LOGIN_URL = "https://panel.example.com/login?from=recovery-mail&step=sign-in"


def _raw_lines(message: EmailMessage) -> list[str]:
    return message.as_bytes().decode("utf-8").splitlines()


@pytest.mark.parametrize("key_mode", ["generate", "choose"])
@pytest.mark.parametrize("confirm_url", [CONFIRM_URL, QUERY_CONFIRM_URL])
@pytest.mark.parametrize("locale", ["en", "es"])
def test_links_are_whole_in_the_raw_message(
    make_service: Callable[..., RecoveryService],
    mailer: MemoryMailer,
    key_mode: str,
    confirm_url: str,
    locale: str,
) -> None:
    """as_bytes() holds each link whole on a line: no soft line break, no =3D, in both key modes."""
    from credrecovery import Branding

    service = make_service(
        key_mode=key_mode,
        confirm_url=confirm_url,
        locale=locale,
        branding=Branding(name="Example Hosting", login_url=LOGIN_URL),
    )
    service.request("client_number", "9000")
    prefix, suffix = confirm_url.split("{token}")
    plain = _plain(mailer.outbox[0])
    match = re.search(re.escape(prefix) + r"([A-Za-z0-9_.-]+)" + re.escape(suffix), plain)
    assert match is not None
    assert match.group(0) in _raw_lines(mailer.outbox[0])
    assert mailer.outbox[0].get_body(("plain",))["Content-Transfer-Encoding"] in ("7bit", "8bit")
    service.confirm(match.group(1))
    second = mailer.outbox[1]
    assert any(LOGIN_URL in line for line in _raw_lines(second))
    assert LOGIN_URL in _plain(second)
    if key_mode == "generate":
        key = key_from(second)
        assert any(key in line for line in _raw_lines(second))


def test_a_line_over_998_octets_falls_back_to_quoted_printable() -> None:
    """RFC 5322 caps a line at 998 octets; a longer one goes quoted-printable, still decodable."""
    link = "https://panel.example.com/recover/" + "a" * 1000
    message = confirmation_message(
        Client("9000", PRIMARY, "hash", name="Ana"),
        link=link,
        expires_in=timedelta(hours=1),
        sender=SENDER,
        language="en",
        now=NOW,
    )
    part = message.get_body(("plain",))
    assert part is not None
    assert part["Content-Transfer-Encoding"] == "quoted-printable"
    assert max(len(line) for line in message.as_bytes().splitlines()) <= 998
    assert link in _plain(_reparse(message))


def test_quoted_printable_lines_keep_to_76_characters() -> None:
    """RFC 2045 6.7: an encoded line holds at most 76 characters; the text reads back whole."""
    message = confirmation_message(
        Client("9000", PRIMARY, "hash", name="Ana"),
        link="https://panel.example.com/recover/" + "a" * 1000,
        expires_in=timedelta(hours=1),
        sender=SENDER,
        language="en",
        now=NOW,
    )
    parts = list(message.iter_parts())
    encoded = [part for part in parts if part["Content-Transfer-Encoding"] == "quoted-printable"]
    assert len(encoded) == 2  # the HTML part always, and this plain part
    for part in encoded:
        assert max(len(line) for line in part.get_payload().splitlines()) <= 76
    reparsed = _reparse(message)
    for original, read in zip(parts, reparsed.iter_parts(), strict=True):
        assert read.get_content() == original.get_content()
