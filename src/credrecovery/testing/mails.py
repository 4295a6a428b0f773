"""Reading a mail the service sent, as a test does: the confirmation link's token, the codes."""

from __future__ import annotations

import re
from email.message import EmailMessage

from ..codes import CODE_ALPHABET
from ..tokens import TOKEN_IN_LINK

__all__ = ["code_from", "codes_from", "token_from"]

_CODE = re.compile(rf"(?m)^\s*([{CODE_ALPHABET}]{{4}}-[{CODE_ALPHABET}]{{4}})\s*$")


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


def codes_from(message: EmailMessage) -> list[str]:
    """Every recovery code of a code mail's plain-text part, in order (``WDJH-MJHT``).

    A mail for an address several clients share lists one per client number.
    Raises :class:`AssertionError` when the mail has no plain-text part or no code.
    """
    part = message.get_body(("plain",))
    if part is None:
        raise AssertionError("the mail has no plain-text part")
    codes = _CODE.findall(str(part.get_content()))
    if not codes:
        raise AssertionError("no recovery code in the mail")
    return codes


def code_from(message: EmailMessage) -> str:
    """The first recovery code of a code mail, as :func:`codes_from` reads them."""
    return codes_from(message)[0]
