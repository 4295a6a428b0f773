"""Branding: what a provider may put in its mails, checked when it is built."""

from __future__ import annotations

import dataclasses

import pytest

from credrecovery.branding import Branding


def test_a_full_branding() -> None:
    """Every field set; the name's spaces are tidied."""
    branding = Branding(
        "  XMundo   Networks ",
        support="soporte@xmundo.example",
        login_url="https://panel.xmundo.example/login",
        logo_url="http://cdn.xmundo.example/logo.png",
    )
    assert branding.name == "XMundo Networks"
    assert branding.support_href == "mailto:soporte@xmundo.example"
    assert Branding("X", support="https://help.xmundo.example/").support_href == (
        "https://help.xmundo.example/"
    )
    assert Branding("X").support_href is None


def test_it_is_frozen_and_hashable() -> None:
    branding = Branding("XMundo Networks")
    with pytest.raises(dataclasses.FrozenInstanceError):
        branding.name = "Other"  # type: ignore[misc]
    assert hash(branding) == hash(Branding("XMundo Networks"))


@pytest.mark.parametrize(
    "name", ["", "   ", "XMundo\nBcc: x@evil.example", "X\x00", "X\u2028Y", "x" * 81, 42]
)
def test_bad_names_are_refused(name: object) -> None:
    """Empty, multi-line, control-laden, over-long or non-text names raise ValueError."""
    with pytest.raises(ValueError, match="branding name"):
        Branding(name)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "support",
    [
        "call us",
        "javascript:alert(1)",
        "ftp://x.example/",
        "a@b@c",
        "x@example.com\r\nBcc: y@evil.example",
        "https://",
        'https://x.example/"onclick="x',
    ],
)
def test_bad_support_is_refused(support: str) -> None:
    """Support must be an address or an http(s) URL."""
    with pytest.raises(ValueError, match="branding support"):
        Branding("XMundo", support=support)


@pytest.mark.parametrize("field", ["login_url", "logo_url"])
@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(1)",
        "data:image/png;base64,AAAA",
        "//panel.example",
        "panel.example/login",
        "https://",
        "https://panel.example/a b",
        "https://panel.example/\n",
        "https://panel.example/<x>",
    ],
)
def test_urls_must_be_http(field: str, url: str) -> None:
    """Only http(s) URLs with a host, and nothing that could leave an attribute."""
    with pytest.raises(ValueError, match=field):
        Branding("XMundo", **{field: url})  # type: ignore[arg-type]


def test_service_refuses_something_else_as_branding() -> None:
    from credrecovery.messages import MailRenderer

    with pytest.raises(TypeError):
        MailRenderer(branding="XMundo")  # type: ignore[arg-type]
