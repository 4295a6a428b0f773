"""The project's documents as a host reads them: pages, their Python blocks, the examples."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

from helpers import ROOT

__all__ = ["ROOT", "code_of", "documents", "python_blocks"]


def documents() -> list[Path]:
    """README.md, every page of docs/ and every README of examples/."""
    return [
        ROOT / "README.md",
        *sorted((ROOT / "docs").rglob("*.md")),
        *sorted((ROOT / "examples").rglob("README.md")),
    ]


def python_blocks() -> dict[str, str]:
    """Every ``python`` block of the documents, keyed ``page#n`` (n counts from 0 per page).

    Blocks indented inside a list item count too, dedented.
    """
    return {
        f"{page.relative_to(ROOT).as_posix()}#{n}": block
        for page in documents()
        for n, block in enumerate(fenced(page.read_text(encoding="utf-8")))
    }


def fenced(text: str) -> list[str]:
    """The bodies of a Markdown text's ``python`` fenced blocks, at any indentation."""
    return [
        textwrap.dedent(body)
        for _, body in re.findall(r"^( *)```python\n(.*?)^\1```$", text, re.DOTALL | re.MULTILINE)
    ]


def code_of(block: str) -> str:
    """A documented block as compilable source.

    Excerpts quoted from inside a file open with a ``# path`` caption and keep
    their indentation: the caption is dropped and the rest dedented. An
    excerpt from a function's body (a bare ``return``) becomes that body.
    """
    lines = block.splitlines()
    if len(lines) > 1 and lines[0].startswith("#") and lines[1][:1].isspace():
        block = textwrap.dedent("\n".join(lines[1:])) + "\n"
    try:
        compile(block, "<block>", "exec", dont_inherit=True)
    except SyntaxError as exc:
        if "outside function" not in str(exc.msg):
            raise
        return "async def _excerpt():\n" + textwrap.indent(block, "    ")
    return block
