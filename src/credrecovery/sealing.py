"""Sealing confirmation jobs for a trip through a task broker.

A sealed job is encrypted and authenticated with Fernet (AES-128-CBC with
HMAC-SHA256) under keys derived from the service's signing keys, and padded
to a fixed size, so a broker reader learns neither who asked nor whether a
client matched. Needs the ``cryptography`` package (``credrecovery[celery]``).
"""

from __future__ import annotations

import base64
import json

try:
    from cryptography.fernet import Fernet, InvalidToken, MultiFernet
except ImportError as exc:  # pragma: no cover - exercised with the extra missing
    raise ImportError(
        "credrecovery.sealing needs cryptography: pip install 'credrecovery[celery]'"
    ) from exc

from .composer import Composer
from .jobs import ConfirmationJob

__all__ = ["JobSealer"]

# Sealed jobs are padded to a multiple of this many bytes, so that their size
# tells a broker reader nothing about the client.
_PADDING = 1024


class JobSealer:
    """Seal jobs with the newest of ``composer``'s keys; open them with any of them.

    Web processes and workers built from the same ``secret_key`` and
    ``fallback_secret_keys`` open each other's jobs, so rotating the signing
    key as the operations guide says rotates these keys too. A job older than
    the links it would carry (``token_max_age``) does not open.
    """

    def __init__(self, composer: Composer) -> None:
        self._fernet = MultiFernet(
            [Fernet(base64.urlsafe_b64encode(key)) for key in composer.job_keys]
        )
        self._ttl = int(composer.max_age.total_seconds())

    def __repr__(self) -> str:
        return "JobSealer(<keys>)"

    def seal(self, job: ConfirmationJob) -> str:
        """``job`` encrypted and authenticated, padded to a multiple of 1,024 bytes."""
        data = json.dumps(job.to_dict(), separators=(",", ":")).encode("utf-8")
        # JSON ignores trailing whitespace, so spaces pad it.
        data += b" " * (-len(data) % _PADDING)
        return self._fernet.encrypt(data).decode("ascii")

    def unseal(self, sealed: str) -> ConfirmationJob:
        """The job ``sealed`` holds; :class:`ValueError` if forged, tampered or expired."""
        try:
            data = self._fernet.decrypt(sealed.encode("ascii"), ttl=self._ttl)
            return ConfirmationJob.from_dict(json.loads(data))
        except (InvalidToken, UnicodeError, ValueError, TypeError, AttributeError):
            raise ValueError("the job is forged, tampered, expired or sealed with an unknown "
                             "secret_key") from None
