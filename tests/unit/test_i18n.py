"""Languages: negotiation, gettext catalogs a host adds, and dates formatted for the locale."""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from babel.messages.catalog import Catalog
from babel.messages.mofile import write_mo
from babel.messages.pofile import write_po

from credrecovery import Client, RecoveryService, cheap_context
from credrecovery.i18n import (
    PACKAGED_CATALOGS,
    available_languages,
    catalog_dirs,
    format_datetime,
    format_timedelta,
    negotiate,
    normalize_locale,
    translations,
)
from credrecovery.memory import MemoryDirectory, MemoryMailer
from credrecovery.messages import confirmation_message
from helpers import FakeClock, token_from

pytestmark = pytest.mark.shells("sync", "async")

SENDER = "Client Panel <panel@example.com>"
NOW = datetime(2027, 1, 15, 12, 0, tzinfo=UTC)

PORTUGUESE = {
    "Hello %(name)s,": "Olá, %(name)s,",
    "Confirm your client panel recovery request": "Confirme seu pedido de recuperação de acesso",
    "Your client panel access details": "Seus dados de acesso ao painel de clientes",
    "Access key:": "Chave de acesso:",
    "Client number: %(number)s": "Número de cliente: %(number)s",
    "The link works once and expires in %(expires)s (at %(deadline)s).": (
        "O link funciona uma vez e vence em %(expires)s (%(deadline)s)."
    ),
    "Type a value.": "Digite um valor.",
    (
        "This mail lists %(num)d client account whose primary address is this one.",
        "This mail lists %(num)d client accounts whose primary address is this one.",
    ):
    # Babel's pt plural rule has three forms: one, many (millions), other.
    (
        "Este e-mail lista %(num)d conta de cliente com este endereço principal.",
        "Este e-mail lista %(num)d de contas de cliente com este endereço principal.",
        "Este e-mail lista %(num)d contas de cliente com este endereço principal.",
    ),
}


def _write_catalog(
    root: Path, locale: str, messages: dict[object, object], *, compiled: bool = False
) -> Path:
    """A host catalog for ``locale`` under ``root``, as a .po or a compiled .mo."""
    catalog = Catalog(locale=locale, domain="credrecovery")
    for msgid, msgstr in messages.items():
        catalog.add(msgid, msgstr)  # type: ignore[arg-type]
    directory = root / locale / "LC_MESSAGES"
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / ("credrecovery.mo" if compiled else "credrecovery.po")
    with path.open("wb") as stream:
        (write_mo if compiled else write_po)(stream, catalog)
    return root


def _plain(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert part is not None
    return str(part.get_content())


def _flow(service: RecoveryService, mailer: MemoryMailer, value: str) -> list[EmailMessage]:
    start = len(mailer.outbox)
    service.request("email", value)
    service.confirm(token_from(mailer.outbox[-1]))
    return mailer.outbox[start:]


# --- negotiation ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tag", "expected"),
    [
        ("pt-BR", "pt_BR"),
        ("pt_br", "pt_BR"),
        ("PT_BR", "pt_BR"),
        ("es_AR.UTF-8", "es_AR"),
        ("es", "es"),
        ("sr-Latn-RS", "sr_Latn_RS"),
        ("es-419", "es_419"),
        ("", None),
        ("english", None),
        ("e", None),
        ("pt_BR\r\nX: y", None),
        (None, None),
    ],
)
def test_normalize_locale(tag: str | None, expected: str | None) -> None:
    """Both separators, any case and a codeset are accepted; anything else is not a locale."""
    assert normalize_locale(tag) == expected


@pytest.mark.parametrize(
    ("preferences", "expected"),
    [
        (("pt_BR", "es"), "pt_BR"),
        (("pt-BR", "es"), "pt_BR"),
        (("pt_PT", "es"), "pt"),
        (("pt", "es"), "pt"),
        (("fr", "pt_BR"), "pt_BR"),
        (("es_AR", "pt"), "es"),
        ((None, None), "en"),
        (("de",), "en"),
    ],
)
def test_negotiate_exact_then_language_then_next(
    preferences: tuple[str | None, ...], expected: str
) -> None:
    """Each preference as given, then its language alone, before the next; else English."""
    assert negotiate(preferences, {"en", "es", "pt_BR", "pt"}) == expected


