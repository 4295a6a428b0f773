"""Quality gates for the mails, as they leave the service.

Every mail (confirmation, credentials, the key-changed notice, and the
confirmation a shared address gets; English and Spanish; default and custom
branding; clients with hostile display names) is serialized with
``as_bytes()`` and read back by the standard library's strict parser and by
fast-mail-parser, an independent parser in Rust.
Both must see one recipient, the subject and the link or key, and no defect.
SpamAssassin then scores all of them, local tests only, and each must score
below 1.0. SpamAssassin skips when it is not installed, unless
``CREDRECOVERY_REQUIRE_SERVICES=1``.
"""

from __future__ import annotations

import concurrent.futures
import functools
import inspect
import mailbox
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from email.errors import NonASCIILocalPartDefect
from email.message import EmailMessage
from email.parser import BytesParser, Parser
from email.policy import default, strict
from pathlib import Path
from typing import Any

import pytest

from credrecovery import MAX_CLIENTS_PER_MAIL, RecoveryService, cheap_context
from credrecovery.keys import KEY_ALPHABET, KEY_LENGTH
from credrecovery.memory import MemoryDirectory, MemoryMailer
from helpers import CONFIRM_URL, ROOT, SECRET, SENDER

REQUIRED = os.environ.get("CREDRECOVERY_REQUIRE_SERVICES") == "1"
SPAMASSASSIN = shutil.which("spamassassin")
MAX_SPAM_SCORE = 1.0
LINK = re.compile(re.escape(CONFIRM_URL.split("{token}")[0]) + r"[A-Za-z0-9_.-]+")
KEY = re.compile(rf"(?<![A-Za-z0-9])[{KEY_ALPHABET}]{{{KEY_LENGTH},}}(?![A-Za-z0-9])")
OLD_KEY = "Old-Access-Key-2024"
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
KINDS = ("confirmation", "credentials", "multi", "key-changed")
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


def all_cases() -> list[Case]:
    cases = []
    for branding in BRANDINGS:
        for language in LANGUAGES:
            for kind in KINDS:
                cases += [Case(kind, language, branding, who) for who in NAMES]
            cases.append(Case("multi", language, branding, "truncated"))
            # A client's own locale wins over the service's, which is the other one.
            cases += [Case(kind, language, branding, "client-locale")
                      for kind in ("confirmation", "credentials", "key-changed")]
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
            directory, mailer, secret_key=SECRET, confirm_url=CONFIRM_URL, sender=SENDER,
            crypt_context=cheap_context(), locale=language, delivery="sync", rate_limits=None,
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
                directory.add_client(number, email, key=OLD_KEY, domains=[f"c{index}.example"],
                                     name=name, locale=locale)
                confirmation = _send(mailer, service.request, "client_number", number)
                links = tuple(LINK.findall(_plain(confirmation)))
                case = Case("confirmation", expected, branding, who)
                # The single-client confirmation does not show the number.
                mails[case.id] = Mail(case, confirmation, email, name, (), links, None)
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
                mails[case.id] = Mail(case, multi, shared, name, numbers,
                                      tuple(LINK.findall(_plain(multi))), None)
            many = "many@" + DOMAIN
            numbers = tuple(str(3000 + i) for i in range(MAX_CLIENTS_PER_MAIL + 1))
            for number in numbers:
                directory.add_client(number, many, key=OLD_KEY, name="Ana Example")
            multi = _send(mailer, service.request, "email", many)
            case = Case("multi", language, branding, "truncated")
            mails[case.id] = Mail(case, multi, many, "Ana Example",
                                  numbers[:MAX_CLIENTS_PER_MAIL],
                                  tuple(LINK.findall(_plain(multi))), None)
    return mails


def _send(mailer: MemoryMailer, action: Any, *args: str) -> EmailMessage:
    before = len(mailer.outbox)
    action(*args)
    assert len(mailer.outbox) == before + 1, "the service sent no mail"
    message: EmailMessage = mailer.outbox[-1]
    return message


