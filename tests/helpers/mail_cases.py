"""Every mail the service sends, rendered once per process, for the mail quality and layout tests.

A :class:`Case` names one mail: which one (confirmation, credentials, the
confirmation a shared address gets, the key-changed notice, the code mail for
one client or for a shared address, the code mail of a code support issued), its language, its
branding and the client's display name, chosen to break a header or a layout.
:func:`mail_for` gives the :class:`Mail` the service sent for it, through real
services with a memory directory and outbox.
"""

from __future__ import annotations

import functools
import inspect
import re
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

import pytest

from credrecovery import MAX_CLIENTS_PER_MAIL, RecoveryService, cheap_context
from credrecovery.keys import KEY_ALPHABET, KEY_LENGTH
from credrecovery.memory import MemoryDirectory, MemoryMailer
from credrecovery.testing import codes_from
from helpers.constants import CONFIRM_URL, OLD_KEY, SECRET, SENDER

__all__ = [
    "BRANDINGS",
    "CASES",
    "CHOSEN_KEY",
    "CUSTOM_BRANDING",
    "KINDS",
    "LANGUAGES",
    "LINK",
    "NAMES",
    "Case",
    "Mail",
    "branding_available",
    "mail_for",
    "plain",
    "rendered",
]

LINK = re.compile(re.escape(CONFIRM_URL.split("{token}")[0]) + r"[A-Za-z0-9_.-]+")
KEY = re.compile(rf"(?<![A-Za-z0-9])[{KEY_ALPHABET}]{{{KEY_LENGTH},}}(?![A-Za-z0-9])")
# A key the client picks; the notice of the change must never repeat it.
CHOSEN_KEY = "Quartz-Meadow-Lantern-7391"
DOMAIN = "ejemploxmundo.com.ar"

CUSTOM_BRANDING = {
    "name": "XMundo Networks",
    "support": "soporte@xmundo.example",
    "login_url": "https://panel.xmundo.example/login",
    "logo_url": "https://xmundo.example/logo.png",
}

# Display names a directory may hold, each able to break a header or a layout.
NAMES = {
    "plain": "Ana Example",
    "punctuation": 'Pérez, Juan "JJ" <jj@attacker.example>; Bcc: x@attacker.example',
    "at-sign": "billing@attacker.example",
    "crlf": "Ana\r\nBcc: victim@attacker.example\r\nX-Injected: 1",
    "long": ("Very Long Name, With Commas, And More " * 8).strip(),
    "long-atoms": " ".join(["Averyveryverylongname"] * 8),
    "long-word": "Wolfeschlegelsteinhausenbergerdorff" * 3,
    "non-ascii": "Núñez Peña 漢字 🎉",
    "rtl": "\u202emoc.elpmaxe\u202c אבי כהן محمد",
    "empty": "",
    "smtputf8": "José Ñandú",
}
# The one client whose address has a local part outside ASCII (RFC 6531).
UTF8_LOCAL_PART = "josé.ñandú"
CLIENT_LOCALES = {"en": "en_US", "es": "es-AR"}
KINDS = (
    "confirmation",
    "credentials",
    "multi",
    "key-changed",
    "code",
    "code-multi",
    "code-support",
)
LANGUAGES = ("en", "es")
BRANDINGS = ("default", "custom")


@dataclass(frozen=True)
class Case:
    """One mail to render: which one, in which language, branding and for whom."""

    kind: str
    language: str
    branding: str
    who: str

    @property
    def id(self) -> str:
        return f"{self.kind}-{self.language}-{self.branding}-{self.who}"


@dataclass(frozen=True)
class Mail:
    """A mail the service sent, with what it must carry."""

    case: Case
    message: EmailMessage
    recipient: str
    name: str
    numbers: tuple[str, ...]  # the client numbers it shows
    links: tuple[str, ...]
    key: str | None
    codes: tuple[str, ...] = ()  # the recovery codes it carries, as shown


def all_cases() -> list[Case]:
    cases = []
    for branding in BRANDINGS:
        for language in LANGUAGES:
            for kind in KINDS:
                cases += [Case(kind, language, branding, who) for who in NAMES]
            cases.append(Case("multi", language, branding, "truncated"))
            # A client's own locale wins over the service's, which is the other one.
            cases += [
                Case(kind, language, branding, "client-locale")
                for kind in ("confirmation", "credentials", "key-changed", "code", "code-support")
            ]
    return cases


CASES = all_cases()


def branding_available() -> bool:
    return "branding" in inspect.signature(RecoveryService).parameters


def custom_branding() -> Any:
    from credrecovery.branding import Branding

    return Branding(**CUSTOM_BRANDING)


def address(who: str, index: int, *, shared: bool = False) -> str:
    local = UTF8_LOCAL_PART if who == "smtputf8" else f"client{index}"
    return f"{'shared-' if shared else ''}{local}@{DOMAIN}"


