"""The embedded defaults together: SQLite directory, SMTP mailer, background delivery."""

from __future__ import annotations

from pathlib import Path

from credrecovery import IdentifierKind, RecoveryService, TokenAlreadyUsed, cheap_context
from credrecovery.smtp import SMTPMailer
from credrecovery.sqlite import SQLiteDirectory
from helpers import CONFIRM_URL, OLD_KEY, SECRET, SENDER, key_from, token_from
from helpers.smtp_server import running_smtp_server


def test_sqlite_and_smtp_run_the_whole_flow(tmp_path: Path) -> None:
    """Request by each identifier, confirm by mail over SMTP, and the new key is the one stored."""
    context = cheap_context()
    directory = SQLiteDirectory(tmp_path / "clients.sqlite3", crypt_context=context)
    directory.add_client(
        "9000",
        "ejemplo@ejemploxmundo.com.ar",
        key=OLD_KEY,
        domains=["ejemploxmundo.com.ar"],
        name="Ejemplo",
        locale="es_AR",
    )
    with (
        running_smtp_server() as server,
        RecoveryService(
            directory,
            SMTPMailer(server.host, server.port, timeout=5),
            secret_key=SECRET,
            confirm_url=CONFIRM_URL,
            sender=SENDER,
            crypt_context=context,
        ) as service,
    ):
        for kind, value in (
            ("domain", "EjemploXMundo.com.ar"),
            ("client_number", "9000"),
            ("email", "Ejemplo@EjemploXMundo.com.ar"),
        ):
            assert service.request(kind, value, requester="203.0.113.9") is None
        assert service.request("domain", "desconocido.com.ar", requester="203.0.113.9") is None
        assert service.flush(timeout=10)

        confirmations = [mail.message for mail in server.received]
        assert len(confirmations) == 3
        assert all(mail.rcpt_tos == ("ejemplo@ejemploxmundo.com.ar",) for mail in server.received)
        assert all("Confirme" in str(m["Subject"]) for m in confirmations)

        newest = token_from(confirmations[-1])
        assert service.check(newest).number == "9000"
        result = service.confirm(newest, requester="203.0.113.9")
        assert (result.number, result.email) == ("9000", "ejemplo@ejemploxmundo.com.ar")
        credentials = server.received[-1].message
        key = key_from(credentials)
        assert "9000" in credentials.get_body(("plain",)).get_content()

        stored = directory.find(IdentifierKind.CLIENT_NUMBER, "9000")
        assert stored is not None
        assert context.verify(key, stored.key_hash)
        assert not context.verify(OLD_KEY, stored.key_hash)
        for older in confirmations[:-1]:
            try:
                service.confirm(token_from(older))
            except TokenAlreadyUsed:
                continue
            raise AssertionError("an older link still worked after the confirmation")
    directory.close()


def test_an_internationalized_primary_address_is_mailed(tmp_path: Path) -> None:
    """A Unicode domain travels as an A-label; a non-ASCII mailbox name needs SMTPUTF8."""
    context = cheap_context()
    directory = SQLiteDirectory(tmp_path / "clients.sqlite3", crypt_context=context)
    directory.add_client("1", "ana@münchen.de", key=OLD_KEY)
    directory.add_client("2", "JOSÉ@ejemplo.com", key=OLD_KEY, locale="es")
    with running_smtp_server(smtputf8=True) as server:
        service = RecoveryService(
            directory,
            SMTPMailer(server.host, server.port, timeout=5),
            secret_key=SECRET,
            confirm_url=CONFIRM_URL,
            sender=SENDER,
            crypt_context=context,
            delivery="sync",
            rate_limits=None,
        )
        service.request("email", "Ana@MÜNCHEN.de")
        service.request("client_number", "2")
        ana, jose = server.received
        assert service.confirm(token_from(jose.message)).number == "2"
        assert server.received[-1].rcpt_tos == ("josé@ejemplo.com",)
    assert ana.rcpt_tos == ("ana@xn--mnchen-3ya.de",)
    assert ana.message["To"].addresses[0].addr_spec == "ana@xn--mnchen-3ya.de"
    assert jose.rcpt_tos == ("josé@ejemplo.com",)
    assert "To: josé@ejemplo.com".encode() in jose.content
    directory.close()
