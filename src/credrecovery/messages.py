"""The two mails of the flow, rendered in English or Spanish.

Pure: plain values in, an :class:`email.message.EmailMessage` out. Directory
fields only ever reach the body, escaped, and the ``To`` header through
:class:`email.headerregistry.Address`, so none can add a header or a recipient.
"""

from __future__ import annotations

import dataclasses
import html
import re
from datetime import datetime, timedelta
from email.headerregistry import Address, BaseHeader, HeaderRegistry
from email.message import EmailMessage
from email.policy import default as _default_policy
from email.utils import format_datetime, make_msgid

import email_validator

from .models import Client

__all__ = ["LANGUAGES", "confirmation_message", "credentials_message", "pick_language"]

LANGUAGES = ("en", "es")
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]+")
_MAX_NAME = 100

@dataclasses.dataclass(frozen=True)
class _Catalog:
    confirm_subject: str
    confirm_body: str
    confirm_button: str
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
            made = self._made[key] = super().__getitem__(name)
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
    link: str,
    expires_in: timedelta,
    sender: str,
    language: str,
    now: datetime,
) -> EmailMessage:
    """The mail that asks the client to confirm by following ``link``."""
    text = _TEXT[language]
    deadline = (now + expires_in).strftime("%Y-%m-%d %H:%M UTC")
    plain = text.confirm_body.format(
        greeting=_greeting(text, client),
        link=link,
        expires=_duration(text, expires_in),
        deadline=deadline,
    )
    button = (
        f'<p><a href="{html.escape(link, quote=True)}">'
        f"{html.escape(text.confirm_button)}</a></p>"
    )
    return _build(client, sender, text.confirm_subject, plain, now, extra_html=button)


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


def _recipient(client: Client) -> Address:
    # The address comes from the host's directory: check it as a typed one
    # would be, then hand its parts to Address unparsed, since the stdlib
    # parser refuses a mailbox name outside ASCII. The domain travels as an
    # A-label, which every server accepts.
    try:
        checked = email_validator.validate_email(client.email, check_deliverability=False)
    except email_validator.EmailNotValidError as exc:
        raise ValueError("the primary address is not a valid email address") from exc
    return Address(display_name=safe_display_name(client.name),
                   username=checked.local_part, domain=checked.ascii_domain)


def _build(
    client: Client,
    sender: str,
    subject: str,
    plain: str,
    now: datetime,
    *,
    extra_html: str = "",
) -> EmailMessage:
    recipient = _recipient(client)
    # Only a mailbox name outside ASCII needs SMTPUTF8 and UTF-8 headers.
    message = EmailMessage(policy=_POLICY if recipient.username.isascii() else _UTF8_POLICY)
    message["From"] = sender
    message["To"] = recipient
    message["Subject"] = subject
    message["Date"] = format_datetime(now)
    # An explicit domain keeps make_msgid from asking the resolver for one.
    domain = sender.rpartition("@")[2].strip("<> ") or "localhost"
    message["Message-ID"] = make_msgid(domain=domain)
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
