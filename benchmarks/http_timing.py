"""Can an attacker timing HTTP responses tell a known identifier from an unknown one?

For each row, the script builds a SQLite directory of 10,000 clients in a
temporary directory (a PostgreSQL one on the ``pg-`` rows), starts a real SMTP
server on 127.0.0.1 in its own process (it answers DATA after 50 ms and reports
every mail it accepts), starts a real web server on 127.0.0.1 that calls
``service.request()`` with the library's defaults, and sends it N requests
naming existing clients ("hits") and N naming values no client has ("misses"),
interleaved in an order fixed by ``--seed``, one at a time, each over a fresh
TCP connection from a raw socket, timed from just before ``connect`` to the end
of the response. Each hit names a different client and each miss a different
value, of the same length as the hits', so that no default rate limit is
reached; the per-requester limit is raised so that the limiter still runs on
both paths without refusing anything. After the requests it waits (up to
``--mail-wait`` seconds) until the SMTP server has accepted a mail for every
hit, then stops every process it started.

Rows (``--rows``; the default is every row but the baselines):

* ``sync``, ``gthread``, ``uvicorn``: gunicorn's sync worker and its gthread
  worker (4 threads) serving a Flask app, and uvicorn serving a FastAPI app
  whose endpoint is a plain ``def``, each with the library's defaults: the
  default ``BackgroundMailer`` on the library's ``SMTPMailer``, which composes
  and sends in a delivery process of its own;
* ``sync-celery``, ``gthread-celery``, ``uvicorn-celery``: the same apps with
  Celery delivery (a Celery worker on the local Redis sends the mail);
* ``sync-host``, ``gthread-host``, ``uvicorn-host``: the same apps and
  defaults with a host's own mailer, ``HostSMTPMailer`` of
  :mod:`benchmarks._http_apps` (no library class; a new ``smtplib``
  connection per mail), which the default ``BackgroundMailer`` keeps in worker
  threads of the web process: they measure whether composing and sending
  beside the requests, in the same interpreter, shows in their timing;
* ``pg-sync``, ``pg-async``: the directory on PostgreSQL instead of SQLite
  (:mod:`benchmarks._http_pg`: 10,000 clients loaded into a schema of the
  benchmark's own, ``credrecovery_bench``, created before the row and dropped
  after it): ``SQLAlchemyDirectory`` on psycopg behind the sync Flask app, and
  ``AsyncSQLAlchemyDirectory`` on asyncpg behind uvicorn and a FastAPI app
  whose ``async def`` endpoint awaits an ``AsyncRecoveryService``; the
  library's mailer and default delivery. They measure whether a lookup that
  finds nobody reads, and costs, what one that finds a client does;
* ``sync-code``, ``uvicorn-code``, ``pg-async-code``: the ``sync``, ``uvicorn``
  and ``pg-async`` set-ups answering ``POST /forgot-code``, which calls
  ``service.request_code()`` and returns a page holding the ticket; the
  ticket's length must be the same on both sides (the pages are compared with
  the ticket blanked to its length), and each hit's code mail must arrive;
* baselines, not in the default: ``sync-nomail``, ``gthread-nomail``,
  ``uvicorn-nomail``, ``pg-sync-null``, ``pg-async-null``, the same apps with
  a delivery that drops every job (no mail is expected): what is left of a gap
  without any mail work.

Every app answers ``GET /ready`` with where its delivery runs. A row with the
default background delivery also checks that: a delivery process with the
library's mailer, threads (``service.delivery.process_id is None``) with a
host's mailer, whose object must have sent every mail the SMTP server
accepted.

    python benchmarks/http_timing.py [--requests 2000] [--warmup 50] [--kind email]
        [--rows sync,gthread,uvicorn,sync-celery,...,pg-sync,pg-async]
        [--misses among|before] [--seed 1] [--mail-wait 60] [--no-check]

Lookups read the rows that follow the value in the directory's index, a hit's
own first, so a value costs what its place in the index costs whether or not
a client has it. Where the misses sort then decides which rows they read. The
default misses (``--misses among``) name ``client<n>@example.net``, which
sorts right after client ``n``: they read rows spread over the index, as the
hits and as an attacker's guesses do. ``--misses before`` names
``absent<n>@example.com``, which all sort before every client: every miss
reads the same first rows, which stay in every cache while each hit reads rows
of its own, so that row measures the cache, not the directory (email and
domain only).

The Celery rows need ``credrecovery.celery`` and the Redis server on 127.0.0.1
(``CREDRECOVERY_BENCH_BROKER``, default ``redis://127.0.0.1:6379/13``, is
flushed before and after each of them); without the module they are skipped,
and count as missing the target. The ``pg-`` rows need the PostgreSQL server
of ``CREDRECOVERY_BENCH_POSTGRES_URL`` (else ``CREDRECOVERY_TEST_POSTGRES_URL``,
else ``postgresql+psycopg://postgres@127.0.0.1:5432/test``), psycopg and
asyncpg; a row that cannot load it fails alone.

How to read it: for each row, the medians of the two distributions (ms), the
gap of medians, (hit - miss) / miss, the two-sample Kolmogorov-Smirnov p-value
(a small p says the two distributions differ, whatever their medians), a 95%
bootstrap interval of the gap (how far chance alone moves it: an interval
wider than the target means that one run can miss it with no difference at
all), the
p99s, how many mails the SMTP server accepted against how many hits were sent,
where delivery ran, and the 1-minute load average before and after the row (a
busy machine widens both distributions; rerun when the load is high). The
target is a gap below 1 % and p above 0.01 at 2,000 requests a side, on every
row, with every mail delivered from where the row says; the script exits with
status 1 when a row misses it, unless ``--no-check`` is given.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import random
import re
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from types import FrameType
from typing import IO, Any

import numpy as np
from _common import header, median, percentile, synthetic_clients, table
from scipy.stats import bootstrap, ks_2samp

from credrecovery.sqlite import SQLiteDirectory

HOST = "127.0.0.1"
BENCHMARKS = Path(__file__).resolve().parent
ROOT = BENCHMARKS.parent
CLIENTS = 10_000
# Numbers 100000-109999: every number, and so every identifier, has one length,
# and a miss named with the same digits is exactly as long as a hit.
FIRST_NUMBER = 100_000
SMTP_DELAY = 0.05
BROKER_URL = os.environ.get("CREDRECOVERY_BENCH_BROKER", "redis://127.0.0.1:6379/13")
REQUEST_TIMEOUT = 10.0
START_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0
MAX_ERRORS = 20
GAP_TARGET = 0.01
P_TARGET = 0.01
TICKET = re.compile(rb'(name="ticket" value=")([^"]*)"')
TOOLS = ("gunicorn", "uvicorn", "flask", "fastapi", "celery", "aiosmtpd", "scipy")


@dataclass(frozen=True)
class Row:
    """One server set-up: which HTTP server, which app, which delivery, mailer and directory."""

    name: str
    server: str
    delivery: str
    mailer: str = "library"
    directory: str = "sqlite"
    method: str = "request"

    @property
    def path(self) -> str:
        """Where the row's requests go: the link form, or the code form."""
        return "/forgot-code" if self.method == "code" else "/forgot"

    def command(self, port: int) -> list[str]:
        if self.server in ("uvicorn", "uvicorn-async"):
            factory = (
                "benchmarks._http_apps:fastapi_app"
                if self.server == "uvicorn"
                else "benchmarks._http_apps:fastapi_async_app"
            )
            return [
                sys.executable,
                "-m",
                "uvicorn",
                "--factory",
                factory,
                "--host",
                HOST,
                "--port",
                str(port),
                "--workers",
                "1",
                "--log-level",
                "warning",
                "--no-access-log",
            ]
        worker = (
            ["--worker-class", "sync"]
            if self.server == "sync"
            else ["--worker-class", "gthread", "--threads", "4"]
        )
        return [
            sys.executable,
            "-m",
            "gunicorn",
            "--bind",
            f"{HOST}:{port}",
            "--workers",
            "1",
            *worker,
            "--log-level",
            "warning",
            "benchmarks._http_apps:flask_app()",
        ]

    @property
    def label(self) -> str:
        server = {
            "sync": "gunicorn sync, Flask",
            "gthread": "gunicorn gthread ×4, Flask",
            "uvicorn": "uvicorn, FastAPI (def)",
            "uvicorn-async": "uvicorn, FastAPI (async def)",
        }[self.server]
        directory = (
            ""
            if self.directory == "sqlite"
            else (
                "; PostgreSQL (asyncpg)"
                if self.server == "uvicorn-async"
                else "; PostgreSQL (psycopg)"
            )
        )
        mailer = ", host mailer" if self.mailer == "host" else ""
        method = "; request_code()" if self.method == "code" else ""
        return f"{server}{directory}; {self.delivery}{mailer}{method}"

    @property
    def delivery_process(self) -> bool | None:
        """Whether delivery must run in a process of its own (True) or in threads (False).

        The default ``BackgroundMailer`` takes the library's ``SMTPMailer`` to a
        delivery process and keeps a host's mailer in threads of the web
        process; other deliveries are not checked (``None``).
        """
        if self.delivery != "background":
            return None
        return self.mailer == "library"


