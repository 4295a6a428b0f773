"""examples/django_app, driven through Django's test client with CSRF checks on.

Django is configured here from the example's own settings module, with the
test's secret, a cheap hashing profile and the locmem mail backend; each test
gets a fresh SQLite file, migrated. The example's directory also runs the
library's directory contract, from ``credrecovery.testing``.
"""

from __future__ import annotations

import contextlib
import importlib
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("django")

import django
from django.conf import settings
from django.core import mail
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.db import connection, connections
from django.test import Client as BrowserClient
from django.test import override_settings
from django.test.utils import setup_test_environment, teardown_test_environment

from credrecovery import DirectoryError, RateLimits, RecoveryService, cheap_context
from credrecovery.testing import DirectoryContract
from helpers import CONFIRM_URL, OLD_KEY, ROOT, SECRET, SENDER, FakeClock, key_from, token_from
from helpers.docs_quotes import quoted_excerpts
from helpers.smtp_server import running_smtp_server

EXAMPLE = ROOT / "examples" / "django_app"

if str(EXAMPLE) not in sys.path:
    sys.path.insert(0, str(EXAMPLE))

example_settings = importlib.import_module("panel.settings")
if not settings.configured:
    settings.configure(
        **{
            **{
                name: getattr(example_settings, name)
                for name in dir(example_settings)
                if name.isupper()
            },
            "SECRET_KEY": "django-test-secret-key-not-for-production-0123456789",
            "DEBUG": False,
        }
    )
    django.setup()

from recovery import models  # noqa: E402 - needs Django set up
from recovery.directory import DjangoDirectory  # noqa: E402
from recovery.mailer import DjangoMailer  # noqa: E402
from recovery.service import get_service  # noqa: E402

pytestmark = pytest.mark.slow
CONTEXT = cheap_context()


@pytest.fixture(scope="module", autouse=True)
def django_test_environment() -> Iterator[None]:
    """Django's test environment: locmem mail, 'testserver' allowed; undone after the module."""
    setup_test_environment()
    yield
    teardown_test_environment()


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Path]:
    """A fresh SQLite file with the example's tables, used by every thread's connection."""
    path = tmp_path / "panel.sqlite3"
    connections.close_all()
    # One settings dict serves every thread's connection: new ones open this file.
    connection.settings_dict["NAME"] = str(path)
    call_command("migrate", verbosity=0)
    yield path
    connections.close_all()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def configure(database: Path, clock: FakeClock) -> Iterator[Any]:
    """Point settings.CREDRECOVERY at test values; the service is rebuilt from them."""
    built: list[RecoveryService] = []

    def apply(**options: Any) -> RecoveryService:
        settings.CREDRECOVERY = {
            **example_settings.CREDRECOVERY,
            "SECRET_KEY": SECRET,
            "CONFIRM_URL": CONFIRM_URL,
            "SENDER": SENDER,
            "HASHING": "cheap",
            "OPTIONS": {"clock": clock, **options},
        }
        get_service.cache_clear()
        service = get_service()
        built.append(service)
        return service

    mail.outbox = []
    yield apply
    for service in built:
        service.close(10)
    get_service.cache_clear()
    settings.CREDRECOVERY = example_settings.CREDRECOVERY


@pytest.fixture
def service(configure: Any) -> RecoveryService:
    service: RecoveryService = configure()
    return service


def add_ana() -> None:
    DjangoDirectory(crypt_context=CONTEXT).add_client(
        "9000",
        "ana@ejemploxmundo.com.ar",
        key=OLD_KEY,
        domains=["ejemploxmundo.com.ar", "otro-ejemplo.com"],
        name="Ana Example",
    )


def browser() -> BrowserClient:
    return BrowserClient(enforce_csrf_checks=True)


def csrf_token(page: bytes) -> str:
    match = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    assert match, "no CSRF token in the form"
    return match.group(1).decode()


def ask(client: BrowserClient, kind: str, value: str) -> Any:
    """Fetch the form, as a browser does, and post it with its CSRF token."""
    form = client.get("/forgot")
    assert form.status_code == 200
    return client.post(
        "/forgot", {"kind": kind, "value": value, "csrfmiddlewaretoken": csrf_token(form.content)}
    )


def sent_messages(service: RecoveryService) -> list[Any]:
    """The stdlib messages in Django's outbox, once queued confirmations have left."""
    assert service.flush(10)
    return [message.message() for message in mail.outbox]


