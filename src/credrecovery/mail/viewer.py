"""Views of a message for a person: plain text for a terminal, an HTML card for a notebook.

Both views only read the message; neither sends or changes it.
"""

from __future__ import annotations

import dataclasses
import html
from email.message import EmailMessage

__all__ = ["MessageView", "render", "render_html"]

# The headers an HTML card shows, in this order.
_CARD_HEADERS = ("From", "To", "Subject", "Date")
_RULE = "-" * 72


def _plain_text(message: EmailMessage) -> str:
    """The plain-text body of ``message``, or ``""`` when it has none."""
    part = message.get_body(("plain",))
    return "" if part is None else str(part.get_content())


def render(message: EmailMessage) -> str:
    """Headers and the plain-text body of ``message``, readable in a terminal."""
    lines = [f"{name}: {value}" for name, value in message.items() if name != "Content-Type"]
    return "\n".join([_RULE, *lines, "", _plain_text(message).rstrip(), _RULE])


def render_html(message: EmailMessage) -> str:
    """Render ``message`` as an HTML card: its From, To, Subject and Date, then its body.

    Header values are escaped. The HTML part, when there is one, is shown in
    an ``<iframe sandbox srcdoc="...">``: its markup renders, but no script in
    it runs and it cannot reach the page around it. A message without an HTML
    part shows its plain text, escaped, in ``<pre>``.
    """
    rows = "".join(
        f'<tr><th style="text-align:left;padding-right:1em">{name}</th>'
        f"<td>{html.escape(str(message.get(name, '')))}</td></tr>"
        for name in _CARD_HEADERS
    )
    html_part = message.get_body(("html",))
    if html_part is not None:
        srcdoc = html.escape(str(html_part.get_content()), quote=True)
        body = (
            f'<iframe sandbox srcdoc="{srcdoc}" title="Message body" '
            'referrerpolicy="no-referrer" '
            'style="width:100%;height:18em;border:1px solid #ddd;background:#fff"></iframe>'
        )
    else:
        body = f'<pre style="white-space:pre-wrap">{html.escape(_plain_text(message))}</pre>'
    return (
        '<div class="credrecovery-message" '
        'style="border:1px solid #ccc;border-radius:4px;margin:0 0 1em;padding:.5em 1em">'
        f"<table>{rows}</table>{body}</div>"
    )


@dataclasses.dataclass(frozen=True, repr=False)
class MessageView:
    """One message that renders as a card in a notebook (see :func:`render_html`)."""

    message: EmailMessage

    def __repr__(self) -> str:
        # The subject only: a body may hold a link or an access key.
        return f"MessageView(subject={self.message.get('Subject', '')!r})"

    def _repr_html_(self) -> str:
        return render_html(self.message)
