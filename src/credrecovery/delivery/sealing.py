"""Sealing confirmation jobs for a trip through a task broker.

A sealed job is encrypted and authenticated with Fernet (AES-128-CBC with
HMAC-SHA256) under keys derived from the service's signing keys, and padded
to a fixed size, so a broker reader learns neither who asked nor whether a
client matched. Needs the ``cryptography`` package (``credrecovery[celery]``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json

try:
    from cryptography.fernet import Fernet, InvalidToken, MultiFernet
except ImportError as exc:  # pragma: no cover - exercised with the extra missing
    raise ImportError(
        "credrecovery.sealing needs cryptography: pip install 'credrecovery[celery]'"
    ) from exc

from ..jobs import ConfirmationJob
from ..mail.composer import Composer

__all__ = ["JobSealer"]

# Sealed jobs are padded to a multiple of this many bytes, so that their size
# tells a broker reader nothing about the client.
_PADDING = 1024

_REFUSED = "the job is forged, tampered, expired or sealed with an unknown secret_key"


class JobSealer:
    """Seal jobs with the newest of ``composer``'s keys; open them with any of them.

    Web processes and workers built from the same ``secret_key`` and
    ``fallback_secret_keys`` open each other's jobs, so rotating the signing
    key as the operations guide says rotates these keys too. A job older than
    the links it would carry (``token_max_age``) does not open.
    """

    def __init__(self, composer: Composer) -> None:
        self._fernets = [Fernet(base64.urlsafe_b64encode(key)) for key in composer.job_keys]
        self._fernet = MultiFernet(self._fernets)
        # One digest key per sealing key, apart from it, so that naming a job
        # never uses the key that encrypts it.
        self._digest_keys = [
            hmac.digest(key, b"credrecovery.delivery-record", hashlib.sha256)
            for key in composer.job_keys
        ]
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
        return self.open(sealed)[0]

    def open(self, sealed: str) -> tuple[ConfirmationJob, str]:
        """The job ``sealed`` holds and its digest; :class:`ValueError` as for :meth:`unseal`.

        The digest names this one sealing of the job: every copy of ``sealed``
        has the same digest, in every process that opens it, whichever of its
        keys comes first, while two calls to :meth:`seal` never share one
        (each seal draws a fresh random IV). It is 32 hexadecimal digits of a
        keyed hash, so it tells nothing of the job or of the keys to whoever
        lacks them: a delivery side may record it where others can read it.
        Only the canonical form that :meth:`seal` returns opens, so a copy
        re-encoded (padding dropped, whitespace added) cannot pass for a
        different job.
        """
        try:
            raw = base64.urlsafe_b64decode(sealed.encode("ascii"))
        except (UnicodeError, binascii.Error, ValueError, AttributeError):
            raise ValueError(_REFUSED) from None
        if base64.urlsafe_b64encode(raw).decode("ascii") != sealed:
            raise ValueError(_REFUSED)
        for fernet, digest_key in zip(self._fernets, self._digest_keys, strict=True):
            try:
                data = fernet.decrypt(sealed, ttl=self._ttl)
            except InvalidToken:
                continue
            try:
                job = ConfirmationJob.from_dict(json.loads(data))
            except (UnicodeError, ValueError, TypeError, AttributeError):
                raise ValueError(_REFUSED) from None
            return job, hmac.digest(digest_key, raw, hashlib.sha256)[:16].hex()
        raise ValueError(_REFUSED)
