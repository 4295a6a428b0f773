"""The command line: operator commands on a SQLite file, with printed or SMTP mail."""

from __future__ import annotations

import contextlib
import importlib.metadata
import io
import logging
import os
import re
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path

import pytest

import credrecovery
from credrecovery import IdentifierKind, cheap_context, cli, default_context
from credrecovery.cli import REDACTED_KEY, SECRET_ENV
from credrecovery.sqlite import SQLiteDirectory
from helpers.smtp_server import (
    LocalCertificate,
    RecordingHandler,
    make_certificate,
    running_smtp_server,
)

SECRET = "cli-test-secret-0123456789abcdef"
SMTP_PASSWORD = "cli-smtp-Passw0rd-7a1f"
EMAIL = "ejemplo@ejemploxmundo.com.ar"
DOMAIN = "ejemploxmundo.com.ar"
TOKEN_IN_LINK = re.compile(r"/recover/([\w.-]+)")
KEY_IN_MAIL = re.compile(r"Access key:\s+(\S+)")
ENV_NAMES = (
    "CREDRECOVERY_SECRET_KEY",
    "CREDRECOVERY_SMTP_PASSWORD",
    "CREDRECOVERY_DATABASE_PASSWORD",
)
# What default_context() makes of a new key: argon2id at full strength.
PRODUCTION_HASH = re.compile(r"\$argon2id\$v=19\$m=65536,t=3,p=4\$")

# Runs the real command line, reporting the modes of the directory file and its
# -wal and -shm just before the command closes it (SQLite removes the last two then).
MODES_PROBE = """
import os, sys
from credrecovery import cli, sqlite

close = sqlite.SQLiteDirectory.close
def close_and_report(self):
    for suffix in ("", "-wal", "-shm"):
        mode = os.stat(sys.argv[1] + suffix).st_mode & 0o777
        print(f"mode{suffix or '-db'} {mode:o}")
    close(self)
sqlite.SQLiteDirectory.close = close_and_report
sys.exit(cli.main(sys.argv[2:]))
"""


pytestmark = pytest.mark.slow
Runner = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(autouse=True)
def cheap_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process commands hash with cheap_context(), which has the production schemes.

    Every command takes its hashing policy from the one module patched here.
    """
    monkeypatch.setattr(cli._common, "default_context", cheap_context)


def run(
    *args: str,
    secret: str | None = SECRET,
    stdin: str | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m credrecovery *args`` in this process, as the real process would.

    For the call only, the variables of ENV_NAMES are unset and then set from
    ``secret`` and ``env``; the rest of the environment is this process's.
    Standard input reads ``stdin`` and is not a terminal; standard output and
    error are captured; the exit status is what main() returns or what
    SystemExit carries (--help, --version, usage errors). The credrecovery
    logger's handlers and level are put back afterwards, since main() binds a
    handler to the first call's standard error and keeps it. An unexpected
    exception propagates instead of becoming a traceback on standard error.

    Hashing uses the cheap test profile (the cheap_hashing fixture): hashing
    strength is not what these tests assert. The real-process tests, which
    run_process() starts, hash at full strength, and
    test_operator_flow_on_a_sqlite_file checks that they do.
    """
    logger = logging.getLogger(credrecovery.__name__)
    handlers = list(logger.handlers)
    stdout, stderr = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as patch:
        for name in ENV_NAMES:
            patch.delenv(name, raising=False)
        if secret is not None:
            patch.setenv(SECRET_ENV, secret)
        for name, value in (env or {}).items():
            patch.setenv(name, value)
        patch.setattr(sys, "stdin", io.StringIO(stdin or ""))
        patch.setattr(logger, "level", logger.level)
        try:
            with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
                try:
                    status = cli.main(list(args))
                except SystemExit as exit_:
                    status = _exit_status(exit_.code)
        finally:
            for handler in list(logger.handlers):
                if handler not in handlers:
                    logger.removeHandler(handler)
    return subprocess.CompletedProcess(
        [sys.executable, "-m", "credrecovery", *args],
        status,
        stdout.getvalue(),
        stderr.getvalue(),
    )


def _exit_status(code: object) -> int:
    """The status a process exiting with SystemExit(code) has, printing a message as it would."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def run_process(
    *args: str,
    secret: str | None = SECRET,
    stdin: str | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m credrecovery *args`` in a new interpreter, with run()'s environment."""
    environment = {k: v for k, v in os.environ.items() if k not in ENV_NAMES}
    if secret is not None:
        environment[SECRET_ENV] = secret
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "credrecovery", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=environment,
        timeout=120,
        check=False,
    )


def failed(result: subprocess.CompletedProcess[str]) -> bool:
    """Whether the command failed the expected way: status 1, an error line last, no traceback."""
    lines = result.stderr.splitlines()
    return (
        result.returncode == 1
        and bool(lines)
        and lines[-1].startswith("error: ")
        and "Traceback" not in result.stderr
    )


