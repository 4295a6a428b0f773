"""Delivery of the recovery mails: in the background, inline, or through Celery."""

from .._failures import failure_details
from .background import BackgroundMailer, InlineDelivery, compose, send_now
from .retry import RetryPolicy

__all__ = [
    "BackgroundMailer",
    "InlineDelivery",
    "RetryPolicy",
    "compose",
    "failure_details",
    "send_now",
]
