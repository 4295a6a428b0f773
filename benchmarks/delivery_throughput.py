"""How many confirmation mails per second does delivery send, next to a plain smtplib loop?

Every row talks to a real SMTP sink (aiosmtpd, ``_http_smtp.py``) on
127.0.0.1, run as a process of its own so that it takes no interpreter lock
from the process measured, and counts what the sink accepted. The sink
offers PIPELINING, as Postfix and the large providers' relays do; smtplib
never pipelines, the library's ``SMTPMailer`` does where it is offered:

* (a) the baseline: one smtplib connection sending messages composed
  beforehand, one after the other;
* (b) the default background delivery (a :class:`~credrecovery.BackgroundMailer`
  around an :class:`~credrecovery.smtp.SMTPMailer`, which composes and sends
  in its delivery process), composing included;
* (c) Celery delivery with one worker process (``--pool=solo``, Redis broker),
  from the first mail to the last of a queue filled beforehand (the worker
  is stopped with SIGSTOP meanwhile, so that publishing takes no CPU from it),
  with the CPU time that process spent per mail, next to a task that does
  nothing, with the delivery task's options and a sealed job for payload,
  through the same worker: what Celery itself allows. ``--celery-pool``,
  ``--celery-concurrency`` and ``--celery-records none`` run the worker
  otherwise, to see where the time goes (the CPU figure counts the worker's
  main process, so not a prefork pool's children). ``--celery-only`` runs
  rows (a) and (c) alone, (a)'s passes before and after (c)'s, to compare
  two versions of the task quickly;
* (d) the background delivery against a sink that answers DATA after 50 ms,
  against what its workers could do at best (``workers / 0.05`` mails/s),
  next to as many smtplib threads sending messages composed beforehand, one
  connection each: what the machine allows of that best at the time; and
  next to the same delivery against a sink that does not offer PIPELINING;
* (e) the CPU time the delivery process spent per mail in (b), composing
  included, read from ``/proc``, next to the CPU time of composing and
  sending the same mails in one thread of this process: what the machine
  gives at the time.

The background delivery waits a random delay (0.2 to 2 s) before each mail, so
that its work lands at times unrelated to the request; here that delay is set
to 0 through ``BackgroundMailer(delay=(0, 0))`` (and ``CeleryDelivery(delay=(0,
0))``), which measures the sending and nothing else.

Each row makes ``--repeats`` passes, (a) and (b) in turn, and keeps the best
(for (e), the least CPU): a shared machine slows passes down, never up.

    python benchmarks/delivery_throughput.py [--mails 1000] [--slow-mails 300] [--repeats 3]
                                             [--no-celery] [--celery-pool solo]
                                             [--celery-concurrency N] [--celery-records broker]
                                             [--celery-only]
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import secrets
import signal
import smtplib
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Literal

import redis
from _common import header, table

from credrecovery import BackgroundMailer, RecoveryService
from credrecovery.jobs import ConfirmationJob
from credrecovery.memory import MemoryDirectory
from credrecovery.smtp import SMTPMailer

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# Database 13, which the test sessions leave alone (see tests/helpers/redis_server.py).
BROKER = os.environ.get("CREDRECOVERY_BENCH_BROKER", "redis://127.0.0.1:6379/13")
SECRET = secrets.token_urlsafe(32)
CONFIRM_URL = "https://panel.example.com/recover/{token}"
SENDER = "Example Hosting <noreply@hosting.example>"
SLOW_DELAY = 0.05
TARGETS = {"background": 0.5, "celery": 0.35, "slow": 0.9, "cpu_ms": 2.0}


class Sink:
    """The sink process, and a count of the mails it accepted (read from its stdout)."""

    def __init__(self, delay: float, pipelining: bool = True) -> None:
        self._process = subprocess.Popen(
            [
                sys.executable,
                str(HERE / "_http_smtp.py"),
                "--delay",
                str(delay),
                *([] if pipelining else ["--no-pipelining"]),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._process.stdout is not None
        first = self._process.stdout.readline().split()
        self.port = int(first[1])
        self._accepted = 0
        #: When each mail was accepted, as this process read it (perf_counter).
        self.times: list[float] = []
        self._changed = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            if line.startswith("accepted"):
                with self._changed:
                    self._accepted += 1
                    self.times.append(time.perf_counter())
                    self._changed.notify_all()

    @property
    def accepted(self) -> int:
        with self._changed:
            return self._accepted

    def wait_for(self, count: int, timeout: float = 300.0) -> None:
        with self._changed:
            if not self._changed.wait_for(lambda: self._accepted >= count, timeout):
                raise RuntimeError(f"the sink accepted {self._accepted} of {count} mails")

    def stop(self) -> None:
        self._process.terminate()
        self._process.wait()


@contextlib.contextmanager
def sink(delay: float, pipelining: bool = True) -> Iterator[Sink]:
    running = Sink(delay, pipelining)
    try:
        yield running
    finally:
        running.stop()


def jobs(count: int) -> list[ConfirmationJob]:
    now = time.time()
    return [
        ConfirmationJob(
            recipient=f"client{n}@example.com",
            name=f"Client {n}",
            language="en",
            sender=SENDER,
            clients=((str(10_000 + n), secrets.token_urlsafe(16)[:22]),),
            issued_at=now,
        )
        for n in range(count)
    ]


def service(mailer: SMTPMailer, delivery: BackgroundMailer | Literal["sync"]) -> RecoveryService:
    return RecoveryService(
        MemoryDirectory(),
        mailer,
        secret_key=SECRET,
        confirm_url=CONFIRM_URL,
        sender=SENDER,
        rate_limits=None,
        delivery=delivery,
    )


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of process ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Baseline:
    """(a): one smtplib connection sending messages composed beforehand."""

    def __init__(self, port: int, mails: int, running: Sink) -> None:
        composer = service(SMTPMailer("127.0.0.1", port), "sync").composer
        self._messages = [composer.confirmation(job) for job in jobs(mails)]
        self._running = running
        self._client = smtplib.SMTP("127.0.0.1", port, local_hostname="localhost")
        for message in self._messages[:20]:
            self._client.send_message(message)

    def run(self) -> float:
        """Mails per second, for one pass over the messages."""
        before = self._running.accepted
        start = time.perf_counter()
        for message in self._messages:
            self._client.send_message(message)
        elapsed = time.perf_counter() - start
        self._running.wait_for(before + len(self._messages))
        return len(self._messages) / elapsed

    def close(self) -> None:
        self._client.quit()


def threads_of_smtplib(port: int, mails: int, threads: int, running: Sink) -> float:
    """Mails/s of ``threads`` smtplib connections, one a thread, sending messages composed
    beforehand: what the slow server allows at best, the reference for (d)."""
    composer = service(SMTPMailer("127.0.0.1", port), "sync").composer
    messages = [composer.confirmation(job) for job in jobs(mails)]
    clients = [smtplib.SMTP("127.0.0.1", port, local_hostname="localhost") for _ in range(threads)]

    def send(client: smtplib.SMTP, part: list[EmailMessage]) -> None:
        for message in part:
            client.send_message(message)

    started = [
        threading.Thread(target=send, args=(client, messages[n::threads]))
        for n, client in enumerate(clients)
    ]
    before = running.accepted
    start = time.perf_counter()
    for thread in started:
        thread.start()
    for thread in started:
        thread.join()
    elapsed = time.perf_counter() - start
    running.wait_for(before + mails)
    for client in clients:
        client.quit()
    return mails / elapsed


def inline_cpu(port: int, mails: int, running: Sink) -> float:
    """CPU seconds per mail of composing and sending in one thread of this process, through
    the same SMTPMailer: the reference for (e), which shows what the machine gives now."""
    mailer = SMTPMailer("127.0.0.1", port)
    composer = service(mailer, "sync").composer
    batch = jobs(mails)
    before = running.accepted
    cpu = time.process_time()
    for job in batch:
        mailer.send(composer.confirmation(job))
    cpu = time.process_time() - cpu
    running.wait_for(before + mails)
    # Releases before connections were kept have no close(): the script runs on those too.
    close = getattr(mailer, "close", None)
    if close is not None:
        close()
    return cpu / mails


class Background:
    """(b), (d), (e): the default background delivery, in its delivery process."""

    def __init__(self, port: int, running: Sink) -> None:
        self._mailer = SMTPMailer("127.0.0.1", port)
        self._delivery = BackgroundMailer(self._mailer, delay=(0.0, 0.0))
        self.workers = self._delivery.workers
        self._service = service(self._mailer, self._delivery)
        pid = self._delivery.process_id
        assert pid is not None, "delivery did not start its process"
        self._pid = pid
        self._running = running
        self.run(20)

    def run(self, mails: int) -> tuple[float, float]:
        """Mails per second from the first job submitted to the last mail accepted,
        and the delivery process's CPU seconds per mail."""
        batch = jobs(mails)
        cpu = cpu_seconds(self._pid)
        before = self._running.accepted
        start = time.perf_counter()
        for job in batch:
            self._delivery.submit(job)
        self._running.wait_for(before + mails)
        elapsed = time.perf_counter() - start
        return mails / elapsed, (cpu_seconds(self._pid) - cpu) / mails

    def close(self) -> None:
        self._service.close()


