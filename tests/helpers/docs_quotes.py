"""The code excerpts docs/embedding.md quotes from the examples, kept true by tests."""

from __future__ import annotations

import re

from helpers.constants import ROOT

__all__ = ["quoted_excerpts"]


def quoted_excerpts(section: str) -> list[tuple[str, str]]:
    """The fenced blocks of docs/embedding.md's ``## section``: (file named on line 1, rest).

    The first line names the quoted file as a comment, ``# examples/...`` or,
    in a template, ``<!-- examples/... -->``.
    """
    text = (ROOT / "docs" / "embedding.md").read_text(encoding="utf-8")
    match = re.search(rf"^## {re.escape(section)}\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert match, f"docs/embedding.md has no '## {section}' section"
    excerpts = []
    for block in re.findall(r"^```\w*\n(.*?)^```", match.group(1), re.M | re.S):
        first, _, rest = block.partition("\n")
        named = re.fullmatch(r"(?:#|<!--)\s*(examples/\S+?)(?:\s*-->)?", first.strip())
        if named:
            excerpts.append((named.group(1), rest))
    return excerpts