def test_a_host_directory_adds_its_languages(tmp_path: Path) -> None:
    """Languages available: the packaged ones and those with a catalog in the host's dir."""
    _write_catalog(tmp_path, "pt_BR", PORTUGUESE)
    (tmp_path / "not-a-locale!").mkdir()
    (tmp_path / "fr").mkdir()  # no catalog inside
    assert available_languages(catalog_dirs()) == {"en", "es"}
    assert available_languages(catalog_dirs(tmp_path)) == {"en", "es", "pt_BR"}


# --- host catalogs --------------------------------------------------------------------------


@pytest.fixture
def pt_catalogs(tmp_path: Path) -> Path:
    return _write_catalog(tmp_path / "catalogs", "pt_BR", PORTUGUESE)


def _service(
    directory: MemoryDirectory, mailer: MemoryMailer, clock: FakeClock, **options: Any
) -> RecoveryService:
    return RecoveryService(
        directory,
        mailer,
        secret_key="s" * 32,
        confirm_url="https://panel.example.com/recover/{token}",
        sender=SENDER,
        delivery="sync",
        rate_limits=None,
        clock=clock,
        crypt_context=cheap_context(),
        **options,
    )


@pytest.fixture
def people() -> MemoryDirectory:
    directory = MemoryDirectory(crypt_context=cheap_context())
    directory.add_client(
        "7001", "joao@example.com.br", key="Some-Key-ABCDEFG", name="João", locale="pt_BR"
    )
    directory.add_client(
        "7002", "ana@example.com.ar", key="Some-Key-ABCDEFG", name="Ana", locale="es_AR"
    )
    directory.add_client("7003", "nadie@example.com", key="Some-Key-ABCDEFG", name="Nadie")
    return directory


def test_a_portuguese_catalog_of_the_host_changes_a_portuguese_clients_mail(
    people: MemoryDirectory, pt_catalogs: Path, clock: FakeClock
) -> None:
    """pt_BR added through catalogs= (a .po, never compiled) reaches a pt_BR client."""
    mailer = MemoryMailer()
    service = _service(people, mailer, clock, catalogs=pt_catalogs)
    confirmation, credentials = _flow(service, mailer, "joao@example.com.br")
    assert confirmation["Subject"] == "Confirme seu pedido de recuperação de acesso"
    assert confirmation["Content-Language"] == "pt-BR"
    text = _plain(confirmation)
    assert "Olá, João," in text
    assert "O link funciona uma vez e vence em 1 hora (15 de janeiro de 2027" in text
    # Messages the host did not translate fall back to English.
    assert "If you did not ask for this" in text
    assert credentials["Subject"] == "Seus dados de acesso ao painel de clientes"
    assert "Número de cliente: 7001" in _plain(credentials)
    assert f"Chave de acesso:\n{key_from_pt(credentials)}\n" in _plain(credentials)
    assert service.authenticate("7001", key_from_pt(credentials)) is not None
    # Without the host's catalog the same client gets English.
    plain_mailer = MemoryMailer()
    _service(people, plain_mailer, clock).request("email", "joao@example.com.br")
    assert plain_mailer.outbox[0]["Subject"] == "Confirm your client panel recovery request"
    assert plain_mailer.outbox[0]["Content-Language"] == "en"


def key_from_pt(message: EmailMessage) -> str:
    lines = _plain(message).splitlines()
    return lines[lines.index("Chave de acesso:") + 1]


