"""Reading a mail the service sent, as a test does: the confirmation link's token."""

from __future__ import annotations

from email.message import EmailMessage

from ..tokens import TOKEN_IN_LINK

__all__ = ["token_from"]


def token_from(message: EmailMessage) -> str:
    """The token of the confirmation link in ``message``'s plain-text part.

    The link must end in ``/recover/<token>``, as the ``confirm_url`` of the
    examples does (``"https://panel.example.com/recover/{token}"``); the
    first such link is read. Raises :class:`AssertionError` when the mail
    has no plain-text part or no such link.
    """
    part = message.get_body(("plain",))
    if part is None:
        raise AssertionError("the mail has no plain-text part")
    match = TOKEN_IN_LINK.search(str(part.get_content()))
    if match is None:
        raise AssertionError("no confirmation link in the mail")
    return match.group(1)
