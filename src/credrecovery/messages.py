"""Compatibility path: the code lives in credrecovery.mail.messages."""

import sys

from .mail import messages as _module
from .mail.messages import (
    TEMPLATE_NAMES as TEMPLATE_NAMES,
)
from .mail.messages import (
    MailRenderer as MailRenderer,
)
from .mail.messages import (
    confirmation_message as confirmation_message,
)
from .mail.messages import (
    credentials_message as credentials_message,
)
from .mail.messages import (
    mailbox as mailbox,
)
from .mail.messages import (
    safe_display_name as safe_display_name,
)

__all__ = [
    "TEMPLATE_NAMES",
    "MailRenderer",
    "confirmation_message",
    "credentials_message",
    "mailbox",
    "safe_display_name",
]

# Private names, monkeypatching and isinstance then reach the one module.
sys.modules[__name__] = _module
