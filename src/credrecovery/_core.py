"""Compatibility path: the code lives in credrecovery._flow.flows."""

import sys

from ._flow import flows as _module
from ._flow.flows import (
    Core as Core,
)
from ._flow.flows import (
    Effect as Effect,
)
from ._flow.flows import (
    Flow as Flow,
)
from ._flow.flows import (
    Interrupted as Interrupted,
)
from ._flow.flows import (
    advance as advance,
)
from ._flow.flows import (
    checked_sender as checked_sender,
)
from ._flow.flows import (
    run as run,
)

__all__ = ["Core", "Effect", "Flow", "Interrupted", "advance", "checked_sender", "run"]

# Private names, monkeypatching and isinstance then reach the one module.
sys.modules[__name__] = _module
