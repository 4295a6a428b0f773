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

import functools
import os
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from email.headerregistry import Address
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import jinja2
import jinja2.runtime
import markupsafe

from ..exceptions import InvalidIdentifier, KeyRejected
from ..models import Client
from . import i18n
from ._compiled import _COMPILED
from .branding import Branding
from .headers import _build, _recipient, mailbox, one_line, safe_display_name

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
    "confirmation_subject.txt",
    "confirmation.txt",
    "confirmation.html",
    "credentials_subject.txt",
    "credentials.txt",
    "credentials.html",
    "key_changed_subject.txt",
    "key_changed.txt",
    "key_changed.html",
    "code_subject.txt",
    "code.txt",
    "code.html",
    "layout.html",
    "macros.html",
    "greeting.txt",
    "greeting.html",
)
PACKAGED_TEMPLATES = Path(__file__).parent.parent / "templates"

_BLANK_LINES = re.compile(r"\n{3,}")


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
        return (
            f"MailRenderer(branding={self.branding!r}, templates={self.templates!r}, "
            f"catalogs={self.catalogs!r}, locale={self.locale!r})"
        )

    def __getstate__(self) -> dict[str, Any]:
        return {
            "branding": self.branding,
            "templates": self.templates,
            "catalogs": self.catalogs,
            "locale": self.locale,
        }

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

    def error_message(
        self, error: InvalidIdentifier | KeyRejected, language: str | None = None
    ) -> str:
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
        chooses: bool = False,
    ) -> EmailMessage:
        """The mail asking to confirm by following one of ``links``, ``(number, url)`` pairs.

        ``chooses`` says that the client will choose its new key (``key_mode="choose"``)
        rather than receive one. Raises :class:`ValueError` when ``recipient``
        cannot be mailed.
        """
        if not links:
            raise ValueError("a confirmation mail needs a link")
        context = self._asking(name, language, truncated, expires_in, now, chooses)
        context.update(
            links=[{"number": number, "url": url} for number, url in links],
            client_numbers=[number for number, _ in links],
        )
        return self._render(
            "confirmation", context, context["locale"], _recipient(recipient, name), sender, now
        )

    def code(
        self,
        *,
        recipient: str,
        name: str,
        codes: Sequence[tuple[str, str]],
        truncated: bool,
        expires_in: timedelta,
        sender: str,
        language: str,
        now: datetime,
        chooses: bool = False,
        by_support: bool = False,
    ) -> EmailMessage:
        """The mail carrying a recovery code for each of ``codes``, ``(number, code)`` pairs.

        Each code is shown as given (``WDJH-MJHT``). ``chooses`` as for
        :meth:`confirmation`; ``by_support`` says that support staff issued
        the code, so the mail does not send the client back to a page it asked
        on. Raises :class:`ValueError` when ``recipient`` cannot be mailed.
        """
        if not codes:
            raise ValueError("a code mail needs a code")
        context = self._asking(name, language, truncated, expires_in, now, chooses)
        context.update(
            codes=[{"number": number, "code": code} for number, code in codes],
            client_numbers=[number for number, _ in codes],
            by_support=by_support,
        )
        return self._render(
            "code", context, context["locale"], _recipient(recipient, name), sender, now
        )

    def _asking(
        self,
        name: str,
        language: str,
        truncated: bool,
        expires_in: timedelta,
        now: datetime,
        chooses: bool,
    ) -> dict[str, Any]:
        """The context both mails that ask for a confirmation share."""
        locale = self.language_for(language)
        context = self._context(name, locale)
        context.update(
            locale=locale,
            truncated=truncated,
            chooses=chooses,
            expires_in=i18n.format_timedelta(expires_in, locale),
            deadline=i18n.format_datetime(now + expires_in, locale),
        )
        return context

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
        return self._client_mail(
            "credentials", recipient, name, number, sender, language, now, key=key
        )

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
        return self._client_mail(
            "key_changed",
            recipient,
            name,
            number,
            sender,
            locale,
            now,
            changed_at=i18n.format_datetime(now, locale),
        )

    def _client_mail(
        self,
        mail: str,
        recipient: str,
        name: str,
        number: str,
        sender: str,
        language: str,
        now: datetime,
        **values: Any,
    ) -> EmailMessage:
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

    def _render(
        self,
        mail: str,
        context: dict[str, Any],
        locale: str,
        to: Address,
        sender: str,
        now: datetime,
    ) -> EmailMessage:
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
                enabled_extensions=("html",), default_for_string=False, default=False
            ),
            undefined=jinja2.StrictUndefined,
            extensions=["jinja2.ext.i18n"],
            lstrip_blocks=True,
            keep_trailing_newline=True,
            auto_reload=False,
            bytecode_cache=_COMPILED,
        )
        translations = i18n.translations(self._dirs, locale)
        environment.install_gettext_translations(  # type: ignore[attr-defined]
            translations, newstyle=True
        )
        # The extension's "_" looks "gettext" up and reaches the catalog through
        # two more context calls, a seventh of rendering a mail; this is its
        # new-style gettext, called directly.
        environment.globals["_"] = environment.globals["gettext"] = _gettext(translations.gettext)
        return environment


def _gettext(translate: Callable[[str], str]) -> Callable[..., str]:
    """Jinja2's new-style ``gettext``: ``message`` translated, marked safe where the
    template escapes, then formatted with ``variables`` (which are escaped there)."""

    @jinja2.pass_context
    def gettext(context: jinja2.runtime.Context, message: str, **variables: Any) -> str:
        text = translate(message)
        if context.eval_ctx.autoescape:
            # The catalog's text is trusted, as Jinja2's own gettext trusts it.
            text = markupsafe.Markup(text)  # noqa: S704  # nosec B704
        return text % variables

    return gettext


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
        recipient=client.email,
        name=client.name,
        links=links,
        truncated=truncated,
        expires_in=expires_in,
        sender=sender,
        language=language,
        now=now,
    )


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
        recipient=client.email,
        name=client.name,
        number=client.number,
        key=key,
        sender=sender,
        language=language,
        now=now,
    )


def _tidy(plain: str) -> str:
    lines = [line if line == "-- " else line.rstrip() for line in plain.strip().split("\n")]
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)) + "\n"