def test_a_compiled_catalog_works_as_the_service_locale(
    people: MemoryDirectory, tmp_path: Path, clock: FakeClock
) -> None:
    """A .mo works too, and the service's locale may be a language only the host adds."""
    catalogs = _write_catalog(tmp_path, "pt_BR", PORTUGUESE, compiled=True)
    mailer = MemoryMailer()
    service = _service(people, mailer, clock, catalogs=catalogs, locale="pt-BR")
    confirmation, credentials = _flow(service, mailer, "nadie@example.com")
    assert confirmation["Subject"] == "Confirme seu pedido de recuperação de acesso"
    assert "Olá, Nadie," in _plain(confirmation)
    assert credentials["Subject"] == "Seus dados de acesso ao painel de clientes"


@pytest.mark.parametrize(
    ("address", "service_locale", "subject"),
    [
        ("ana@example.com.ar", "pt_BR", "Confirme su pedido de recuperación de acceso"),
        ("joao@example.com.br", "es", "Confirme seu pedido de recuperação de acesso"),
        ("nadie@example.com", "es", "Confirme su pedido de recuperación de acceso"),
        ("nadie@example.com", "pt_BR", "Confirme seu pedido de recuperação de acesso"),
        ("nadie@example.com", "fr", "Confirm your client panel recovery request"),
    ],
)
def test_the_clients_locale_beats_the_services(
    people: MemoryDirectory,
    pt_catalogs: Path,
    clock: FakeClock,
    address: str,
    service_locale: str,
    subject: str,
) -> None:
    """The client's stored locale wins; a client without one gets the service's."""
    mailer = MemoryMailer()
    service = _service(people, mailer, clock, catalogs=pt_catalogs, locale=service_locale)
    confirmation, credentials = _flow(service, mailer, address)
    assert confirmation["Subject"] == subject
    assert credentials["Content-Language"] == confirmation["Content-Language"]


def test_the_multi_client_plural_comes_from_the_hosts_catalog(pt_catalogs: Path) -> None:
    """ngettext reads the host's plural forms."""
    from credrecovery.messages import MailRenderer

    renderer = MailRenderer(catalogs=pt_catalogs)
    for count, expected in ((1, "lista 1 conta de cliente"), (3, "lista 3 contas de cliente")):
        message = renderer.confirmation(
            recipient="joao@example.com.br",
            name="",
            truncated=count == 1,
            links=[(str(n), f"https://p.example/recover/{n}") for n in range(count)],
            expires_in=timedelta(hours=1),
            sender=SENDER,
            language="pt_BR",
            now=NOW,
        )
        assert expected in _plain(message)


def test_a_host_catalog_rewords_one_spanish_message(tmp_path: Path) -> None:
    """A host's es catalog wins for its messages; the packaged es catalog gives the rest."""
    catalogs = _write_catalog(tmp_path, "es", {"Hello %(name)s,": "Estimado/a %(name)s:"})
    dirs = catalog_dirs(catalogs)
    es = translations(dirs, "es")
    assert es.gettext("Hello %(name)s,") == "Estimado/a %(name)s:"
    assert es.gettext("Access key:") == "Clave de acceso:"
    es_ar = translations(dirs, "es_AR")
    assert es_ar.gettext("Hello %(name)s,") == "Estimado/a %(name)s:"


def test_a_po_newer_than_its_mo_is_read(tmp_path: Path) -> None:
    """A stale .mo next to an edited .po does not win."""
    _write_catalog(tmp_path, "pt_BR", {"Hello,": "Oi (mo),"}, compiled=True)
    po_root = _write_catalog(tmp_path, "pt_BR", {"Hello,": "Oi (po),"})
    mo = po_root / "pt_BR" / "LC_MESSAGES" / "credrecovery.mo"
    os.utime(mo, (1_000_000_000, 1_000_000_000))
    assert translations(catalog_dirs(po_root), "pt_BR").gettext("Hello,") == "Oi (po),"


