"""Headers that every mail of a kind shares: folded right under each policy, and picklable."""

from __future__ import annotations

import io
import pickle
from datetime import UTC, datetime, timedelta
from email.generator import BytesGenerator
from email.headerregistry import MessageIDHeader
from email.message import EmailMessage
from email.policy import default

from hypothesis import example, given
from hypothesis import strategies as st

from credrecovery import Client
from credrecovery.mail.headers import _HEADERS, _POLICY, _message_id, _MessageID
from credrecovery.mail.messages import confirmation_message

NOW = datetime(2027, 1, 15, 12, 0, tzinfo=UTC)


def _mail(number: str) -> EmailMessage:
    client = Client(number=number, email=f"c{number}@example.com", key_hash="-", name="Ana")
    return confirmation_message(
        client,
        link="https://panel.example.com/recover/abc",
        expires_in=timedelta(hours=1),
        sender="Client Panel Of A Long Hosting Provider Name <panel@example.com>",
        language="en",
        now=NOW,
    )


def _written(message: EmailMessage, **changes: object) -> bytes:
    out = io.BytesIO()
    BytesGenerator(out, policy=message.policy.clone(**changes)).flatten(message)
    return out.getvalue()


def _subject_lines(data: bytes) -> list[bytes]:
    head = data.split(b"\n\n", 1)[0]
    lines = head.split(b"\n")
    start = next(i for i, line in enumerate(lines) if line.startswith(b"Subject:"))
    end = next(
        (i for i in range(start + 1, len(lines)) if not lines[i].startswith(b" ")), len(lines)
    )
    return lines[start:end]


def test_each_line_ending_is_the_policys_own_whatever_was_written_before() -> None:
    """Two mails sharing headers, written with LF and CRLF in turn: each gets its own endings."""
    first, second = _mail("1001"), _mail("1002")
    for message, linesep in ((first, "\n"), (second, "\r\n"), (first, "\r\n"), (second, "\n")):
        data = _written(message, linesep=linesep)
        if linesep == "\n":
            assert b"\r" not in data
        else:
            assert b"\n" not in data.replace(b"\r\n", b"")


def test_each_line_length_is_the_policys_own_whatever_was_written_before() -> None:
    """A shared subject folds at 78 for one mail and at 40 for the other, then at 78 again."""
    first, second = _mail("1001"), _mail("1002")
    subject = str(first["Subject"])
    assert str(second["Subject"]) == subject and len(subject) > 40
    wide = _subject_lines(_written(first, max_line_length=78))
    narrow = _subject_lines(_written(second, max_line_length=40))
    assert max(map(len, wide)) <= 78 and max(map(len, narrow)) <= 40
    assert len(narrow) > len(wide)
    assert b" ".join(line.strip() for line in narrow) == b"Subject: " + subject.encode()
    assert _subject_lines(_written(first, max_line_length=78)) == wide


def test_a_mail_and_its_headers_cross_to_another_process() -> None:
    """A composed mail pickles to the same bytes; a header alone pickles too, as in a log record."""
    message = _mail("1001")
    message.as_bytes()  # folded once already: what is kept must not stop pickling
    copy = pickle.loads(pickle.dumps(message))
    assert copy.as_bytes() == message.as_bytes()
    for name in ("From", "To", "Subject", "Message-ID"):
        assert pickle.loads(pickle.dumps(message[name])) == message[name]


@given(
    domain=st.from_regex(r"[A-Za-z0-9.-]{1,120}", fullmatch=True),
    max_line_length=st.sampled_from([78, 40, 0, None]) | st.integers(2, 200),
    linesep=st.sampled_from(["\n", "\r\n"]),
)
@example(domain="mail.hosting-provider-example.com", max_line_length=78, linesep="\r\n")
@example(domain=".", max_line_length=40, linesep="\n")
@example(domain="panel.example.com", max_line_length=12, linesep="\n")
def test_a_message_id_of_the_librarys_making_folds_as_the_standard_header_does(
    domain: str, max_line_length: int | None, linesep: str
) -> None:
    """Any host, "." and "a..b" included, at any width: written as the standard
    header writes it, on its own line where only that makes it fit."""
    value = _message_id(domain)
    policy = _POLICY.clone(max_line_length=max_line_length, linesep=linesep)
    standard = default.header_factory("Message-ID", str(value))
    assert _HEADERS("Message-ID", value).fold(policy=policy) == standard.fold(policy=policy)


@given(domain=st.text(st.characters(codec="utf-8"), min_size=1, max_size=40))
def test_only_a_host_the_standard_header_writes_unchanged_skips_parsing(domain: str) -> None:
    value = _message_id(domain)
    if isinstance(value, _MessageID):
        standard = default.header_factory("Message-ID", str(value))
        assert standard.defects == ()
        for width in (78, None):
            policy = _POLICY.clone(max_line_length=width)
            assert _HEADERS("Message-ID", value).fold(policy=policy) == standard.fold(policy=policy)


def test_a_dot_atom_host_skips_parsing_and_no_other_does() -> None:
    assert isinstance(_message_id("panel.example-1.com"), _MessageID)
    for host in (".", "a..b", ".a", "a.", "a b", "[192.0.2.1]", "ex\u00e1mple.com"):
        assert not isinstance(_message_id(host), _MessageID), host


def test_a_mails_message_id_is_a_message_id_header_to_the_host() -> None:
    header = _mail("1001")["Message-ID"]
    assert isinstance(header, MessageIDHeader)
    assert header.defects == () and header.startswith("<") and header.endswith("@example.com>")
