"""The two shells of the recovery flow: :class:`RecoveryService` and :class:`AsyncRecoveryService`.

Both drive the same flows, written once in :mod:`credrecovery._flow.flows`; they
differ only in how they perform an effect: a plain call, or ``await``
(:mod:`credrecovery._shell.performers`). Here are their settings, checked once, and
their public methods.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Any, Literal

import jinja2
from passlib.context import CryptContext

from ._derivation import derive_key, secret_bytes
from ._flow import checks, flows
from ._shell import hooks
from ._shell.code_methods import AsyncRecoversByCode, RecoversByCode, WiresCodes
from ._shell.performers import AsyncPerforms, Performs
from ._shell.performers import _call as _call
from ._shell.performers import _is_async as _is_async
from ._shell.support_methods import AsyncIssuesLinks, IssuesLinks
from ._shell.wiring import _find_all_of, _require_methods
from .codes import CodeSigner
from .delivery.background import BackgroundMailer, InlineDelivery
from .events import Event
from .identifiers import IdentifierKind
from .keys import default_context
from .mail.branding import Branding
from .mail.composer import Composer
from .models import Confirmation, Login
from .policy import KeyPolicy
from .protocols import AsyncClientDirectory, AsyncMailer, ClientDirectory, DeliveryQueue, Mailer
from .ratelimit.limiters import AsyncLimiter, Limiter, RateLimits
from .tokens import TokenSigner

__all__ = ["AsyncRecoveryService", "RecoveryService"]

logger = logging.getLogger("credrecovery")

# Below this a signing key may be guessed offline from one link.
_MIN_SECRET_BYTES = 32


class _Shell(WiresCodes):
    """What both shells share: the settings, checked once, and the core they drive."""

    _limiter_class: type[Limiter] | type[AsyncLimiter]
    _events_class: type[hooks.EventDispatcher] | type[hooks.AsyncEventDispatcher]

    def __init__(
        self,
        directory: ClientDirectory | AsyncClientDirectory,
        mailer: Mailer | AsyncMailer,
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
        branding: Branding | None = None,
        templates: str | os.PathLike[str] | jinja2.BaseLoader | None = None,
        catalogs: str | os.PathLike[str] | None = None,
        key_mode: Literal["generate", "choose"] = "generate",
        key_policy: KeyPolicy | None = None,
        on_event: Callable[[Event], Any] | None = None,
        code_max_age: timedelta = timedelta(minutes=15),
    ) -> None:
        on_event = hooks.checked_hook(on_event)
        if key_mode not in ("generate", "choose"):
            raise ValueError("key_mode must be 'generate' or 'choose'")
        if not isinstance(confirm_url, str) or "{token}" not in confirm_url:
            raise ValueError("confirm_url must be a string containing '{token}'")
        _require_methods(directory, "directory", "ClientDirectory", ("find", "replace_key_hash"))
        _require_methods(mailer, "mailer", "Mailer", ("send",))
        if isinstance(mailer, DeliveryQueue):
            raise ValueError(
                "mailer must send at once: a confirmation counts only once its mail has "
                "left; pass a queue as delivery= instead"
            )
        if isinstance(fallback_secret_keys, (str, bytes)):
            fallback_secret_keys = [fallback_secret_keys]
        fallbacks = list(fallback_secret_keys)
        self.tokens = TokenSigner(secret_key, fallbacks, max_age=token_max_age, clock=clock)
        if len(secret_bytes(secret_key)) < _MIN_SECRET_BYTES:
            logger.warning(
                "secret_key is shorter than %d bytes; generate one with "
                "'python -m credrecovery secret'",
                _MIN_SECRET_BYTES,
                extra={"event": "weak_secret_key"},
            )
        self.directory = directory
        self.mailer = mailer
        self.confirm_url = confirm_url
        self.sender = checks.checked_sender(sender)
        self.locale = locale
        self.crypt_context = crypt_context if crypt_context is not None else default_context()
        self.codes = CodeSigner(secret_key, fallbacks, max_age=code_max_age, clock=clock)
        self.composer = Composer(
            self.tokens,
            confirm_url=confirm_url,
            clock=clock,
            secret_keys=[secret_key, *fallbacks],
            branding=branding,
            templates=templates,
            catalogs=catalogs,
            locale=locale,
            codes=self.codes,
            key_mode=key_mode,
        )
        self._find_all = _find_all_of(directory)
        self._delivery: DeliveryQueue
        if delivery == "background":
            # The wall clock stays out of due times, which must not jump.
            self._delivery = BackgroundMailer(mailer, clock=None if clock is time.time else clock)
        elif delivery == "sync":
            self._delivery = InlineDelivery(mailer)
        elif isinstance(delivery, DeliveryQueue):
            self._delivery = delivery
        else:
            raise ValueError("delivery must be 'background', 'sync' or a DeliveryQueue")
        self._delivery.bind(self.composer)
        self._events: Any = self._events_class(on_event, before_exit=self._delivery.flush)
        report_to = getattr(self._delivery, "report_to", None)
        if on_event is not None and callable(report_to):
            report_to(hooks.reporter(self._events.put, clock))
        limiter_key = derive_key(secret_key, "ratelimit")
        self.limiter: Any = (
            self._limiter_class(rate_limits, limiter_key, clock=clock)
            if rate_limits is not None
            else None
        )
        self._core = flows.Core(
            tokens=self.tokens,
            composer=self.composer,
            sender=self.sender,
            locale=locale,
            clock=clock,
            limited=rate_limits is not None,
            finds_all=self._find_all is not None,
            key_mode=key_mode,
            key_policy=key_policy,
            marks=callable(getattr(directory, "set_must_change", None)),
            crypt_context=self.crypt_context,
        )
        self._wire_codes(limiter_key, clock)
        self.key_mode = key_mode

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(directory={self.directory!r}, mailer={self.mailer!r}, "
            f"confirm_url={self.confirm_url!r}, token_max_age={self.tokens.max_age!r})"
        )

    @property
    def delivery(self) -> DeliveryQueue:
        """Where confirmation jobs go."""
        return self._delivery


class RecoveryService(_Shell, Performs, IssuesLinks, RecoversByCode):
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
    :param locale: language of mail for clients without a locale of their own,
        and of :class:`InvalidIdentifier` messages (``"es"``, ``"pt-BR"``).
        A client's own locale wins; each is tried as given, then as its
        language alone; English when no catalog has either.
    :param rate_limits: limits on abuse; ``None`` turns limiting off.
    :param delivery: where confirmation mails are composed and sent:
        ``"background"`` (default) in a :class:`BackgroundMailer` around
        ``mailer``, which keeps a host's own mailer in threads of this
        process and sends through that very object; ``"sync"`` within
        :meth:`request` itself, which makes a hit slower than a miss (for
        command lines and tests only); or a
        :class:`~credrecovery.protocols.DeliveryQueue` of your own, such as a
        tuned :class:`BackgroundMailer` or ``credrecovery.celery.CeleryDelivery``.
    :param branding: a :class:`~credrecovery.Branding`: the provider's name
        (in both mails' subjects, bodies and footers), support contact,
        sign-in page and logo. ``None`` keeps neutral wording ("your client
        panel").
    :param templates: a directory, or a :class:`jinja2.BaseLoader`, searched
        before the packaged templates, so that a file of the same name
        (``confirmation.html``, ``credentials_subject.txt``...) replaces
        the library's; see ``docs/templates.md`` for the names and the
        variables each receives. A loader must pickle for delivery in the
        library's delivery process (see :class:`BackgroundMailer`).
    :param catalogs: a directory of gettext catalogs searched before the
        packaged ones, as ``<dir>/<locale>/LC_MESSAGES/credrecovery.mo``
        (or ``.po``): adds a language, or rewords one.
    :param key_mode: ``"generate"`` (default): :meth:`confirm` generates a
        key and mails it with the client number; the directory, if it keeps
        the mark, records it as one to change at the next sign-in.
        ``"choose"``: :meth:`confirm` takes the client's own key as
        ``new_key``, checked against ``key_policy``, and mails a notice of
        the change that carries no key.
    :param key_policy: the :class:`~credrecovery.policy.KeyPolicy` for keys
        clients choose, in :meth:`confirm` and :meth:`change_key`; by default
        15 to 128 characters, none of the client's own details.
    :param on_event: called with a :class:`~credrecovery.events.Event` for
        every outcome (a request and whether it hit, a mail sent or given
        up, a confirmation or refusal, a sign-in, a key change...), from a
        thread of the service's own, never within the call that caused it:
        a slow hook slows no answer. What it raises is logged
        (``hook_failed``). See ``docs/events.md``.
    :param code_max_age: how long a code of :meth:`request_code` stays valid.
    :param clock: seconds since the epoch, the one clock of the service:
        token stamps and expiry, the ``"memory://"`` rate-limit windows
        (and so :attr:`RateLimited.retry_after`), mail deadlines, and the delays and backoff of the
        :class:`BackgroundMailer` that ``delivery="background"`` builds. A
        test passes a settable clock and needs no real sleeps; see
        :class:`BackgroundMailer` for moving it while mail is queued.
    """

    _limiter_class = Limiter
    _events_class = hooks.EventDispatcher
    directory: ClientDirectory
    mailer: Mailer

    def __enter__(self) -> RecoveryService:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until queued confirmation mails have left and queued events reached
        ``on_event``; False on timeout."""
        left = hooks.remaining(timeout)
        delivered = self._delivery.flush(timeout)
        return bool(self._events.flush(left())) and delivered

    def close(self, timeout: float | None = 30.0) -> None:
        """Deliver what is queued (for up to ``timeout`` s) and stop delivery, then events."""
        left = hooks.remaining(timeout)
        self._delivery.close(timeout)
        self._events.close(left())

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
        return self._run(self._core.request(kind, value, requester))

    def check(self, token: str, *, requester: str | None = None) -> Confirmation:
        """Validate ``token`` without using it up.

        For a page that shows a "Confirm" button: mail scanners follow links,
        so only the button's POST should call :meth:`confirm`. Raises what
        :meth:`confirm` raises for a bad token.
        """
        return self._run(self._core.check(token, requester))

    def confirm(
        self, token: str, *, requester: str | None = None, new_key: str | None = None
    ) -> Confirmation:
        """Rotate the client's access key and mail it with the client number.

        With ``key_mode="choose"``, ``new_key`` is the key the client typed
        (required; refused in the other mode): it is checked against
        ``key_policy`` first, and a key that breaks it raises
        :class:`KeyRejected`, in the service's language, leaving the token
        unused. The mail is then a notice of the change, with no key in it.

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
        When every hashing slot of the process stays busy (see
        :func:`~credrecovery.set_hashing_limit`), :class:`Overloaded` is
        raised before the key is hashed: nothing changed, the token still works.
        """
        return self._run(self._core.confirm(token, requester, new_key))

    def authenticate(self, number: str, key: str, *, requester: str | None = None) -> Login | None:
        """Check a login form's client number and access key against the directory.

        ``requester`` (the client's IP address, say) is what the sign-in
        limits count failures by; pass it (see :class:`RateLimits`). Over a
        limit, :class:`RateLimited` is raised before anything is looked up or
        hashed. Each attempt verifies the key once for each scheme of the
        hashing policy, against a stand-in where the stored hash is under
        another, so that an unknown number, a wrong key and a wrong key on a
        legacy hash cost the same.

        Returns a :class:`Login` when ``key`` is the client's current access
        key, else ``None``: for an unknown or malformed number, a wrong key,
        or a record the service cannot use. An unknown number is checked
        against a stand-in hash, so it costs what a wrong key does. A key
        stored under a scheme the hashing policy has deprecated is rehashed
        with the current one. Raises :class:`DirectoryError` when the
        directory fails, and :class:`Overloaded` (a :class:`RateLimited`)
        when every hashing slot of the process stays busy for the whole wait
        (see :func:`~credrecovery.set_hashing_limit`), for a known number and
        an unknown one alike.
        """
        return self._run(self._core.authenticate(number, key, requester))

    def change_key(
        self, number: str, key: str, new_key: str, *, requester: str | None = None
    ) -> Login | None:
        """Replace client ``number``'s access key ``key`` with ``new_key``, the client's choice.

        ``key`` is checked, and ``requester`` counted, as :meth:`authenticate`
        does: a wrong key counts as a failed sign-in.

        For the page a panel shows when :attr:`Login.must_change` is set, or
        any "change your key" form. ``key`` is checked as :meth:`authenticate`
        checks it, and ``None`` returned when it is wrong (or another change
        won a race); ``new_key`` is checked against ``key_policy``
        (:class:`KeyRejected`). The key is swapped, the must-change mark
        cleared, and a notice of the change mailed to the primary address; if
        that mail fails the previous key is put back and
        :class:`DeliveryFailed` raised. Returns the new :class:`Login`.
        :class:`Overloaded` is raised, before anything changed, when no
        hashing slot came free in time.
        """
        return self._run(self._core.change_key(number, key, new_key, requester))


class AsyncRecoveryService(_Shell, AsyncPerforms, AsyncIssuesLinks, AsyncRecoversByCode):
    """:class:`RecoveryService` for asyncio: the same constructor, the same flows, awaited.

    ``directory`` is an :class:`~credrecovery.protocols.AsyncClientDirectory`
    or a plain :class:`ClientDirectory`, and ``mailer`` an
    :class:`~credrecovery.protocols.AsyncMailer` or a plain :class:`Mailer`;
    plain ones run in a worker thread. Hashing never blocks the event loop: it
    runs in a thread, and waits for a slot of the process's hashing cap on
    the loop itself (see :func:`~credrecovery.set_hashing_limit`). Rate
    limits go through ``limits.aio`` (Redis) or the bounded in-process store
    (``memory://``). Confirmation mails leave as ``delivery`` says, as for
    :class:`RecoveryService`.
    """

    _limiter_class = AsyncLimiter
    _events_class = hooks.AsyncEventDispatcher

    async def __aenter__(self) -> AsyncRecoveryService:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def flush(self, timeout: float | None = None) -> bool:
        """Wait until queued confirmation mails have left and queued events reached
        ``on_event``; False on timeout."""
        left = hooks.remaining(timeout)
        delivered = await asyncio.to_thread(self._delivery.flush, timeout)
        return bool(await self._events.flush(left())) and delivered

    async def aclose(self, timeout: float | None = 30.0) -> None:
        """Deliver what is queued (for up to ``timeout`` s), stop delivery and events, close
        the limiter."""
        left = hooks.remaining(timeout)
        await asyncio.to_thread(self._delivery.close, timeout)
        await self._events.aclose(left())
        if self.limiter is not None:
            await self.limiter.aclose()

    async def request(
        self, kind: IdentifierKind | str, value: str, *, requester: str | None = None
    ) -> None:
        """Mail a confirmation link: :meth:`RecoveryService.request`, awaited."""
        return await self._run(self._core.request(kind, value, requester))

    async def check(self, token: str, *, requester: str | None = None) -> Confirmation:
        """Validate ``token`` without using it up: :meth:`RecoveryService.check`, awaited."""
        return await self._run(self._core.check(token, requester))

    async def confirm(
        self, token: str, *, requester: str | None = None, new_key: str | None = None
    ) -> Confirmation:
        """Rotate the key and mail it: :meth:`RecoveryService.confirm`, awaited."""
        return await self._run(self._core.confirm(token, requester, new_key))

    async def authenticate(
        self, number: str, key: str, *, requester: str | None = None
    ) -> Login | None:
        """Check a login: :meth:`RecoveryService.authenticate`, awaited."""
        return await self._run(self._core.authenticate(number, key, requester))

    async def change_key(
        self, number: str, key: str, new_key: str, *, requester: str | None = None
    ) -> Login | None:
        """Replace a key with the client's choice: :meth:`RecoveryService.change_key`, awaited."""
        return await self._run(self._core.change_key(number, key, new_key, requester))
