"""What the tests read off a mail the service sent: the link's token, the code, the new key."""

from __future__ import annotations

import re
from typing import Any

from credrecovery.testing import code_from, token_from
from helpers.shells import chosen_key

__all__ = ["code_from", "key_from", "token_from"]


def key_from(message: Any) -> str:
    """The new access key: from a credentials mail, or the one chosen, for a change notice."""
    text = message.get_body(("plain",)).get_content()
    match = re.search(r"(?:Access key|Clave de acceso):\s+(\S+)", text)
    if match:
        return match.group(1)
    notice = re.search(r"client number (\S+) .* was changed|número de cliente (\S+) ", text)
    assert notice, "no access key in the mail, nor a notice of a chosen one"
    number = notice.group(1) or notice.group(2)
    key = chosen_key(number)
    assert key is not None, "the notice is for a key no test chose"
    return key