ROWS = {
    row.name: row
    for row in (
        Row("sync", "sync", "background"),
        Row("gthread", "gthread", "background"),
        Row("uvicorn", "uvicorn", "background"),
        Row("sync-celery", "sync", "celery"),
        Row("gthread-celery", "gthread", "celery"),
        Row("uvicorn-celery", "uvicorn", "celery"),
        # A host's own mailer: delivery stays in threads of the web process.
        Row("sync-host", "sync", "background", mailer="host"),
        Row("gthread-host", "gthread", "background", mailer="host"),
        Row("uvicorn-host", "uvicorn", "background", mailer="host"),
        # The SQLAlchemy directories on PostgreSQL.
        Row("pg-sync", "sync", "background", directory="postgresql"),
        Row("pg-async", "uvicorn-async", "background", directory="postgresql"),
        # Recovery by code: request_code() returns a ticket, of one length on both sides.
        Row("sync-code", "sync", "background", method="code"),
        Row("uvicorn-code", "uvicorn", "background", method="code"),
        Row("pg-async-code", "uvicorn-async", "background", directory="postgresql", method="code"),
        # Baselines, not targets: the same apps with a delivery that drops every job.
        Row("sync-nomail", "sync", "none"),
        Row("gthread-nomail", "gthread", "none"),
        Row("uvicorn-nomail", "uvicorn", "none"),
        Row("pg-sync-null", "sync", "none", directory="postgresql"),
        Row("pg-async-null", "uvicorn-async", "none", directory="postgresql"),
    )
}
TARGET_ROWS = [name for name, row in ROWS.items() if row.delivery != "none"]


