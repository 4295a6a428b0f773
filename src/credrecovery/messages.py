"""The two mails of the flow: rendered from templates, in the client's language.

Bodies and subjects come from Jinja2 templates (``credrecovery/templates``,
or a host's own, searched first) with texts from gettext catalogs (see
:mod:`credrecovery.i18n`). The envelope is the library's alone: ``From``,
``To``, ``Date``, ``Message-ID``, the automated-mail headers and
``Content-Language``. Directory fields only ever reach the body, escaped in
HTML, and the ``To`` header as one mailbox whose display name is written as
atoms or RFC 2047 encoded-words, so none can add a header or a recipient. A
rendered subject is folded to one line first.
"""

from __future__ import annotations

import base64
import collections
import functools
import os
import re
import threading
import unicodedata
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from email.headerregistry import Address, AddressHeader, BaseHeader, HeaderRegistry
from email.message import EmailMessage
from email.policy import Policy
from email.policy import default as _default_policy
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Any, cast

import jinja2
from jinja2.bccache import Bucket

from . import i18n
from .branding import Branding
from .exceptions import InvalidIdentifier, KeyRejected
from .identifiers import check_address
from .models import Client

__all__ = [
    "TEMPLATE_NAMES",
    "MailRenderer",
    "confirmation_message",
    "credentials_message",
    "mailbox",
    "safe_display_name",
]

#: The templates a host may override, by file name.
TEMPLATE_NAMES = (
    "confirmation_subject.txt", "confirmation.txt", "confirmation.html",
    "credentials_subject.txt", "credentials.txt", "credentials.html",
    "key_changed_subject.txt", "key_changed.txt", "key_changed.html",
    "layout.html", "macros.html", "greeting.txt", "greeting.html",
)
PACKAGED_TEMPLATES = Path(__file__).parent / "templates"

# Line and paragraph separators, and the bidi embeddings, overrides and
# isolates that would let a name display as something it is not.
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029\u202a-\u202e\u2066-\u2069]+")
_MAX_NAME = 100
_MAX_SUBJECT = 200
_PLAIN_PHRASE = re.compile(r"[A-Za-z0-9]+(?: [A-Za-z0-9]+)*")
_BLANK_LINES = re.compile(r"\n{3,}")
# RFC 5322 2.1.1: a line holds at most 998 octets before its CRLF.
_MAX_LINE_OCTETS = 998
# Headers that mark both mails as automated (RFC 3834, and Exchange's own),
# so that vacation responders and other robots do not answer them.
_AUTOMATED = (("Auto-Submitted", "auto-generated"), ("X-Auto-Response-Suppress", "All"))


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


def safe_display_name(name: str) -> str:
    """``name`` with control and bidi override characters folded to spaces, length capped."""
    return " ".join(_CONTROL.sub(" ", name).split())[:_MAX_NAME]


def mailbox(address: str, name: str = "") -> Address:
    """``address`` checked as a typed address would be, as an :class:`Address`.

    The domain becomes an A-label, which every server accepts; ``name`` is
    cleaned with :func:`safe_display_name`. Syntax decides, not the domain:
    names kept for tests and local networks (``example.test``, ``localhost``)
    are mailed like any other. Raises :class:`ValueError` when the address
    cannot be mailed.
    """
    # The parts go to Address unparsed, since the stdlib parser refuses a
    # mailbox name outside ASCII.
    try:
        checked = check_address(address)
    except ValueError as exc:
        raise ValueError("not a valid email address") from exc
    return Address(display_name=safe_display_name(name),
                   username=checked.local_part, domain=checked.ascii_domain)


