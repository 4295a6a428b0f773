"""Compatibility path: the code lives in credrecovery.adapters.sqlite."""

import sys

from .adapters import sqlite as _module
from .adapters.sqlite import SQLiteDirectory as SQLiteDirectory

__all__ = ["SQLiteDirectory"]

# Private names, monkeypatching and isinstance then reach the one module.
sys.modules[__name__] = _module
