"""The recovery flow: request a confirmation link, then confirm it for new credentials."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Literal, NoReturn, TypeVar

from passlib.context import CryptContext

from .delivery import BackgroundMailer
from .exceptions import (
    DeliveryFailed,
    DirectoryError,
    InvalidToken,
    RateLimited,
    RecoveryError,
    TokenAlreadyUsed,
    TokenExpired,
)
from .identifiers import IdentifierKind, normalize_identifier, parse_kind
from .keys import default_context, generate_key
from .messages import confirmation_message, credentials_message, pick_language
from .models import Client, Confirmation
from .protocols import ClientDirectory, Mailer
from .ratelimit import Limiter, RateLimits
from .tokens import TokenSigner

__all__ = ["RecoveryService"]

logger = logging.getLogger("credrecovery")
_T = TypeVar("_T")

# Stands in for a client when nothing matched, so that a miss signs and
# renders exactly what a hit does.
_NOBODY = Client(number="0", email="nobody@example.com", key_hash="-" * 97)


class RecoveryService:
    """Recover a client's number and access key through their primary address.

    :param directory: where clients are found and key hashes swapped.
    :param mailer: how mail leaves. Credentials mails are always sent through
        it synchronously, so that a failure can be undone; confirmation mails
        go as ``delivery`` says.
    :param secret_key: signs and verifies tokens.
    :param fallback_secret_keys: only verify, for rotating ``secret_key``.
    :param confirm_url: the link template; must contain ``{token}``. Links
        are built from it alone, never from request data.
    :param sender: the ``From`` address.
    :param token_max_age: how long a confirmation link stays valid.
    :param crypt_context: passlib policy for new key hashes (default argon2).
    :param locale: language of mail for clients without a locale of their own.
    :param rate_limits: limits on abuse; ``None`` turns limiting off.
    :param delivery: how confirmation mails leave: ``"background"`` (default)
        through a :class:`BackgroundMailer` around ``mailer``, ``"sync"`` on the
        request path, or a :class:`BackgroundMailer` of your own to tune its
        queue and retries.
    :param clock: seconds since the epoch; injectable for tests.
    """

    def __init__(
        self,
        directory: ClientDirectory,
        mailer: Mailer,
        *,
        secret_key: str | bytes,
        fallback_secret_keys: Iterable[str | bytes] = (),
        confirm_url: str,
        sender: str,
        token_max_age: timedelta = timedelta(hours=1),
        crypt_context: CryptContext | None = None,
        locale: str = "en",
        rate_limits: RateLimits | None = RateLimits(),  # noqa: B008 - frozen value
        delivery: Literal["background", "sync"] | BackgroundMailer = "background",
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not isinstance(confirm_url, str) or "{token}" not in confirm_url:
            raise ValueError("confirm_url must be a string containing '{token}'")
        if not isinstance(sender, str) or "@" not in sender or _has_line_break(sender):
            raise ValueError("sender must be one email address, optionally with a name")
        if not isinstance(delivery, BackgroundMailer) and delivery not in ("background", "sync"):
            raise ValueError("delivery must be 'background', 'sync' or a BackgroundMailer")
        self.directory = directory
        self.mailer = mailer
        self.confirm_url = confirm_url
        self.sender = sender
        self.locale = locale
        self.crypt_context = crypt_context if crypt_context is not None else default_context()
        self.tokens = TokenSigner(
            secret_key, fallback_secret_keys, max_age=token_max_age, clock=clock
        )
        self._clock = clock
        self._request_mailer: Mailer
        if isinstance(delivery, BackgroundMailer):
            self._request_mailer = delivery
        else:
            self._request_mailer = BackgroundMailer(mailer) if delivery == "background" else mailer
        limiter_key = hashlib.sha256(
            b"credrecovery.ratelimit\x00"
            + (secret_key if isinstance(secret_key, bytes) else secret_key.encode())
        ).digest()
        self.limiter = Limiter(rate_limits, limiter_key) if rate_limits is not None else None

    def __repr__(self) -> str:
        return (
            f"RecoveryService(directory={self.directory!r}, mailer={self.mailer!r}, "
            f"confirm_url={self.confirm_url!r}, token_max_age={self.tokens.max_age!r})"
        )

    def __enter__(self) -> RecoveryService:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until queued confirmation mails are delivered; False on timeout."""
        if isinstance(self._request_mailer, BackgroundMailer):
            return self._request_mailer.flush(timeout)
        return True

    def close(self, timeout: float | None = 30.0) -> None:
        """Deliver what is queued (for up to ``timeout`` s) and stop the worker."""
        if isinstance(self._request_mailer, BackgroundMailer):
            self._request_mailer.close(timeout)

    def request(
        self, kind: IdentifierKind | str, value: str, *, requester: str | None = None
    ) -> None:
        """Mail a confirmation link to the primary address of the client ``value`` names.

        Returns ``None`` whether or not a client matched, and takes the same
        time either way. Raises :class:`InvalidIdentifier` for malformed input,
        :class:`RateLimited` when ``requester`` made too many requests, and
        :class:`DirectoryError` when the directory fails. A failing mailer is
        logged, never raised: that would tell the requester the client exists.
        """
        if requester is not None and self.limiter is not None:
            self._enforce("per_requester", requester)
        kind = parse_kind(kind)
        normalized = normalize_identifier(kind, value)
        mail_allowed = self.limiter is None or self.limiter.hit(
            "per_identifier", f"{kind.value}:{normalized}"
        )
        found = self._find(kind, normalized)
        client = found or _NOBODY
        message = self._confirmation_for(client)
        if self.limiter is not None:
            # A miss is counted under the value it named, so that both paths
            # create and touch counters alike and cost the same.
            client_allowed = self.limiter.hit(
                "per_client", client.number if found else f"?{kind.value}:{normalized}"
            )
        else:
            client_allowed = True
        if found is None:
            logger.info("recovery requested for an unknown identifier",
                        extra={"event": "unknown_identifier", "kind": kind.value})
            return
        if message is None:
            logger.error("client's primary address cannot be mailed",
                         extra={"event": "bad_address", "client": found.number})
            return
        if not mail_allowed or not client_allowed:
            limit = "per_identifier" if not mail_allowed else "per_client"
            logger.warning("recovery mail withheld by rate limit",
                           extra={"event": "throttled", "limit": limit})
            return
        try:
            self._request_mailer.send(message)
        except Exception as exc:  # noqa: BLE001 - never reveal that the client exists
            # A background queue that refuses a message is overloaded or closed.
            queued = isinstance(self._request_mailer, BackgroundMailer)
            logger.error("confirmation mail not sent",
                         extra={"event": "mail_dropped" if queued else "delivery_failed",
                                "client": found.number, "error": type(exc).__name__})
            return
        if not isinstance(self._request_mailer, BackgroundMailer):
            _log_sent(message, found.number)
        logger.info("recovery requested", extra={"event": "requested", "kind": kind.value,
                                                 "client": found.number})

    def check(self, token: str, *, requester: str | None = None) -> Confirmation:
        """Validate ``token`` without using it up.

        For a page that shows a "Confirm" button: mail scanners follow links,
        so only the button's POST should call :meth:`confirm`. Raises what
        :meth:`confirm` raises for a bad token.
        """
        client = self._verified(token, requester)
        return Confirmation(client.number, client.email)

    def confirm(self, token: str, *, requester: str | None = None) -> Confirmation:
        """Rotate the client's access key and mail it with the client number.

        Raises :class:`TokenExpired`, :class:`TokenAlreadyUsed` or
        :class:`InvalidToken` for a bad token, :class:`RateLimited` when
        ``requester`` presented too many bad tokens, :class:`DirectoryError`
        when the directory fails, and :class:`DeliveryFailed` when the mail
        could not be sent, in which case the previous key is back in place and
        the same token still works. (Should the directory fail while putting the
        previous key back, the message says so and a new request is needed.)
        """
        client = self._verified(token, requester)
        key = generate_key()
        new_hash = self.crypt_context.hash(key)
        updated = Client(client.number, client.email, new_hash, client.name, client.locale)
        try:
            message = credentials_message(
                updated, key=key, sender=self.sender, language=self._language(client),
                now=self._now(),
            )
        except (ValueError, TypeError) as exc:
            logger.error("client's primary address cannot be mailed",
                         extra={"event": "bad_address", "client": client.number})
            raise DeliveryFailed("the client's primary address cannot be mailed",
                                 temporary=False) from exc
        if not self._swap(client.number, client.key_hash, new_hash):
            self._reject(TokenAlreadyUsed("this confirmation link was already used"),
                         "reused", requester)
        try:
            self.mailer.send(message)
        except Exception as exc:
            restored = self._undo(client, new_hash)
            logger.error("credentials mail not sent", extra={
                "event": "delivery_failed", "client": client.number,
                "error": type(exc).__name__, "restored": restored})
            temporary = exc.temporary if isinstance(exc, DeliveryFailed) else True
            raise DeliveryFailed(
                "the new access details could not be mailed; nothing was changed"
                if restored else
                "the new access details could not be mailed; request a new link",
                temporary=temporary,
            ) from exc
        _log_sent(message, client.number)
        logger.info("recovery confirmed; access key rotated",
                    extra={"event": "confirmed", "client": client.number})
        return Confirmation(client.number, client.email)

    def _verified(self, token: str, requester: str | None) -> Client:
        if requester is not None and self.limiter is not None and not self.limiter.test(
            "failed_confirmations", requester
        ):
            self._throttle("failed_confirmations", requester)
        try:
            claims = self.tokens.read(token)
        except TokenExpired as exc:
            self._reject(exc, "expired", requester)
        except InvalidToken as exc:
            self._reject(exc, "invalid", requester)
        client = self._find(IdentifierKind.CLIENT_NUMBER, claims.number)
        if client is None:
            self._reject(InvalidToken("the confirmation link is not valid"), "invalid", requester)
        if not claims.matches(client):
            self._reject(TokenAlreadyUsed("this confirmation link was already used"),
                         "reused", requester)
        return client

    def _reject(self, error: InvalidToken, event: str, requester: str | None) -> NoReturn:
        logger.info("confirmation refused", extra={"event": event})
        if requester is not None and self.limiter is not None:
            self.limiter.hit("failed_confirmations", requester)
        raise error

    def _enforce(self, limit: str, requester: str) -> None:
        assert self.limiter is not None
        if not self.limiter.hit(limit, requester):
            self._throttle(limit, requester)

    def _throttle(self, limit: str, requester: str) -> NoReturn:
        assert self.limiter is not None
        logger.warning("attempt refused by rate limit", extra={"event": "throttled",
                                                               "limit": limit})
        raise RateLimited(limit, self.limiter.retry_after(limit, requester))

    def _confirmation_for(self, client: Client) -> EmailMessage | None:
        token = self.tokens.issue(client)
        try:
            return confirmation_message(
                client,
                link=self.confirm_url.replace("{token}", token),
                expires_in=self.tokens.max_age,
                sender=self.sender,
                language=self._language(client),
                now=self._now(),
            )
        except (ValueError, TypeError):
            return None

    def _find(self, kind: IdentifierKind, value: str) -> Client | None:
        return _directory_call(lambda: self.directory.find(kind, value))

    def _swap(self, number: str, current: str, new: str) -> bool:
        return _directory_call(lambda: self.directory.replace_key_hash(number, current, new))

    def _undo(self, client: Client, new_hash: str) -> bool:
        try:
            restored = self._swap(client.number, new_hash, client.key_hash)
        except DirectoryError:
            restored = False
        if not restored:
            # The token is dead then, but a new request still recovers the account.
            logger.critical("previous key could not be restored",
                            extra={"event": "restore_failed", "client": client.number})
        return restored

    def _language(self, client: Client) -> str:
        return pick_language(client.locale, self.locale)

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)


def _directory_call(call: Callable[[], _T]) -> _T:
    """Run a directory call; wrap what a host's directory raises in DirectoryError."""
    try:
        return call()
    except Exception as exc:
        logger.error("client directory failed",
                     extra={"event": "directory_error", "error": type(exc).__name__})
        if isinstance(exc, RecoveryError):
            raise
        raise DirectoryError("the client directory is unavailable") from exc


def _log_sent(message: EmailMessage, number: str) -> None:
    # The background mailer logs its own deliveries; this is for the direct ones.
    logger.info("mail sent", extra={"event": "mail_sent", "client": number,
                                    "message_id": message["Message-ID"]})


def _has_line_break(value: str) -> bool:
    return any(c in value for c in "\r\n\x00")