@functools.cache
def rendered(branding: str) -> dict[str, Mail]:
    """Every mail of ``branding``, by case id, sent through real services."""
    if branding == "custom" and not branding_available():
        pytest.skip("RecoveryService(branding=...) is not there yet")
    mails: dict[str, Mail] = {}
    for language in LANGUAGES:
        other = "es" if language == "en" else "en"
        directory = MemoryDirectory(crypt_context=cheap_context())
        mailer = MemoryMailer()
        options: dict[str, Any] = {}
        if branding == "custom":
            options["branding"] = custom_branding()
        service = RecoveryService(
            directory,
            mailer,
            secret_key=SECRET,
            confirm_url=CONFIRM_URL,
            sender=SENDER,
            crypt_context=cheap_context(),
            locale=language,
            delivery="sync",
            rate_limits=None,
            **options,
        )
        # The clients have no locale, so the service's applies; but the
        # client-locale one asks for the other language, with a region.
        people = [(who, name, None, language) for who, name in NAMES.items()]
        people.append(("client-locale", "Ana Example", CLIENT_LOCALES[other], other))
        with service:
            for index, (who, name, locale, expected) in enumerate(people):
                number = str(1000 + index)
                email = address(who, index)
                directory.add_client(
                    number,
                    email,
                    key=OLD_KEY,
                    domains=[f"c{index}.example"],
                    name=name,
                    locale=locale,
                )
                confirmation = _send(mailer, service.request, "client_number", number)
                links = tuple(LINK.findall(plain(confirmation)))
                case = Case("confirmation", expected, branding, who)
                # The single-client confirmation does not show the number.
                mails[case.id] = Mail(case, confirmation, email, name, (), links, None)
                code = _send(mailer, service.request_code, "client_number", number)
                case = Case("code", expected, branding, who)
                mails[case.id] = Mail(
                    case, code, email, name, (), (), None, tuple(codes_from(code))
                )
                issued = _send(mailer, service.issue_code, number)
                case = Case("code-support", expected, branding, who)
                # Support's mail names the number the client types with the code.
                mails[case.id] = Mail(
                    case, issued, email, name, (number,), (), None, tuple(codes_from(issued))
                )
                credentials = _send(mailer, service.confirm, links[0].rsplit("/", 1)[1])
                case = Case("credentials", expected, branding, who)
                key = _key(service, number, credentials)
                mails[case.id] = Mail(case, credentials, email, name, (number,), (), key)
                changed = _send(mailer, service.change_key, number, key, CHOSEN_KEY)
                case = Case("key-changed", expected, branding, who)
                mails[case.id] = Mail(case, changed, email, name, (number,), (), None)
                if who == "client-locale":
                    continue
                shared = address(who, index, shared=True)
                numbers = (str(2000 + 2 * index), str(2001 + 2 * index))
                for shared_number in numbers:
                    directory.add_client(shared_number, shared, key=OLD_KEY, name=name)
                multi = _send(mailer, service.request, "email", shared)
                case = Case("multi", language, branding, who)
                mails[case.id] = Mail(
                    case, multi, shared, name, numbers, tuple(LINK.findall(plain(multi))), None
                )
                codes = _send(mailer, service.request_code, "email", shared)
                case = Case("code-multi", language, branding, who)
                mails[case.id] = Mail(
                    case, codes, shared, name, numbers, (), None, tuple(codes_from(codes))
                )
            many = "many@" + DOMAIN
            numbers = tuple(str(3000 + i) for i in range(MAX_CLIENTS_PER_MAIL + 1))
            for number in numbers:
                directory.add_client(number, many, key=OLD_KEY, name="Ana Example")
            multi = _send(mailer, service.request, "email", many)
            case = Case("multi", language, branding, "truncated")
            mails[case.id] = Mail(
                case,
                multi,
                many,
                "Ana Example",
                numbers[:MAX_CLIENTS_PER_MAIL],
                tuple(LINK.findall(plain(multi))),
                None,
            )
    return mails


def _send(mailer: MemoryMailer, action: Any, *args: str) -> EmailMessage:
    before = len(mailer.outbox)
    action(*args)
    assert len(mailer.outbox) == before + 1, "the service sent no mail"
    message: EmailMessage = mailer.outbox[-1]
    return message


def plain(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert part is not None, "no text/plain part"
    return str(part.get_content())


def _key(service: RecoveryService, number: str, message: EmailMessage) -> str:
    """The access key in ``message``: the one word of it that signs ``number`` in."""
    working = [
        word
        for word in KEY.findall(plain(message))
        if service.authenticate(number, word) is not None
    ]
    assert len(working) == 1, f"{len(working)} working keys in the credentials mail"
    return working[0]


def mail_for(case: Case) -> Mail:
    """The mail the service sent for ``case``; skips a branding the service lacks."""
    return rendered(case.branding)[case.id]