class RowFailed(Exception):
    """A row could not be measured: a server did not start or requests failed."""


@dataclass
class Result:
    row: Row
    hits: list[float] = field(default_factory=list)
    misses: list[float] = field(default_factory=list)
    hits_sent: int = 0
    delivered: int = 0
    unexpected: int = 0
    errors: int = 0
    mail_wait: float = 0.0
    load_before: float = 0.0
    load_after: float = 0.0
    skipped: str = ""
    logs: dict[str, Counter[str]] = field(default_factory=dict)
    # What GET /ready said at the start, and the host mailer's count at the end.
    process_id: int | None = None
    host_sent: int | None = None

    @property
    def placed_right(self) -> bool:
        """Whether delivery ran where the row says it must (see Row.delivery_process)."""
        expected = self.row.delivery_process
        if expected is None:
            return True
        in_process = self.process_id is not None
        if in_process != expected:
            return False
        # A host's mailer object must have sent every mail itself.
        return expected or self.host_sent == self.delivered

    @property
    def placement(self) -> str:
        if self.row.delivery != "background":
            return "—"
        where = f"process {self.process_id}" if self.process_id is not None else "threads"
        if self.host_sent is not None:
            where += f"; host mailer sent {self.host_sent}"
        return where

    @property
    def gap(self) -> float:
        return (median(self.hits) - median(self.misses)) / median(self.misses)

    @property
    def p_value(self) -> float:
        return float(ks_2samp(self.hits, self.misses).pvalue)

    @property
    def gap_interval(self) -> tuple[float, float]:
        """A 95% bootstrap interval of the gap of medians: how far chance alone moves it."""

        def gap(hits: Any, misses: Any, axis: int) -> Any:
            return (np.median(hits, axis=axis) - np.median(misses, axis=axis)) / np.median(
                misses, axis=axis
            )

        found = bootstrap(
            (np.asarray(self.hits), np.asarray(self.misses)),
            gap,
            n_resamples=2000,
            method="percentile",
            rng=np.random.default_rng(1),
        ).confidence_interval
        return float(found.low), float(found.high)

    @property
    def meets_target(self) -> bool:
        return (
            not self.skipped
            and self.errors == 0
            and bool(self.hits)
            and abs(self.gap) < GAP_TARGET
            and self.p_value > P_TARGET
            and self.delivered == self.hits_sent
            and self.unexpected == 0
            and self.placed_right
        )