@pytest.mark.parametrize(
    ("kind", "typed"),
    [
        ("domain", "Otro-Ejemplo.COM"),
        ("client_number", " 9000 "),
        ("email", "Ana@EjemploXMundo.com.ar"),
    ],
)
def test_whole_flow_by_each_identifier(service: RecoveryService, kind: str, typed: str) -> None:
    """Form, mailed link, Confirm page, confirmation: the key rotates and is mailed."""
    add_ana()
    client = browser()
    answer = ask(client, kind, typed)
    assert answer.status_code == 200
    assert b"we have mailed a confirmation link" in answer.content
    [confirmation_mail] = sent_messages(service)
    assert confirmation_mail["To"].addresses[0].addr_spec == "ana@ejemploxmundo.com.ar"
    assert confirmation_mail["From"] == SENDER
    token = token_from(confirmation_mail)

    page = client.get(f"/recover/{token}")
    assert page.status_code == 200
    assert b"<button>Confirm</button>" in page.content
    assert page["Referrer-Policy"] == "no-referrer"
    assert page["Cache-Control"] == "no-store"
    assert len(mail.outbox) == 1, "opening the link must not confirm"

    # A browser under no-referrer posts the button with "Origin: null" and no Referer.
    done = client.post(f"/recover/{token}", headers={"Origin": "null"})
    assert done.status_code == 200, done.content
    assert b"on their way" in done.content
    assert done["Referrer-Policy"] == "no-referrer"
    credentials = sent_messages(service)[1]
    key = key_from(credentials)
    assert "9000" in credentials.get_body(("plain",)).get_content()
    stored = models.Client.objects.get(number="9000").key_hash
    assert CONTEXT.verify(key, stored)
    assert not CONTEXT.verify(OLD_KEY, stored)

    again = client.post(f"/recover/{token}")
    assert again.status_code == 409
    assert b"already used" in again.content
    assert len(mail.outbox) == 2


def test_form_post_without_csrf_token_is_refused(service: RecoveryService) -> None:
    """The recovery form's POST without its CSRF token gets 403 and mails nothing."""
    add_ana()
    client = browser()
    client.get("/forgot")  # the CSRF cookie alone is not enough
    refused = client.post("/forgot", {"kind": "email", "value": "ana@ejemploxmundo.com.ar"})
    assert refused.status_code == 403
    assert sent_messages(service) == []


def test_unknown_identifier_gets_the_same_page(service: RecoveryService) -> None:
    """A value that names no client gets the very page a client's gets, and no mail."""
    add_ana()
    client = browser()
    miss = ask(client, "email", "nobody@example.com")
    hit = ask(client, "email", "ana@ejemploxmundo.com.ar")
    assert (miss.status_code, miss.content) == (hit.status_code, hit.content)
    assert len(sent_messages(service)) == 1


def test_malformed_identifier_shows_the_form_again(service: RecoveryService) -> None:
    """A malformed value answers 400 with the form, the error and what was typed."""
    answer = ask(browser(), "domain", "not a domain")
    assert answer.status_code == 400
    assert b'role="alert"' in answer.content
    assert b'value="not a domain"' in answer.content
    assert b"csrfmiddlewaretoken" in answer.content


def test_rate_limited_request_answers_429(configure: Any) -> None:
    """Past the per-requester limit the form answers 429 with Retry-After."""
    configure(rate_limits=RateLimits(per_requester="2/minute"))
    client = browser()
    for _ in range(2):
        assert ask(client, "email", "nobody@example.com").status_code == 200
    limited = ask(client, "email", "nobody@example.com")
    assert limited.status_code == 429
    assert 0 < int(limited["Retry-After"]) <= 60


@pytest.mark.parametrize("trusted", [[], ["10.0.0.0/8"]], ids=["no-proxy", "behind-proxy"])
def test_forwarded_for_counts_only_from_a_trusted_proxy(configure: Any, trusted: list[str]) -> None:
    """X-Forwarded-For names the requester only when REMOTE_ADDR is a trusted proxy.

    Seen through the failed-confirmation limit, one a minute per requester:
    by default two forged addresses from one peer share its count; behind a
    trusted proxy each forwarded client has its own, a forged left-hand entry
    changes nothing, and a peer that is no trusted proxy is still counted as itself.
    """
    configure(rate_limits=RateLimits(failed_confirmations="1/minute"))
    client = browser()

    def forged_link(forwarded_for: str, peer: str = "10.0.0.2") -> int:
        return int(
            client.get(
                "/recover/forged.token.value", REMOTE_ADDR=peer, HTTP_X_FORWARDED_FOR=forwarded_for
            ).status_code
        )

    with override_settings(CREDRECOVERY_TRUSTED_PROXIES=trusted):
        statuses = [forged_link("203.0.113.7"), forged_link("198.51.100.9")]
        if not trusted:
            assert statuses == [400, 429], "a forged X-Forwarded-For escaped the limit"
        else:
            assert statuses == [400, 400], "the forwarded clients shared one count"
            assert forged_link("198.51.100.9, 203.0.113.7, 10.0.0.3") == 429
            assert forged_link("203.0.113.7", peer="192.0.2.50") == 400
            assert forged_link("198.51.100.9", peer="192.0.2.50") == 429


