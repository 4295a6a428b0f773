"""The shared helpers: derived keys pinned, control characters and link tokens on hostile input."""

from __future__ import annotations

from email.message import EmailMessage

import pytest

from credrecovery._derivation import derive_key
from credrecovery._text import has_control, is_control
from credrecovery.testing import token_from
from credrecovery.tokens import TOKEN_IN_LINK

SECRET = "unit-test-secret-key-0123456789abcdef"

#: What the code before the shared helper derived from SECRET: Redis rate-limit
#: keys and sealed jobs already stored depend on these bytes.
PINNED = {
    "ratelimit": "e3d6dea46e746674dfbdcc438ee9ea853212c0493d83b5ea41401ed5e7efdd4e",
    "jobs": "dc2aab43c4ba8efa8336ba169cf25ca724434178d75b4dfd2bcc5766b7b7f3d4",
}


@pytest.mark.parametrize("purpose", sorted(PINNED))
def test_derived_keys_never_change(purpose: str) -> None:
    """Each purpose's key is the same bytes for a str secret and its UTF-8 bytes."""
    assert derive_key(SECRET, purpose).hex() == PINNED[purpose]
    assert derive_key(SECRET.encode("utf-8"), purpose).hex() == PINNED[purpose]


def test_service_and_composer_use_the_pinned_keys() -> None:
    """The rate limiter and the job sealing keys are the pinned ones."""
    from credrecovery import RecoveryService
    from credrecovery.adapters.memory import MemoryDirectory, MemoryMailer
    from credrecovery.ratelimit import RateLimits

    service = RecoveryService(
        MemoryDirectory(),
        MemoryMailer(),
        secret_key=SECRET,
        confirm_url="https://panel.example.com/recover/{token}",
        sender="panel@example.com",
        rate_limits=RateLimits(),
        delivery="sync",
    )
    assert service.composer.job_keys == (bytes.fromhex(PINNED["jobs"]),)
    assert service.limiter._key == bytes.fromhex(PINNED["ratelimit"])


@pytest.mark.parametrize(
    "char",
    [
        "\x00",
        "\t",
        "\n",
        "\r",
        "\x1b",
        "\x7f",
        "\x85",
        "\u200b",
        "\u200e",
        "\u202e",
        "\u2066",
        "\u2028",
        "\u2029",
        "\ufeff",
        "\ud800",
        "\ue000",
        "\U000e0001",
        "\u0378",
    ],
)
def test_control_characters_are_refused(char: str) -> None:
    """C0, DEL, C1, format (bidi, zero-width), surrogate, private-use, unassigned, Zl, Zp."""
    assert is_control(char)
    assert has_control(f"XMundo{char}Networks")


@pytest.mark.parametrize("text", ["XMundo Networks", "Añil\u00a0Hosting", "ejemplo.es", "", "日本"])
def test_printable_text_passes(text: str) -> None:
    """Letters of any script and spaces, the no-break space among them, pass."""
    assert not has_control(text)


def _mail(body: str) -> EmailMessage:
    message = EmailMessage()
    message.set_content(body)
    return message


def test_token_read_from_a_link() -> None:
    """The token stops at the first character no token holds."""
    token = "eyJuIjoiOTAwMCJ9.Zm9v.c2lnbmF0dXJlLV9fXw"
    for end in ("\n", " ", '"', "<", "?x=1", "#top", "é"):
        text = f"Open https://panel.example.com/recover/{token}{end}later"
        match = TOKEN_IN_LINK.search(text)
        assert match is not None and match.group(1) == token
    assert token_from(_mail(f"Open https://panel.example.com/recover/{token}\n")) == token


@pytest.mark.parametrize(
    "body",
    [
        "no link at all",
        "https://panel.example.com/recover/",
        "https://panel.example.com/recover/<script>",
        "https://panel.example.com/recovery/abc.def.ghi",
    ],
)
def test_no_token_without_a_link(body: str) -> None:
    """A mail without a ``/recover/<token>`` link fails loudly."""
    with pytest.raises(AssertionError, match="no confirmation link"):
        token_from(_mail(body))