@dataclass(frozen=True)
class Call:
    """One prepared request: whether it names a client, and its bytes on the wire."""

    hit: bool
    wire: bytes
    recipient: str | None


def identifier(kind: str, n: int, hit: bool, misses: str = "among") -> str:
    """The value a request names: client ``n``'s, or on a miss one no client has.

    A directory's lookup reads the rows that follow the value in its index, so
    where misses sort decides which rows they read: ``"before"`` misses
    (``absent<n>@...``, or a number past the last) all read the same first
    rows of the index, which stay in every cache, while each hit reads rows of
    its own; ``"among"`` misses (``client<n>@example.net``) sort right after
    client ``n`` and read rows spread over the index as the hits' are.
    """
    if kind == "client_number":
        return str(n if hit else n + FIRST_NUMBER)
    if misses == "among" and not hit:
        return f"client{n}@example.net" if kind == "email" else f"client{n}.example.net"
    stem = "client" if hit else "absent"
    return f"{stem}{n}@example.com" if kind == "email" else f"{stem}{n}.example.com"


def wire(port: int, kind: str, value: str, path: str = "/forgot") -> bytes:
    body = json.dumps({"kind": kind, "value": value}).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


def plan(
    port: int,
    kind: str,
    requests: int,
    warmup: int,
    seed: int,
    misses: str = "among",
    path: str = "/forgot",
) -> tuple[list[Call], list[Call]]:
    """The warm-up calls and the measured calls, in a random order fixed by ``seed``."""
    rng = random.Random(seed)
    numbers = range(FIRST_NUMBER, FIRST_NUMBER + CLIENTS)
    hit_numbers = rng.sample(numbers, requests + warmup)
    miss_numbers = rng.sample(numbers, requests + warmup)

    def call(hit: bool, n: int) -> Call:
        return Call(
            hit,
            wire(port, kind, identifier(kind, n, hit, misses), path),
            f"client{n}@example.com" if hit else None,
        )

    hits = [call(True, n) for n in hit_numbers]
    misses = [call(False, n) for n in miss_numbers]
    warm = hits[:warmup] + misses[:warmup]
    measured = hits[warmup:] + misses[warmup:]
    rng.shuffle(warm)
    rng.shuffle(measured)
    return warm, measured


def blank_ticket(body: bytes) -> bytes:
    """``body`` with a code page's ticket replaced by as many ``x``: equal for equal lengths."""
    return TICKET.sub(lambda m: m.group(1) + b"x" * len(m.group(2)) + b'"', body)


