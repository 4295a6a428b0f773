"""The one test of which characters no name, sender, subject or URL may hold."""

from __future__ import annotations

import unicodedata

__all__ = ["has_control", "is_control"]


def is_control(char: str) -> bool:
    """Whether ``char`` is refused: a Unicode ``C*`` or line or paragraph separator.

    Refused are the general categories Cc (C0 controls U+0000-U+001F, DEL
    U+007F and C1 controls U+0080-U+009F, so CR, LF and TAB too), Cf (format
    characters: soft hyphen, zero-width joiners, bidi marks, embeddings,
    overrides and isolates U+202A-U+202E and U+2066-U+2069, BOM), Cs (lone
    surrogates), Co (private use) and Cn (unassigned), and Zl (U+2028 LINE
    SEPARATOR) and Zp (U+2029 PARAGRAPH SEPARATOR). Spaces of category Zs,
    such as U+0020 and U+00A0, are allowed.
    """
    category = unicodedata.category(char)
    return category[0] == "C" or category in ("Zl", "Zp")


def has_control(text: str) -> bool:
    """Whether any character of ``text`` is refused by :func:`is_control`."""
    return any(is_control(char) for char in text)
