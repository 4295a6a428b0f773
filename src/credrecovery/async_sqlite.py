"""Compatibility path: the code lives in credrecovery.adapters.async_sqlite."""

import sys

from .adapters import async_sqlite as _module
from .adapters.async_sqlite import AsyncSQLiteDirectory as AsyncSQLiteDirectory

__all__ = ["AsyncSQLiteDirectory"]

# Private names, monkeypatching and isinstance then reach the one module.
sys.modules[__name__] = _module