def celery(
    port: int, mails: int, running: Sink, repeats: int, options: argparse.Namespace
) -> tuple[float, float, float]:
    """(c): mails/s of Celery delivery with one worker process, the best of ``repeats``,
    the least CPU time that process spent per mail, and the jobs/s of a task that does
    nothing, with the same options and payload, through the same worker: Celery's own
    ceiling."""
    environment = {
        "CREDRECOVERY_BENCH_BROKER": BROKER,
        "CREDRECOVERY_BENCH_SMTP_PORT": str(port),
        "CREDRECOVERY_BENCH_SECRET": SECRET,
        "CREDRECOVERY_BENCH_QUEUE": f"credrecovery-bench-{uuid.uuid4().hex}",
        "CREDRECOVERY_BENCH_RECORDS": options.celery_records,
    }
    queue = environment["CREDRECOVERY_BENCH_QUEUE"]
    os.environ.update(environment)
    sys.path.insert(0, str(ROOT))
    from benchmarks._delivery_celery_app import build, empty_task

    app, delivery, _service = build()
    empty = empty_task(app)
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "benchmarks._delivery_celery_app:app",
            "worker",
            f"--pool={options.celery_pool}",
            *(
                [f"--concurrency={options.celery_concurrency}"]
                if options.celery_concurrency
                else []
            ),
            "--loglevel=WARNING",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "-Q",
            queue,
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        warm = jobs(20)
        before = running.accepted
        for job in warm:
            delivery.submit(job)
        running.wait_for(before + len(warm), timeout=120)
        rates, cpus = [], []
        for _ in range(repeats):
            # The queue fills while the worker takes nothing, so that publishing
            # takes no CPU from it: the rate runs from the first mail to the last.
            worker.send_signal(signal.SIGSTOP)
            for job in jobs(mails):
                delivery.submit(job)
            before = running.accepted
            cpu = cpu_seconds(worker.pid)
            worker.send_signal(signal.SIGCONT)
            running.wait_for(before + mails)
            cpus.append((cpu_seconds(worker.pid) - cpu) / mails)
            first, last = running.times[before], running.times[before + mails - 1]
            rates.append((mails - 1) / (last - first))
        sealed = delivery.seal(jobs(1)[0])
        store = redis.Redis.from_url(BROKER)
        empty_rates = []
        for _ in range(repeats):
            stamp = f"credrecovery-bench-{uuid.uuid4().hex}"
            worker.send_signal(signal.SIGSTOP)
            for n in range(mails):
                empty.apply_async(
                    (sealed,), {"stamp": stamp if n == mails - 1 else None}, queue=queue
                )
            start = time.time()
            worker.send_signal(signal.SIGCONT)
            while (ran := store.get(stamp)) is None:
                if time.time() - start > 300:
                    raise RuntimeError("the worker did not run the empty tasks")
                time.sleep(0.005)
            store.delete(stamp)
            empty_rates.append(mails / (float(ran) - start))
        store.close()
        return max(rates), min(cpus), max(empty_rates)
    finally:
        worker.terminate()
        worker.wait(30)


