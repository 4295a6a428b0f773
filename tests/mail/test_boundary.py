"""Each mail carries its multipart boundary from the start, found in none of its parts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy

from credrecovery import Client
from credrecovery.mail.messages import confirmation_message

NOW = datetime(2027, 1, 15, 12, 0, tzinfo=UTC)


def _mail(name: str) -> bytes:
    client = Client(number="1001", email="ana@example.com", key_hash="-", name=name)
    message = confirmation_message(
        client,
        link="https://panel.example.com/recover/=_0123456789abcdef",
        expires_in=timedelta(hours=1),
        sender="Client Panel <panel@example.com>",
        language="en",
        now=NOW,
    )
    boundary = message.get_boundary()
    assert boundary is not None and boundary.startswith("=_")
    return message.as_bytes()


def _boundary_of(raw: bytes) -> str:
    parsed = message_from_bytes(raw, policy=policy.default)
    boundary = parsed.get_boundary()
    assert boundary is not None
    parts = list(parsed.iter_parts())
    assert [part.get_content_type() for part in parts] == ["text/plain", "text/html"]
    assert raw.count(f"--{boundary}".encode()) == 3
    for part in parts:
        assert boundary not in part.as_string()
    return boundary


def test_a_name_holding_the_boundary_gets_its_mail_another() -> None:
    # Mails share a boundary while no text holds it; a recipient who learns it
    # and puts it in a name gets a mail with a boundary of its own.
    usual = _boundary_of(_mail("Ana"))
    assert _boundary_of(_mail("Bea")) == usual
    other = _boundary_of(_mail(f"Ana {usual} Pérez"))
    assert other != usual
    assert _boundary_of(_mail(f"Ana {usual[:-1]}")) == usual