def add_client(db: Path, runner: Runner = run) -> str:
    """Create ``db`` with client 9000 and return its initial access key."""
    added = runner(
        "add-client",
        "--db",
        str(db),
        "--create",
        "9000",
        EMAIL,
        "--domain",
        DOMAIN,
        "--name",
        "Ejemplo",
    )
    assert added.returncode == 0, added.stderr
    key = re.search(r"initial access key: (\S+)", added.stdout)
    assert key
    return key.group(1)


def request_token(db: Path) -> str:
    requested = run("request", "--db", str(db), "client_number", "9000")
    assert requested.returncode == 0, requested.stderr
    token = TOKEN_IN_LINK.search(requested.stdout)
    assert token
    return token.group(1)


def stored_hash(db: Path) -> str:
    with SQLiteDirectory(db) as directory:
        client = directory.find(IdentifierKind.CLIENT_NUMBER, "9000")
    assert client is not None
    return client.key_hash


def no_files(db: Path) -> bool:
    return not any(Path(f"{db}{suffix}").exists() for suffix in ("", "-wal", "-shm"))


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> LocalCertificate:
    return make_certificate(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "clients.sqlite3"
    add_client(path)
    return path


# --- help and version ------------------------------------------------------------

COMMANDS = ["demo", "secret", "init", "add-client", "request", "confirm"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_an_example(command: str) -> None:
    """Each subcommand answers --help with a usage line and an example invocation."""
    result = run(command, "--help")
    assert result.returncode == 0
    assert "usage:" in result.stdout
    assert re.search(rf"examples?:\n +python -m credrecovery {command}", result.stdout)


@pytest.mark.parametrize("command", ["request", "confirm"])
def test_help_shows_defaults(command: str) -> None:
    """request and confirm --help show the defaults of their options."""
    result = run(command, "--help")
    text = " ".join(result.stdout.split())
    assert "(default: https://panel.example.com/recover/{token})" in text
    assert "(default: Client Panel <panel@example.com>)" in text
    assert "(default: 25)" in text
    assert "(default: plain)" in text
    assert "CREDRECOVERY_SMTP_PASSWORD" in text
    assert "--lock-timeout SECONDS" in text
    assert "before failing (default: 5.0)" in text


def test_version_is_printed_and_exported() -> None:
    """`python -m credrecovery --version` prints 'credrecovery <version>', the __version__."""
    result = run_process("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"credrecovery {credrecovery.__version__}"
    assert re.fullmatch(r"\d+\.\d+.*", credrecovery.__version__)
    assert "__version__" in credrecovery.__all__


def test_secret_prints_a_fresh_random_secret() -> None:
    """`secret` prints a long URL-safe secret, different each time."""
    first, second = run("secret").stdout.strip(), run("secret").stdout.strip()
    assert re.fullmatch(r"[A-Za-z0-9_-]{40,}", first)
    assert first != second


# --- the flow ------------------------------------------------------------------------


def test_operator_flow_on_a_sqlite_file(tmp_path: Path) -> None:
    """add-client, request, then confirm --print-key on one file rotate the key and show it.

    Runs `python -m credrecovery` in real processes: exit status 0 and 1, and
    keys hashed by the production policy, full-strength argon2id.
    """
    db = tmp_path / "clients.sqlite3"
    initial_key = add_client(db, run_process)
    assert PRODUCTION_HASH.match(stored_hash(db))
    assert not default_context().needs_update(stored_hash(db))

    requested = run_process("request", "--db", str(db), "domain", "EJEMPLOXMUNDO.com.ar")
    assert requested.returncode == 0, requested.stderr
    assert f"To: Ejemplo <{EMAIL}>" in requested.stdout
    token = TOKEN_IN_LINK.search(requested.stdout)
    assert token

    confirmed = run_process("confirm", "--db", str(db), "--print-key", token.group(1))
    assert confirmed.returncode == 0, confirmed.stderr
    new_key = KEY_IN_MAIL.search(confirmed.stdout)
    assert new_key
    assert default_context().verify(new_key.group(1), stored_hash(db))
    assert not default_context().verify(initial_key, stored_hash(db))
    assert PRODUCTION_HASH.match(stored_hash(db))
    assert not default_context().needs_update(stored_hash(db))

    reused = run_process("confirm", "--db", str(db), token.group(1))
    assert failed(reused)
    assert "already used" in reused.stderr


def test_request_names_the_client_and_the_address(db: Path) -> None:
    """A successful request says which client number the link is for and where it went."""
    requested = run("request", "--db", str(db), "email", EMAIL.upper())
    assert requested.returncode == 0, requested.stderr
    assert requested.stdout.splitlines()[-1] == (
        f"confirmation link for client 9000 printed above, not sent; it is addressed to {EMAIL}"
    )


def test_request_for_an_unknown_identifier_fails_and_prints_no_mail(db: Path) -> None:
    """A request that matches no client exits 1 saying so, and prints no mail."""
    unknown = run("request", "--db", str(db), "domain", "not-a-client.example")
    assert failed(unknown)
    assert unknown.stderr.strip() == "error: no client has the domain not-a-client.example"
    assert "Subject:" not in unknown.stdout


def test_request_reports_a_mail_the_smtp_server_refused(db: Path) -> None:
    """When the SMTP server refuses the confirmation mail, request exits 1 and says why."""
    handler = RecordingHandler()
    handler.answer("RCPT", "550 5.1.1 No such user")
    with running_smtp_server(handler) as server:
        result = run(
            "request",
            "--db",
            str(db),
            "domain",
            DOMAIN,
            "--smtp-host",
            server.host,
            "--smtp-port",
            str(server.port),
        )
    assert failed(result)
    assert "confirmation mail for client 9000 was not sent" in result.stderr
    assert "refused the recipient (550" in result.stderr
    assert "mailed" not in result.stdout


def test_request_reports_an_unreachable_smtp_server(db: Path) -> None:
    """A request through an SMTP port nobody listens on exits 1 saying the mail was not sent."""
    with running_smtp_server() as server:
        port = server.port
    result = run(
        "request",
        "--db",
        str(db),
        "domain",
        DOMAIN,
        "--smtp-host",
        "127.0.0.1",
        "--smtp-port",
        str(port),
    )
    assert failed(result)
    assert "was not sent: could not reach the SMTP server" in result.stderr


# --- errors, never tracebacks ----------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        ["request", "domain", DOMAIN],
        ["confirm", "some-token"],
        ["add-client", "9001", "other@example.com"],
    ],
)
def test_a_corrupt_database_file_is_a_clear_error(tmp_path: Path, command: list[str]) -> None:
    """A --db that is not a SQLite database is an error naming the file, and is left as it was."""
    db = tmp_path / "clients.sqlite3"
    db.write_bytes(b"this is not a database, just some text" * 100)
    result = run(command[0], "--db", str(db), *command[1:])
    assert failed(result)
    assert result.stderr.strip() == f"error: {db} is not a SQLite database"
    assert db.read_bytes() == b"this is not a database, just some text" * 100


@pytest.mark.parametrize(
    "command",
    [
        ["request", "domain", DOMAIN],
        ["confirm", "some-token"],
        ["add-client", "--create", "9001", "other@example.com"],
        ["init"],
    ],
)
def test_a_directory_as_db_is_a_clear_error(tmp_path: Path, command: list[str]) -> None:
    """A --db that names a folder is an error saying so."""
    result = run(command[0], "--db", str(tmp_path), *command[1:])
    assert failed(result)
    assert result.stderr.strip() == f"error: {tmp_path} is a directory, not a SQLite file"


def test_bad_tokens_and_missing_secrets_are_errors(db: Path) -> None:
    """A forged token, an empty one and a missing secret are errors, never tracebacks."""
    forged = run("confirm", "--db", str(db), "eyJmb3JnZWQiOnRydWV9.Zm9yZ2Vk.c2ln")
    assert failed(forged)
    assert "not valid" in forged.stderr
    empty = run("confirm", "--db", str(db), "-", stdin="\n")
    assert failed(empty)
    assert "no token given" in empty.stderr
    no_secret = run("confirm", "--db", str(db), "some-token", secret=None)
    assert failed(no_secret)
    assert "CREDRECOVERY_SECRET_KEY" in no_secret.stderr
    malformed = run("request", "--db", str(db), "email", "not an address")
    assert failed(malformed)
    assert "not a valid email address" in malformed.stderr


def test_a_locked_database_is_an_error(db: Path) -> None:
    """A directory file another connection holds locked is an error once --lock-timeout runs out.

    The command waits the time given, not the default 5 seconds.
    """
    holder = sqlite3.connect(db, isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        started = time.monotonic()
        result = run(
            "add-client", "--db", str(db), "--lock-timeout", "0.5", "9001", "other@example.com"
        )
        waited = time.monotonic() - started
    finally:
        holder.close()
    assert failed(result)
    assert "database is locked" in result.stderr
    assert 0.5 <= waited < 4


# --- files -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        ["request", "domain", DOMAIN],
        ["confirm", "some-token"],
        ["add-client", "9000", EMAIL],
    ],
)
def test_a_missing_db_is_an_error_and_creates_nothing(tmp_path: Path, command: list[str]) -> None:
    """request, confirm and add-client without --create leave a missing --db missing."""
    db = tmp_path / "clients.sqlite3"
    result = run(command[0], "--db", str(db), *command[1:])
    assert failed(result)
    assert f"{db} does not exist" in result.stderr
    assert no_files(db)
    assert list(tmp_path.iterdir()) == []