def _plain(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert part is not None, "no text/plain part"
    return str(part.get_content())


def _key(service: RecoveryService, number: str, message: EmailMessage) -> str:
    """The access key in ``message``: the one word of it that signs ``number`` in."""
    working = [word for word in KEY.findall(_plain(message))
               if service.authenticate(number, word) is not None]
    assert len(working) == 1, f"{len(working)} working keys in the credentials mail"
    return working[0]


def mail_for(case: Case) -> Mail:
    return rendered(case.branding)[case.id]


def parse_strictly(data: bytes) -> EmailMessage:
    """``data`` read back under the strict policy, raising on any message defect.

    Headers in UTF-8 (RFC 6532) go through the text parser: the bytes parser
    reads header bytes as ASCII and flags every one outside it as undecodable.
    """
    if data.isascii():
        message = BytesParser(policy=strict).parsebytes(data)
    else:
        message = Parser(policy=strict).parsestr(data.decode("utf-8"))
    assert isinstance(message, EmailMessage)
    return message


def header_defects(part: EmailMessage) -> list[str]:
    """The defects the strict policy found parsing ``part``'s headers.

    The standard parser flags every local part outside ASCII, which RFC 6532
    allows and the SMTPUTF8 case must have; that one is not counted.
    """
    return [f"{name}: {defect!r}" for name, value in part.items()
            for defect in getattr(value, "defects", ())
            if not isinstance(defect, NonASCIILocalPartDefect)]


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_mail_parses_strictly_without_defects(case: Case) -> None:
    """Read back strictly: no defect, one To, From unchanged, one-line Subject, both parts."""
    mail = mail_for(case)
    data = mail.message.as_bytes()
    parsed = parse_strictly(data)
    for part in parsed.walk():
        assert isinstance(part, EmailMessage)
        assert part.defects == [], f"{part.get_content_type()}: {part.defects}"
        assert header_defects(part) == []
    assert data.partition(b"\n\n")[0].isascii() == (case.who != "smtputf8")
    assert parsed.get_body(("plain",))["Content-Transfer-Encoding"] in ("7bit", "8bit")
    recipients = parsed["To"].addresses
    assert len(recipients) == 1, f"To holds {len(recipients)} addresses"
    assert recipients[0].addr_spec == mail.recipient
    assert len(parsed.get_all("To")) == 1
    assert parsed.get_all("Cc") is None and parsed.get_all("Bcc") is None
    for injected in ("X-Injected", "Bcc"):
        assert injected not in parsed
    assert str(parsed["From"]) == SENDER
    subject = str(parsed["Subject"])
    assert subject and "\r" not in subject and "\n" not in subject
    assert subject == str(mail.message["Subject"])
    assert parsed["Message-ID"] and parsed["Date"]
    assert parsed.get_content_type() in ("multipart/alternative", "multipart/related",
                                         "multipart/mixed")
    plain = parsed.get_body(("plain",))
    html = parsed.get_body(("html",))
    assert plain is not None and html is not None
    text = plain.get_content()
    for number in mail.numbers:
        assert number in text
    assert list(mail.links) == LINK.findall(text)
    if case.kind == "credentials":
        assert mail.key in text and mail.key in html.get_content()
    elif case.kind == "multi":
        assert len(mail.links) == len(mail.numbers)
    elif case.kind == "key-changed":
        assert mail.links == ()
        assert CHOSEN_KEY not in text and CHOSEN_KEY not in html.get_content()
    else:
        assert len(mail.links) == 1
    if case.branding == "custom":
        assert CUSTOM_BRANDING["name"] in text
        assert CUSTOM_BRANDING["name"] in html.get_content()
        if case.kind in ("credentials", "key-changed"):
            for value in (CUSTOM_BRANDING["support"], CUSTOM_BRANDING["login_url"]):
                assert value in text and value in html.get_content()


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_second_parser_agrees(case: Case) -> None:
    """fast-mail-parser, in strict mode, reads the same recipient, subject, link and number."""
    from fast_mail_parser import parse_email

    mail = mail_for(case)
    parsed = parse_email(mail.message.as_bytes(), mode="full", strict=True)
    assert parsed.warnings == []
    assert [a.address for a in parsed.to] == [mail.recipient]
    assert parsed.cc == [] and parsed.bcc == []
    assert parsed.from_ is not None and parsed.from_.address == "panel@example.com"
    assert parsed.subject == str(mail.message["Subject"])
    assert len(parsed.text_plain) == 1 and len(parsed.text_html) == 1
    text = parsed.text_plain[0]
    for number in mail.numbers:
        assert number in text
    for link in mail.links:
        assert link in text
    if mail.key is not None:
        assert mail.key in text


@pytest.mark.parametrize("case", [c for c in CASES if c.who in ("plain", "client-locale")],
                         ids=lambda case: case.id)
def test_language_follows_the_client_then_the_service(case: Case) -> None:
    """A client's own locale picks the mail's language; without one the service's applies."""
    message = mail_for(case).message
    spanish = "pedido" in _plain(message) or "acceso" in str(message["Subject"])
    english = "request" in _plain(message) or "access" in str(message["Subject"])
    assert (spanish, english) == ((True, False) if case.language == "es" else (False, True))
    language = message.get("Content-Language")
    if language is not None:
        assert str(language).split("-")[0] == case.language


# SpamAssassin, local tests only: no DNS, no network, no Bayes, no learning, a
# site configuration of its own and a throw-away home, so nothing persists.
SPAMASSASSIN_LOCAL_CF = """\
use_bayes 0
bayes_auto_learn 0
dns_available no
skip_rbl_checks 1
use_razor2 0
use_pyzor 0
report_safe 0
clear_headers
add_header all Status _YESNO_, score=_SCORE_ required=_REQD_ tests=_TESTSSCORES(,)_
"""


@dataclass(frozen=True)
class Verdict:
    """What SpamAssassin made of one mail."""

    score: float
    hits: dict[str, float]


@pytest.fixture(scope="session")
def spam_verdicts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Verdict]:
    """Every mail scored by ``spamassassin --local --mbox``, by case id."""
    if SPAMASSASSIN is None:
        if REQUIRED:
            pytest.fail("CREDRECOVERY_REQUIRE_SERVICES=1 but spamassassin is missing "
                        "(apt-get install spamassassin)")
        pytest.skip("spamassassin is not installed (apt-get install spamassassin)")
    root = tmp_path_factory.mktemp("spamassassin")
    site = root / "site"
    site.mkdir()
    # The distribution's plugin list, so that the rules that need a plugin run.
    for pre in Path("/etc/spamassassin").glob("*.pre"):
        shutil.copy(pre, site / pre.name)
    assert (site / "init.pre").exists(), "no /etc/spamassassin/init.pre to load plugins from"
    (site / "local.cf").write_text(SPAMASSASSIN_LOCAL_CF, encoding="ascii")
    (root / "user_prefs").write_text("", encoding="ascii")
    (root / "home").mkdir()
    by_id: dict[str, str] = {}
    data: list[bytes] = []
    for branding in BRANDINGS:
        if branding == "custom" and not branding_available():
            continue
        for case_id, mail in rendered(branding).items():
            by_id[str(mail.message["Message-ID"])] = case_id
            data.append(mail.message.as_bytes())
    assert len(by_id) == len(data), "two mails share a Message-ID"
    # One process per core, each scoring its share of the mails as one mbox:
    # loading the rules costs seconds, scoring a mail a tenth of one.
    shares = max(1, min(os.cpu_count() or 1, 4))
    boxes = []
    for share in range(shares):
        box = mailbox.mbox(root / f"share{share}.mbox", create=True)
        for message in data[share::shares]:
            box.add(message)
        box.close()
        boxes.append(root / f"share{share}.mbox")
    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(shares) as pool:
        outputs = list(pool.map(functools.partial(_score_mbox, root, site), boxes))
    print(f"spamassassin scored {len(data)} mails in {time.monotonic() - started:.1f} s "
          f"with {shares} processes")
    verdicts: dict[str, Verdict] = {}
    for scored in (message for output in outputs for message in _split_mbox(output)):
        status = "".join(str(scored["X-Spam-Status"]).split())
        match = re.search(r"score=(-?[\d.]+)required=[\d.]+tests=(.*)", status)
        assert match, status
        hits = {name: float(score) for name, _, score in
                (item.partition("=") for item in match.group(2).split(",") if item)}
        verdicts[by_id[str(scored["Message-ID"])]] = Verdict(float(match.group(1)), hits)
    assert set(verdicts) == set(by_id.values())
    return verdicts


