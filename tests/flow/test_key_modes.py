"""key_mode="choose": the client's own key, checked by the policy; must-change marks."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from passlib.context import CryptContext

from credrecovery import (
    DeliveryFailed,
    KeyPolicy,
    KeyRejected,
    RecoveryError,
    RecoveryService,
    TokenAlreadyUsed,
)
from credrecovery.identifiers import IdentifierKind
from credrecovery.memory import MemoryDirectory, MemoryMailer
from credrecovery.models import Client
from helpers import OLD_KEY, token_from

pytestmark = pytest.mark.shells("sync", "async")

MakeService = Callable[..., Any]
GOOD_KEY = "a long passphrase of my own choosing"
NUMBER = "9000"


def _link(service: Any, mailer: MemoryMailer) -> str:
    service.request("client_number", NUMBER)
    return token_from(mailer.outbox[-1])


def _texts(message: EmailMessage) -> str:
    return "".join(
        part.get_content() for part in message.walk() if part.get_content_maintype() == "text"
    )


def _stored(directory: MemoryDirectory) -> Client:
    client = directory.find(IdentifierKind.CLIENT_NUMBER, NUMBER)
    assert client is not None
    return client


def test_the_mode_decides_whether_confirm_takes_a_key(make_service: MakeService) -> None:
    """new_key is required in "choose" mode, refused in "generate" mode, and modes are checked."""
    with pytest.raises(ValueError, match="new_key"):
        make_service(key_mode="choose").service.confirm("any-token")
    with pytest.raises(ValueError, match="new_key"):
        make_service().confirm("any-token", new_key=GOOD_KEY)
    with pytest.raises(ValueError, match="key_mode"):
        make_service(key_mode="pick")


def test_a_chosen_key_replaces_the_old_one_and_only_a_notice_is_mailed(
    make_service: MakeService,
    mailer: MemoryMailer,
    directory: MemoryDirectory,
    ctx: CryptContext,
) -> None:
    """The chosen key signs in, the old one no longer does, and no mail carries the key."""
    service = make_service(key_mode="choose").service
    token = _link(service, mailer)
    assert service.confirm(token, new_key=GOOD_KEY).number == NUMBER
    notice = mailer.outbox[-1]
    assert GOOD_KEY not in notice.as_string()
    assert GOOD_KEY not in _texts(notice)
    assert "was changed" in str(notice["Subject"])
    assert notice["Content-Language"] == "en"
    assert re.search(r"client number 9000 .*was changed on \w+ \d+, \d{4}", _texts(notice))
    assert ctx.verify(GOOD_KEY, _stored(directory).key_hash)
    assert service.authenticate(NUMBER, GOOD_KEY) is not None
    assert service.authenticate(NUMBER, OLD_KEY) is None
    with pytest.raises(TokenAlreadyUsed):
        service.confirm(token, new_key=GOOD_KEY + " again")


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        ("short key", "too_short"),
        ("x" * 129, "too_long"),
        ("my number is 9000 ok!", "contains_client_number"),
        ("EJEMPLO@ejemploxmundo.com.ar is me", "contains_email"),
        ("it is ejemplo, as always", "contains_email"),
        ("ejemploxmundo is the best host", "contains_domain"),
        ("I also own otro-ejemplo.com", "contains_domain"),
        ("tab\tinside a long enough key", "bad_characters"),
    ],
)
def test_a_key_against_the_policy_is_refused_and_the_token_survives(
    make_service: MakeService,
    mailer: MemoryMailer,
    directory: MemoryDirectory,
    key: str,
    reason: str,
) -> None:
    """KeyRejected names the rule; nothing changes and the same link still takes a good key."""
    service = make_service(key_mode="choose").service
    token = _link(service, mailer)
    before = _stored(directory).key_hash
    with pytest.raises(KeyRejected) as excinfo:
        service.confirm(token, new_key=key)
    assert reason in excinfo.value.reasons
    assert isinstance(excinfo.value, ValueError) and isinstance(excinfo.value, RecoveryError)
    assert excinfo.value.http_status == 422
    assert key not in str(excinfo.value) and key not in repr(excinfo.value)
    assert _stored(directory).key_hash == before
    assert len(mailer.outbox) == 1
    assert service.confirm(token, new_key=GOOD_KEY).number == NUMBER


def test_long_keys_and_any_characters_are_allowed(
    make_service: MakeService,
    mailer: MemoryMailer,
) -> None:
    """No composition rules: 64 characters of plain words, spaces and accents pass."""
    service = make_service(key_mode="choose").service
    key = "ñandú " * 10 + "café"
    assert len(key) == 64
    assert service.confirm(_link(service, mailer), new_key=key).number == NUMBER
    assert service.authenticate(NUMBER, key) is not None
    with pytest.raises(ValueError, match="64"):
        KeyPolicy(max_length=63)


def test_the_refusal_comes_in_the_services_language(
    make_service: MakeService,
    mailer: MemoryMailer,
) -> None:
    """A Spanish service refuses in Spanish; message_in gives the client's own language."""
    service = make_service(key_mode="choose", locale="es").service
    token = _link(service, mailer)
    with pytest.raises(KeyRejected) as excinfo:
        service.confirm(token, new_key="corta")
    assert str(excinfo.value) == "La clave es demasiado corta."
    assert excinfo.value.message_in("en") == "The key is too short."