def test_packaged_catalogs_exist_as_po() -> None:
    """The repository ships .po sources for English and Spanish."""
    for locale in ("en", "es"):
        assert (PACKAGED_CATALOGS / locale / "LC_MESSAGES" / "credrecovery.po").is_file()
    assert translations(catalog_dirs(), "es").gettext("Hello,") == "Hola:"


# --- dates and durations --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("locale", "expected"),
    [
        ("en", "January 15, 2027, 1:30\u202fPM UTC"),
        ("es", "15 de enero de 2027, 13:30 UTC"),
        ("es_AR", "15 de enero de 2027, 13:30 UTC"),
        ("pt_BR", "15 de janeiro de 2027 13:30 UTC"),
        ("zz", "January 15, 2027, 1:30\u202fPM UTC"),
    ],
)
def test_format_datetime(locale: str, expected: str) -> None:
    """Long date, short time, in UTC, as the locale writes them."""
    assert format_datetime(NOW + timedelta(minutes=90), locale) == expected


def test_format_datetime_shows_the_minute_of_each_moment() -> None:
    """Seconds never show and never stick: each moment gets its own minute, in UTC."""
    base = NOW + timedelta(minutes=90)
    assert format_datetime(base + timedelta(seconds=59.9), "en") == format_datetime(base, "en")
    assert format_datetime(base + timedelta(seconds=60), "en").endswith("1:31\u202fPM UTC")
    elsewhere = (base + timedelta(minutes=1)).astimezone(timezone(timedelta(hours=-3)))
    assert format_datetime(elsewhere, "es") == "15 de enero de 2027, 13:31 UTC"


@pytest.mark.parametrize(
    ("span", "locale", "expected"),
    [
        (timedelta(hours=1), "en", "1 hour"),
        (timedelta(hours=1), "es", "1 hora"),
        (timedelta(days=1, hours=2, minutes=30), "en", "1 day, 2 hours, and 30 minutes"),
        (timedelta(days=1, hours=2, minutes=30), "es", "1 día, 2 horas y 30 minutos"),
        (timedelta(days=2, minutes=1), "pt_BR", "2 dias e 1 minuto"),
        (timedelta(seconds=5), "en", "1 minute"),
    ],
)
def test_format_timedelta(span: timedelta, locale: str, expected: str) -> None:
    """Days, hours and minutes, with the locale's plurals and list conjunction."""
    assert format_timedelta(span, locale) == expected


def test_the_deadline_shows_in_the_clients_language(
    make_service: Callable[..., RecoveryService],
    directory: MemoryDirectory,
    mailer: MemoryMailer,
    clock: FakeClock,
) -> None:
    """Spanish month names and Spanish durations in a Spanish client's confirmation mail."""
    directory.add_client("5150", "eva@example.com", key="Some-Key-ABCDEFG", locale="es", name="Eva")
    service = make_service(token_max_age=timedelta(days=2, hours=3))
    service.request("email", "eva@example.com")
    deadline = datetime.fromtimestamp(clock.now, UTC) + timedelta(days=2, hours=3)
    text = _plain(mailer.outbox[0])
    assert f"vence en 2 días y 3 horas ({format_datetime(deadline, 'es')})" in text
    months = [
        "enero",
        "febrero",
        "marzo",
        "abril",
        "mayo",
        "junio",
        "julio",
        "agosto",
        "septiembre",
        "octubre",
        "noviembre",
        "diciembre",
    ]
    month = months[deadline.month - 1]
    assert f" de {month} de {deadline.year}" in text


def test_the_module_functions_take_any_locale_tag() -> None:
    """confirmation_message negotiates its language: es-AR is Spanish, xx English."""
    client = Client("9000", "ana@example.com", "hash", name="Ana")
    for tag, subject in (
        ("es-AR", "Confirme su pedido de recuperación de acceso"),
        ("xx", "Confirm your client panel recovery request"),
    ):
        message = confirmation_message(
            client,
            link="https://p.example/recover/t",
            expires_in=timedelta(hours=1),
            sender=SENDER,
            language=tag,
            now=NOW,
        )
        assert message["Subject"] == subject
