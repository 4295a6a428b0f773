"""Compatibility path: the code lives in credrecovery.delivery._process."""

import sys

from .delivery import _process as _module
from .delivery._process import DeliveryProcess as DeliveryProcess

__all__ = ["DeliveryProcess"]

# Private names, monkeypatching and isinstance then reach the one module.
sys.modules[__name__] = _module
