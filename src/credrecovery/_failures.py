"""What a log event says of a failed delivery, shared by the flows and the delivery paths."""

from __future__ import annotations

from typing import Any

from .exceptions import DeliveryFailed

__all__ = ["failure_details"]


def failure_details(exc: BaseException) -> dict[str, Any]:
    """What a log event says of a failed delivery: a reason and the SMTP codes, never a secret.

    A :class:`DeliveryFailed` message is the library's own wording, free of
    server text; any other exception is named by its type only.
    """
    if isinstance(exc, DeliveryFailed):
        return {
            "reason": str(exc),
            "error": type(exc).__name__,
            "smtp_code": getattr(exc, "smtp_code", None),
            "enhanced_code": getattr(exc, "enhanced_code", None),
        }
    return {
        "reason": f"the mailer raised {type(exc).__name__}",
        "error": type(exc).__name__,
        "smtp_code": None,
        "enhanced_code": None,
    }