def test_init_creates_an_empty_private_directory(tmp_path: Path) -> None:
    """init creates a usable, empty directory file of mode 0600, and refuses to overwrite it."""
    db = tmp_path / "clients.sqlite3"
    created = run("init", "--db", str(db))
    assert created.returncode == 0, created.stderr
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    with SQLiteDirectory(db) as directory:
        assert directory.find(IdentifierKind.CLIENT_NUMBER, "9000") is None
    again = run("init", "--db", str(db))
    assert failed(again)
    assert "already exists" in again.stderr


def test_files_the_cli_creates_are_private(tmp_path: Path) -> None:
    """The directory file add-client --create makes, and its -wal and -shm, are mode 0600."""
    db = tmp_path / "clients.sqlite3"
    environment = {k: v for k, v in os.environ.items() if k not in ENV_NAMES}
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            MODES_PROBE,
            str(db),
            "add-client",
            "--db",
            str(db),
            "--create",
            "9000",
            EMAIL,
        ],
        capture_output=True,
        text=True,
        env=environment,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    modes = dict(line.split() for line in result.stdout.splitlines() if line.startswith("mode"))
    assert modes == {"mode-db": "600", "mode-wal": "600", "mode-shm": "600"}
    assert stat.S_IMODE(db.stat().st_mode) == 0o600


