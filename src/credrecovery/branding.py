"""Compatibility path: the code lives in credrecovery.mail.branding."""

import sys

from .mail import branding as _module
from .mail.branding import Branding as Branding

__all__ = ["Branding"]

# Private names, monkeypatching and isinstance then reach the one module.
sys.modules[__name__] = _module
