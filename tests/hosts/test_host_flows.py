"""The whole recovery, as a host runs it: its own directory and mailers, default settings.

Nothing here passes ``delivery=``, an isolation or a test clock: the host
builds the service as the documentation does, calls ``flush()`` where the
documentation says to (before reading an outbox), and reads the mail where
its own objects keep it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from credrecovery import AsyncRecoveryService, RecoveryService, TokenAlreadyUsed
from hosts.host_app import (
    CHOSEN_KEY,
    CONFIRM_URL,
    DOMAIN,
    EMAIL,
    OLD_KEY,
    REQUESTER,
    SECRET,
    SENDER,
    AsyncDictDirectory,
    AsyncOutboxMailer,
    CountingMailer,
    CustomersDirectory,
    DatabaseMailer,
    OutboxMailer,
    add_customer,
    create_panel_database,
    link_token,
    mailed_key,
    old_key_hash,
)

pytestmark = pytest.mark.slow
KEY_MODES = ["generate", "choose"]


def recipients(message: object) -> list[str]:
    return [address.addr_spec for address in message["To"].addresses]  # type: ignore[index]


def plain(message: object) -> str:
    return str(message.get_body(("plain",)).get_content())  # type: ignore[attr-defined]


@pytest.mark.parametrize("key_mode", KEY_MODES)
def test_sync_flow_reaches_the_hosts_own_mailer(panel_db: str, key_mode: str) -> None:
    """Default settings: both mails land in the host's mailer object and the key rotates."""
    mailer = OutboxMailer()
    with RecoveryService(
        CustomersDirectory(panel_db),
        mailer,
        secret_key=SECRET,
        confirm_url=CONFIRM_URL,
        sender=SENDER,
        key_mode=key_mode,
    ) as service:
        service.request("domain", "EjemploXMundo.com.ar", requester=REQUESTER)
        assert service.flush(timeout=30)
        assert len(mailer.outbox) == 1, "the confirmation mail never reached the host's mailer"
        link_mail = mailer.outbox[0]
        assert recipients(link_mail) == [EMAIL]
        token = link_token(link_mail)

        assert service.check(token, requester=REQUESTER).number == "9000"
        if key_mode == "generate":
            confirmation = service.confirm(token, requester=REQUESTER)
            new_key = mailed_key(mailer.outbox[-1])
        else:
            confirmation = service.confirm(token, requester=REQUESTER, new_key=CHOSEN_KEY)
            new_key = CHOSEN_KEY
            assert CHOSEN_KEY not in plain(mailer.outbox[-1])

        assert (confirmation.number, confirmation.email) == ("9000", EMAIL)
        assert len(mailer.outbox) == 2
        assert recipients(mailer.outbox[1]) == [EMAIL]
        assert service.authenticate("9000", new_key) is not None
        assert service.authenticate("9000", OLD_KEY) is None
        chosen = {"new_key": CHOSEN_KEY} if key_mode == "choose" else {}
        with pytest.raises(TokenAlreadyUsed):
            service.confirm(token, requester=REQUESTER, **chosen)


@pytest.mark.parametrize("key_mode", KEY_MODES)
def test_async_flow_reaches_the_hosts_own_mailer(key_mode: str) -> None:
    """AsyncRecoveryService, default settings: the host's asyncio mailer gets both mails."""
    directory = AsyncDictDirectory()
    directory.add("9000", EMAIL, old_key_hash(), domains=[DOMAIN], name="Ana Example")
    mailer = AsyncOutboxMailer()

    async def recover() -> None:
        async with AsyncRecoveryService(
            directory,
            mailer,
            secret_key=SECRET,
            confirm_url=CONFIRM_URL,
            sender=SENDER,
            key_mode=key_mode,
        ) as service:
            await service.request("email", "Ana@Example.com", requester=REQUESTER)
            assert await service.flush(timeout=30)
            assert len(mailer.outbox) == 1, "the confirmation mail never reached the host's mailer"
            token = link_token(mailer.outbox[0])
            assert recipients(mailer.outbox[0]) == [EMAIL]

            assert (await service.check(token, requester=REQUESTER)).number == "9000"
            if key_mode == "generate":
                await service.confirm(token, requester=REQUESTER)
                new_key = mailed_key(mailer.outbox[-1])
            else:
                await service.confirm(token, requester=REQUESTER, new_key=CHOSEN_KEY)
                new_key = CHOSEN_KEY
            assert len(mailer.outbox) == 2
            assert await service.authenticate("9000", new_key) is not None
            assert await service.authenticate("9000", OLD_KEY) is None

    asyncio.run(recover())


def test_mailer_writing_to_the_hosts_database(panel_db: str) -> None:
    """A mailer that writes rows in the panel's own SQLite file sees both mails there."""
    mailer = DatabaseMailer(panel_db)
    with RecoveryService(
        CustomersDirectory(panel_db),
        mailer,
        secret_key=SECRET,
        confirm_url=CONFIRM_URL,
        sender=SENDER,
    ) as service:
        service.request("client_number", " 9000 ", requester=REQUESTER)
        assert service.flush(timeout=30)
        [link_mail] = mailer.sent()
        service.confirm(link_token(link_mail), requester=REQUESTER)
        assert [recipients(m) for m in mailer.sent()] == [[EMAIL], [EMAIL]]
        mailed_key(mailer.sent()[1])


def test_mailer_counting_metrics_counts_every_mail(panel_db: str) -> None:
    """A host's metrics mailer counts the confirmation and the credentials mail it sent."""
    outbox = OutboxMailer()
    mailer = CountingMailer(outbox)
    with RecoveryService(
        CustomersDirectory(panel_db),
        mailer,
        secret_key=SECRET,
        confirm_url=CONFIRM_URL,
        sender=SENDER,
    ) as service:
        service.request("email", EMAIL, requester=REQUESTER)
        assert service.flush(timeout=30)
        assert mailer.counts["sent"] == 1, "the host's counter never saw the confirmation mail"
        service.confirm(link_token(outbox.outbox[0]), requester=REQUESTER)
        assert mailer.counts == {"sent": 2}
        assert len(outbox.outbox) == 2


def test_reserved_test_domain_passes_end_to_end(tmp_path: Path) -> None:
    """A sender and clients on example.test (RFC 2606, for testing) work end to end."""
    path = str(tmp_path / "panel.sqlite3")
    create_panel_database(path)
    add_customer(
        path,
        "9100",
        "ana@cliente.example.test",
        old_key_hash(),
        domains=["cliente.example.test"],
        name="Ana Prueba",
    )
    mailer = OutboxMailer()
    sender = "soporte@panel.example.test"
    with RecoveryService(
        CustomersDirectory(path), mailer, secret_key=SECRET, confirm_url=CONFIRM_URL, sender=sender
    ) as service:
        service.request("email", "Ana@Cliente.Example.Test", requester=REQUESTER)
        service.request("domain", "cliente.example.test", requester="203.0.113.8")
        assert service.flush(timeout=30)
        assert [recipients(m) for m in mailer.outbox] == [["ana@cliente.example.test"]] * 2
        assert mailer.outbox[0]["From"].addresses[0].addr_spec == sender
        confirmation = service.confirm(link_token(mailer.outbox[0]), requester=REQUESTER)
        assert confirmation.number == "9100"
        assert recipients(mailer.outbox[-1]) == ["ana@cliente.example.test"]
        mailed_key(mailer.outbox[-1])
