"""Compatibility path: the code lives in credrecovery.ratelimit._limits_storage."""

import sys

from .ratelimit import _limits_storage as _module
from .ratelimit._limits_storage import BoundedMemoryStorage as BoundedMemoryStorage

__all__ = ["BoundedMemoryStorage"]

# Private names, monkeypatching and isinstance then reach the one module.
sys.modules[__name__] = _module
