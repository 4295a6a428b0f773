"""The recovery flow: request a confirmation link, then confirm it for new credentials."""

from __future__ import annotations

import contextlib
import dataclasses
import email.policy
import functools
import hashlib
import inspect
import logging
import threading
import time
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Literal, NoReturn, TypeVar

from passlib.context import CryptContext

from ._secrets import Secret
from .composer import Composer
from .delivery import BackgroundMailer, InlineDelivery, failure_details
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
from .identifiers import IdentifierKind, normalize_identifier, parse_kind
from .jobs import MAX_CLIENTS_PER_MAIL, ConfirmationJob
from .keys import default_context, generate_key
from .messages import credentials_message, mailbox, pick_language
from .models import Client, Confirmation, Login
from .protocols import ClientDirectory, DeliveryQueue, Mailer
from .ratelimit import Limiter, RateLimits
from .tokens import TokenClaims, TokenSigner, account_binding

__all__ = ["RecoveryService"]

logger = logging.getLogger("credrecovery")
_T = TypeVar("_T")

# Stands in for a client when nothing matched, so that a miss builds, hands
# over and composes exactly what a hit does.
_NOBODY = Client(number="0", email="nobody@example.com", key_hash="-" * 97)
# Below this a signing key may be guessed offline from one link.
_MIN_SECRET_BYTES = 32


