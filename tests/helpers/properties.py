"""How many examples a property test runs, by the Hypothesis profile ``conftest.py`` loaded."""

from __future__ import annotations

from hypothesis import settings

__all__ = ["examples"]


def examples(count: int) -> int:
    """``count`` under the ``ci`` profile; a fifth of it, at least 10, under ``dev``."""
    if settings.get_current_profile_name() == "dev":
        return max(10, count // 5)
    return count
