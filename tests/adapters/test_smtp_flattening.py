"""The bytes SMTPMailer writes for a message are the bytes smtplib.send_message would write."""

from __future__ import annotations

import io
from email.generator import BytesGenerator
from email.message import EmailMessage
from email.utils import getaddresses

from hypothesis import given
from hypothesis import strategies as st

from credrecovery.adapters._smtp_message import flat

# CR, LF and CRLF, alone and in runs, among text that is not a line ending.
_PIECES = ["\r", "\n", "\r\n", "a", " ", ".", "=", "-"]
_ASCII = st.lists(st.sampled_from(_PIECES)).map("".join)
_TEXT = st.lists(st.sampled_from([*_PIECES, "é"])).map("".join)


def _smtplib_bytes(message: EmailMessage) -> bytes:
    out = io.BytesIO()
    BytesGenerator(out).flatten(message, linesep="\r\n")
    return out.getvalue()


@given(body=_TEXT, preamble=st.none() | _ASCII, epilogue=st.none() | _ASCII, name=_TEXT)
def test_any_line_endings_flatten_as_smtplib_flattens_them(
    body: str, preamble: str | None, epilogue: str | None, name: str
) -> None:
    message = EmailMessage()
    message["From"] = f'"{name.replace(chr(13), "").replace(chr(10), "")}" <panel@example.com>'
    message["To"] = "ana@example.com"
    message["Subject"] = "Line endings"
    message.set_content("first part\n")
    message.add_alternative("<p>second part</p>\n", subtype="html")
    message.preamble = preamble
    message.epilogue = epilogue
    text = message.get_payload()[0]
    # As the library's own text parts hold it: 8bit UTF-8, undecoded.
    text.set_payload(body.encode("utf-8").decode("ascii", "surrogateescape"))
    text.replace_header("Content-Transfer-Encoding", "8bit")

    flattened = flat(message)

    assert flattened.wire == _smtplib_bytes(message)
    assert flattened.sender == getaddresses([str(message["From"])])[0][1] == "panel@example.com"
