"""Compatibility path: the code lives in credrecovery.delivery.sealing."""

import sys

from .delivery import sealing as _module
from .delivery.sealing import JobSealer as JobSealer

__all__ = ["JobSealer"]

# Private names, monkeypatching and isinstance then reach the one module.
sys.modules[__name__] = _module
