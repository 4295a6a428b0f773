"""Compatibility path: the code lives in credrecovery.mail.composer."""

import sys

from .mail import composer as _module
from .mail.composer import Composer as Composer

__all__ = ["Composer"]

# Private names, monkeypatching and isinstance then reach the one module.
sys.modules[__name__] = _module
