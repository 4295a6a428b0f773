"""Both mails rendered from templates: branding, structure, host overrides and the envelope."""

from __future__ import annotations

import email
import email.policy
import pickle
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from html.parser import HTMLParser
from pathlib import Path

import jinja2
import pytest

from credrecovery import Client, ConfirmationJob, IdentifierKind, RecoveryService
from credrecovery.branding import Branding
from credrecovery.memory import MemoryDirectory, MemoryMailer
from credrecovery.messages import TEMPLATE_NAMES, confirmation_message, credentials_message
from credrecovery.tokens import account_binding
from helpers import CONFIRM_URL, ROOT, SENDER, FakeClock, key_from, token_from

pytestmark = pytest.mark.shells("sync", "async")

PRIMARY = "ejemplo@ejemploxmundo.com.ar"
NOW = datetime(2027, 1, 15, 12, 0, tzinfo=UTC)
BRAND = Branding(
    "XMundo Networks",
    support="soporte@xmundo.example",
    login_url="https://panel.xmundo.example/login",
    logo_url="https://panel.xmundo.example/logo.png",
)
PACKAGED = ROOT / "src" / "credrecovery" / "templates"


def _plain(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert part is not None
    return str(part.get_content())


def _html(message: EmailMessage) -> str:
    part = message.get_body(("html",))
    assert part is not None
    return str(part.get_content())


def _both(mailer: MemoryMailer, service: RecoveryService) -> tuple[EmailMessage, EmailMessage]:
    service.request("client_number", "9000")
    service.confirm(token_from(mailer.outbox[0]))
    assert len(mailer.outbox) == 2
    return mailer.outbox[0], mailer.outbox[1]


def _footer_text(html: str) -> str:
    match = re.search(r'<p class="footer"[^>]*>(.*?)</p>', html, re.S)
    assert match, "no footer in the HTML part"
    return match.group(1)


class _Tree(HTMLParser):
    """Records start tags in order, and the text inside <code> and <title>."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.code: list[str] = []
        self.title = ""
        self._open: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if self._open and self._open[-1] == tag:
            self._open.pop()

    def handle_data(self, data: str) -> None:
        if "code" in self._open:
            self.code.append(data)
        if self._open and self._open[-1] == "title":
            self.title += data


def _tree(html: str) -> _Tree:
    tree = _Tree()
    tree.feed(html)
    return tree


# --- branding -------------------------------------------------------------------------------


_BRANDED = {
    "en": {
        "subjects": (
            "XMundo Networks: confirm your request to recover access",
            "XMundo Networks: your new access details",
        ),
        "bodies": (
            "recover access to your account at XMundo Networks.",
            "your new access details for XMundo Networks.",
        ),
        "footers": (
            "XMundo Networks sent this automated mail because someone asked to recover access",
            "XMundo Networks sent this automated mail because a request to recover access",
        ),
    },
    "es": {
        "subjects": (
            "XMundo Networks: confirme su pedido de recuperación de acceso",
            "XMundo Networks: sus nuevos datos de acceso",
        ),
        "bodies": (
            "recuperar el acceso a su cuenta de XMundo Networks.",
            "sus nuevos datos de acceso a XMundo Networks.",
        ),
        "footers": (
            "XMundo Networks le envió este mensaje automático porque alguien pidió "
            "recuperar el acceso",
            "XMundo Networks le envió este mensaje automático porque se confirmó un pedido",
        ),
    },
}


@pytest.mark.parametrize("locale", ["en", "es"])
def test_branding_name_in_subject_body_and_footer(
    make_service: Callable[..., RecoveryService],
    mailer: MemoryMailer,
    locale: str,
) -> None:
    """Both mails name the provider in the subject, the body and a footer saying why."""
    expected = _BRANDED[locale]
    mails = _both(mailer, make_service(branding=BRAND, locale=locale))
    for message, subject, body, footer in zip(
        mails, expected["subjects"], expected["bodies"], expected["footers"], strict=True
    ):
        assert message["Subject"] == subject
        plain_body, separator, plain_footer = _plain(message).partition("\n-- \n")
        assert separator
        assert body in plain_body
        assert plain_footer.startswith(footer)
        html = _html(message)
        assert body in html.split('<p class="footer"')[0]
        assert _footer_text(html).startswith(footer)


def test_without_branding_the_wording_is_neutral(
    service: RecoveryService, mailer: MemoryMailer
) -> None:
    """No branding: "your client panel", and no logo, sign-in or support block."""
    confirmation, credentials = _both(mailer, service)
    assert confirmation["Subject"] == "Confirm your client panel recovery request"
    assert credentials["Subject"] == "Your client panel access details"
    assert _plain(confirmation).split("\n-- \n")[1].startswith("Your client panel sent")
    for message in (confirmation, credentials):
        tags = [tag for tag, _ in _tree(_html(message)).tags]
        assert "img" not in tags
    assert "Support:" not in _plain(credentials)
    assert "Sign in" not in _plain(credentials).replace("after you sign in", "")


def test_credentials_carry_login_link_and_support(
    make_service: Callable[..., RecoveryService], mailer: MemoryMailer
) -> None:
    """The credentials mail links to the sign-in page and names the support contact."""
    _, credentials = _both(mailer, make_service(branding=BRAND))
    plain = _plain(credentials)
    assert "Sign in to XMundo Networks:\nhttps://panel.xmundo.example/login\n" in plain
    assert "Support: soporte@xmundo.example" in plain
    links = [attrs.get("href") for tag, attrs in _tree(_html(credentials)).tags if tag == "a"]
    assert "https://panel.xmundo.example/login" in links
    assert "mailto:soporte@xmundo.example" in links


def test_support_url_is_linked_as_is(
    make_service: Callable[..., RecoveryService], mailer: MemoryMailer
) -> None:
    """A support URL is a plain link, not mailto:."""
    branding = Branding("XMundo Networks", support="https://help.xmundo.example/")
    _, credentials = _both(mailer, make_service(branding=branding))
    links = [attrs.get("href") for tag, attrs in _tree(_html(credentials)).tags if tag == "a"]
    assert "https://help.xmundo.example/" in links
    assert not any(link and link.startswith("mailto:") for link in links)
    assert "login" not in _plain(credentials)


def test_key_on_a_line_of_its_own_and_in_code(
    make_service: Callable[..., RecoveryService], mailer: MemoryMailer
) -> None:
    """In plain text the key is a whole line; in HTML the number and key sit in <code>."""
    _, credentials = _both(mailer, make_service(branding=BRAND))
    key = key_from(credentials)
    assert key in _plain(credentials).splitlines()
    tree = _tree(_html(credentials))
    assert key in tree.code
    assert "9000" in tree.code


def test_button_comes_first_then_the_labelled_raw_link(
    make_service: Callable[..., RecoveryService], mailer: MemoryMailer
) -> None:
    """A real button (a padded link in a table cell), then the raw link as a fallback."""
    service = make_service(branding=BRAND)
    service.request("client_number", "9000")
    message = mailer.outbox[0]
    link = CONFIRM_URL.replace("{token}", token_from(message))
    html = _html(message)
    tree = _tree(html)
    anchors = [
        (i, attrs)
        for i, (tag, attrs) in enumerate(tree.tags)
        if tag == "a" and attrs.get("href") == link
    ]
    assert len(anchors) == 2
    (button_at, button), (raw_at, _) = anchors
    assert button_at < raw_at
    assert tree.tags[button_at - 1][0] == "td"
    assert "padding" in (button.get("style") or "")
    assert "background-color" in (tree.tags[button_at - 1][1].get("style") or "")
    assert html.index(">Confirm the request</a>") < html.index("If the button does not work")
    assert html.index("If the button does not work") < html.index(f">{link}</a>")
    raw_paragraph = tree.tags[raw_at - 1]
    assert raw_paragraph[0] == "p"
    style = raw_paragraph[1].get("style") or ""
    assert "word-break:break-all" in style and "overflow-wrap:anywhere" in style


@pytest.mark.parametrize(("locale", "lang"), [("en", "en"), ("es", "es")])
def test_html_is_accessible_and_mails_carry_content_language(
    make_service: Callable[..., RecoveryService], mailer: MemoryMailer, locale: str, lang: str
) -> None:
    """lang, charset, a title equal to the subject and a viewport; Content-Language."""
    for message in _both(mailer, make_service(branding=BRAND, locale=locale)):
        html = _html(message)
        assert html.startswith("<!DOCTYPE html>")
        tree = _tree(html)
        assert ("html", {"lang": lang, "dir": "ltr"}) in tree.tags
        metas = [attrs for tag, attrs in tree.tags if tag == "meta"]
        assert {"charset": "utf-8"} in metas
        assert {"name": "viewport", "content": "width=device-width, initial-scale=1"} in metas
        assert tree.title == message["Subject"]
        parsed = email.message_from_bytes(message.as_bytes(), policy=email.policy.default)
        assert parsed["Content-Language"] == lang
        assert parsed.get_all("Content-Language") == [lang]


def test_logo_has_the_name_as_alt_text(
    make_service: Callable[..., RecoveryService], mailer: MemoryMailer
) -> None:
    """With logo_url, the HTML shows the logo, its alt text the provider's name."""
    for message in _both(mailer, make_service(branding=BRAND)):
        images = [attrs for tag, attrs in _tree(_html(message)).tags if tag == "img"]
        assert images == [
            {
                "src": "https://panel.xmundo.example/logo.png",
                "alt": "XMundo Networks",
                "width": "160",
                "style": images[0]["style"],
            }
        ]


def test_branding_name_is_escaped_in_html() -> None:
    """A name with markup reaches the HTML escaped."""
    branding = Branding("A&B <Hosting>")
    client = Client("9000", PRIMARY, "hash", name="Ana")
    message = credentials_message(
        client, key="ABCDEFGHJKMNPQRS", sender=SENDER, language="en", now=NOW, branding=branding
    )
    html = _html(message)
    assert "<Hosting>" not in html
    assert "A&amp;B &lt;Hosting&gt;" in html
    assert message["Subject"] == "A&B <Hosting>: your new access details"


# --- the multi-client mail ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("language", "count", "sentence"),
    [
        ("en", 2, "This mail lists 2 client accounts whose primary address is this one."),
        ("en", 1, "This mail lists 1 client account whose primary address is this one."),
        ("es", 3, "Este mensaje incluye 3 cuentas de cliente cuya dirección primaria es esta."),
        ("es", 1, "Este mensaje incluye 1 cuenta de cliente cuya dirección primaria es esta."),
    ],
)
def test_plural_forms_in_the_multi_client_mail(language: str, count: int, sentence: str) -> None:
    """The sentence counting the listed accounts takes the plural form of the count."""
    client = Client("9000", PRIMARY, "hash", name="Agencia")
    links = [(str(9000 + i), f"https://panel.example.com/recover/t{i}") for i in range(count)]
    message = confirmation_message(
        client,
        links=links,
        truncated=count == 1,
        expires_in=timedelta(hours=1),
        sender=SENDER,
        language=language,
        now=NOW,
    )
    assert sentence in _plain(message)
    assert sentence in _html(message)


