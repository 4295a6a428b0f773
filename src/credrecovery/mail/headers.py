"""The envelope of a mail: one-mailbox headers that no name can break, and the message built."""

from __future__ import annotations

import base64
import binascii
import functools
import re
import secrets
import sys
from datetime import datetime
from email.headerregistry import Address, AddressHeader, BaseHeader, Group, HeaderRegistry
from email.message import EmailMessage
from email.policy import Policy
from email.policy import default as _default_policy
from email.utils import format_datetime, make_msgid
from typing import Any, cast

from .._text import is_control
from ..identifiers import check_address

__all__ = ["mailbox", "message_id", "one_line", "safe_display_name"]

# Line and paragraph separators, and the bidi embeddings, overrides and
# isolates that would let a name display as something it is not.
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029\u202a-\u202e\u2066-\u2069]+")
_MAX_NAME = 100
_MAX_SUBJECT = 200
_PLAIN_PHRASE = re.compile(r"[A-Za-z0-9]+(?: [A-Za-z0-9]+)*")
# RFC 5322 2.1.1: a line holds at most 998 octets before its CRLF.
_MAX_LINE_OCTETS = 998
# A Message-ID's host that the standard header writes as it is: a dot-atom
# (RFC 5322 3.2.3) of letters, digits and hyphens. "." or "a..b" it would not.
_HOST = re.compile(r"[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*")
_PROCESS_BOUNDARY = "=_" + secrets.token_hex(16)
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

    @classmethod
    def parse(cls, value: Any, kwds: dict[str, Any]) -> None:
        if not isinstance(value, Address):
            super().parse(value, kwds)
            return
        # An address of this module's own making: the standard path would
        # render it and parse it back, only to keep a tree that fold() below
        # never reads for one mailbox.
        kwds["groups"] = [Group(None, [value])]
        kwds["decoded"] = str(value)
        kwds["parse_tree"] = None

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


class _MessageID(str):
    """A Message-ID of this module's own making: ``<id@host>``, the host a dot-atom
    of letters, digits and hyphens."""


def _message_id(domain: str) -> str:
    """A new Message-ID on ``domain``, marked to skip parsing when the standard
    header would write it unchanged."""
    # An explicit domain keeps make_msgid from asking the resolver for one.
    msgid = make_msgid(domain=domain)
    return _MessageID(msgid) if _HOST.fullmatch(domain) else msgid


class _OwnMessageID:
    """Writes a :class:`_MessageID` as the one line it is, without parsing it.

    Every mail has a Message-ID of its own, so none folds twice; parsing and
    folding one took a twentieth of composing and writing a mail. The
    standard header never breaks such a value: it only moves it to a line of
    its own when that makes it fit, and so does this.
    """

    @classmethod
    def parse(cls, value: Any, kwds: dict[str, Any]) -> None:
        if not isinstance(value, _MessageID):
            super().parse(value, kwds)  # type: ignore[misc]
            return
        kwds["parse_tree"] = None
        kwds["decoded"] = str(value)

    def fold(self, *, policy: Policy) -> str:
        header = cast(BaseHeader, self)
        if header._parse_tree is None:  # type: ignore[attr-defined]
            name, value, end = header.name, str(header), policy.linesep
            width = policy.max_line_length or sys.maxsize
            if width <= len(name) + 2:
                # Too narrow for "Message-ID: <": no mail is, but the standard
                # header folds even this its own way.
                return _HEADERS(name, value).fold(policy=policy)
            if len(name) + 2 + len(value) > width and len(value) < width:
                return f"{name}:{end} {value}{end}"
            return f"{name}: {value}{end}"
        folded: str = super().fold(policy=policy)  # type: ignore[misc]
        return folded


class _FoldedOnce:
    """Keeps what a header folded to, by the parts of the policy folding reads.

    Most headers of a mail (the sender, the subject, the content types) are
    the same object in every mail of one kind, so each folds once, not once
    per mail sent.
    """

    def fold(self, *, policy: Policy) -> str:
        key = (type(policy), policy.linesep, policy.max_line_length, getattr(policy, "utf8", False))
        folds: dict[tuple[Any, ...], str] = self.__dict__.setdefault("_folds", {})
        folded = folds.get(key)
        if folded is None:
            folded = folds[key] = super().fold(policy=policy)  # type: ignore[misc]
        return folded


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
            kind = self.registry.get(key, self.default_class)
            mixins: tuple[type, ...] = (_FoldedOnce,)
            if key in ("to", "from"):
                mixins = (_FoldedOnce, _OneMailbox)
            elif key == "message-id":
                mixins = (_OwnMessageID,)
            # Bases that pickle can find by name, so that a header (in a log
            # record, in a message) crosses to another process.
            made = type(f"_{kind.__name__}", (*mixins, kind, self.base_class), {})
            self._made[key] = made
        return made

    def __reduce__(self) -> tuple[type[_HeaderClasses], tuple[()]]:
        # The classes it made are rebuilt where it is unpickled.
        return (type(self), ())


