"""A mailer that prints each message instead of sending it, for the command line and trials."""

from __future__ import annotations

import sys
from email.message import EmailMessage
from typing import TextIO

from ..mail.viewer import render

__all__ = ["PrintMailer"]


class PrintMailer:
    """A :class:`~credrecovery.Mailer` that writes each message to a stream instead of sending it.

    Each message is shown as :func:`~credrecovery.mail.viewer.render` shows
    it: its headers and plain-text body, between two rules.
    """

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream

    def send(self, message: EmailMessage) -> None:
        """Print ``message`` to the stream, standard output by default."""
        # Standard output is looked up on each call, so a redirection made later is followed.
        print(render(message), file=self._stream or sys.stdout)