def timed_post(port: int, payload: bytes) -> tuple[int, bytes, int]:
    """Send ``payload`` over a new connection; return (status, body, nanoseconds)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.settimeout(REQUEST_TIMEOUT)
    chunks: list[bytes] = []
    try:
        started = time.perf_counter_ns()
        sock.connect((HOST, port))
        sock.sendall(payload)
        while chunk := sock.recv(65536):
            chunks.append(chunk)
        elapsed = time.perf_counter_ns() - started
    finally:
        sock.close()
    response = b"".join(chunks)
    head, _, body = response.partition(b"\r\n\r\n")
    parts = head.split(b" ", 2)
    status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
    return status, body, elapsed


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def load_average() -> float:
    return os.getloadavg()[0]


def loads() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


class ProcessGroup:
    """Processes started in sessions of their own, stopped together, newest first."""

    def __init__(self) -> None:
        self._procs: list[subprocess.Popen[str]] = []

    def start(
        self,
        command: list[str],
        env: dict[str, str],
        log: Path,
        stdout: int | IO[str] | None = None,
    ) -> subprocess.Popen[str]:
        errors = log.open("w")
        try:
            proc = subprocess.Popen(
                command,
                cwd=ROOT,
                env=env,
                text=True,
                start_new_session=True,
                stdin=subprocess.DEVNULL,
                stdout=stdout if stdout is not None else errors,
                stderr=errors,
            )
        finally:
            errors.close()
        self._procs.append(proc)
        return proc

    def stop(self) -> None:
        while self._procs:
            proc = self._procs.pop()
            for sig, wait in ((signal.SIGTERM, STOP_TIMEOUT), (signal.SIGKILL, STOP_TIMEOUT)):
                if proc.poll() is not None:
                    break
                # The whole session: gunicorn's and celery's workers are its children.
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, sig)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(wait)
            if proc.stdout is not None:
                proc.stdout.close()


class SMTPSink:
    """The SMTP server process and a thread that counts what it accepted."""

    def __init__(self, procs: ProcessGroup, env: dict[str, str], log: Path) -> None:
        self.recipients: Counter[str] = Counter()
        self.port = 0
        self._cond = threading.Condition()
        self._proc = procs.start(
            [sys.executable, str(BENCHMARKS / "_http_smtp.py"), "--delay", str(SMTP_DELAY)],
            env,
            log,
            stdout=subprocess.PIPE,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        with self._cond:
            if (
                not self._cond.wait_for(
                    lambda: self.port or self._proc.poll() is not None, START_TIMEOUT
                )
                or not self.port
            ):
                raise RowFailed("the SMTP server did not start: " + tail(log))

    def _read(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            word, _, rest = line.strip().partition(" ")
            with self._cond:
                if word == "listening":
                    self.port = int(rest)
                elif word == "accepted":
                    self.recipients[rest] += 1
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_for(self, count: int, timeout: float) -> Counter[str]:
        """Wait until ``count`` mails were accepted, or ``timeout`` s; return their recipients."""
        with self._cond:
            self._cond.wait_for(lambda: sum(self.recipients.values()) >= count, timeout)
            return Counter(self.recipients)


def tail(log: Path, lines: int = 15) -> str:
    try:
        text = log.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(text[-lines:]) or "(empty log)"


def wait_until(
    ready: Callable[[], bool], proc: subprocess.Popen[str], what: str, log: Path
) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RowFailed(f"{what} exited with status {proc.returncode}:\n{tail(log)}")
        with contextlib.suppress(OSError, RowFailed):
            if ready():
                return
        time.sleep(0.2)
    raise RowFailed(f"{what} was not ready after {START_TIMEOUT:.0f} s:\n{tail(log)}")


def ready_state(port: int) -> dict[str, object] | None:
    """What ``GET /ready`` answers (where delivery runs), or ``None`` before the app is up."""
    request = f"GET /ready HTTP/1.1\r\nHost: {HOST}:{port}\r\nConnection: close\r\n\r\n"
    status, body, _ = timed_post(port, request.encode())
    if status != 200:
        return None
    state = json.loads(body)
    if not isinstance(state, dict):
        raise RowFailed(f"GET /ready answered {body[:200]!r}")
    return state


def host_sent(port: int, delivered: int) -> int | None:
    """How many mails the app's host mailer object sent, once it counted ``delivered``.

    The SMTP server reports a mail before the mailer's ``send`` returns and
    counts it, so the count may lag the server's by the mails in flight.
    """
    deadline = time.monotonic() + STOP_TIMEOUT
    while True:
        sent = (ready_state(port) or {}).get("host_mailer_sent")
        if not isinstance(sent, int):
            return None
        if sent >= delivered or time.monotonic() > deadline:
            return sent
        time.sleep(0.1)


def http_ready(port: int) -> bool:
    return ready_state(port) is not None


def celery_ready() -> bool:
    from celery import Celery

    client = Celery("credrecovery_bench_probe", broker=BROKER_URL)
    try:
        return bool(client.control.ping(timeout=1.0))
    finally:
        client.close()


def flush_broker() -> None:
    import redis

    with redis.Redis.from_url(BROKER_URL) as conn:
        conn.flushdb()


@contextlib.contextmanager
def running(row: Row, tmp: Path, log: Path) -> Iterator[tuple[int, SMTPSink]]:
    """Start the SMTP server, the Celery worker if any, and the web server; stop them after."""
    procs = ProcessGroup()
    env = dict(
        os.environ,
        CREDRECOVERY_BENCH_DB=str(tmp / "clients.sqlite3"),
        CREDRECOVERY_BENCH_SECRET=secrets.token_urlsafe(32),
        CREDRECOVERY_BENCH_DELIVERY=row.delivery,
        CREDRECOVERY_BENCH_BROKER=BROKER_URL,
        CREDRECOVERY_BENCH_MAILER=row.mailer,
        CREDRECOVERY_BENCH_DIRECTORY=row.directory,
        PYTHONPATH=os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]),
    )
    try:
        sink = SMTPSink(procs, env, tmp / "smtp.log")
        env["CREDRECOVERY_BENCH_SMTP_PORT"] = str(sink.port)
        if row.delivery == "celery":
            flush_broker()
            worker_log = tmp / "celery.log"
            # Celery warns at length when run as root, as containers often do.
            quiet = ",".join(
                filter(
                    None,
                    [env.get("PYTHONWARNINGS"), "ignore:You're running the worker with superuser"],
                )
            )
            worker = procs.start(
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "--quiet",
                    "-A",
                    "benchmarks._http_celery_app:app",
                    "worker",
                    "--pool=threads",
                    "--concurrency=8",
                    "--loglevel=warning",
                    "--without-gossip",
                    "--without-mingle",
                    "--hostname",
                    f"bench-{os.getpid()}@%h",
                ],
                dict(env, PYTHONWARNINGS=quiet),
                worker_log,
            )
            wait_until(celery_ready, worker, "the Celery worker", worker_log)
        port = free_port()
        server = procs.start(row.command(port), env, log)
        wait_until(lambda: http_ready(port), server, "the web server", log)
        yield port, sink
    finally:
        procs.stop()
        if row.delivery == "celery":
            with contextlib.suppress(Exception):
                flush_broker()


@contextlib.contextmanager
def loaded(row: Row, tmp: Path) -> Iterator[None]:
    """The row's directory filled with the clients: a SQLite file in ``tmp``, or a
    PostgreSQL schema of the benchmark's own, dropped afterwards."""
    clients = synthetic_clients(CLIENTS, start=FIRST_NUMBER)
    if row.directory == "sqlite":
        SQLiteDirectory(tmp / "clients.sqlite3").bulk_add(clients)
        yield
        return
    try:
        import _http_pg

        _http_pg.load(clients)
    except Exception as exc:  # any driver or server error fails this row alone
        with contextlib.suppress(Exception):
            _http_pg.drop()
        raise RowFailed(f"could not load PostgreSQL: {type(exc).__name__}: {exc}") from exc
    try:
        yield
    finally:
        _http_pg.drop()


