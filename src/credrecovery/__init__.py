"""credrecovery: recover lost access to a hosting provider's client panel.

A client names their domain, client number or primary email address; the
library mails a signed, expiring, single-use confirmation link to the primary
address, and on confirmation rotates the access key and mails the client
number with the new key.
"""

from .delivery import BackgroundMailer
from .exceptions import (
    DeliveryFailed,
    DirectoryError,
    InvalidIdentifier,
    InvalidToken,
    RateLimited,
    RecoveryError,
    TokenAlreadyUsed,
    TokenExpired,
)
from .identifiers import IdentifierKind, normalize_identifier
from .keys import cheap_context, default_context, generate_key
from .models import Client, Confirmation
from .protocols import ClientDirectory, Mailer
from .ratelimit import RateLimits
from .service import RecoveryService

__all__ = [
    "BackgroundMailer",
    "Client",
    "ClientDirectory",
    "Confirmation",
    "DeliveryFailed",
    "DirectoryError",
    "IdentifierKind",
    "InvalidIdentifier",
    "InvalidToken",
    "Mailer",
    "RateLimited",
    "RateLimits",
    "RecoveryError",
    "RecoveryService",
    "TokenAlreadyUsed",
    "TokenExpired",
    "cheap_context",
    "default_context",
    "generate_key",
    "normalize_identifier",
]
