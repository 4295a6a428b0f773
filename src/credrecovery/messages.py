"""The two mails of the flow, rendered in English or Spanish.

Pure: plain values in, an :class:`email.message.EmailMessage` out. Directory
fields only ever reach the body, escaped, and the ``To`` header as one
mailbox whose display name is written as atoms or RFC 2047 encoded-words,
so none can add a header or a recipient.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import re
from collections.abc import Sequence
from datetime import datetime, timedelta
from email.headerregistry import Address, AddressHeader, BaseHeader, HeaderRegistry
from email.message import EmailMessage
from email.policy import Policy
from email.policy import default as _default_policy
from email.utils import format_datetime, make_msgid
from typing import cast

import email_validator

from .models import Client

__all__ = [
    "LANGUAGES",
    "confirmation_message",
    "credentials_message",
    "mailbox",
    "pick_language",
]

LANGUAGES = ("en", "es")
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]+")
_MAX_NAME = 100
_PLAIN_PHRASE = re.compile(r"[A-Za-z0-9]+(?: [A-Za-z0-9]+)*")
# Headers that mark both mails as automated (RFC 3834, and Exchange's own),
# so that vacation responders and other robots do not answer them.
_AUTOMATED = (("Auto-Submitted", "auto-generated"), ("X-Auto-Response-Suppress", "All"))

@dataclasses.dataclass(frozen=True)
class _Catalog:
    confirm_subject: str
    confirm_body: str
    confirm_button: str
    confirm_body_many: str
    client_link: str
    more_clients: str
    credentials_subject: str
    credentials_body: str
    greeting: str
    greeting_anonymous: str
    units: tuple[tuple[str, str], ...]
    conjunction: str


_TEXT = {
    "en": _Catalog(
        confirm_subject="Confirm your client panel recovery request",
        confirm_body=(
            "{greeting}\n\n"
            "We received a request to recover access to your client panel "
            "account. To get your client number and a new access key, confirm "
            "the request by opening this link:\n\n{link}\n\n"
            "The link works once and expires in {expires} (at {deadline}).\n\n"
            "If you did not ask for this, ignore this message. Nothing on your "
            "account changes and your current access key keeps working.\n"
        ),
        confirm_button="Confirm the request",
        confirm_body_many=(
            "{greeting}\n\n"
            "We received a request to recover access to the client panel. This "
            "address is the primary address of several client accounts. To get "
            "the client number and a new access key of one of them, confirm the "
            "request by opening the link below that client number.\n\n{links}"
            "Each link works once and expires in {expires} (at {deadline}). "
            "Only the account whose link you open changes.\n\n"
            "If you did not ask for this, ignore this message. Nothing on your "
            "accounts changes and your current access keys keep working.\n"
        ),
        client_link="Client number {number}",
        more_clients=(
            "This address serves more client accounts than one mail lists. To "
            "recover one that is not listed, ask again with its client number "
            "or domain name."
        ),
        credentials_subject="Your client panel access details",
        credentials_body=(
            "{greeting}\n\n"
            "As you confirmed, here are your new access details for the client "
            "panel.\n\n"
            "Client number: {number}\n"
            "Access key: {key}\n\n"
            "Your previous access key no longer works. Keep this one somewhere "
            "safe, or change it after you sign in.\n\n"
            "If you did not ask for this, someone may be able to read your "
            "mail. Secure your mailbox, then contact support straight away.\n"
        ),
        greeting="Hello {name},",
        greeting_anonymous="Hello,",
        units=(("day", "days"), ("hour", "hours"), ("minute", "minutes")),
        conjunction="and",
    ),
    "es": _Catalog(
        confirm_subject="Confirme su pedido de recuperación de acceso",
        confirm_body=(
            "{greeting}\n\n"
            "Recibimos un pedido para recuperar el acceso a su cuenta del panel "
            "de clientes. Para recibir su número de cliente y una clave de "
            "acceso nueva, confirme el pedido abriendo este enlace:\n\n{link}\n\n"
            "El enlace sirve una sola vez y vence en {expires} ({deadline}).\n\n"
            "Si usted no hizo este pedido, ignore este mensaje. Su cuenta no "
            "cambia y su clave actual sigue funcionando.\n"
        ),
        confirm_button="Confirmar el pedido",
        confirm_body_many=(
            "{greeting}\n\n"
            "Recibimos un pedido para recuperar el acceso al panel de clientes. "
            "Esta dirección es la dirección primaria de varias cuentas de "
            "cliente. Para recibir el número de cliente y una clave de acceso "
            "nueva de una de ellas, confirme el pedido abriendo el enlace que "
            "figura debajo de ese número de cliente.\n\n{links}"
            "Cada enlace sirve una sola vez y vence en {expires} ({deadline}). "
            "Solo cambia la cuenta cuyo enlace abra.\n\n"
            "Si usted no hizo este pedido, ignore este mensaje. Sus cuentas no "
            "cambian y sus claves actuales siguen funcionando.\n"
        ),
        client_link="Número de cliente {number}",
        more_clients=(
            "Esta dirección tiene más cuentas de cliente de las que entran en un "
            "mensaje. Para recuperar una que no figura, vuelva a pedirlo con su "
            "número de cliente o su dominio."
        ),
        credentials_subject="Sus datos de acceso al panel de clientes",
        credentials_body=(
            "{greeting}\n\n"
            "Tal como lo confirmó, estos son sus nuevos datos de acceso al panel "
            "de clientes.\n\n"
            "Número de cliente: {number}\n"
            "Clave de acceso: {key}\n\n"
            "Su clave anterior ya no funciona. Guarde esta en un lugar seguro, "
            "o cámbiela después de ingresar.\n\n"
            "Si usted no hizo este pedido, alguien podría estar leyendo su "
            "correo. Proteja su casilla y comuníquese con soporte de inmediato.\n"
        ),
        greeting="Hola, {name}:",
        greeting_anonymous="Hola:",
        units=(("día", "días"), ("hora", "horas"), ("minuto", "minutos")),
        conjunction="y",
    ),
}


class _OneMailbox(AddressHeader):
    """Folds a header of one mailbox so that the name can never read as more addresses.

    The standard folding drops the quotes around a long display name
    (CPython gh-80222), and the commas, angle brackets and ``@`` inside then
    parse as further recipients. Here a name of plain letters, digits and
    spaces is written as atoms, and any other as RFC 2047 encoded-words,
    whose characters are all safe in a phrase.
    """

    def fold(self, *, policy: Policy) -> str:
        addresses = self.addresses
        if len(addresses) != 1:
            folded: str = super().fold(policy=policy)  # type: ignore[misc]
            return folded
        address = addresses[0]
        phrase = _phrase(address.display_name)
        tokens = [*phrase, f"<{address.addr_spec}>"] if phrase else [address.addr_spec]
        lines = [f"{cast(BaseHeader, self).name}:"]
        for token in tokens:
            if len(lines[-1]) + 1 + len(token) > 78 and lines[-1].strip():
                lines.append("")
            lines[-1] += " " + token
        return policy.linesep.join(lines) + policy.linesep


def _phrase(name: str) -> list[str]:
    if not name:
        return []
    if _PLAIN_PHRASE.fullmatch(name):
        return name.split(" ")
    words: list[bytes] = []
    chunk = b""
    for char in name:
        data = char.encode("utf-8")
        # 45 bytes encode to 60 characters: with "=?utf-8?b?" and "?=", 72 of
        # the 75 an encoded-word may have. Characters are never split.
        if len(chunk) + len(data) > 45:
            words.append(chunk)
            chunk = b""
        chunk += data
    words.append(chunk)
    return [f"=?utf-8?b?{base64.b64encode(word).decode('ascii')}?=" for word in words]


class _HeaderClasses(HeaderRegistry):
    # The standard registry builds a new class for every header it parses,
    # which was a sixth of the cost of rendering a message.
    def __init__(self) -> None:
        super().__init__()
        self._made: dict[str, type[BaseHeader]] = {}

    def __getitem__(self, name: str) -> type[BaseHeader]:
        key = name.lower()
        made = self._made.get(key)
        if made is None:
            made = super().__getitem__(name)
            if key in ("to", "from"):
                made = type(made.__name__, (_OneMailbox, made), {})
            self._made[key] = made
        return made


_POLICY = _default_policy.clone(header_factory=_HeaderClasses())
_UTF8_POLICY = _POLICY.clone(utf8=True)


def pick_language(*preferences: str | None) -> str:
    """Return the first supported language among ``preferences``, else English.

    ``"es"``, ``"es_AR"`` and ``"es-AR"`` all pick Spanish.
    """
    for preference in preferences:
        if preference:
            language = re.split(r"[-_.@]", preference, maxsplit=1)[0].lower()
            if language in LANGUAGES:
                return language
    return "en"


def confirmation_message(
    client: Client,
    *,
    link: str | None = None,
    links: Sequence[tuple[str, str]] = (),
    truncated: bool = False,
    expires_in: timedelta,
    sender: str,
    language: str,
    now: datetime,
) -> EmailMessage:
    """The mail that asks the client to confirm by following a link.

    Give ``link`` for one client, or ``links`` as ``(client number, link)``
    pairs for an address several clients share; ``truncated`` tells that the
    address serves more clients than the list holds. Raises
    :class:`ValueError` when the primary address cannot be mailed.
    """
    if link is not None:
        links = [(client.number, link)]
    if not links:
        raise ValueError("a confirmation mail needs a link")
    text = _TEXT[language]
    values = {
        "greeting": _greeting(text, client),
        "expires": _duration(text, expires_in),
        "deadline": (now + expires_in).strftime("%Y-%m-%d %H:%M UTC"),
    }
    if len(links) == 1 and not truncated:
        plain = text.confirm_body.format(link=links[0][1], **values)
        buttons = _button(links[0][1], text.confirm_button)
    else:
        listed = "".join(
            f"{text.client_link.format(number=number)}:\n{url}\n\n" for number, url in links
        )
        if truncated:
            listed += text.more_clients + "\n\n"
        plain = text.confirm_body_many.format(links=listed, **values)
        buttons = "".join(
            _button(url, f"{text.confirm_button}: {text.client_link.format(number=number)}")
            for number, url in links
        )
    return _build(client, sender, text.confirm_subject, plain, now, extra_html=buttons)


def credentials_message(
    client: Client,
    *,
    key: str,
    sender: str,
    language: str,
    now: datetime,
) -> EmailMessage:
    """The mail that carries the client number and the new access key."""
    text = _TEXT[language]
    plain = text.credentials_body.format(
        greeting=_greeting(text, client), number=client.number, key=key
    )
    return _build(client, sender, text.credentials_subject, plain, now)


def safe_display_name(name: str) -> str:
    """``name`` with control characters folded to spaces and its length capped."""
    return " ".join(_CONTROL.sub(" ", name).split())[:_MAX_NAME]


def mailbox(address: str, name: str = "") -> Address:
    """``address`` checked as a typed address would be, as an :class:`Address`.

    The domain becomes an A-label, which every server accepts; ``name`` is
    cleaned with :func:`safe_display_name`. Raises :class:`ValueError` when
    the address cannot be mailed.
    """
    # The parts go to Address unparsed, since the stdlib parser refuses a
    # mailbox name outside ASCII.
    try:
        checked = email_validator.validate_email(address, check_deliverability=False)
    except (email_validator.EmailNotValidError, UnicodeError, TypeError) as exc:
        raise ValueError("not a valid email address") from exc
    return Address(display_name=safe_display_name(name),
                   username=checked.local_part, domain=checked.ascii_domain)


def _button(link: str, label: str) -> str:
    return f'<p><a href="{html.escape(link, quote=True)}">{html.escape(label)}</a></p>'


def _greeting(text: _Catalog, client: Client) -> str:
    name = safe_display_name(client.name)
    return text.greeting.format(name=name) if name else text.greeting_anonymous


def _duration(text: _Catalog, span: timedelta) -> str:
    minutes = max(1, round(span.total_seconds() / 60))
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    parts = [
        f"{count} {text.units[i][count != 1]}"
        for i, count in enumerate((days, hours, minutes))
        if count
    ]
    if len(parts) == 1:
        return parts[0]
    return f"{', '.join(parts[:-1])} {text.conjunction} {parts[-1]}"


def _build(
    client: Client,
    sender: str,
    subject: str,
    plain: str,
    now: datetime,
    *,
    extra_html: str = "",
) -> EmailMessage:
    try:
        recipient = mailbox(client.email, client.name)
    except ValueError as exc:
        raise ValueError("the primary address is not a valid email address") from exc
    # Only a mailbox name outside ASCII needs SMTPUTF8 and UTF-8 headers.
    message = EmailMessage(policy=_POLICY if recipient.username.isascii() else _UTF8_POLICY)
    message["From"] = sender
    message["To"] = recipient
    message["Subject"] = subject
    message["Date"] = format_datetime(now)
    # An explicit domain keeps make_msgid from asking the resolver for one.
    domain = sender.rpartition("@")[2].strip("<> ") or "localhost"
    message["Message-ID"] = make_msgid(domain=domain)
    for name, value in _AUTOMATED:
        message[name] = value
    message.set_content(plain, cte="quoted-printable")
    paragraphs = "".join(
        f"<p>{html.escape(block).replace(chr(10), '<br>')}</p>"
        for block in plain.strip().split("\n\n")
    )
    message.add_alternative(
        f'<!DOCTYPE html><html><body>{paragraphs}{extra_html}</body></html>',
        subtype="html",
        cte="quoted-printable",
    )
    return message