def run_row(row: Row, args: argparse.Namespace) -> Result:
    result = Result(row)
    result.load_before = load_average()
    with tempfile.TemporaryDirectory(prefix="credrecovery-http-") as name, loaded(row, Path(name)):
        tmp = Path(name)
        log = tmp / "server.log"
        with running(row, tmp, log) as (port, sink):
            state = ready_state(port) or {}
            pid = state.get("process_id")
            result.process_id = pid if isinstance(pid, int) else None
            warm, measured = plan(
                port, args.kind, args.requests, args.warmup, args.seed, args.misses, row.path
            )
            expected = Counter(
                call.recipient for call in warm + measured if call.recipient is not None
            )
            bodies: set[bytes] = set()
            for index, call in enumerate(warm + measured):
                try:
                    status, body, elapsed = timed_post(port, call.wire)
                except OSError as exc:
                    status, body, elapsed = 0, str(exc).encode(), 0
                if status != 200:
                    result.errors += 1
                    if result.errors > MAX_ERRORS:
                        raise RowFailed(
                            f"more than {MAX_ERRORS} failed requests "
                            f"(last: {status} {body[:200]!r}):\n{tail(log)}"
                        )
                    continue
                bodies.add(blank_ticket(body))
                if index >= len(warm):
                    (result.hits if call.hit else result.misses).append(elapsed / 1e6)
            if len(bodies) > 1:
                raise RowFailed("hits and misses got different pages")
            if row.delivery == "none":
                expected = Counter()
            result.hits_sent = sum(expected.values())
            waited = time.monotonic()
            got = sink.wait_for(result.hits_sent, args.mail_wait)
            result.mail_wait = time.monotonic() - waited
            result.delivered = sum((got & expected).values())
            result.unexpected = sum((got - expected).values())
            if row.mailer == "host":
                result.host_sent = host_sent(port, result.delivered)
        for what, path in (("web server", log), ("Celery worker", tmp / "celery.log")):
            if path.exists():
                lines = Counter(
                    line.strip()
                    for line in path.read_text(errors="replace").splitlines()
                    if line.strip()
                )
                if lines:
                    result.logs[what] = lines
    result.load_after = load_average()
    return result


