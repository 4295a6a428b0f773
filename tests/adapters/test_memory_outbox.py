"""MemoryMailer's outbox: still a list, and rendered as escaped HTML cards in a notebook."""

from __future__ import annotations

import html
import re
import threading
from collections.abc import Iterator
from email.message import EmailMessage

import pytest
from passlib.context import CryptContext

from credrecovery import RecoveryService
from credrecovery.memory import MemoryDirectory, MemoryMailer, MessageView, Outbox, render_html
from helpers import CONFIRM_URL, OLD_KEY, SECRET, SENDER, key_from, token_from

SRCDOC = re.compile(r'<iframe sandbox srcdoc="([^"]*)"')
HOSTILE = "<script>alert(1)</script>"


@pytest.fixture
def service(
    directory: MemoryDirectory, mailer: MemoryMailer, ctx: CryptContext
) -> Iterator[RecoveryService]:
    with RecoveryService(
        directory,
        mailer,
        secret_key=SECRET,
        confirm_url=CONFIRM_URL,
        sender=SENDER,
        crypt_context=ctx,
        delivery="sync",
        rate_limits=None,
    ) as service:
        yield service


def _html_part(message: EmailMessage) -> str:
    part = message.get_body(("html",))
    assert part is not None
    return str(part.get_content())


def _hostile_message(*, with_html: bool = True) -> EmailMessage:
    message = EmailMessage()
    message["From"] = f'"{HOSTILE}" <evil@example.com>'
    message["To"] = "victim@example.com"
    message["Subject"] = HOSTILE
    message["Date"] = "Mon, 01 Jan 2024 00:00:00 +0000"
    message.set_content(f"plain {HOSTILE} & more")
    if with_html:
        message.add_alternative(
            f"<p onclick=\"steal()\">it's {HOSTILE}</p><a href='javascript:x'>x</a>",
            subtype="html",
        )
    return message


def test_outbox_renders_every_message_with_its_headers_escaped(
    service: RecoveryService, mailer: MemoryMailer
) -> None:
    """The outbox's HTML holds one card per message with its From, To, Subject and Date escaped."""
    service.request("domain", "ejemploxmundo.com.ar")
    service.request("client_number", "9000")
    rendered = mailer.outbox._repr_html_()
    assert rendered.count('class="credrecovery-message"') == 2
    assert "2 messages" in rendered
    for message in mailer.outbox:
        for name in ("From", "To", "Subject", "Date"):
            value = str(message[name])
            assert value
            assert html.escape(value) in rendered
    # The sender has angle brackets; only their escaped form may appear.
    assert "&lt;panel@example.com&gt;" in rendered
    assert "<panel@example.com>" not in rendered


def test_html_part_goes_in_a_sandboxed_iframe_whose_srcdoc_round_trips(
    service: RecoveryService, mailer: MemoryMailer
) -> None:
    """The HTML part sits in <iframe sandbox srcdoc>, and html.unescape(srcdoc) is that part."""
    service.request("email", "ejemplo@ejemploxmundo.com.ar")
    service.confirm(token_from(mailer.outbox[0]))
    for message in mailer.outbox:
        rendered = render_html(message)
        found = SRCDOC.findall(rendered)
        assert len(found) == 1
        assert html.unescape(found[0]) == _html_part(message)
        assert "allow-" not in rendered  # a bare sandbox: no scripts, no same origin
        assert "<pre" not in rendered


def test_hostile_headers_and_html_body_come_out_escaped() -> None:
    """A <script> in the subject, the sender's name or the HTML part never appears unescaped."""
    message = _hostile_message()
    for rendered in (render_html(message), Outbox([message])._repr_html_()):
        assert "<script" not in rendered.lower()
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in rendered
        found = SRCDOC.findall(rendered)
        assert len(found) == 1
        # The quotes in the body could not end the attribute early.
        assert html.unescape(found[0]) == _html_part(message)
        assert '"' not in found[0] and "'" not in found[0]


def test_message_without_html_part_shows_its_plain_text_in_pre() -> None:
    """A plain-text-only message renders escaped in <pre>, with no iframe."""
    rendered = render_html(_hostile_message(with_html=False))
    assert "<iframe" not in rendered
    assert "<pre" in rendered
    assert "plain &lt;script&gt;alert(1)&lt;/script&gt; &amp; more" in rendered
    assert "<script" not in rendered.lower()


def test_empty_outbox_renders_and_equals_an_empty_list() -> None:
    """A new mailer's outbox is == [], and renders as an empty outbox."""
    mailer = MemoryMailer()
    assert mailer.outbox == []
    assert isinstance(mailer.outbox, list)
    assert "empty" in mailer.outbox._repr_html_()
    assert 'class="credrecovery-message"' not in mailer.outbox._repr_html_()


def test_outbox_still_behaves_as_a_list(service: RecoveryService, mailer: MemoryMailer) -> None:
    """send() appends to the outbox, which keeps len, indexing, slicing, iteration and ==."""
    message = _hostile_message()
    mailer.send(message)
    assert len(mailer.outbox) == 1
    assert mailer.outbox[0] is message
    assert mailer.outbox[-1] is message
    assert mailer.outbox == [message]
    assert mailer.outbox[:1] == [message]
    service.request("domain", "ejemploxmundo.com.ar")
    assert len(mailer.outbox) == 2
    assert list(mailer.outbox)[1] is mailer.outbox[1]
    assert repr(mailer) == "MemoryMailer(<2 messages>)"


def test_show_renders_one_message_and_keeps_secrets_out_of_its_repr(
    service: RecoveryService, mailer: MemoryMailer
) -> None:
    """outbox.show(i) renders that message alone; its repr holds neither link nor key."""
    service.request("domain", "ejemploxmundo.com.ar")
    token = token_from(mailer.outbox[0])
    service.confirm(token)
    new_key = key_from(mailer.outbox[-1])
    view = mailer.outbox.show()
    assert isinstance(view, MessageView)
    assert view.message is mailer.outbox[-1]
    assert view._repr_html_() == render_html(mailer.outbox[-1])
    assert mailer.outbox.show(0)._repr_html_() == render_html(mailer.outbox[0])
    assert view._repr_html_() != mailer.outbox.show(0)._repr_html_()
    for shown in (view, mailer.outbox.show(0)):
        assert token not in repr(shown)
        assert new_key not in repr(shown)
        assert OLD_KEY not in repr(shown)
    assert str(mailer.outbox[-1]["Subject"]) in repr(view)
    with pytest.raises(IndexError):
        mailer.outbox.show(5)


@pytest.mark.slow  # many threads, many renderings
def test_concurrent_sends_all_land_while_the_outbox_renders() -> None:
    """Sends from many threads all reach the outbox, and rendering meanwhile never fails."""
    mailer = MemoryMailer()
    message = _hostile_message(with_html=False)
    errors: list[BaseException] = []

    def send_many() -> None:
        for _ in range(100):
            mailer.send(message)

    def render_often() -> None:
        try:
            for _ in range(50):
                mailer.outbox._repr_html_()
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=send_many) for _ in range(4)]
    threads.append(threading.Thread(target=render_often))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert len(mailer.outbox) == 400
    assert mailer.outbox._repr_html_().count('class="credrecovery-message"') == 400