def verdict(ok: bool) -> str:
    return "pass" if ok else "FAIL"


def celery_rows(
    queued: tuple[float, float, float], base: float, args: argparse.Namespace
) -> list[list[object]]:
    mailed, worker_cpu, empty = queued
    pool = args.celery_pool + (
        f", concurrency {args.celery_concurrency}" if args.celery_concurrency else ""
    )
    records = "" if args.celery_records == "broker" else ", records=None"
    return [
        [
            f"(c) Celery, one worker process ({pool}{records})",
            f"{mailed:.0f} mails/s, {worker_cpu * 1000:.2f} ms CPU a mail",
            f"{mailed / base:.2f}",
            f">= {TARGETS['celery']}",
            verdict(mailed / base >= TARGETS["celery"]),
        ],
        [
            "(c) for reference: a task doing nothing, same options, payload and worker",
            f"{empty:.0f} jobs/s",
            f"{empty / base:.2f}",
            "",
            "",
        ],
    ]


def celery_only(args: argparse.Namespace) -> None:
    """Rows (a) and (c) alone: the passes of (a) before and after those of (c)."""
    with sink(0.0) as fast:
        plain = Baseline(fast.port, args.mails, fast)
        bases = [plain.run() for _ in range(args.repeats)]
        queued = celery(fast.port, args.mails, fast, args.repeats, args)
        bases += [plain.run() for _ in range(args.repeats)]
        plain.close()
    base = max(bases)
    print(f"(a) passes: {', '.join(f'{r:.0f}' for r in bases)} mails/s")
    print()
    rows: list[list[object]] = [
        ["(a) smtplib, one connection, composed beforehand", f"{base:.0f} mails/s", "1.00", "", ""],
        *celery_rows(queued, base, args),
    ]
    table(["row", "figure", "ratio", "target", "verdict"], rows)
    print("uptime:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mails", type=int, default=1000, help="mails per pass of a fast row")
    parser.add_argument("--slow-mails", type=int, default=300, help="mails against the slow sink")
    parser.add_argument("--repeats", type=int, default=3, help="passes per row; the best counts")
    parser.add_argument("--no-celery", action="store_true", help="skip the Celery row")
    parser.add_argument(
        "--celery-only", action="store_true", help="run rows (a) and (c) alone, interleaved"
    )
    parser.add_argument(
        "--celery-pool",
        default="solo",
        choices=["solo", "threads", "prefork"],
        help="the Celery worker's pool (default: solo)",
    )
    parser.add_argument(
        "--celery-concurrency", type=int, help="the Celery worker's --concurrency, if given"
    )
    parser.add_argument(
        "--celery-records",
        default="broker",
        choices=["broker", "none"],
        help="CeleryDelivery(records=...): 'broker' (the default) or none (records=None)",
    )
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    header("Delivery throughput against an SMTP sink on 127.0.0.1")
    print("uptime:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    print("BackgroundMailer and CeleryDelivery run with delay=(0, 0): no random wait per mail.")
    print()

    if args.celery_only:
        celery_only(args)
        return

    with sink(0.0) as fast:
        plain = Baseline(fast.port, args.mails, fast)
        background = Background(fast.port, fast)
        bases, rates, cpus, inline = [], [], [], []
        # Interleaved, and the best of each kept: a shared machine slows some
        # passes down, never speeds one up.
        for _ in range(args.repeats):
            bases.append(plain.run())
            rate, cpu = background.run(args.mails)
            rates.append(rate)
            cpus.append(cpu)
            inline.append(inline_cpu(fast.port, args.mails, fast))
        plain.close()
        background.close()
        base, rate, cpu, inline_best = max(bases), max(rates), min(cpus), min(inline)
        queued = None if args.no_celery else celery(fast.port, args.mails, fast, args.repeats, args)
    with sink(SLOW_DELAY) as slow, sink(SLOW_DELAY, pipelining=False) as unpiped:
        slowed = Background(slow.port, slow)
        one_by_one = Background(unpiped.port, unpiped)
        workers = slowed.workers
        slow_rates, plain_rates, unpiped_rates = [], [], []
        for _ in range(args.repeats):
            slow_rates.append(slowed.run(args.slow_mails)[0])
            plain_rates.append(threads_of_smtplib(slow.port, args.slow_mails, workers, slow))
            unpiped_rates.append(one_by_one.run(args.slow_mails)[0])
        slowed.close()
        one_by_one.close()
        slow_rate, slow_plain = max(slow_rates), max(plain_rates)
        slow_unpiped = max(unpiped_rates)
    best = workers / SLOW_DELAY
    print(
        f"(a) passes: {', '.join(f'{r:.0f}' for r in bases)} mails/s; "
        f"(b) passes: {', '.join(f'{r:.0f}' for r in rates)} mails/s; "
        f"(e) passes: {', '.join(f'{c * 1000:.2f}' for c in cpus)} ms"
    )
    print()

    rows: list[list[object]] = [
        ["(a) smtplib, one connection, composed beforehand", f"{base:.0f} mails/s", "1.00", "", ""],
        [
            "(b) background delivery (process), composing included",
            f"{rate:.0f} mails/s",
            f"{rate / base:.2f}",
            f">= {TARGETS['background']}",
            verdict(rate / base >= TARGETS["background"]),
        ],
    ]
    if queued is not None:
        rows += celery_rows(queued, base, args)
    rows += [
        [
            f"(d) background delivery, DATA answered after {SLOW_DELAY * 1000:.0f} ms, "
            f"{workers} workers",
            f"{slow_rate:.1f} mails/s",
            f"{slow_rate / best:.2f} of {best:.0f}",
            f">= {TARGETS['slow']}",
            verdict(slow_rate / best >= TARGETS["slow"]),
        ],
        [
            f"(d) for reference: {workers} smtplib threads, one connection each, "
            "composed beforehand",
            f"{slow_plain:.1f} mails/s",
            f"{slow_plain / best:.2f} of {best:.0f}",
            "",
            "",
        ],
        [
            "(d) for reference: the same background delivery, sink without PIPELINING",
            f"{slow_unpiped:.1f} mails/s",
            f"{slow_unpiped / best:.2f} of {best:.0f}",
            "",
            "",
        ],
        [
            "(e) delivery process CPU per mail, composing included",
            f"{cpu * 1000:.2f} ms",
            "",
            f"<= {TARGETS['cpu_ms']} ms",
            verdict(cpu * 1000 <= TARGETS["cpu_ms"]),
        ],
        [
            "(e) for reference: composing and SMTPMailer.send in one thread of this process",
            f"{inline_best * 1000:.2f} ms",
            f"{cpu / inline_best:.2f}",
            "",
            "",
        ],
    ]
    table(["row", "figure", "ratio", "target", "verdict"], rows)
    print("uptime:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())


if __name__ == "__main__":
    main()
