"""MkDocs hooks for the documentation site (listed under ``hooks:`` in mkdocs.yml)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
# CHANGELOG.md sits at the repository root and links the pages as docs/<page>;
# on the site, whose pages live in docs/, those links must lose the prefix.
_DOCS_LINK = re.compile(r"\]\(docs/")


def on_page_markdown(markdown: str, page: Any, **kwargs: Any) -> str:
    """Give docs/changelog.md the text of CHANGELOG.md, its links made site-relative."""
    if page.file.src_uri != "changelog.md":
        return markdown
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    return _DOCS_LINK.sub("](", changelog)


# --- docstrings ------------------------------------------------------------------------------

# Sphinx roles such as :class:`~credrecovery.Client` or :meth:`find`, which the
# docstrings use and Markdown does not know.
_ROLE = re.compile(r":(?:py:)?(?:class|meth|func|attr|exc|data|mod|obj|const):`(~?)([^`]+)`")
# A reStructuredText paragraph ending in "::" introduces a literal block.
_LITERAL = re.compile(r"(\S)::\n\n")


def markdown_docstring(text: str) -> str:
    """Rewrite the reStructuredText bits of a docstring that Markdown would show raw."""

    def role(match: re.Match[str]) -> str:
        target = match.group(2).strip()
        if match.group(1):
            target = target.rsplit(".", 1)[-1]
        return f"`{target}`"

    return _LITERAL.sub(r"\1:\n\n", _ROLE.sub(role, text))


try:
    import griffe
except ImportError:  # only the documentation build loads the extension below
    pass
else:

    class SphinxRoles(griffe.Extension):
        """Turn Sphinx roles into inline code before mkdocstrings parses a docstring."""

        def on_instance(self, *, obj: Any, **kwargs: Any) -> None:
            if obj.docstring is not None:
                obj.docstring.value = markdown_docstring(obj.docstring.value)
