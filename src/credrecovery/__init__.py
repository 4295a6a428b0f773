"""credrecovery: recover lost access to a hosting provider's client panel.

A client names their domain, client number or primary email address; the
library mails a signed, expiring, single-use confirmation link to the primary
address, and on confirmation rotates the access key and mails the client
number with the new key.
"""

from importlib import metadata as _metadata

from ._shell.hashing import HashingLimit, hashing_limit, set_hashing_limit
from .codes import IssuedCode
from .delivery.background import BackgroundMailer
from .delivery.retry import RetryPolicy
from .events import Event, EventKind
from .exceptions import (
    DeliveryFailed,
    DirectoryError,
    InvalidCode,
    InvalidIdentifier,
    InvalidToken,
    KeyRejected,
    Overloaded,
    RateLimited,
    RecoveryError,
    TokenAlreadyUsed,
    TokenExpired,
    UnknownClient,
)
from .identifiers import IdentifierKind, normalize_identifier
from .jobs import MAX_CLIENTS_PER_MAIL, ConfirmationJob
from .keys import cheap_context, default_context, generate_key
from .mail.branding import Branding
from .mail.composer import Composer
from .models import Client, Confirmation, Login
from .policy import KeyPolicy
from .protocols import (
    AsyncClientDirectory,
    AsyncMailer,
    AsyncMustChangeDirectory,
    ClientDirectory,
    DeliveryQueue,
    Mailer,
    MustChangeDirectory,
)
from .ratelimit.limiters import LimitName, RateLimits
from .service import AsyncRecoveryService, RecoveryService

try:
    __version__ = _metadata.version("credrecovery")
except _metadata.PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"

__all__ = [
    "MAX_CLIENTS_PER_MAIL",
    "AsyncClientDirectory",
    "AsyncMailer",
    "AsyncMustChangeDirectory",
    "AsyncRecoveryService",
    "BackgroundMailer",
    "Branding",
    "Client",
    "ClientDirectory",
    "Composer",
    "Confirmation",
    "ConfirmationJob",
    "DeliveryFailed",
    "DeliveryQueue",
    "DirectoryError",
    "Event",
    "EventKind",
    "HashingLimit",
    "IdentifierKind",
    "InvalidCode",
    "InvalidIdentifier",
    "InvalidToken",
    "IssuedCode",
    "KeyPolicy",
    "KeyRejected",
    "LimitName",
    "Login",
    "Mailer",
    "MustChangeDirectory",
    "Overloaded",
    "RateLimited",
    "RateLimits",
    "RecoveryError",
    "RecoveryService",
    "RetryPolicy",
    "TokenAlreadyUsed",
    "TokenExpired",
    "UnknownClient",
    "__version__",
    "cheap_context",
    "default_context",
    "generate_key",
    "hashing_limit",
    "normalize_identifier",
    "set_hashing_limit",
]
