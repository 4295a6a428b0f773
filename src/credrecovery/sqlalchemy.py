"""Compatibility path: the code lives in credrecovery.adapters.sqlalchemy."""

import importlib
import sys

# Checked here as well: once the adapter is loaded, importing this path again
# (say, after dropping it from sys.modules) must still say which extra is missing.
try:
    importlib.import_module("sqlalchemy")
except ImportError as exc:
    raise ImportError(
        "credrecovery.sqlalchemy needs SQLAlchemy 2: pip install 'credrecovery[sqlalchemy]'"
    ) from exc

from .adapters import sqlalchemy as _module
from .adapters.sqlalchemy import (
    SQLAlchemyDirectory as SQLAlchemyDirectory,
)
from .adapters.sqlalchemy import (
    TableMapping as TableMapping,
)

__all__ = ["SQLAlchemyDirectory", "TableMapping"]

# Private names, monkeypatching and isinstance then reach the one module.
sys.modules[__name__] = _module
