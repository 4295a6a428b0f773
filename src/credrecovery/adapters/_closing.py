"""What every shipped directory raises once it is closed."""

from __future__ import annotations

from ..exceptions import DirectoryError

#: The message of :func:`closed_error`, for each directory alike.
CLOSED = "the client directory is closed"


def closed_error() -> DirectoryError:
    """The :class:`DirectoryError` a call of a closed directory raises."""
    return DirectoryError(CLOSED)