class MailRenderer:
    """Renders both mails from templates and catalogs; the settings of a :class:`Composer`.

    :param branding: how the mails name the provider; ``None`` for neutral
        wording ("your client panel").
    :param templates: a directory or a :class:`jinja2.BaseLoader` searched
        before the packaged templates, so that a host overrides one file by
        its name (:data:`TEMPLATE_NAMES`).
    :param catalogs: a host's gettext catalog directory, searched before the
        packaged one (``<dir>/<locale>/LC_MESSAGES/credrecovery.mo`` or ``.po``).
    :param locale: the service's language, for clients without one.

    Pickles as its settings alone (a loader given must pickle too): the
    Jinja2 environments are built again on first use.
    """

    def __init__(
        self,
        *,
        branding: Branding | None = None,
        templates: str | os.PathLike[str] | jinja2.BaseLoader | None = None,
        catalogs: str | os.PathLike[str] | None = None,
        locale: str = "en",
    ) -> None:
        if branding is not None and not isinstance(branding, Branding):
            raise TypeError("branding must be a credrecovery.Branding")
        if templates is not None and not isinstance(templates, jinja2.BaseLoader):
            templates = os.fspath(templates)
            if not Path(templates).is_dir():
                raise ValueError("templates must be a directory or a jinja2 loader")
        if catalogs is not None:
            catalogs = os.fspath(catalogs)
            if not Path(catalogs).is_dir():
                raise ValueError("catalogs must be a directory")
        self.branding = branding
        self.templates: str | jinja2.BaseLoader | None = templates
        self.catalogs: str | None = catalogs
        self.locale = locale
        self._dirs = i18n.catalog_dirs(catalogs)
        self._environments: dict[str, jinja2.Environment] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return (f"MailRenderer(branding={self.branding!r}, templates={self.templates!r}, "
                f"catalogs={self.catalogs!r}, locale={self.locale!r})")

    def __getstate__(self) -> dict[str, Any]:
        return {"branding": self.branding, "templates": self.templates,
                "catalogs": self.catalogs, "locale": self.locale}

    def __setstate__(self, state: Mapping[str, Any]) -> None:
        self.__init__(**state)  # type: ignore[misc]

    @property
    def languages(self) -> frozenset[str]:
        """The locales with a catalog, packaged or the host's; English always."""
        return i18n.available_languages(self._dirs)

    def language_for(self, *preferences: str | None) -> str:
        """The first of ``preferences`` with a catalog, then the service's locale, else ``"en"``."""
        return i18n.negotiate((*preferences, self.locale), self.languages)

    def gettext(self, message: str, language: str) -> str:
        """``message`` translated into ``language`` (negotiated first)."""
        return i18n.translations(self._dirs, self.language_for(language)).gettext(message)

    def error_message(self, error: InvalidIdentifier | KeyRejected,
                      language: str | None = None) -> str:
        """``error``'s message in ``language``, else in the service's locale."""
        return error.message_in(self.language_for(language), self.catalogs)

    def confirmation(
        self,
        *,
        recipient: str,
        name: str,
        links: Sequence[tuple[str, str]],
        truncated: bool,
        expires_in: timedelta,
        sender: str,
        language: str,
        now: datetime,
    ) -> EmailMessage:
        """The mail asking to confirm by following one of ``links``, ``(number, url)`` pairs.

        Raises :class:`ValueError` when ``recipient`` cannot be mailed.
        """
        if not links:
            raise ValueError("a confirmation mail needs a link")
        to = _recipient(recipient, name)
        locale = self.language_for(language)
        context = self._context(name, locale)
        context.update(
            links=[{"number": number, "url": url} for number, url in links],
            client_numbers=[number for number, _ in links],
            truncated=truncated,
            expires_in=i18n.format_timedelta(expires_in, locale),
            deadline=i18n.format_datetime(now + expires_in, locale),
        )
        return self._render("confirmation", context, locale, to, sender, now)

    def credentials(
        self,
        *,
        recipient: str,
        name: str,
        number: str,
        key: str,
        sender: str,
        language: str,
        now: datetime,
    ) -> EmailMessage:
        """The mail carrying client ``number`` and its new access ``key``.

        Raises :class:`ValueError` when ``recipient`` cannot be mailed.
        """
        return self._client_mail("credentials", recipient, name, number, sender, language, now,
                                 key=key)

    def key_changed(
        self,
        *,
        recipient: str,
        name: str,
        number: str,
        sender: str,
        language: str,
        now: datetime,
    ) -> EmailMessage:
        """The notice that client ``number``'s key was changed at ``now``; it carries no key.

        Raises :class:`ValueError` when ``recipient`` cannot be mailed.
        """
        locale = self.language_for(language)
        return self._client_mail("key_changed", recipient, name, number, sender, locale, now,
                                 changed_at=i18n.format_datetime(now, locale))

    def _client_mail(self, mail: str, recipient: str, name: str, number: str, sender: str,
                     language: str, now: datetime, **values: Any) -> EmailMessage:
        """Render ``mail`` for client ``number``, with ``values`` added to the context."""
        to = _recipient(recipient, name)
        locale = self.language_for(language)
        context = self._context(name, locale)
        context.update(client_number=number, **values)
        return self._render(mail, context, locale, to, sender, now)

    def _context(self, name: str, locale: str) -> dict[str, Any]:
        branding = self.branding
        return {
            "branding": branding,
            "language": i18n.language_tag(locale),
            "direction": i18n.text_direction(locale),
            "greeting_name": safe_display_name(name),
            "login_url": branding.login_url if branding else None,
            "support": branding.support if branding else "",
            "support_href": branding.support_href if branding else None,
        }

    def _render(self, mail: str, context: dict[str, Any], locale: str, to: Address,
                sender: str, now: datetime) -> EmailMessage:
        environment = self._environment(locale)
        subject = one_line(environment.get_template(f"{mail}_subject.txt").render(context))
        context["subject"] = subject
        plain = _tidy(environment.get_template(f"{mail}.txt").render(context))
        html = environment.get_template(f"{mail}.html").render(context)
        return _build(to, sender, subject, plain, html, now, context["language"])

    def _environment(self, locale: str) -> jinja2.Environment:
        # One environment per language: gettext is installed environment-wide,
        # and delivery renders from several threads at once.
        environment = self._environments.get(locale)
        if environment is not None:
            return environment
        with self._lock:
            environment = self._environments.get(locale)
            if environment is None:
                environment = self._new_environment(locale)
                self._environments[locale] = environment
        return environment

    def _new_environment(self, locale: str) -> jinja2.Environment:
        loaders: list[jinja2.BaseLoader] = [jinja2.FileSystemLoader(PACKAGED_TEMPLATES)]
        if isinstance(self.templates, jinja2.BaseLoader):
            loaders.insert(0, self.templates)
        elif self.templates is not None:
            loaders.insert(0, jinja2.FileSystemLoader(self.templates))
        environment = jinja2.Environment(
            loader=jinja2.ChoiceLoader(loaders),
            autoescape=jinja2.select_autoescape(
                enabled_extensions=("html",), default_for_string=False, default=False),
            undefined=jinja2.StrictUndefined,
            extensions=["jinja2.ext.i18n"],
            lstrip_blocks=True,
            keep_trailing_newline=True,
            auto_reload=False,
            bytecode_cache=_COMPILED,
        )
        translations = i18n.translations(self._dirs, locale)
        environment.install_gettext_translations(  # type: ignore[attr-defined]
            translations, newstyle=True)
        return environment


