"""The code mail and what the confirmation mails promise in each key mode, in every language."""

from __future__ import annotations

import dataclasses
import pickle
import re
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from credrecovery import Branding, Client, ConfirmationJob, RecoveryService
from credrecovery.codes import CodeSigner, format_code
from credrecovery.memory import MemoryDirectory, MemoryMailer
from credrecovery.tokens import account_binding
from helpers import CONFIRM_URL, SENDER, FakeClock, code_from

pytestmark = pytest.mark.shells("sync", "async")

MakeService = Callable[..., Any]
DOMAIN = "ejemploxmundo.com.ar"
SHARED = "agencia@ejemploxmundo.com.ar"
BRAND = Branding("XMundo Networks", support="soporte@xmundo.example")

# What a mail promises: the client number and a generated key, or a key to choose.
PROMISES = {
    ("en", "generate"): "To get your client number and a new access key",
    ("en", "choose"): "To choose a new access key",
    ("es", "generate"): "Para recibir su número de cliente y una clave de acceso nueva",
    ("es", "choose"): "Para elegir una clave de acceso nueva",
}
SHARED_PROMISES = {
    ("en", "generate"): "To get the client number and a new access key of one of them",
    ("en", "choose"): "To choose a new access key for one of them",
    ("es", "generate"): "Para recibir el número de cliente y una clave de acceso nueva",
    ("es", "choose"): "Para elegir una clave de acceso nueva para una de ellas",
}