def test_one_button_per_client_number() -> None:
    """A shared address gets one button, and one raw link, per client number."""
    client = Client("9000", PRIMARY, "hash", name="Agencia")
    links = [
        ("9000", "https://panel.example.com/recover/a"),
        ("9001", "https://panel.example.com/recover/b"),
    ]
    message = confirmation_message(
        client, links=links, expires_in=timedelta(hours=1), sender=SENDER, language="en", now=NOW
    )
    html = _html(message)
    for number, url in links:
        assert f">Confirm for client number {number}</a>" in html
        assert html.count(f'href="{url}"') == 2


# --- host templates -------------------------------------------------------------------------


def test_a_host_directory_overrides_one_file_only(
    make_service: Callable[..., RecoveryService], mailer: MemoryMailer, tmp_path: Path
) -> None:
    """A confirmation_subject.txt of the host's changes that subject and nothing else."""
    stock = make_service(branding=BRAND)
    stock_confirmation, stock_credentials = _both(mailer, stock)
    mailer.outbox.clear()
    (tmp_path / "confirmation_subject.txt").write_text(
        "{{ branding.name }} | {{ _('Confirm the request') }}\n", encoding="utf-8"
    )
    custom = make_service(branding=BRAND, templates=tmp_path)
    confirmation, credentials = _both(mailer, custom)
    assert confirmation["Subject"] == "XMundo Networks | Confirm the request"
    assert credentials["Subject"] == stock_credentials["Subject"]
    assert _strip_tokens(_plain(confirmation)) == _strip_tokens(_plain(stock_confirmation))
    stock_html = _strip_tokens(_html(stock_confirmation)).replace(
        str(stock_confirmation["Subject"]), "SUBJECT"
    )
    assert (
        _strip_tokens(_html(confirmation)).replace(
            "XMundo Networks | Confirm the request", "SUBJECT"
        )
        == stock_html
    )


