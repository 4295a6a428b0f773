"""How the mails name the provider: its name, support contact, sign-in page and logo."""

from __future__ import annotations

import dataclasses
from urllib.parse import urlsplit

from .._text import has_control
from ..identifiers import check_address

__all__ = ["Branding"]

_MAX_NAME = 80
_MAX_SUPPORT = 254
_MAX_URL = 2000


@dataclasses.dataclass(frozen=True)
class Branding:
    """The provider as its clients know it, shown in both mails.

    :param name: the provider or panel, as clients know it
        (``"XMundo Networks"``); it appears in subjects, bodies and footers.
        Up to 80 characters, none of them control characters.
    :param support: where clients get help: an email address (linked with
        ``mailto:``) or an ``http(s)`` URL; ``""`` for none.
    :param login_url: the panel's sign-in page, an ``http(s)`` URL; the
        credentials mail links to it.
    :param logo_url: an ``http(s)`` URL of a logo image for the HTML part;
        its ``alt`` text is ``name``.

    Raises :class:`ValueError` for a value outside these rules.
    """

    name: str
    support: str = ""
    login_url: str | None = None
    logo_url: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueError("branding name must be non-empty text")
        if has_control(self.name) or len(self.name.strip()) > _MAX_NAME:
            raise ValueError(
                f"branding name must be at most {_MAX_NAME} characters, "
                "without line breaks or control characters"
            )
        object.__setattr__(self, "name", " ".join(self.name.split()))
        if not isinstance(self.support, str) or has_control(self.support):
            raise ValueError("branding support must be text without control characters")
        support = self.support.strip()
        if support:
            if len(support) > _MAX_SUPPORT and not _is_web_url(support):
                raise ValueError("branding support is too long")
            if not _is_web_url(support) and not _is_address(support):
                raise ValueError("branding support must be an email address or an http(s) URL")
        object.__setattr__(self, "support", support)
        for field in ("login_url", "logo_url"):
            value = getattr(self, field)
            if value is not None and not _is_web_url(value):
                raise ValueError(f"branding {field} must be an http(s) URL")

    @property
    def support_href(self) -> str | None:
        """The link to ``support``: ``mailto:`` for an address; ``None`` without one."""
        if not self.support:
            return None
        if _is_web_url(self.support):
            return self.support
        return f"mailto:{self.support}"


def _is_web_url(value: object) -> bool:
    if not isinstance(value, str) or len(value) > _MAX_URL or has_control(value):
        return False
    if any(c.isspace() or c in "<>\"'`" for c in value):
        return False
    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _is_address(value: str) -> bool:
    try:
        check_address(value)
    except ValueError:
        return False
    return True