def test_add_client_that_fails_removes_the_file_it_created(tmp_path: Path) -> None:
    """add-client --create with an invalid address leaves no file behind."""
    db = tmp_path / "clients.sqlite3"
    result = run("add-client", "--db", str(db), "--create", "9000", "not an address")
    assert failed(result)
    assert no_files(db)


# --- the token and the key -------------------------------------------------------------


def test_confirm_reads_the_token_from_standard_input(db: Path) -> None:
    """`confirm -` takes the token from standard input."""
    token = request_token(db)
    confirmed = run("confirm", "--db", str(db), "-", "--print-key", stdin=token + "\n")
    assert confirmed.returncode == 0, confirmed.stderr
    key = KEY_IN_MAIL.search(confirmed.stdout)
    assert key
    assert default_context().verify(key.group(1), stored_hash(db))


def test_confirm_takes_the_token_out_of_a_pasted_link(db: Path) -> None:
    """A whole link works in place of the token, by path segment or by ?token= parameter."""
    by_path = run(
        "confirm",
        "--db",
        str(db),
        "-",
        stdin=f"  https://panel.example.com/recover/{request_token(db)}\n",
    )
    assert by_path.returncode == 0, by_path.stderr
    by_query = run(
        "confirm",
        "--db",
        str(db),
        f"https://panel.example.com/recover?lang=en&token={request_token(db)}",
    )
    assert by_query.returncode == 0, by_query.stderr
    assert "confirmed: the access key of client 9000 was rotated" in by_query.stdout


@pytest.mark.parametrize(("locale", "label"), [("en", "Access key"), ("es", "Clave de acceso")])
def test_confirm_hides_the_new_key_unless_asked(db: Path, locale: str, label: str) -> None:
    """Without --print-key the printed credentials mail shows a marker, not the new key."""
    confirmed = run("confirm", "--db", str(db), "--locale", locale, request_token(db))
    assert confirmed.returncode == 0, confirmed.stderr
    assert f"{label}:\n{REDACTED_KEY}\n" in confirmed.stdout
    assert ": 9000\n" in confirmed.stdout
    key_hash = stored_hash(db)
    words = set(re.findall(r"[A-Za-z0-9]+", confirmed.stdout + confirmed.stderr))
    assert not [w for w in words if len(w) == 16 and default_context().verify(w, key_hash)]
    assert "the new key is hidden" in confirmed.stderr


# --- SMTP --------------------------------------------------------------------------------


def smtp_options(port: int, *extra: str) -> list[str]:
    return [
        "--smtp-host",
        "127.0.0.1",
        "--smtp-port",
        str(port),
        "--smtp-security",
        "starttls",
        *extra,
    ]