_HEADERS = _HeaderClasses()
_POLICY = _default_policy.clone(header_factory=_HEADERS)
_UTF8_POLICY = _POLICY.clone(utf8=True)


@functools.lru_cache(maxsize=1024)
def _header(name: str, value: str) -> BaseHeader:
    """The header ``name: value``, parsed once and shared by every mail that has it.

    Header objects are immutable, and a message stores one it is given as it is.
    """
    return _HEADERS(name, value)


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
    return Address(
        display_name=safe_display_name(name),
        username=checked.local_part,
        domain=checked.ascii_domain,
    )


def message_id(message: EmailMessage) -> str | None:
    """``message``'s Message-ID as a plain string, for a log record, or ``None``.

    A string crosses to another process in a few bytes; the header object
    would carry its parse tree.
    """
    value = message["Message-ID"]
    return None if value is None else str(value)


def one_line(text: str) -> str:
    """``text`` as one header line: control characters and line breaks become spaces,
    runs of spaces one, and the length is capped."""
    # isprintable() is False for every character is_control() refuses, and costs a
    # fraction of testing each character.
    cleaned = text if text.isprintable() else "".join(" " if is_control(c) else c for c in text)
    line = " ".join(cleaned.split())
    return line if len(line) <= _MAX_SUBJECT else line[: _MAX_SUBJECT - 1].rstrip() + "…"


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


def _boundary(*texts: str) -> str:
    """A multipart boundary none of ``texts`` holds.

    Set here, it spares the generator its own search, which compiles a
    regular expression for every message. Every mail of the process gets
    the same random one, so that its ``Content-Type`` header is parsed and
    folded once, unless a text holds it: a recipient who learns it and puts
    it in a name gets a mail with a fresh one. ``=_`` never starts a line of
    quoted-printable.
    """
    boundary = _PROCESS_BOUNDARY
    while any(boundary in text for text in texts):
        boundary = "=_" + secrets.token_hex(16)
    return boundary


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
    policy = _POLICY if recipient.username.isascii() else _UTF8_POLICY
    message = EmailMessage(policy=policy)
    message["From"] = _header("From", sender)
    message["To"] = recipient
    message["Subject"] = _header("Subject", subject)
    message["Date"] = _header("Date", format_datetime(now))
    domain = sender.rpartition("@")[2].strip("<> ") or "localhost"
    message["Message-ID"] = _message_id(domain)
    for name, value in _AUTOMATED:
        message[name] = _header(name, value)
    message["MIME-Version"] = _header("MIME-Version", "1.0")
    boundary = _boundary(plain, html)
    message["Content-Type"] = _header(
        "Content-Type", f'multipart/alternative; boundary="{boundary}"'
    )
    message["Content-Language"] = _header("Content-Language", language)
    # The parts set_content() and add_alternative() would make, headers and
    # all, without parsing their content types again for every mail.
    html_part = _text_part(policy, "html", html, "quoted-printable")
    html_part["MIME-Version"] = _header("MIME-Version", "1.0")
    message.set_payload([_text_part(policy, "plain", plain, _plain_encoding(plain)), html_part])
    return message


def _text_part(policy: Policy, subtype: str, text: str, cte: str) -> EmailMessage:
    part = EmailMessage(policy=policy)
    part["Content-Type"] = _header("Content-Type", f'text/{subtype}; charset="utf-8"')
    part["Content-Transfer-Encoding"] = _header("Content-Transfer-Encoding", cte)
    # Lines end in one LF, as email.contentmanager writes them for any encoding.
    body = b"\n".join(text.encode("utf-8").splitlines()) + b"\n"
    if cte == "quoted-printable":
        # binascii keeps to the 76 characters a line of RFC 2045 (6.7), where
        # email.quoprimime takes the policy's 78, and costs a quarter as much.
        part.set_payload(binascii.b2a_qp(body, istext=True).decode("ascii"))
    else:
        part.set_payload(body.decode("ascii", "surrogateescape"))
    return part