def _strip_tokens(text: str) -> str:
    return re.sub(r"/recover/[A-Za-z0-9_.-]+", "/recover/TOKEN", text)


def test_a_jinja2_loader_works_too(
    make_service: Callable[..., RecoveryService], mailer: MemoryMailer
) -> None:
    """A loader given as templates= is searched first; a template may extend the packaged one."""
    loader = jinja2.DictLoader(
        {
            "credentials.txt": "KEY FOR {{ client_number }}\n{{ key }}\n",
            "confirmation.html": (
                '{% extends "layout.html" %}{% block content %}'
                '<p id="mine">{{ links[0].url }}</p>{% endblock %}'
            ),
        }
    )
    service = make_service(templates=loader, locale="es")
    confirmation, credentials = _both(mailer, service)
    first, key = _plain(credentials).splitlines()
    assert first == "KEY FOR 9000"
    assert service.authenticate("9000", key) is not None
    assert '<p id="mine">https://panel.example.com/recover/' in _html(confirmation)
    assert '<html lang="es"' in _html(confirmation)
    assert "Hola, Ana Example:" in _plain(confirmation)


def test_compiled_templates_are_shared_but_never_stale(
    make_service: Callable[..., RecoveryService], mailer: MemoryMailer, tmp_path: Path
) -> None:
    """Services share compiled templates, yet each renders the source its templates hold now."""
    subject = tmp_path / "confirmation_subject.txt"
    # Loaders without file names: the same template name, two different sources.
    loaders = [
        jinja2.DictLoader({"confirmation_subject.txt": f"{word} wording\n"})
        for word in ("Third", "Fourth")
    ]
    subjects = []
    for word, templates in [
        ("First", tmp_path),
        ("Second", tmp_path),
        ("", loaders[0]),
        ("", loaders[1]),
    ]:
        if word:
            subject.write_text(f"{word} wording\n", encoding="utf-8")
        mailer.outbox.clear()
        confirmation, _ = _both(mailer, make_service(templates=templates))
        subjects.append(str(confirmation["Subject"]))
    assert subjects == ["First wording", "Second wording", "Third wording", "Fourth wording"]


