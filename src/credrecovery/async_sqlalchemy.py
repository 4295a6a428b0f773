"""Compatibility path: the code lives in credrecovery.adapters.async_sqlalchemy."""

import sys

from .adapters import async_sqlalchemy as _module
from .adapters.async_sqlalchemy import (
    AsyncSQLAlchemyDirectory as AsyncSQLAlchemyDirectory,
)
from .adapters.async_sqlalchemy import (
    TableMapping as TableMapping,
)

__all__ = ["AsyncSQLAlchemyDirectory", "TableMapping"]

# Private names, monkeypatching and isinstance then reach the one module.
sys.modules[__name__] = _module