class _CompiledTemplates(jinja2.BytecodeCache):
    """Compiled templates shared by every renderer in the process, newest 256 kept.

    Each service has environments of its own, and compiling the templates
    again for each costs about a tenth of a second. Jinja2 checks an entry
    against the template's source before using it, so an edited or
    overriding template is compiled afresh. Every environment here is built
    with the same options, which the compiled code depends on.
    """

    def __init__(self, capacity: int = 256) -> None:
        self._entries: collections.OrderedDict[str, bytes] = collections.OrderedDict()
        self._capacity = capacity
        self._lock = threading.Lock()

    def load_bytecode(self, bucket: Bucket) -> None:
        with self._lock:
            data = self._entries.get(bucket.key)
            if data is not None:
                self._entries.move_to_end(bucket.key)
        if data is not None:
            bucket.bytecode_from_string(data)

    def dump_bytecode(self, bucket: Bucket) -> None:
        data = bucket.bytecode_to_string()
        with self._lock:
            self._entries[bucket.key] = data
            self._entries.move_to_end(bucket.key)
            while len(self._entries) > self._capacity:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


_COMPILED = _CompiledTemplates()


@functools.lru_cache(maxsize=16)
def _default_renderer(branding: Branding | None) -> MailRenderer:
    return MailRenderer(branding=branding)


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
    branding: Branding | None = None,
) -> EmailMessage:
    """The mail that asks the client to confirm by following a link (packaged templates).

    Give ``link`` for one client, or ``links`` as ``(client number, link)``
    pairs for an address several clients share; ``truncated`` tells that the
    address serves more clients than the list holds. ``language`` is a
    locale (``"es"``, ``"pt-BR"``); without a catalog for it, English.
    Raises :class:`ValueError` when the primary address cannot be mailed.
    """
    if link is not None:
        links = [(client.number, link)]
    return _default_renderer(branding).confirmation(
        recipient=client.email, name=client.name, links=links, truncated=truncated,
        expires_in=expires_in, sender=sender, language=language, now=now)


