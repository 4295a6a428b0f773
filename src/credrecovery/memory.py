"""Compatibility path: the code lives in credrecovery.adapters.memory."""

import sys

from .adapters import memory as _module
from .adapters.memory import (
    MemoryDirectory as MemoryDirectory,
)
from .adapters.memory import (
    MemoryMailer as MemoryMailer,
)
from .adapters.memory import (
    MessageView as MessageView,
)
from .adapters.memory import (
    Outbox as Outbox,
)
from .adapters.memory import (
    render_html as render_html,
)

__all__ = ["MemoryDirectory", "MemoryMailer", "MessageView", "Outbox", "render_html"]

# Private names, monkeypatching and isinstance then reach the one module.
sys.modules[__name__] = _module