class RecoveryService:
    """Recover a client's number and access key through their primary address.

    :param directory: where clients are found and key hashes swapped.
    :param mailer: how mail leaves. Credentials mails are always sent through
        it synchronously, so that a failure can be undone; it must not be a
        queue. Confirmation mails go as ``delivery`` says.
    :param secret_key: signs and verifies tokens; at least 32 bytes.
    :param fallback_secret_keys: only verify, for rotating ``secret_key``: one
        key (a str or bytes) or an iterable of keys.
    :param confirm_url: the link template; must contain ``{token}``. Links
        are built from it alone, never from request data.
    :param sender: the ``From`` address, optionally with a display name.
    :param token_max_age: how long a confirmation link stays valid.
    :param crypt_context: passlib policy for new key hashes (default argon2).
    :param locale: language of mail for clients without a locale of their own.
    :param rate_limits: limits on abuse; ``None`` turns limiting off.
    :param delivery: where confirmation mails are composed and sent:
        ``"background"`` (default) in a :class:`BackgroundMailer` around
        ``mailer``; ``"sync"`` within :meth:`request` itself, which makes a
        hit slower than a miss (for command lines and tests only); or a
        :class:`~credrecovery.protocols.DeliveryQueue` of your own, such as a
        tuned :class:`BackgroundMailer` or ``credrecovery.celery.CeleryDelivery``.
    :param clock: seconds since the epoch; injectable for tests.
    """

    def __init__(
        self,
        directory: ClientDirectory,
        mailer: Mailer,
        *,
        secret_key: str | bytes,
        fallback_secret_keys: str | bytes | Iterable[str | bytes] = (),
        confirm_url: str,
        sender: str,
        token_max_age: timedelta = timedelta(hours=1),
        crypt_context: CryptContext | None = None,
        locale: str = "en",
        rate_limits: RateLimits | None = RateLimits(),  # noqa: B008 - frozen value
        delivery: Literal["background", "sync"] | DeliveryQueue = "background",
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not isinstance(confirm_url, str) or "{token}" not in confirm_url:
            raise ValueError("confirm_url must be a string containing '{token}'")
        if isinstance(mailer, DeliveryQueue):
            raise ValueError(
                "mailer must send at once: a confirmation counts only once its mail has "
                "left; pass a queue as delivery= instead"
            )
        if isinstance(fallback_secret_keys, (str, bytes)):
            fallback_secret_keys = [fallback_secret_keys]
        fallbacks = list(fallback_secret_keys)
        self.tokens = TokenSigner(secret_key, fallbacks, max_age=token_max_age, clock=clock)
        if len(_as_bytes(secret_key)) < _MIN_SECRET_BYTES:
            logger.warning(
                "secret_key is shorter than %d bytes; generate one with "
                "'python -m credrecovery secret'", _MIN_SECRET_BYTES,
                extra={"event": "weak_secret_key"})
        self.directory = directory
        self._find_all = _find_all_of(directory)
        self.mailer = mailer
        self.confirm_url = confirm_url
        self.sender = _checked_sender(sender)
        self.locale = locale
        self.crypt_context = crypt_context if crypt_context is not None else default_context()
        self.composer = Composer(self.tokens, confirm_url=confirm_url, clock=clock,
                                 secret_keys=[secret_key, *fallbacks])
        self._clock = clock
        self._delivery: DeliveryQueue
        if delivery == "background":
            self._delivery = BackgroundMailer(mailer)
        elif delivery == "sync":
            self._delivery = InlineDelivery(mailer, _log_sent)
        elif isinstance(delivery, DeliveryQueue):
            self._delivery = delivery
        else:
            raise ValueError("delivery must be 'background', 'sync' or a DeliveryQueue")
        self._delivery.bind(self.composer)
        limiter_key = hashlib.sha256(b"credrecovery.ratelimit\x00" + _as_bytes(secret_key)).digest()
        self.limiter = Limiter(rate_limits, limiter_key) if rate_limits is not None else None
        self._confirming: set[str] = set()
        self._confirming_lock = threading.Lock()

    def __repr__(self) -> str:
        return (
            f"RecoveryService(directory={self.directory!r}, mailer={self.mailer!r}, "
            f"confirm_url={self.confirm_url!r}, token_max_age={self.tokens.max_age!r})"
        )

    def __enter__(self) -> RecoveryService:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def delivery(self) -> DeliveryQueue:
        """Where confirmation jobs go."""
        return self._delivery

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until queued confirmation mails have left; False on timeout."""
        return self._delivery.flush(timeout)

    def close(self, timeout: float | None = 30.0) -> None:
        """Deliver what is queued (for up to ``timeout`` s) and stop delivery."""
        self._delivery.close(timeout)

    def request(
        self, kind: IdentifierKind | str, value: str, *, requester: str | None = None
    ) -> None:
        """Mail a confirmation link to the primary address of the client ``value`` names.

        Returns ``None`` whether or not a client matched, and takes the same
        time either way: both hand delivery one job, a miss a decoy. When
        several clients share the named address, one mail lists each client
        number with its own link (at most :data:`~credrecovery.jobs.MAX_CLIENTS_PER_MAIL`).
        Raises :class:`InvalidIdentifier` for malformed input,
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
        clients, truncated = self._lookup(kind, normalized)
        # From here on a miss works on the stand-in exactly as a hit works on
        # its clients, computing what it will not use, so both cost the same.
        found = bool(clients)
        target = clients if found else [_NOBODY]
        first = target[0]
        by_address, by_value = first.email.lower(), f"?{kind.value}:{normalized}"
        name = _shared_name(target)
        # A miss is counted under the value it named, so that both paths create
        # and touch counters alike.
        client_allowed = self.limiter is None or self.limiter.hit_client(
            by_address if found else by_value, known=found)
        job = ConfirmationJob(
            recipient=first.email,
            name=name if found else "",
            language=self._language(first),
            sender=self.sender,
            clients=tuple((c.number, account_binding(c)) for c in target),
            issued_at=self._clock(),
            decoy=not (found and mail_allowed and client_allowed),
            truncated=truncated,
        )
        try:
            self._delivery.submit(job)
        except Exception as exc:  # noqa: BLE001 - never reveal that the client exists
            # Logged for a decoy as well, so that a full queue costs both paths alike.
            details = failure_details(exc)
            logger.error("confirmation mail not queued: %s", details["reason"], extra={
                "event": "mail_dropped", "client": None if job.decoy else first.number,
                **details})
            if not job.decoy:
                return
        if not found:
            logger.info("recovery requested for an unknown identifier",
                        extra={"event": "unknown_identifier", "kind": kind.value})
        elif job.decoy:
            limit = "per_identifier" if not mail_allowed else "per_client"
            logger.warning("recovery mail withheld by rate limit",
                           extra={"event": "throttled", "limit": limit})
        else:
            logger.info("recovery requested", extra={
                "event": "requested", "kind": kind.value, "client": first.number})

    def check(self, token: str, *, requester: str | None = None) -> Confirmation:
        """Validate ``token`` without using it up.

        For a page that shows a "Confirm" button: mail scanners follow links,
        so only the button's POST should call :meth:`confirm`. Raises what
        :meth:`confirm` raises for a bad token.
        """
        _, client = self._verified(token, requester)
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
        Any other exception from the mailer, ``KeyboardInterrupt`` included,
        puts the previous key back and propagates.

        Within one process, concurrent confirmations of one client hash one
        key: the others get :class:`TokenAlreadyUsed` at once. Should the
        account change while the key is hashed (a new primary address, say),
        the previous key is put back and :class:`TokenAlreadyUsed` raised.
        """
        claims, client = self._verified(token, requester)
        with self._exclusive(client.number, requester):
            return self._rotate(claims, client, requester)

    @functools.cached_property
    def _login_stand_in(self) -> str:
        # An unknown number at login is checked against this, at the same cost.
        return self.crypt_context.hash(generate_key())

    def authenticate(self, number: str, key: str) -> Login | None:
        """Check a login form's client number and access key against the directory.

        Returns a :class:`Login` when ``key`` is the client's current access
        key, else ``None``: for an unknown or malformed number, a wrong key,
        or a record the service cannot use. An unknown number is checked
        against a stand-in hash, so it costs what a wrong key does. A key
        stored under a scheme the hashing policy has deprecated is rehashed
        with the current one. Raises :class:`DirectoryError` when the
        directory fails.
        """
        try:
            normalized = normalize_identifier(IdentifierKind.CLIENT_NUMBER, number)
        except InvalidIdentifier:
            normalized = None
        client = (self._usable(self._find(IdentifierKind.CLIENT_NUMBER, normalized))
                  if normalized is not None else None)
        stored = client.key_hash if client is not None else self._login_stand_in
        secret = Secret(key if isinstance(key, str) else "")
        try:
            valid, upgraded = self.crypt_context.verify_and_update(secret.reveal(), stored)
        except (ValueError, TypeError):
            valid, upgraded = False, None
        if client is None or not valid:
            logger.info("login refused", extra={"event": "login_refused"})
            return None
        if upgraded is not None:
            self._swap(client.number, client.key_hash, upgraded)
        logger.info("login", extra={"event": "login", "client": client.number})
        return Login(client.number, client.email)

    def _rotate(self, claims: TokenClaims, client: Client, requester: str | None) -> Confirmation:
        new_key = Secret(generate_key())
        new_hash = self.crypt_context.hash(new_key.reveal())
        message: EmailMessage | None = credentials_message(
            dataclasses.replace(client, key_hash=new_hash), key=new_key.reveal(),
            sender=self.sender, language=self._language(client), now=self._now(),
        )
        # From here on only the message holds the key; every error path drops it.
        del new_key
        if not self._swap(client.number, client.key_hash, new_hash):
            message = None
            self._reject(TokenAlreadyUsed("this confirmation link was already used"),
                         "reused", requester)
        try:
            current = self._find(IdentifierKind.CLIENT_NUMBER, client.number)
            ours = current is not None and current.key_hash == new_hash
            unchanged = ours and current is not None and claims.matches(
                dataclasses.replace(current, key_hash=client.key_hash))
            if unchanged:
                assert message is not None
                self.mailer.send(message)
        except BaseException as exc:
            message = None
            restored = self._undo(client, new_hash)
            if isinstance(exc, DirectoryError) or not isinstance(exc, Exception):
                raise
            details = failure_details(exc)
            logger.error("credentials mail not sent: %s", details["reason"], extra={
                "event": "delivery_failed", "client": client.number, "restored": restored,
                **details})
            temporary = exc.temporary if isinstance(exc, DeliveryFailed) else True
            raise DeliveryFailed(
                "the new access details could not be mailed; nothing was changed"
                if restored else
                "the new access details could not be mailed; request a new link",
                temporary=temporary,
            ) from exc
        if not unchanged:
            message = None
            if ours:
                self._undo(client, new_hash)
            self._reject(TokenAlreadyUsed("the account changed while the link was confirmed"),
                         "reused", requester)
        assert message is not None
        _log_sent(message, client.number)
        logger.info("recovery confirmed; access key rotated",
                    extra={"event": "confirmed", "client": client.number})
        return Confirmation(client.number, client.email)

    @contextlib.contextmanager
    def _exclusive(self, number: str, requester: str | None) -> Iterator[None]:
        # The losers of a race hash nothing: argon2 costs memory, and one link
        # posted many times at once must not multiply it.
        with self._confirming_lock:
            busy = number in self._confirming
            if not busy:
                self._confirming.add(number)
        if busy:
            self._reject(TokenAlreadyUsed("this confirmation link is already being used"),
                         "reused", requester)
        try:
            yield
        finally:
            with self._confirming_lock:
                self._confirming.discard(number)

    def _verified(self, token: str, requester: str | None) -> tuple[TokenClaims, Client]:
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
        client = self._usable(self._find(IdentifierKind.CLIENT_NUMBER, claims.number))
        if client is not None:
            try:
                mailbox(client.email)
            except ValueError:
                _log_unusable(client.number, "the primary address is not a valid email address")
                client = None
        if client is None:
            self._reject(InvalidToken("the confirmation link is not valid"), "invalid", requester)
        if not claims.matches(client):
            self._reject(TokenAlreadyUsed("this confirmation link was already used"),
                         "reused", requester)
        return claims, client

    def _reject(self, error: InvalidToken, event: str, requester: str | None) -> NoReturn:
        logger.info("confirmation refused", extra={"event": event})
        # Counted, then decided: of many failures at once, only as many as
        # the limit allows are answered with the token's own error.
        if (requester is not None and self.limiter is not None
                and not self.limiter.hit("failed_confirmations", requester)):
            self._throttle("failed_confirmations", requester)
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

    def _lookup(self, kind: IdentifierKind, value: str) -> tuple[list[Client], bool]:
        """The usable clients ``value`` names, and whether more were left out."""
        find_all = self._find_all
        if kind is IdentifierKind.EMAIL and find_all is not None:
            found: Sequence[object] = _directory_call(lambda: find_all(kind, value))
        else:
            one = self._find(kind, value)
            found = [] if one is None else [one]
        clients = [c for c in map(self._usable, found) if c is not None]
        if not clients:
            # The stand-in is checked too, so that a miss costs what a hit does.
            self._usable(_NOBODY)
        return clients[:MAX_CLIENTS_PER_MAIL], len(clients) > MAX_CLIENTS_PER_MAIL

    @staticmethod
    def _usable(record: object) -> Client | None:
        """``record`` if the service can use it; else ``None``, logged at ERROR."""
        if record is None:
            return None
        problem = _problem(record)
        if problem is None:
            assert isinstance(record, Client)
            return record
        number = getattr(record, "number", None)
        _log_unusable(number if isinstance(number, str) and number.isprintable() else None,
                      problem)
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


def _find_all_of(directory: object) -> Callable[[IdentifierKind, str], Sequence[object]] | None:
    """The directory's optional ``find_all``, asking for no more than a mail lists."""
    find_all = getattr(directory, "find_all", None)
    if not callable(find_all):
        return None
    try:
        takes_limit = "limit" in inspect.signature(find_all).parameters
    except (TypeError, ValueError):
        takes_limit = False
    if not takes_limit:
        return find_all  # type: ignore[no-any-return]
    # One more than a mail lists, to know that some were left out.
    return functools.partial(find_all, limit=MAX_CLIENTS_PER_MAIL + 1)


def _problem(record: object) -> str | None:
    """What makes a directory record unusable, or ``None``."""
    if not isinstance(record, Client):
        return f"the directory returned a {type(record).__name__}, not a Client"
    fields = {"number": record.number, "email": record.email, "key_hash": record.key_hash,
              "name": record.name, "locale": record.locale}
    for field, value in fields.items():
        if value is None and field in ("name", "locale"):
            continue
        if not isinstance(value, str):
            return f"{field} is {'missing' if value is None else 'not text'}"
        if not value and field in ("number", "email", "key_hash"):
            return f"{field} is empty"
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return f"{field} is not valid UTF-8"
    # Lone surrogates (undecodable bytes) are not printable either.
    for field, value in (("number", record.number), ("email", record.email),
                         ("key_hash", record.key_hash)):
        if not value.isprintable():
            return f"{field} holds control characters"
    return None


def _log_unusable(number: str | None, problem: str) -> None:
    logger.error("unusable client record: %s", problem,
                 extra={"event": "unusable_record", "client": number, "reason": problem})


def _shared_name(clients: Sequence[Client]) -> str:
    # One greeting for the mailbox: a name only when every client has it.
    names = {c.name for c in clients}
    return names.pop() if len(names) == 1 else ""


def _checked_sender(sender: object) -> str:
    """``sender`` as one mailbox with an A-label domain; :class:`ValueError` otherwise."""
    if not isinstance(sender, str) or any(_is_control(c) for c in sender):
        raise ValueError("sender must be one email address, optionally with a name, "
                         "without line breaks or control characters")
    parsed = email.policy.default.header_factory("From", sender)
    if parsed.defects or len(parsed.addresses) != 1 or not parsed.addresses[0].username:
        raise ValueError("sender must be one email address, optionally with a name")
    name, address = parsed.addresses[0].display_name, parsed.addresses[0].addr_spec
    try:
        checked = mailbox(address, name)
    except ValueError:
        raise ValueError("sender is not a valid email address") from None
    if not checked.username.isascii():
        raise ValueError("sender's mailbox name must be ASCII")
    if name and checked.display_name != name:
        raise ValueError("sender's display name must be printable text")
    return str(checked)


def _is_control(char: str) -> bool:
    return unicodedata.category(char)[0] == "C" or unicodedata.category(char) in ("Zl", "Zp")


def _as_bytes(key: str | bytes) -> bytes:
    return key if isinstance(key, bytes) else key.encode("utf-8")


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
