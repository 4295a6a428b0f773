"""Quality gates for the mails, as they leave the service.

Every mail (confirmation, credentials, the key-changed notice, and the
confirmation a shared address gets; English and Spanish; default and custom
branding; clients with hostile display names) is serialized with
``as_bytes()`` and read back by the standard library's strict parser and by
fast-mail-parser, an independent parser in Rust.
Both must see one recipient, the subject and the link or key, and no defect.
SpamAssassin then scores, local tests only, every kind of mail in each
language and branding, and every hostile name in the two mails of the seed
flow (default branding); each must score below 1.0. A name only reaches the ``To`` header and the
greeting, which every kind renders alike, so scoring each name in every kind
would cost 240 more mails (about 30 CPU-seconds) for no rule more. The first
xdist worker to get there scores the mails, and every worker reads those
verdicts, by case. SpamAssassin skips when it is not installed, unless
``CREDRECOVERY_REQUIRE_SERVICES=1``.
"""

from __future__ import annotations

import os
import re
from email.errors import NonASCIILocalPartDefect
from email.message import EmailMessage
from email.parser import BytesParser, Parser
from email.policy import strict
from typing import Any

import pytest

from helpers import ROOT, SENDER
from helpers.mail_cases import (
    CASES,
    CHOSEN_KEY,
    CUSTOM_BRANDING,
    LINK,
    Case,
    branding_available,
    mail_for,
    plain,
)
from helpers.once import shared_json
from helpers.spamassassin import SPAMASSASSIN, Verdict, score

REQUIRED = os.environ.get("CREDRECOVERY_REQUIRE_SERVICES") == "1"
MAX_SPAM_SCORE = 1.0
# What SpamAssassin scores: each kind, language and branding, with the plain
# name, the client's own locale and the truncated list; and every name in the
# seed flow's two mails.
SPAM_CASES = [
    case
    for case in CASES
    if case.who in ("plain", "client-locale", "truncated")
    or (case.kind in ("confirmation", "credentials") and case.branding == "default")
]


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
    return [
        f"{name}: {defect!r}"
        for name, value in part.items()
        for defect in getattr(value, "defects", ())
        if not isinstance(defect, NonASCIILocalPartDefect)
    ]


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
    assert parsed.get_content_type() in (
        "multipart/alternative",
        "multipart/related",
        "multipart/mixed",
    )
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
    elif case.kind in ("code", "code-multi", "code-support"):
        assert mail.links == ()
        assert len(mail.codes) == max(1, len(mail.numbers))
        assert all(code in html.get_content() for code in mail.codes)
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


@pytest.mark.parametrize(
    "case", [c for c in CASES if c.who in ("plain", "client-locale")], ids=lambda case: case.id
)
def test_language_follows_the_client_then_the_service(case: Case) -> None:
    """A client's own locale picks the mail's language; without one the service's applies."""
    message = mail_for(case).message
    spanish = "pedido" in plain(message) or "acceso" in str(message["Subject"])
    english = "request" in plain(message) or "access" in str(message["Subject"])
    assert (spanish, english) == ((True, False) if case.language == "es" else (False, True))
    language = message.get("Content-Language")
    if language is not None:
        assert str(language).split("-")[0] == case.language


@pytest.fixture(scope="session")
def spam_verdicts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Verdict]:
    """``SPAM_CASES`` scored by ``spamassassin --local --mbox``, by case id, once per run."""
    if SPAMASSASSIN is None:
        if REQUIRED:
            pytest.fail(
                "CREDRECOVERY_REQUIRE_SERVICES=1 but spamassassin is missing "
                "(apt-get install spamassassin)"
            )
        pytest.skip("spamassassin is not installed (apt-get install spamassassin)")

    def score_all() -> dict[str, dict[str, Any]]:
        mails = {
            case.id: mail_for(case).message
            for case in SPAM_CASES
            if case.branding != "custom" or branding_available()
        }
        verdicts = score(tmp_path_factory.mktemp("spamassassin"), mails)
        return {case_id: {"score": v.score, "hits": v.hits} for case_id, v in verdicts.items()}

    return {
        case_id: Verdict(v["score"], v["hits"])
        for case_id, v in shared_json(tmp_path_factory, "spamassassin", score_all).items()
    }


@pytest.mark.slow
@pytest.mark.timeout(300)  # the first one waits for every mail to be scored
@pytest.mark.parametrize("case", SPAM_CASES, ids=lambda case: case.id)
def test_spamassassin_scores_below_one(case: Case, spam_verdicts: dict[str, Verdict]) -> None:
    """SpamAssassin, local rules only, scores the mail below 1.0; the rules that hit are shown."""
    mail_for(case)  # skips a branding that is not there yet
    verdict = spam_verdicts[case.id]
    hits = ", ".join(
        f"{name}={score}" for name, score in sorted(verdict.hits.items(), key=lambda item: -item[1])
    )
    assert verdict.score < MAX_SPAM_SCORE, f"score {verdict.score}: {hits}"
    for rule in (
        "MISSING_DATE",
        "MISSING_MID",
        "MISSING_HEADERS",
        "MIME_HTML_ONLY",
        "INVALID_DATE",
        "MISSING_SUBJECT",
    ):
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
    assert re.search(r"https://panel\.xmundo\.example/recover/[A-Za-z0-9_.-]+", plain(message))