def test_smtp_login_with_the_password_from_the_environment(
    db: Path, certificate: LocalCertificate
) -> None:
    """--smtp-username logs in with $CREDRECOVERY_SMTP_PASSWORD, over TLS with --smtp-cafile."""
    with running_smtp_server(
        starttls=certificate.server_context(), users={"panel": SMTP_PASSWORD}
    ) as server:
        options = smtp_options(
            server.port, "--smtp-username", "panel", "--smtp-cafile", str(certificate.ca_path)
        )
        env = {"CREDRECOVERY_SMTP_PASSWORD": SMTP_PASSWORD}
        requested = run("request", "--db", str(db), "domain", DOMAIN, *options, env=env)
        assert requested.returncode == 0, requested.stderr
        assert requested.stdout.strip() == f"confirmation link for client 9000 mailed to {EMAIL}"
        token = TOKEN_IN_LINK.search(server.received[0].message.get_body().get_content())
        assert token
        confirmed = run("confirm", "--db", str(db), token.group(1), *options, env=env)
        assert confirmed.returncode == 0, confirmed.stderr
        assert confirmed.stdout.strip() == (
            f"confirmed: new access details for client 9000 mailed to {EMAIL}"
        )
        received = list(server.received)
    assert [(mail.login, mail.tls) for mail in received] == [("panel", True), ("panel", True)]
    key = KEY_IN_MAIL.search(received[1].message.get_body(("plain",)).get_content())
    assert key
    assert default_context().verify(key.group(1), stored_hash(db))
    for output in (requested, confirmed):
        assert SMTP_PASSWORD not in output.stdout + output.stderr
        assert key.group(1) not in output.stdout + output.stderr


def test_smtp_login_problems_are_errors(db: Path, certificate: LocalCertificate) -> None:
    """A wrong SMTP password, or none in the environment, is an error that shows no password."""
    with running_smtp_server(
        starttls=certificate.server_context(), users={"panel": SMTP_PASSWORD}
    ) as server:
        options = smtp_options(
            server.port, "--smtp-username", "panel", "--smtp-cafile", str(certificate.ca_path)
        )
        wrong = run(
            "request",
            "--db",
            str(db),
            "domain",
            DOMAIN,
            *options,
            env={"CREDRECOVERY_SMTP_PASSWORD": "not-the-password"},
        )
        missing = run("request", "--db", str(db), "domain", DOMAIN, *options)
        assert server.received == []
    assert failed(wrong)
    assert "SMTP login failed (535" in wrong.stderr
    assert "not-the-password" not in wrong.stderr + wrong.stdout
    assert failed(missing)
    assert "CREDRECOVERY_SMTP_PASSWORD" in missing.stderr


def test_smtp_cafile_decides_which_server_is_trusted(
    db: Path, certificate: LocalCertificate, tmp_path: Path
) -> None:
    """Without --smtp-cafile the throw-away CA is not trusted; an unreadable one is an error."""
    with running_smtp_server(starttls=certificate.server_context()) as server:
        untrusted = run("request", "--db", str(db), "domain", DOMAIN, *smtp_options(server.port))
        unreadable = run(
            "request",
            "--db",
            str(db),
            "domain",
            DOMAIN,
            *smtp_options(server.port, "--smtp-cafile", str(tmp_path / "no.pem")),
        )
        trusted = run(
            "request",
            "--db",
            str(db),
            "domain",
            DOMAIN,
            *smtp_options(server.port, "--smtp-cafile", str(certificate.ca_path)),
        )
        received = len(server.received)
    assert failed(untrusted)
    assert "certificate rejected" in untrusted.stderr
    assert failed(unreadable)
    assert "cannot load CA certificates" in unreadable.stderr
    assert trusted.returncode == 0, trusted.stderr
    assert received == 1


# --- imported key hashes ---------------------------------------------------------------------


@pytest.mark.parametrize("key_hash", ["plaintext-key", "$argon2id$not-a-real-hash", ""])
def test_add_client_refuses_a_hash_the_policy_cannot_read(tmp_path: Path, key_hash: str) -> None:
    """--key-hash that default_context() cannot identify is refused without being echoed."""
    db = tmp_path / "clients.sqlite3"
    result = run("add-client", "--db", str(db), "--create", "9000", EMAIL, "--key-hash", key_hash)
    assert failed(result)
    assert "--key-hash is not a hash the hashing policy can verify" in result.stderr
    if key_hash:
        assert key_hash not in result.stderr + result.stdout
    assert no_files(db)


def test_add_client_imports_a_hash_from_standard_input(tmp_path: Path) -> None:
    """`--key-hash -` reads the hash from standard input and stores it as given."""
    db = tmp_path / "clients.sqlite3"
    key_hash = default_context().hash("an-existing-key-0123")
    result = run(
        "add-client",
        "--db",
        str(db),
        "--create",
        "9000",
        EMAIL,
        "--key-hash",
        "-",
        stdin=key_hash + "\n",
    )
    assert result.returncode == 0, result.stderr
    assert "initial access key" not in result.stdout
    assert stored_hash(db) == key_hash


# --- the names a host imports from credrecovery.cli ------------------------------------


def _plain_message() -> EmailMessage:
    message = EmailMessage()
    message["From"] = "Panel <panel@example.com>"
    message["To"] = f"Ejemplo <{EMAIL}>"
    message["Subject"] = "Hello"
    message.set_content("Line one.\n\n")
    return message