def test_a_malformed_trusted_proxy_is_refused(configure: Any) -> None:
    """A CREDRECOVERY_TRUSTED_PROXIES entry that is no address stops the view, naming it."""
    configure()
    with (
        override_settings(CREDRECOVERY_TRUSTED_PROXIES=["proxy.internal"]),
        pytest.raises(ImproperlyConfigured, match="CREDRECOVERY_TRUSTED_PROXIES"),
    ):
        browser().get("/recover/forged.token.value", REMOTE_ADDR="10.0.0.2")


def test_expired_link_gets_the_expired_page(service: RecoveryService, clock: FakeClock) -> None:
    """A link past token_max_age answers 410 on GET and POST, and the key stays."""
    add_ana()
    client = browser()
    ask(client, "client_number", "9000")
    token = token_from(sent_messages(service)[0])
    clock.advance(2 * 3600)
    for answer in (client.get(f"/recover/{token}"), client.post(f"/recover/{token}")):
        assert answer.status_code == 410
        assert b"expired" in answer.content
        assert answer["Referrer-Policy"] == "no-referrer"
    assert CONTEXT.verify(OLD_KEY, models.Client.objects.get(number="9000").key_hash)


def test_tampered_link_is_refused(service: RecoveryService) -> None:
    """A forged token answers 400 with the invalid-link page, never echoing the token."""
    answer = browser().get("/recover/forged.token.value")
    assert answer.status_code == 400
    assert b"not valid" in answer.content
    assert b"forged.token.value" not in answer.content


def test_mailer_sends_the_library_message_unchanged_over_smtp(database: Path) -> None:
    """Through Django's SMTP backend the library's message arrives with its own headers."""
    service = RecoveryService(
        DjangoDirectory(crypt_context=CONTEXT),
        DjangoMailer(),
        secret_key=SECRET,
        confirm_url=CONFIRM_URL,
        sender=SENDER,
        crypt_context=CONTEXT,
        delivery="sync",
    )
    add_ana()
    with running_smtp_server() as server, _smtp_backend(server.host, server.port):
        service.request("domain", "ejemploxmundo.com.ar")
        service.confirm(token_from(server.received[0].message))
    confirmation, credentials = (received.message for received in server.received)
    assert server.received[0].rcpt_tos == ("ana@ejemploxmundo.com.ar",)
    for message in (confirmation, credentials):
        assert message["From"] == SENDER
        assert message["Message-ID"] and message["Date"]
        assert message.get_body(("html",)) is not None
    stored = models.Client.objects.get(number="9000").key_hash
    assert CONTEXT.verify(key_from(credentials), stored)


@contextlib.contextmanager
def _smtp_backend(host: str, port: int) -> Iterator[None]:
    with override_settings(
        EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend",
        EMAIL_HOST=host,
        EMAIL_PORT=port,
    ):
        yield


# --- the library's directory contract, run against DjangoDirectory -------------------------


class TestDjangoDirectoryContract(DirectoryContract):
    """DjangoDirectory passes the contract every shipped directory passes."""

    shares_addresses = True
    storage_error = DirectoryError

    @pytest.fixture
    def directory(self, database: Path) -> DjangoDirectory:
        return DjangoDirectory(crypt_context=CONTEXT)

    def break_storage(self, directory: DjangoDirectory) -> None:
        with connection.cursor() as cursor:
            cursor.execute("DROP TABLE recovery_domain")
            cursor.execute("DROP TABLE recovery_client")


def test_double_replace_key_hash_lets_one_win(database: Path) -> None:
    """Two swaps from the same current hash, each its own UPDATE: the second finds it gone."""
    directory = DjangoDirectory(crypt_context=CONTEXT)
    old, new, third = (CONTEXT.hash(key) for key in ("Old-Key-1", "New-Key-2", "Third-Key-3"))
    directory.add_client("1001", "alice@example.com", key_hash=old)
    first = directory.replace_key_hash("1001", old, new)
    second = directory.replace_key_hash("1001", old, third)
    assert (first, second) == (True, False)
    assert models.Client.objects.get(number="1001").key_hash == new


# --- docs/embedding.md quotes this example ---------------------------------------------------


def test_embedding_doc_quotes_the_example_verbatim() -> None:
    """Each excerpt the Django section of docs/embedding.md quotes is in the named file as is."""
    excerpts = quoted_excerpts("Django")
    assert len(excerpts) >= 3
    for path, excerpt in excerpts:
        assert path.startswith("examples/django_app/"), path
        source = (ROOT / path).read_text(encoding="utf-8")
        assert excerpt.strip() and excerpt in source, f"{path} no longer contains:\n{excerpt}"


def test_proxy_section_quotes_the_example_verbatim() -> None:
    """The Django excerpts of docs/embedding.md's proxy section are in the project as they are."""
    excerpts = [
        (path, excerpt)
        for path, excerpt in quoted_excerpts("Behind a reverse proxy")
        if path.startswith("examples/django_app/")
    ]
    assert len(excerpts) >= 2
    for path, excerpt in excerpts:
        source = (ROOT / path).read_text(encoding="utf-8")
        assert excerpt in source, f"{path} no longer contains:\n{excerpt}"