def report(results: list[Result], args: argparse.Namespace) -> None:
    rows: list[list[object]] = []
    for r in results:
        if r.skipped:
            rows.append(
                [
                    r.row.name,
                    r.row.label,
                    "—",
                    "—",
                    "—",
                    "—",
                    "—",
                    "—",
                    "—",
                    "—",
                    "—",
                    "—",
                    f"{r.load_before:.2f} → {r.load_after:.2f}",
                    f"skipped: {r.skipped}",
                ]
            )
            continue
        mails = f"{r.delivered}/{r.hits_sent}" + (
            f" (+{r.unexpected} unexpected)" if r.unexpected else ""
        )
        rows.append(
            [
                r.row.name,
                r.row.label,
                f"{len(r.hits)}/{len(r.misses)}",
                f"{median(r.hits):.3f}",
                f"{median(r.misses):.3f}",
                f"{r.gap:+.2%}",
                "{:+.2%} to {:+.2%}".format(*r.gap_interval),
                f"{r.p_value:.3g}",
                f"{percentile(r.hits, 99):.3f}",
                f"{percentile(r.misses, 99):.3f}",
                mails,
                f"{r.mail_wait:.1f}",
                r.placement,
                f"{r.load_before:.2f} → {r.load_after:.2f}",
                "meets target"
                if r.meets_target
                else "misses target"
                + (f" ({r.errors} failed requests)" if r.errors else "")
                + ("" if r.placed_right else " (delivery ran in the wrong place)"),
            ]
        )
    print(
        f"{CLIENTS:,} clients in SQLite, or for the pg- rows in PostgreSQL (schema "
        f"{os.environ.get('CREDRECOVERY_BENCH_PG_SCHEMA', 'credrecovery_bench')}); "
        f"identifiers by {args.kind}, misses sorted {args.misses} the clients; "
        f"the SMTP server answers "
        f"DATA after {SMTP_DELAY * 1000:.0f} ms; {args.warmup} warm-up requests a side; "
        f"seed {args.seed}. Mails are counted against every hit sent, warm-up included; "
        f"the mail wait is how long the script waited for them after the last request "
        f"(at most {args.mail_wait:g} s).\n"
    )
    table(
        [
            "row",
            "server; delivery",
            "hits/misses",
            "median hit (ms)",
            "median miss (ms)",
            "gap of medians",
            "its 95% interval",
            "KS p-value",
            "p99 hit (ms)",
            "p99 miss (ms)",
            "mails accepted/hits",
            "mail wait (s)",
            "delivery ran in",
            "load (1 min) before → after",
            "verdict",
        ],
        rows,
    )
    print(
        f"Target: |gap| below {GAP_TARGET:.0%} and p above {P_TARGET} at 2,000 requests a "
        "side, on every row, with every hit's mail accepted, and background delivery in a "
        "process of its own with the library's mailer, in threads (every mail sent by the "
        "host's object) with a host's mailer."
    )
    for r in results:
        for what, lines in r.logs.items():
            print(f"\n{r.row.name}: the {what} logged {sum(lines.values())} line(s); most often:")
            for line, count in lines.most_common(5):
                print(f"    {count} × {line[:160]}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="measured requests per side")
    parser.add_argument("--warmup", type=int, default=50, help="unmeasured requests per side")
    parser.add_argument(
        "--rows",
        default=",".join(TARGET_ROWS),
        help="comma-separated subset of: " + ", ".join(ROWS),
    )
    parser.add_argument("--kind", default="email", choices=("email", "domain", "client_number"))
    parser.add_argument(
        "--misses",
        default="among",
        choices=("among", "before"),
        help="where the misses' values sort in the directory's index: "
        "before every client (absent<n>@example.com) or each right "
        "after a client (client<n>@example.net); not by client_number",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--mail-wait",
        type=float,
        default=60.0,
        help="seconds to wait after the requests for every hit's mail",
    )
    parser.add_argument("--no-check", action="store_true", help="report only; exit 0")
    args = parser.parse_args()
    names = [name.strip() for name in args.rows.split(",") if name.strip()]
    unknown = [name for name in names if name not in ROWS]
    if unknown or not names:
        parser.error(f"unknown rows {unknown}; choose from {', '.join(ROWS)}")
    if args.misses == "among" and args.kind == "client_number":
        parser.error(
            "--misses among needs --kind email or domain: every number of the "
            "clients' range is taken"
        )
    if args.requests < 1 or args.warmup < 0 or args.requests + args.warmup > CLIENTS:
        parser.error(f"need 1 <= requests and requests + warmup <= {CLIENTS}")

    def stop(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    header("request() timing over HTTP: existing vs missing identifiers")
    print(
        "servers: "
        + ", ".join(
            f"{name} {metadata.version(name)}"
            for name in TOOLS
            if importlib.util.find_spec(name) is not None
        )
        + "\n"
    )
    celery_missing = importlib.util.find_spec("credrecovery.celery") is None
    results: list[Result] = []
    for name in names:
        row = ROWS[name]
        if row.delivery == "celery" and celery_missing:
            reason = "credrecovery.celery is not installed"
            print(f"{name}: skipped, {reason}", file=sys.stderr)
            results.append(
                Result(row, skipped=reason, load_before=load_average(), load_after=load_average())
            )
            continue
        print(f"{name}: {row.label} (load {loads()}) ...", file=sys.stderr, flush=True)
        started = time.monotonic()
        try:
            result = run_row(row, args)
        except RowFailed as exc:
            print(f"{name}: failed: {exc}", file=sys.stderr)
            results.append(
                Result(
                    row,
                    skipped="failed, see above",
                    load_before=load_average(),
                    load_after=load_average(),
                )
            )
            continue
        print(
            f"{name}: done in {time.monotonic() - started:.0f} s (load {loads()})",
            file=sys.stderr,
            flush=True,
        )
        results.append(result)
    report(results, args)
    if args.no_check:
        return 0
    return 0 if all(r.meets_target for r in results) else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted; every server started was stopped", file=sys.stderr)
        sys.exit(130)