def test_the_names_cli_had_still_import() -> None:
    """`from credrecovery.cli import ...` names the mailer and viewer in their new homes."""
    from credrecovery.adapters.printing import PrintMailer
    from credrecovery.cli import (
        DATABASE_PASSWORD_ENV,
        DEMO_SENDER,
        DEMO_URL,
        SMTP_PASSWORD_ENV,
        main,
        render,
    )
    from credrecovery.cli import PrintMailer as OldPrintMailer
    from credrecovery.mail import viewer
    from credrecovery.memory import MessageView, render_html

    assert OldPrintMailer is PrintMailer
    assert render is viewer.render
    assert MessageView is viewer.MessageView
    assert render_html is viewer.render_html
    assert main is cli.main
    assert (SECRET_ENV, SMTP_PASSWORD_ENV, DATABASE_PASSWORD_ENV) == ENV_NAMES
    assert "{token}" in DEMO_URL
    assert "@" in DEMO_SENDER


def test_the_console_script_runs_main() -> None:
    """The installed `credrecovery` script is credrecovery.cli:main."""
    (script,) = importlib.metadata.entry_points(group="console_scripts", name="credrecovery")
    assert script.load() is cli.main


def test_print_mailer_prints_each_message_as_render_shows_it() -> None:
    """PrintMailer writes render(message) to its stream, or to standard output as it is then."""
    message = _plain_message()
    stream = io.StringIO()
    cli.PrintMailer(stream).send(message)
    assert stream.getvalue() == cli.render(message) + "\n"

    redirected = io.StringIO()
    mailer = cli.PrintMailer()
    with contextlib.redirect_stdout(redirected):
        mailer.send(message)
    assert redirected.getvalue() == stream.getvalue()


def test_render_shows_headers_and_the_plain_body_between_rules() -> None:
    """render(): every header but Content-Type, a blank line, the plain text, two rules."""
    rule = "-" * 72
    message = _plain_message()
    lines = cli.render(message).split("\n")
    assert lines[0] == lines[-1] == rule
    assert f"To: Ejemplo <{EMAIL}>" in lines
    assert not any(line.startswith("Content-Type:") for line in lines)
    assert lines[-3:] == ["", "Line one.", rule]

    html_only = EmailMessage()
    html_only["Subject"] = "Card"
    html_only.set_content("<p>hi</p>", subtype="html")
    assert cli.render(html_only).split("\n")[-3:] == ["", "", rule]


# --- links issued by support, on any directory the command line opens ---------------------


def test_a_link_only_request_prints_the_link_and_its_expiry(db: Path) -> None:
    """--link-only mails nothing and prints a link that works until the time it states;
    --max-age sets that time."""
    result = run(
        "request",
        "--db",
        str(db),
        "client_number",
        "9000",
        "--link-only",
        "--max-age",
        "3d",
        "--operator",
        "support-ana",
    )
    assert result.returncode == 0, result.stderr
    link, said = result.stdout.splitlines()
    assert "Subject:" not in result.stdout
    match = re.fullmatch(
        r"confirmation link for client 9000 printed above, not mailed; "
        r"it works until (\d{4}-\d\d-\d\d \d\d:\d\d) UTC",
        said,
    )
    assert match
    until = time.mktime(time.strptime(match.group(1), "%Y-%m-%d %H:%M")) - time.timezone
    assert abs(until - (time.time() + 3 * 86400)) < 120
    confirmed = run("confirm", "--db", str(db), "--print-key", link)
    assert confirmed.returncode == 0, confirmed.stderr
    assert KEY_IN_MAIL.search(confirmed.stdout)


@pytest.mark.parametrize("value", ["0", "3w", "-5m", "soon"])
def test_a_bad_max_age_is_a_usage_error(db: Path, value: str) -> None:
    """--max-age takes seconds, or a whole number of minutes, hours or days."""
    result = run("request", "--db", str(db), "client_number", "9000", f"--max-age={value}")
    assert result.returncode == 2
    assert "not a duration" in result.stderr


def test_a_request_for_a_closed_or_shared_account_says_why(db: Path) -> None:
    """A closed account, or an address several clients share, fails with the reason."""
    with SQLiteDirectory(db, crypt_context=cheap_context()) as directory:
        directory.add_client("9001", EMAIL, key="Another-Key-0123456789")
        directory.add_client(
            "9002", "closed@example.com", key="Another-Key-0123456789", active=False
        )
    shared = run("request", "--db", str(db), "email", EMAIL)
    assert failed(shared)
    assert shared.stderr.strip() == (
        f"error: clients 9000, 9001 share the primary email {EMAIL}: name one by client_number"
    )
    closed = run("request", "--db", str(db), "client_number", "9002")
    assert failed(closed)
    assert "client 9002 is closed" in closed.stderr
    assert "Subject:" not in shared.stdout + closed.stdout