def _score_mbox(root: Path, site: Path, box: Path) -> bytes:
    assert SPAMASSASSIN is not None
    with open(box, "rb") as stdin:
        result = subprocess.run(
            [SPAMASSASSIN, "--local", "--mbox", f"--siteconfigpath={site}",
             f"--prefspath={root / 'user_prefs'}"],
            stdin=stdin, capture_output=True, timeout=280, check=False,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(root / "home"),
                 "LANG": "C.UTF-8"},
        )
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    return result.stdout


def _split_mbox(data: bytes) -> list[EmailMessage]:
    chunks = re.split(rb"(?m)^From [^\n]*\n", data)
    return [BytesParser(policy=default).parsebytes(chunk) for chunk in chunks if chunk.strip()]


@pytest.mark.timeout(300)  # the first one waits for every mail to be scored
@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_spamassassin_scores_below_one(case: Case, spam_verdicts: dict[str, Verdict]) -> None:
    """SpamAssassin, local rules only, scores the mail below 1.0; the rules that hit are shown."""
    mail_for(case)  # skips a branding that is not there yet
    verdict = spam_verdicts[case.id]
    hits = ", ".join(f"{name}={score}" for name, score in
                     sorted(verdict.hits.items(), key=lambda item: -item[1]))
    assert verdict.score < MAX_SPAM_SCORE, f"score {verdict.score}: {hits}"
    for rule in ("MISSING_DATE", "MISSING_MID", "MISSING_HEADERS", "MIME_HTML_ONLY",
                 "INVALID_DATE", "MISSING_SUBJECT"):
        assert rule not in verdict.hits, hits


DOCS = ROOT / "docs" / "mail.md"


def test_branding_example_in_the_docs_runs() -> None:
    """docs/mail.md's Python example runs as written and mails a branded confirmation."""
    blocks = re.findall(r"```python\n(.*?)```", DOCS.read_text(encoding="utf-8"), re.DOTALL)
    assert len(blocks) == 1, "docs/mail.md should hold one Python example"
    namespace: dict[str, Any] = {"__name__": "docs_mail_example"}
    exec(compile(blocks[0], str(DOCS), "exec"), namespace)
    outbox = namespace["mailer"].outbox
    assert len(outbox) == 1
    message = outbox[0]
    assert CUSTOM_BRANDING["name"] in str(message["Subject"])
    html = message.get_body(("html",)).get_content()
    assert CUSTOM_BRANDING["logo_url"] in html
    assert re.search(r"https://panel\.xmundo\.example/recover/[A-Za-z0-9_.-]+",
                     _plain(message))