def test_a_typo_in_a_template_fails_loudly(tmp_path: Path) -> None:
    """An undefined variable raises instead of rendering as nothing."""
    (tmp_path / "credentials.txt").write_text("{{ clinet_number }}\n", encoding="utf-8")
    directory = MemoryDirectory()
    service = RecoveryService(
        directory,
        MemoryMailer(),
        secret_key="s" * 32,
        confirm_url=CONFIRM_URL,
        sender=SENDER,
        templates=tmp_path,
        delivery="sync",
        rate_limits=None,
    )
    with pytest.raises(jinja2.UndefinedError):
        service.composer.credentials(Client("9000", PRIMARY, "hash"), key="K", sender=SENDER)


_HOSTILE_SUBJECTS = [
    "Hello\r\nBcc: attacker@evil.example\r\n\r\nbody",
    "Hello\nCc: attacker@evil.example",
    "Hello\x00\x0b\x0c\x1b[31m\u2028\u2029\x85 world",
    "{% for i in range(300) %}x{% endfor %}",
]


@pytest.mark.parametrize("template", _HOSTILE_SUBJECTS)
def test_a_rendered_subject_is_one_clean_line(
    make_service: Callable[..., RecoveryService],
    mailer: MemoryMailer,
    tmp_path: Path,
    template: str,
) -> None:
    """Newlines and control characters from a subject template cannot add headers."""
    (tmp_path / "confirmation_subject.txt").write_text(template, encoding="utf-8")
    (tmp_path / "credentials_subject.txt").write_text(template, encoding="utf-8")
    for message in _both(mailer, make_service(templates=tmp_path)):
        subject = str(message["Subject"])
        assert subject == " ".join(subject.split())
        assert subject.isprintable()
        assert len(subject) <= 200
        raw = message.as_bytes()
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        assert parsed.get_all("Bcc") is None and parsed.get_all("Cc") is None
        assert [a.addr_spec for a in parsed["To"].addresses] == [PRIMARY]
        assert str(parsed["Subject"]) == subject
        assert len(parsed.keys()) == len(message.keys())
        if "Bcc" in template:
            assert subject.startswith("Hello Bcc: attacker@evil.example body")


_DUMP = "{{ self._TemplateReference__context }}\n"