def test_a_database_url_may_not_hold_a_password(db: Path) -> None:
    """A password on the command line is refused: it belongs in the environment."""
    result = run(
        "request",
        "--database-url",
        "postgresql+psycopg://panel:s3cret@db/panel",
        "client_number",
        "9000",
    )
    assert failed(result)
    assert "CREDRECOVERY_DATABASE_PASSWORD" in result.stderr and "s3cret" not in result.stderr
    both = run("request", "--db", str(db), "--database-url", "sqlite://", "domain", DOMAIN)
    assert both.returncode == 2 and "not allowed with" in both.stderr


def test_request_and_confirm_on_a_sqlalchemy_sqlite_database(tmp_path: Path) -> None:
    """--database-url opens the directory's own tables in any database SQLAlchemy reaches."""
    from credrecovery.sqlalchemy import SQLAlchemyDirectory

    url = f"sqlite:///{tmp_path / 'panel.sqlite3'}"
    with SQLAlchemyDirectory(url, crypt_context=cheap_context(), create_schema=True) as made:
        made.add_client(
            "9000", EMAIL, key="Initial-Key-0123456789", domains=[DOMAIN], name="Ejemplo"
        )
    requested = run("request", "--database-url", url, "domain", DOMAIN)
    assert requested.returncode == 0, requested.stderr
    assert requested.stdout.splitlines()[-1] == (
        f"confirmation link for client 9000 printed above, not sent; it is addressed to {EMAIL}"
    )
    token = TOKEN_IN_LINK.search(requested.stdout)
    assert token
    confirmed = run("confirm", "--database-url", url, "--print-key", token.group(1))
    assert confirmed.returncode == 0, confirmed.stderr
    new_key = KEY_IN_MAIL.search(confirmed.stdout)
    assert new_key
    with SQLAlchemyDirectory(url) as reread:
        client = reread.find(IdentifierKind.CLIENT_NUMBER, "9000")
    assert client is not None and cheap_context().verify(new_key.group(1), client.key_hash)


@pytest.mark.postgres
def test_the_operator_flow_on_postgresql(tmp_path: Path) -> None:
    """request and confirm, real processes, on the directory's own tables in PostgreSQL;
    the password, if the server needs one, from CREDRECOVERY_DATABASE_PASSWORD."""
    import sqlalchemy as sa

    from credrecovery.sqlalchemy import SQLAlchemyDirectory
    from helpers import pg

    with pg.fresh_schema() as schema:
        with SQLAlchemyDirectory(schema.engine, create_schema=True) as made:
            made.add_client(
                "9000", EMAIL, key="Initial-Key-0123456789", domains=[DOMAIN], name="Ejemplo"
            )
        server = sa.make_url(schema.url)
        env = {"CREDRECOVERY_DATABASE_PASSWORD": server.password} if server.password else {}
        url = (
            server.set(password=None)
            .update_query_dict({"options": f"-csearch_path={schema.name}"})
            .render_as_string(hide_password=False)
        )
        requested = run_process(
            "request", "--database-url", url, "client_number", "9000", "--max-age", "90m", env=env
        )
        assert requested.returncode == 0, requested.stderr
        assert "expires in 1 hour and 30 minutes" in requested.stdout
        token = TOKEN_IN_LINK.search(requested.stdout)
        assert token
        confirmed = run_process(
            "confirm", "--database-url", url, "--print-key", token.group(1), env=env
        )
        assert confirmed.returncode == 0, confirmed.stderr
        new_key = KEY_IN_MAIL.search(confirmed.stdout)
        assert new_key
        with SQLAlchemyDirectory(schema.engine) as reread:
            client = reread.find(IdentifierKind.CLIENT_NUMBER, "9000")
        assert client is not None and default_context().verify(new_key.group(1), client.key_hash)
        reused = run_process("confirm", "--database-url", url, token.group(1), env=env)
        assert failed(reused) and "already used" in reused.stderr


# --- codes issued by support ---------------------------------------------------------------

CODE_LINE = re.compile(r"code: ([A-Z0-9]{4}-[A-Z0-9]{4})")
TICKET_LINE = re.compile(r"ticket: (\S+)")