def credentials_message(
    client: Client,
    *,
    key: str,
    sender: str,
    language: str,
    now: datetime,
    branding: Branding | None = None,
) -> EmailMessage:
    """The mail that carries the client number and the new access key (packaged templates)."""
    return _default_renderer(branding).credentials(
        recipient=client.email, name=client.name, number=client.number, key=key,
        sender=sender, language=language, now=now)


def one_line(text: str) -> str:
    """``text`` as one header line: control characters and line breaks become spaces,
    runs of spaces one, and the length is capped."""
    cleaned = "".join(" " if _is_control(c) else c for c in text)
    line = " ".join(cleaned.split())
    return line if len(line) <= _MAX_SUBJECT else line[:_MAX_SUBJECT - 1].rstrip() + "…"


def _is_control(char: str) -> bool:
    category = unicodedata.category(char)
    return category[0] == "C" or category in ("Zl", "Zp")


def _tidy(plain: str) -> str:
    lines = [line if line == "-- " else line.rstrip() for line in plain.strip().split("\n")]
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)) + "\n"


def _recipient(address: str, name: str) -> Address:
    try:
        return mailbox(address, name)
    except ValueError as exc:
        raise ValueError("the primary address is not a valid email address") from exc


def _plain_encoding(plain: str) -> str:
    """The transfer encoding that leaves the text part, and so its links, readable as sent.

    Quoted-printable breaks lines at 76 characters and writes ``=`` as ``=3D``,
    so a link copied from a raw view (a debugging SMTP server, a console
    mail backend) would not work. The text goes as it is: 7bit in ASCII,
    else 8bit UTF-8 (RFC 6152), as Django's mail does; :class:`SMTPMailer`
    declares ``BODY=8BITMIME``, or re-encodes for a server without it. Only
    a line over the 998 octets RFC 5322 allows, or a NUL, falls back to
    quoted-printable.
    """
    data = plain.encode("utf-8")
    if "\0" in plain or max(map(len, data.splitlines()), default=0) > _MAX_LINE_OCTETS:
        return "quoted-printable"
    return "7bit" if data.isascii() else "8bit"


def _build(
    recipient: Address,
    sender: str,
    subject: str,
    plain: str,
    html: str,
    now: datetime,
    language: str,
) -> EmailMessage:
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
    message.set_content(plain, cte=_plain_encoding(plain))
    message.add_alternative(html, subtype="html", cte="quoted-printable")
    # After the parts exist: making the alternative moves Content-* headers into the first.
    message["Content-Language"] = language
    return message
