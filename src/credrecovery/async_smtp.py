"""Compatibility path: the code lives in credrecovery.adapters.async_smtp."""

import sys

from .adapters import async_smtp as _module
from .adapters.async_smtp import AsyncSMTPMailer as AsyncSMTPMailer

__all__ = ["AsyncSMTPMailer"]

# Private names, monkeypatching and isinstance then reach the one module.
sys.modules[__name__] = _module
