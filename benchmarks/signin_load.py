"""A burst of wrong-key sign-ins against the Flask panel: with and without the hashing cap.

For each row the script builds a SQLite directory of 50 clients in a
temporary directory, all sharing one hash made with the library's default
policy (argon2id, 64 MiB, 3 passes, 4 lanes), and serves the panel example,
``examples.flask_panel``, as deployed: ``create_app()`` under gunicorn's
gthread worker (one worker process, ``--threads`` threads), with the default
hashing policy and rate limits, behind one trusted proxy hop
(``PANEL_PROXY_HOPS=1``). It then opens 50 sessions, each with its own
cookies and its own ``X-Forwarded-For`` address (50 requesters, as from a
botnet), fetches the sign-in form of each for its CSRF token, and then, all
at once, has each POST a wrong key for a client number of its own to
``/login``. Each POST is timed from just before it is sent to the end of its
response. No mail is sent: the SMTP port the panel is given is never used.

Each thread count runs twice, in one run: with the cap lifted
(``set_hashing_limit(None)``, "no cap": the behaviour before the cap existed)
and with the library's default cap (as many slots as the cores the worker may
use, at least 2, and a 2-second wait). Before the burst, one wrong sign-in
warms the service up (its stand-in hash for unknown numbers).

Reported per row: the latency of the 50 POSTs (p50, p95, max), how many got
which status (401: the wrong key, refused as such; 503: ``Overloaded``, every
hashing slot busy past the wait, with ``Retry-After``; anything else is
counted too), the worker's resident memory just before the burst and at its
peak (``VmHWM`` of ``/proc/<worker>/status``), and the 1-minute load average
before and after the row.

    python benchmarks/signin_load.py [--threads 8,50] [--sessions 50]

The panel process loads the cap from ``CREDRECOVERY_BENCH_SLOTS``
(``default``, ``none`` or a number) through :func:`panel_app`, the factory
gunicorn is given.
"""

from __future__ import annotations

import argparse
import contextlib
import http.cookiejar
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
BENCHMARKS = Path(__file__).resolve().parent
ROOT = BENCHMARKS.parent
SECRET = "signin-load-benchmark-secret-0123456789abcdef"
WRONG_KEY = "Not-The-Right-Key-0123"
FIRST_NUMBER = 500_000
REQUEST_TIMEOUT = 120.0
START_TIMEOUT = 60.0
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
HEADING = re.compile(r"<h1[^>]*>(.*?)</h1>", re.DOTALL)


def panel_app() -> Any:
    """The gunicorn factory: the panel example, under the cap ``CREDRECOVERY_BENCH_SLOTS`` names."""
    from credrecovery import set_hashing_limit

    slots = os.environ.get("CREDRECOVERY_BENCH_SLOTS", "default")
    if slots == "none":
        set_hashing_limit(None)
    elif slots != "default":
        set_hashing_limit(int(slots))
    from examples.flask_panel import create_app

    return create_app()


@dataclass
class Result:
    threads: int
    cap: str
    latencies: list[float] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)
    rss_before_kib: int = 0
    peak_kib: int = 0
    load_before: float = 0.0
    load_after: float = 0.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def seed(db: Path, sessions: int) -> None:
    """``sessions`` clients sharing one hash of the default policy (one hash, not fifty)."""
    from credrecovery import default_context
    from credrecovery.sqlite import SQLiteDirectory

    key_hash = default_context().hash("the-clients-own-key-0123")
    with SQLiteDirectory(db) as directory:
        for n in range(FIRST_NUMBER, FIRST_NUMBER + sessions):
            directory.add_client(str(n), f"client{n}@example.com", key_hash=key_hash)


def status_kib(pid: int, field_name: str) -> int:
    """A ``kB`` field of ``/proc/<pid>/status`` (``VmRSS``, ``VmHWM``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    raise LookupError(field_name)


def worker_of(master: int) -> int:
    """The pid of gunicorn's one worker: the master's child that runs the app."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                fields = stat.read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == master:
                    return int(stat.parent.name)
        time.sleep(0.1)
    raise RuntimeError("gunicorn started no worker")


class Session:
    """One client of the panel: its cookies, its address, and its sign-in form's CSRF token."""

    def __init__(self, base: str, address: str) -> None:
        self.base = base
        self.address = address
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
        )
        self.token = ""

    def _open(self, request: urllib.request.Request) -> tuple[int, dict[str, str], bytes]:
        request.add_header("X-Forwarded-For", self.address)
        try:
            with self.opener.open(request, timeout=REQUEST_TIMEOUT) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as error:
            with error:
                return error.code, dict(error.headers), error.read()

    def get_form(self) -> None:
        status, _, body = self._open(urllib.request.Request(self.base + "/login"))
        found = CSRF.search(body.decode("utf-8", "replace"))
        if status != 200 or found is None:
            raise RuntimeError(f"GET /login answered {status} without a CSRF token")
        self.token = found.group(1)

    def sign_in(self, number: str) -> tuple[str, float]:
        """POST a wrong key; the status (``503+Retry-After`` when refused so) and seconds taken."""
        data = urllib.parse.urlencode(
            {"number": number, "key": WRONG_KEY, "csrf_token": self.token}
        ).encode()
        request = urllib.request.Request(self.base + "/login", data=data, method="POST")
        started = time.perf_counter()
        status, headers, body = self._open(request)
        elapsed = time.perf_counter() - started
        label = str(status)
        if "Retry-After" in headers:
            label += f" (Retry-After {headers['Retry-After']})"
        elif status not in (401, 503):
            heading = HEADING.search(body.decode("utf-8", "replace"))
            label += f" ({heading.group(1).strip() if heading else 'no heading'})"
        return label, elapsed


