"""Compatibility path: the code lives in credrecovery.adapters.smtp."""

import sys

from .adapters import smtp as _module
from .adapters.smtp import (
    Security as Security,
)
from .adapters.smtp import (
    SMTPMailer as SMTPMailer,
)

__all__ = ["SMTPMailer", "Security"]

# Private names, monkeypatching and isinstance then reach the one module.
sys.modules[__name__] = _module