def test_templates_never_see_the_key_hash_nor_the_client(
    make_service: Callable[..., RecoveryService],
    directory: MemoryDirectory,
    mailer: MemoryMailer,
    tmp_path: Path,
) -> None:
    """A template dumping its whole context shows no hash; the confirmation mail no key."""
    (tmp_path / "confirmation.txt").write_text(_DUMP, encoding="utf-8")
    (tmp_path / "credentials.txt").write_text("Access key: {{ key }}\n" + _DUMP, encoding="utf-8")
    service = make_service(branding=BRAND, templates=tmp_path)
    old_hash = _hash(directory)
    confirmation, credentials = _both(mailer, service)
    new_hash = _hash(directory)
    key = key_from(credentials)
    assert service.authenticate("9000", key) is not None
    confirmation_context = _plain(confirmation)
    credentials_context = _plain(credentials).partition("\n")[2]
    for dumped in (confirmation_context, credentials_context):
        assert "'greeting_name': 'Ana Example'" in dumped
        assert old_hash not in dumped and new_hash not in dumped
        assert "$argon2" not in dumped and "key_hash" not in dumped
        assert "Client(" not in dumped and "ejemplo@" not in dumped
    assert "'links': [{'number': '9000', 'url': 'https://" in confirmation_context
    assert key not in confirmation_context and "'key'" not in confirmation_context
    assert f"'key': '{key}'" in credentials_context


def _hash(directory: MemoryDirectory) -> str:
    client = directory.find(IdentifierKind.CLIENT_NUMBER, "9000")
    assert client is not None
    return client.key_hash


def test_documented_template_names_exist() -> None:
    """Every name a host may override is a packaged template."""
    for name in TEMPLATE_NAMES:
        assert (PACKAGED / name).is_file(), name


# --- the composer crosses processes ---------------------------------------------------------


def test_composer_pickles_and_renders_the_same(tmp_path: Path, clock: FakeClock) -> None:
    """The composer, with branding, templates and catalogs, round-trips through pickle."""
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "confirmation_subject.txt").write_text(
        "{{ branding.name }}: {{ _('Confirm the request') }}", encoding="utf-8"
    )
    (tmp_path / "catalogs").mkdir()
    service = RecoveryService(
        MemoryDirectory(),
        MemoryMailer(),
        secret_key="s" * 32,
        confirm_url=CONFIRM_URL,
        sender=SENDER,
        delivery="sync",
        rate_limits=None,
        clock=clock,
        branding=BRAND,
        templates=tmp_path / "templates",
        catalogs=tmp_path / "catalogs",
        locale="es",
    )
    composer = service.composer
    composer.confirmation(_job(composer.language_for(None)))  # fills the caches
    copy = pickle.loads(pickle.dumps(composer))
    job = _job(copy.language_for(None))
    first, second = composer.confirmation(job), copy.confirmation(job)
    assert first["Subject"] == second["Subject"] == "XMundo Networks: Confirmar el pedido"
    assert _plain(first) == _plain(second)
    assert _html(first) == _html(second)
    assert copy.languages == composer.languages


def _job(language: str) -> ConfirmationJob:
    client = Client("9000", PRIMARY, "h" * 20, name="Ana")
    return ConfirmationJob(
        recipient=PRIMARY,
        name="Ana",
        language=language,
        sender=SENDER,
        clients=(("9000", account_binding(client)),),
        issued_at=1_800_000_000.0,
    )


def test_a_host_template_translates_with_each_gettext_form(
    make_service: Callable[..., RecoveryService], directory: MemoryDirectory, mailer: MemoryMailer
) -> None:
    """``_()``, ``gettext()``, ``ngettext()`` and ``{% trans %}`` translate, and a value is
    escaped in HTML alone, the text around it never."""
    directory.add_client("9001", "bea@example.com", key="-", name="Bea <b>&amp; Co")
    forms = (
        '{{ _("Hello %(name)s,", name=greeting_name) }}|{{ gettext("Hello,") }}|'
        '{{ ngettext("%(num)d client", "%(num)d clients", 2) }}|'
        "{% trans name=greeting_name %}Hello {{ name }},{% endtrans %}|"
        '{{ _("100%% <i>sure</i> & done") }}\n'
    )
    loader = jinja2.DictLoader({"confirmation.txt": forms, "confirmation.html": forms})
    make_service(templates=loader, locale="es").request("client_number", "9001")
    message = mailer.outbox[0]
    assert _plain(message) == (
        "Hola, Bea <b>&amp; Co:|Hola:|2 clients|Hola, Bea <b>&amp; Co:|100% <i>sure</i> & done\n"
    )
    assert _html(message) == (
        "Hola, Bea &lt;b&gt;&amp;amp; Co:|Hola:|2 clients|"
        "Hola, Bea &lt;b&gt;&amp;amp; Co:|100% <i>sure</i> & done\n"
    )