def _plain(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert part is not None
    return " ".join(str(part.get_content()).split())


def _html(message: EmailMessage) -> str:
    part = message.get_body(("html",))
    assert part is not None
    return " ".join(str(part.get_content()).split())


@pytest.fixture
def agency(directory: MemoryDirectory) -> MemoryDirectory:
    for number in ("9101", "9102"):
        directory.add_client(number, SHARED, key=f"Key-Of-Client-{number}", name="Agencia")
    return directory


@pytest.mark.parametrize("language", ["en", "es"])
@pytest.mark.parametrize("key_mode", ["generate", "choose"])
def test_every_mail_that_asks_promises_what_the_mode_does(
    make_service: MakeService,
    mailer: MemoryMailer,
    agency: MemoryDirectory,
    language: str,
    key_mode: str,
) -> None:
    """Link and code mails, for one client and for a shared address, in both languages:
    a generated key is promised only when one will be mailed, a key to choose otherwise."""
    service = make_service(locale=language, key_mode=key_mode)
    service.request("domain", DOMAIN)
    service.request_code("domain", DOMAIN)
    service.request("email", SHARED)
    service.request_code("email", SHARED)
    single_link, single_code, shared_link, shared_code = mailer.outbox[-4:]
    other = "choose" if key_mode == "generate" else "generate"
    for message in (single_link, single_code):
        for text in (_plain(message), _html(message)):
            assert PROMISES[language, key_mode] in text
            assert PROMISES[language, other] not in text
    for message in (shared_link, shared_code):
        for text in (_plain(message), _html(message)):
            assert SHARED_PROMISES[language, key_mode] in text
            assert SHARED_PROMISES[language, other] not in text
    assert str(single_code["Content-Language"]) == language


@pytest.mark.parametrize(
    "language, subject, lasts",
    [
        (
            "en",
            "XMundo Networks: your code to recover access",
            "The code works once and expires in 15 minutes",
        ),
        (
            "es",
            "XMundo Networks: su código para recuperar el acceso",
            "El código sirve una sola vez y vence en 15 minutos",
        ),
    ],
)
def test_the_code_mail_is_branded_and_translated(
    make_service: MakeService,
    mailer: MemoryMailer,
    language: str,
    subject: str,
    lasts: str,
) -> None:
    """Subject, body and footer carry the provider's name; the code sits in its own <code>."""
    service = make_service(locale=language, branding=BRAND)
    service.request_code("domain", DOMAIN)
    message = mailer.outbox[-1]
    code = code_from(message)
    assert str(message["Subject"]) == subject
    text, html = _plain(message), _html(message)
    assert lasts in text and lasts in html
    assert "XMundo Networks" in text and "XMundo Networks" in html
    assert re.search(rf'<code class="code"[^>]*>{code}</code>', html)
    assert "/recover/" not in text + html
    assert f'lang="{language}"' in html


def test_no_subject_nor_wording_without_branding(
    make_service: MakeService, mailer: MemoryMailer
) -> None:
    """Neutral wording, as the other mails have; the code reads on a line of its own."""
    make_service().request_code("domain", DOMAIN)
    message = mailer.outbox[-1]
    assert str(message["Subject"]) == "Your client panel recovery code"
    lines = str(message.get_body(("plain",)).get_content()).splitlines()
    assert code_from(message) in lines
    assert "Do not share it with anyone." in _plain(message)


def test_a_shared_address_lists_each_number_with_its_code(
    make_service: MakeService,
    mailer: MemoryMailer,
    agency: MemoryDirectory,
) -> None:
    """One heading per client number in HTML, one "Client number N:" line in text."""
    make_service().request_code("email", SHARED)
    message = mailer.outbox[-1]
    text = str(message.get_body(("plain",)).get_content())
    pairs = re.findall(r"Client number (\d+):\n(\S+)", text)
    assert [number for number, _ in pairs] == ["9101", "9102"]
    html = _html(message)
    for number, code in pairs:
        assert f">Client number {number}</h2>" in html
        assert f">{code}</code>" in html
    assert "This mail lists 2 client accounts" in _plain(message)
    assert "Each code works once" in _plain(message)


def test_a_host_template_replaces_the_code_mail(
    make_service: MakeService,
    mailer: MemoryMailer,
    tmp_path: Path,
) -> None:
    """code.txt and code_subject.txt are overridable by name, with the codes in context."""
    (tmp_path / "code_subject.txt").write_text("Your code", encoding="utf-8")
    (tmp_path / "code.txt").write_text(
        "{% for entry in codes %}{{ entry.number }}: {{ entry.code }}\n{% endfor %}"
        "{{ 'choose' if chooses else 'generate' }}",
        encoding="utf-8",
    )
    make_service(templates=tmp_path).request_code("domain", DOMAIN)
    message = mailer.outbox[-1]
    assert str(message["Subject"]) == "Your code"
    number, code = str(message.get_body(("plain",)).get_content()).splitlines()[0].split(": ")
    assert number == "9000" and re.fullmatch(r"\w{4}-\w{4}", code)


def test_the_composer_pickles_with_its_codes(clock: FakeClock) -> None:
    """A composer crossing to a delivery process makes the same codes and wording."""
    service = RecoveryService(
        MemoryDirectory(),
        MemoryMailer(),
        secret_key="s" * 32,
        confirm_url=CONFIRM_URL,
        sender=SENDER,
        delivery="sync",
        rate_limits=None,
        clock=clock,
        locale="es",
        key_mode="choose",
    )
    client = Client("9000", "ana@example.com", "h" * 20, name="Ana")
    job = ConfirmationJob(
        recipient=client.email,
        name="Ana",
        language="es",
        sender=SENDER,
        clients=(("9000", account_binding(client)),),
        issued_at=clock.now,
        nonce=CodeSigner.new_nonce(),
    )
    copy = pickle.loads(pickle.dumps(service.composer))
    first, second = service.composer.confirmation(job), copy.confirmation(job)
    assert _plain(first) == _plain(second)
    assert code_from(first) == format_code(service.codes.code(job.nonce, job.clients[0][1]))
    assert PROMISES["es", "choose"] in _plain(second)
    assert copy.code_max_age == service.codes.max_age


# What a code support issued says, and what only a visitor's code mail may say.
SUPPORT_WORDING = {
    "en": (
        "our support team issued a code",
        "on the page our support team points you to",
        "not even our support team",
        "contact our support team again",
    ),
    "es": (
        "nuestro equipo de soporte generó un código",
        "en la página que le indique nuestro equipo de soporte",
        "ni siquiera nuestro equipo de soporte",
        "comunicarse otra vez con nuestro equipo de soporte",
    ),
}
SUPPORT_PROMISES = {
    ("en", "generate"): "To get a new access key, type your client number, 9000,",
    ("en", "choose"): "To choose a new access key, type your client number, 9000,",
    (
        "es",
        "generate",
    ): "Para recibir una clave de acceso nueva, escriba su número de cliente, 9000,",
    ("es", "choose"): "Para elegir una clave de acceso nueva, escriba su número de cliente, 9000,",
}
VISITOR_WORDING = {
    "en": ("where you asked for it", "in the browser where you asked"),
    "es": ("donde hizo el pedido", "en el navegador donde hizo el pedido"),
}


@pytest.mark.parametrize("language", ["en", "es"])
@pytest.mark.parametrize("key_mode", ["generate", "choose"])
def test_a_code_support_issued_is_mailed_in_support_wording(
    make_service: MakeService,
    mailer: MemoryMailer,
    language: str,
    key_mode: str,
) -> None:
    """Support's code mail names the client number to type with the code on the page support
    gives, and never sends the client back to a page or browser it asked on; a visitor's code
    mail from the same service keeps its own wording."""
    service = make_service(locale=language, key_mode=key_mode)
    issued = service.issue_code("9000", operator="support-ana")
    service.request_code("domain", DOMAIN)
    support, visitor = mailer.outbox[-2:]
    other = "choose" if key_mode == "generate" else "generate"
    assert code_from(support) == issued.code
    for text in (_plain(support), _html(support)):
        assert SUPPORT_PROMISES[language, key_mode] in text
        assert all(phrase in text for phrase in SUPPORT_WORDING[language])
        assert not any(phrase in text for phrase in VISITOR_WORDING[language])
        assert SUPPORT_PROMISES[language, other] not in text
    for text in (_plain(visitor), _html(visitor)):
        assert PROMISES[language, key_mode] in text
        assert all(phrase in text for phrase in VISITOR_WORDING[language])
        assert not any(phrase in text for phrase in SUPPORT_WORDING[language])
    assert str(support["Subject"]) == str(visitor["Subject"])


def test_the_support_footer_names_the_provider(
    make_service: MakeService, mailer: MemoryMailer
) -> None:
    """With branding, the opening and the footer say whose support team issued the code."""
    make_service(locale="es", branding=BRAND).issue_code("9000")
    text, html = _plain(mailer.outbox[-1]), _html(mailer.outbox[-1])
    for body in (text, html):
        assert "el equipo de soporte de XMundo Networks generó un código" in body
        assert (
            "XMundo Networks le envió este mensaje automático porque el equipo de soporte" in body
        )
        assert "alguien pidió" not in body


def test_support_jobs_keep_their_wording_across_delivery(clock: FakeClock) -> None:
    """A job marked by support crosses to a delivery worker as data and keeps its wording;
    job data written without the mark (an older release's, a visitor's) reads as a visitor's."""
    service = RecoveryService(
        MemoryDirectory(),
        MemoryMailer(),
        secret_key="s" * 32,
        confirm_url=CONFIRM_URL,
        sender=SENDER,
        delivery="sync",
        rate_limits=None,
        clock=clock,
    )
    client = Client("9000", "ana@example.com", "h" * 20, name="Ana")
    visitor = ConfirmationJob(
        recipient=client.email,
        name="Ana",
        language="en",
        sender=SENDER,
        clients=(("9000", account_binding(client)),),
        issued_at=clock.now,
        nonce=CodeSigner.new_nonce(),
    )
    support = dataclasses.replace(visitor, by_support=True)
    assert "by_support" not in visitor.to_dict()
    data = support.to_dict()
    assert ConfirmationJob.from_dict(data) == support
    older = {key: value for key, value in data.items() if key != "by_support"}
    assert ConfirmationJob.from_dict(older) == visitor
    with pytest.raises(ValueError):
        ConfirmationJob.from_dict({**data, "by_support": "yes"})
    copy = pickle.loads(pickle.dumps(service.composer))
    mailed = copy.confirmation(ConfirmationJob.from_dict(data))
    assert SUPPORT_WORDING["en"][0] in _plain(mailed)
    assert VISITOR_WORDING["en"][0] not in _plain(mailed)
    assert VISITOR_WORDING["en"][0] in _plain(copy.confirmation(visitor))