def burst(base: str, sessions: int) -> tuple[list[float], Counter[str]]:
    """Open ``sessions`` sessions, then sign each in with a wrong key, all at once."""
    clients = [Session(base, f"198.51.100.{n + 1}") for n in range(sessions)]
    barrier = threading.Barrier(sessions)
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    lock = threading.Lock()

    def run(index: int, client: Session) -> None:
        try:
            client.get_form()
        finally:
            barrier.wait(START_TIMEOUT)
        try:
            label, elapsed = client.sign_in(str(FIRST_NUMBER + index))
        except OSError as exc:
            label, elapsed = f"error {type(exc).__name__}", float("nan")
        with lock:
            statuses[label] += 1
            if elapsed == elapsed:
                latencies.append(elapsed)

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(REQUEST_TIMEOUT * 2)
    return latencies, statuses


def run_row(threads: int, cap: str, db: Path, sessions: int, logs: Path) -> Result:
    port = free_port()
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]),
        CREDRECOVERY_SECRET_KEY=SECRET,
        PANEL_DB=str(db),
        PANEL_SMTP_HOST=HOST,
        PANEL_SMTP_PORT=str(free_port()),
        PANEL_SENDER="Client Panel <panel@example.com>",
        PANEL_BASE_URL=f"http://{HOST}:{port}",
        PANEL_PROXY_HOPS="1",
        CREDRECOVERY_BENCH_SLOTS=cap,
    )
    log = logs / f"gunicorn-{threads}-{cap}.log"
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "--bind",
        f"{HOST}:{port}",
        "--workers",
        "1",
        "--worker-class",
        "gthread",
        "--threads",
        str(threads),
        "--timeout",
        "300",
        "--graceful-timeout",
        "5",
        "--log-level",
        "warning",
        "benchmarks.signin_load:panel_app()",
    ]
    result = Result(threads, cap)
    with log.open("w") as errors:
        proc = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=errors,
            stderr=errors,
            start_new_session=True,
        )
    try:
        base = f"http://{HOST}:{port}"
        deadline = time.monotonic() + START_TIMEOUT
        warm = Session(base, "192.0.2.1")
        while True:
            try:
                warm.get_form()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the panel did not start:\n" + log.read_text()) from None
                time.sleep(0.2)
        warm.sign_in("1")  # the stand-in hash for unknown numbers
        worker = worker_of(proc.pid)
        result.load_before = os.getloadavg()[0]
        result.rss_before_kib = status_kib(worker, "VmRSS")
        result.latencies, result.statuses = burst(base, sessions)
        result.peak_kib = status_kib(worker, "VmHWM")
        result.load_after = os.getloadavg()[0]
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)
    return result


def main() -> int:
    from _common import header, median, percentile, table

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--threads", default="8,50", help="gunicorn gthread thread counts, one pair of rows each"
    )
    parser.add_argument("--sessions", type=int, default=50, help="concurrent wrong sign-ins")
    args = parser.parse_args()
    from credrecovery import hashing_limit

    header("Wrong-key sign-ins at once against the Flask panel, with and without the cap")
    default = hashing_limit()
    print(f"uptime: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")
    print(
        f"default cap here: {default.slots} slots, {default.wait:g} s wait; "
        f"{args.sessions} sessions\n"
    )
    results = []
    with tempfile.TemporaryDirectory(prefix="signin-load-") as tmp:
        db = Path(tmp) / "clients.sqlite3"
        seed(db, args.sessions)
        for threads in (int(t) for t in args.threads.split(",")):
            for cap in ("none", "default"):
                results.append(run_row(threads, cap, db, args.sessions, Path(tmp)))
                row = results[-1]
                print(f"done: {threads} threads, cap {cap}: {dict(row.statuses)}", flush=True)
    print()
    rows = []
    for r in results:
        ms = sorted(x * 1000 for x in r.latencies)
        cap = "none" if r.cap == "none" else f"{default.slots} slots, {default.wait:g} s"
        rows.append(
            [
                r.threads,
                cap,
                f"{median(ms):.0f}",
                f"{percentile(ms, 95):.0f}",
                f"{ms[-1]:.0f}",
                ", ".join(f"{label}: {n}" for label, n in sorted(r.statuses.items())),
                f"{r.rss_before_kib / 1024:.0f}",
                f"{r.peak_kib / 1024:.0f}",
                f"{r.load_before:.2f} → {r.load_after:.2f}",
            ]
        )
    table(
        [
            "gthread threads",
            "cap",
            "p50 ms",
            "p95 ms",
            "max ms",
            "statuses",
            "RSS before MiB",
            "peak RSS MiB",
            "load 1 min",
        ],
        rows,
    )
    print(f"uptime: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