def test_a_code_request_prints_the_code_and_its_ticket_for_confirm(db: Path) -> None:
    """request --code --no-mail prints the code, its ticket and until when they work;
    confirm --ticket (read from standard input) --code replaces the key, once. Real processes."""
    result = run_process(
        "request",
        "--db",
        str(db),
        "client_number",
        "9000",
        "--code",
        "--no-mail",
        "--max-age",
        "2h",
        "--operator",
        "support-ana",
    )
    assert result.returncode == 0, result.stderr
    code_line, ticket_line, said = result.stdout.splitlines()
    code, ticket = CODE_LINE.fullmatch(code_line), TICKET_LINE.fullmatch(ticket_line)
    assert code and ticket
    match = re.fullmatch(
        r"recovery code for client 9000 printed above, not mailed; "
        r"it works until (\d{4}-\d\d-\d\d \d\d:\d\d) UTC",
        said,
    )
    assert match
    until = time.mktime(time.strptime(match.group(1), "%Y-%m-%d %H:%M")) - time.timezone
    assert abs(until - (time.time() + 2 * 3600)) < 120
    confirmed = run_process(
        "confirm",
        "--db",
        str(db),
        "--ticket",
        "-",
        "--code",
        code.group(1).lower(),
        "--print-key",
        stdin=ticket.group(1),
    )
    assert confirmed.returncode == 0, confirmed.stderr
    new_key = KEY_IN_MAIL.search(confirmed.stdout)
    assert new_key and default_context().verify(new_key.group(1), stored_hash(db))
    reused = run_process(
        "confirm", "--db", str(db), "--ticket", ticket.group(1), "--code", code.group(1)
    )
    assert failed(reused) and "the code is not valid" in reused.stderr


def test_a_code_request_prints_the_mail_it_would_send(db: Path) -> None:
    """Without --smtp-host the code mail is printed, carrying the code printed below it;
    the log lines name neither the code nor the ticket."""
    result = run("request", "--db", str(db), "-v", "domain", DOMAIN, "--code")
    assert result.returncode == 0, result.stderr
    code = CODE_LINE.search(result.stdout)
    ticket = TICKET_LINE.search(result.stdout)
    assert code and ticket
    mail = result.stdout[: code.start()]
    assert "Subject:" in mail and code.group(1) in mail and ticket.group(1) not in mail
    assert result.stdout.splitlines()[-1] == (
        f"recovery code for client 9000 printed above, not sent; it is addressed to {EMAIL}"
    )
    assert "log: INFO: recovery code issued by support" in result.stderr
    assert code.group(1) not in result.stderr and ticket.group(1) not in result.stderr


def test_a_ticket_goes_with_a_code_and_not_with_a_token(db: Path) -> None:
    """confirm takes a token, or a ticket with its code: anything else is an error."""
    alone = run("confirm", "--db", str(db), "--ticket", "some-ticket")
    assert failed(alone) and "--ticket and --code go together" in alone.stderr
    code_alone = run("confirm", "--db", str(db), "--code", "WDJH-MJHT", "some-token")
    assert failed(code_alone) and "--ticket and --code go together" in code_alone.stderr
    both = run("confirm", "--db", str(db), "--ticket", "t", "--code", "WDJH-MJHT", "token")
    assert both.returncode == 2 and "not allowed with" in both.stderr
    neither = run("confirm", "--db", str(db))
    assert neither.returncode == 2


@pytest.mark.postgres
def test_a_code_on_postgresql(tmp_path: Path) -> None:
    """request --code and confirm --ticket --code, real processes, on PostgreSQL."""
    import sqlalchemy as sa

    from credrecovery.sqlalchemy import SQLAlchemyDirectory
    from helpers import pg

    with pg.fresh_schema() as schema:
        with SQLAlchemyDirectory(schema.engine, create_schema=True) as made:
            made.add_client(
                "9000", EMAIL, key="Initial-Key-0123456789", domains=[DOMAIN], name="Ejemplo"
            )
        server = sa.make_url(schema.url)
        env = {"CREDRECOVERY_DATABASE_PASSWORD": server.password} if server.password else {}
        url = (
            server.set(password=None)
            .update_query_dict({"options": f"-csearch_path={schema.name}"})
            .render_as_string(hide_password=False)
        )
        requested = run_process(
            "request",
            "--database-url",
            url,
            "client_number",
            "9000",
            "--code",
            "--max-age",
            "90m",
            env=env,
        )
        assert requested.returncode == 0, requested.stderr
        assert "expires in 1 hour and 30 minutes" in requested.stdout
        code, ticket = CODE_LINE.search(requested.stdout), TICKET_LINE.search(requested.stdout)
        assert code and ticket
        confirmed = run_process(
            "confirm",
            "--database-url",
            url,
            "--print-key",
            "--ticket",
            "-",
            "--code",
            code.group(1),
            stdin=ticket.group(1),
            env=env,
        )
        assert confirmed.returncode == 0, confirmed.stderr
        new_key = KEY_IN_MAIL.search(confirmed.stdout)
        assert new_key
        with SQLAlchemyDirectory(schema.engine) as reread:
            client = reread.find(IdentifierKind.CLIENT_NUMBER, "9000")
        assert client is not None and default_context().verify(new_key.group(1), client.key_hash)