def breached_in(ranges: Path) -> Callable[[str], bool]:
    """A breached-key check over a local k-anonymity range file set, with no network.

    ``ranges`` holds one file per 5-hex-digit SHA-1 prefix, each line
    ``SUFFIX:COUNT``, the layout of the public breached-password range sets.
    """

    def breached(key: str) -> bool:
        digest = hashlib.sha1(key.encode("utf-8"), usedforsecurity=False).hexdigest().upper()
        try:
            lines = (ranges / digest[:5]).read_text().splitlines()
        except FileNotFoundError:
            return False
        return any(line.partition(":")[0] == digest[5:] for line in lines)

    return breached


def test_a_breached_key_is_refused(
    make_service: MakeService,
    mailer: MemoryMailer,
    tmp_path: Path,
) -> None:
    """The host's breached check refuses a key found in its range files."""
    leaked = "correct horse battery staple"
    digest = hashlib.sha1(leaked.encode(), usedforsecurity=False).hexdigest().upper()
    (tmp_path / digest[:5]).write_text(f"{'0' * 35}:1\n{digest[5:]}:2410\n")
    service = make_service(
        key_mode="choose", key_policy=KeyPolicy(breached=breached_in(tmp_path))
    ).service
    token = _link(service, mailer)
    with pytest.raises(KeyRejected) as excinfo:
        service.confirm(token, new_key=leaked)
    assert excinfo.value.reasons == ("breached",)
    assert service.confirm(token, new_key=GOOD_KEY).number == NUMBER


def test_a_failed_notice_puts_the_old_key_back(
    make_service: MakeService,
    directory: MemoryDirectory,
) -> None:
    """When the notice cannot be mailed, the chosen key is undone and the link still works."""

    class Refusing(MemoryMailer):
        down = True

        def send(self, message: EmailMessage) -> None:
            if self.down and "/recover/" not in _texts(message):
                raise DeliveryFailed("450 mailbox busy")
            super().send(message)

    mailer = Refusing()
    service = make_service(key_mode="choose", mailer=mailer).service
    token = _link(service, mailer)
    before = _stored(directory).key_hash
    with pytest.raises(DeliveryFailed, match="nothing was changed"):
        service.confirm(token, new_key=GOOD_KEY)
    assert _stored(directory).key_hash == before
    mailer.down = False
    assert service.confirm(token, new_key=GOOD_KEY).number == NUMBER


# --- must-change marks ---------------------------------------------------------------------


def test_a_mailed_key_must_be_changed_at_the_next_sign_in(
    make_service: MakeService,
    mailer: MemoryMailer,
    directory: MemoryDirectory,
    ctx: CryptContext,
) -> None:
    """A generated key is marked; change_key() replaces it, clears the mark, mails a notice."""
    service: RecoveryService = make_service()
    service.confirm(_link(service, mailer))
    mailed = re.search(r"Access key:\s+(\S+)", _texts(mailer.outbox[-1]))
    assert mailed is not None
    login = service.authenticate(NUMBER, mailed.group(1))
    assert login is not None and login.must_change
    assert service.change_key(NUMBER, "not the key", GOOD_KEY) is None
    with pytest.raises(KeyRejected):
        service.change_key(NUMBER, mailed.group(1), "too short")
    changed = service.change_key(NUMBER, mailed.group(1), GOOD_KEY)
    assert changed is not None and not changed.must_change
    assert "was changed" in str(mailer.outbox[-1]["Subject"])
    assert GOOD_KEY not in mailer.outbox[-1].as_string()
    assert not _stored(directory).must_change
    assert ctx.verify(GOOD_KEY, _stored(directory).key_hash)
    again = service.authenticate(NUMBER, GOOD_KEY)
    assert again is not None and not again.must_change


def test_a_chosen_key_is_not_marked(
    make_service: MakeService,
    mailer: MemoryMailer,
    directory: MemoryDirectory,
) -> None:
    """In "choose" mode the client picked the key: the mark is cleared, not set."""
    directory.set_must_change(NUMBER, True)
    service = make_service(key_mode="choose").service
    service.confirm(_link(service, mailer), new_key=GOOD_KEY)
    login = service.authenticate(NUMBER, GOOD_KEY)
    assert login is not None and not login.must_change


def test_a_failed_mail_leaves_the_mark_as_it_was(
    make_service: MakeService,
    directory: MemoryDirectory,
) -> None:
    """The mark set for a generated key is undone with the key when its mail fails."""

    class Refusing(MemoryMailer):
        def send(self, message: EmailMessage) -> None:
            if "/recover/" not in _texts(message):
                raise DeliveryFailed("450 mailbox busy")
            super().send(message)

    mailer = Refusing()
    service = make_service(mailer=mailer)
    with pytest.raises(DeliveryFailed):
        service.confirm(_link(service, mailer))
    assert not _stored(directory).must_change
    assert service.authenticate(NUMBER, OLD_KEY) is not None


def test_a_directory_without_marks_still_recovers(
    make_service: MakeService,
    mailer: MemoryMailer,
    ctx: CryptContext,
) -> None:
    """A host directory with no set_must_change works as before; logins report no mark."""

    class Plain:
        def __init__(self) -> None:
            self.inner = MemoryDirectory(crypt_context=ctx)
            self.inner.add_client(NUMBER, "ejemplo@ejemploxmundo.com.ar", key=OLD_KEY)

        def find(self, kind: IdentifierKind, value: str) -> Client | None:
            return self.inner.find(kind, value)

        def replace_key_hash(self, number: str, current: str, new: str) -> bool:
            return self.inner.replace_key_hash(number, current, new)

    service = make_service(directory=Plain())
    service.confirm(_link(service, mailer))
    mailed = re.search(r"Access key:\s+(\S+)", _texts(mailer.outbox[-1]))
    assert mailed is not None
    login = service.authenticate(NUMBER, mailed.group(1))
    assert login is not None and not login.must_change
