"""The command line: operator commands on a SQLite file, with printed mail."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from credrecovery import IdentifierKind, default_context
from credrecovery.sqlite import SQLiteDirectory

SECRET = "cli-test-secret-0123456789abcdef"


def run(*args: str, secret: str | None = SECRET) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "CREDRECOVERY_SECRET_KEY"}
    if secret is not None:
        env["CREDRECOVERY_SECRET_KEY"] = secret
    return subprocess.run(
        [sys.executable, "-m", "credrecovery", *args],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )


@pytest.mark.parametrize("command", ["demo", "secret", "add-client", "request", "confirm"])
def test_every_command_has_help(command: str) -> None:
    """Each subcommand answers --help with a usage line and exits 0."""
    result = run(command, "--help")
    assert result.returncode == 0
    assert "usage:" in result.stdout


def test_secret_prints_a_fresh_random_secret() -> None:
    """`secret` prints a long URL-safe secret, different each time."""
    first, second = run("secret").stdout.strip(), run("secret").stdout.strip()
    assert re.fullmatch(r"[A-Za-z0-9_-]{40,}", first)
    assert first != second


def test_operator_flow_on_a_sqlite_file(tmp_path: Path) -> None:
    """add-client, request and confirm on one file rotate the key and print both mails."""
    db = tmp_path / "clients.sqlite3"
    added = run("add-client", "--db", str(db), "9000", "Ejemplo@EjemploXMundo.com.ar",
                "--domain", "ejemploxmundo.com.ar", "--name", "Ejemplo")
    assert added.returncode == 0, added.stderr
    initial_key = re.search(r"initial access key: (\S+)", added.stdout)
    assert initial_key

    requested = run("request", "--db", str(db), "domain", "EJEMPLOXMUNDO.com.ar")
    assert requested.returncode == 0, requested.stderr
    assert "To: Ejemplo <ejemplo@ejemploxmundo.com.ar>" in requested.stdout
    token = re.search(r"/recover/([\w.-]+)", requested.stdout)
    assert token

    confirmed = run("confirm", "--db", str(db), token.group(1))
    assert confirmed.returncode == 0, confirmed.stderr
    new_key = re.search(r"Access key: (\S+)", confirmed.stdout)
    assert new_key

    with SQLiteDirectory(db) as directory:
        client = directory.find(IdentifierKind.CLIENT_NUMBER, "9000")
    assert client is not None
    assert default_context().verify(new_key.group(1), client.key_hash)
    assert not default_context().verify(initial_key.group(1), client.key_hash)

    reused = run("confirm", "--db", str(db), token.group(1))
    assert reused.returncode == 1
    assert "already used" in reused.stderr


def test_unknown_identifier_prints_the_same_answer_and_no_mail(tmp_path: Path) -> None:
    """A request for an unknown identifier answers like a known one and prints no mail."""
    db = tmp_path / "clients.sqlite3"
    run("add-client", "--db", str(db), "9000", "ejemplo@ejemploxmundo.com.ar")
    known = run("request", "--db", str(db), "client_number", "9000")
    unknown = run("request", "--db", str(db), "client_number", "9001")
    assert known.returncode == unknown.returncode == 0
    assert known.stdout.splitlines()[-1] == unknown.stdout.splitlines()[-1]
    assert "Subject:" in known.stdout
    assert "Subject:" not in unknown.stdout


def test_missing_secret_and_bad_input_are_clear_errors(tmp_path: Path) -> None:
    """Without the secret, or with a malformed identifier, the CLI exits 1 with a message."""
    db = tmp_path / "clients.sqlite3"
    no_secret = run("request", "--db", str(db), "email", "a@example.com", secret=None)
    assert no_secret.returncode == 1
    assert "CREDRECOVERY_SECRET_KEY" in no_secret.stderr
    malformed = run("request", "--db", str(db), "email", "not an address")
    assert malformed.returncode == 1
    assert "not a valid email address" in malformed.stderr
    assert "Traceback" not in malformed.stderr
