"""A delivery process of the library's own, so composing and SMTP stay out of the web process.

Composing a mail is pure-Python work that holds the interpreter lock for a
millisecond or more. Done by a thread of the web process, it slows whichever
request runs meanwhile, and a hit more than a miss: a hit's directory call
lets other threads in more often. A :class:`DeliveryProcess` runs a
thread-isolated :class:`~credrecovery.BackgroundMailer` in a child Python
process instead, started and stopped by the library. The request path only
writes one framed job to a pipe.

Frames are length-prefixed pickles over the child's standard input and
output, a private pipe between a process and its own child. The child sends
back its log records, which the parent logs as its own, the outcome of each
confirmation mail, which the parent reports as its own, and the answers to
``flush``, ``pending`` and ``close``.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import pickle
import struct
import subprocess
import sys
import threading
from collections.abc import Callable
from email.message import EmailMessage
from typing import IO, Any

from ..events import EventKind
from ..exceptions import DeliveryFailed
from ..jobs import ConfirmationJob

__all__ = ["DeliveryProcess"]

logger = logging.getLogger("credrecovery")
_HEADER = struct.Struct("!I")
# What a forwarded log record keeps: the event and its fields, never arguments
# or tracebacks, which could hold anything.
_RECORD_SKIP = frozenset({"args", "exc_info", "exc_text", "stack_info", "msg", "message"})


def _write(stream: IO[bytes], lock: threading.Lock, frame: object) -> None:
    data = pickle.dumps(frame, protocol=pickle.HIGHEST_PROTOCOL)
    _write_raw(stream, lock, _HEADER.pack(len(data)) + data)


def _write_raw(stream: IO[bytes], lock: threading.Lock, data: bytes) -> None:
    # The pipes are unbuffered (a buffered one's lock could be held by a
    # thread that a fork leaves behind), so writes may be partial.
    view = memoryview(data)
    with lock:
        while view:
            view = view[stream.write(view) or 0 :]


def _read_exactly(stream: IO[bytes], size: int) -> bytes | None:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = stream.read(size - len(chunks))
        if not chunk:
            return None
        chunks += chunk
    return bytes(chunks)


def _read(stream: IO[bytes]) -> Any:
    header = _read_exactly(stream, _HEADER.size)
    if header is None:
        return None
    (size,) = _HEADER.unpack(header)
    data = _read_exactly(stream, size)
    if data is None:
        return None
    # A private pipe between a process and its own child carries these frames.
    return pickle.loads(data)  # noqa: S301  # nosec B301


class DeliveryProcess:
    """The parent's side of a child process that composes and sends.

    ``config`` is what the child needs, pickled: the mailer, the composer and
    the :class:`~credrecovery.BackgroundMailer` settings. The child starts at
    once; after a fork, the next call starts a new one for the new process.
    ``report`` is called, from the thread that reads the child's frames,
    with each confirmation mail's outcome as the child reports it.
    """

    def __init__(
        self, config: bytes, *, report: Callable[[EventKind, str | None, str], None] | None = None
    ) -> None:
        self._config = config
        self._report = report
        self._sequence = 0
        self._child: subprocess.Popen[bytes] | None = None
        self._pid = 0
        self._start()

    def _new_locks(self) -> None:
        # Fresh after a fork too: a lock that another thread held at the fork
        # would never be released in the new process.
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._answers: dict[int, list[Any]] = {}
        self._answered = threading.Condition(self._lock)

    def __repr__(self) -> str:
        child = self._child.pid if self._child is not None else None
        return f"DeliveryProcess(pid={child})"

    @property
    def pid(self) -> int | None:
        """The child's process id, while this process has a running child."""
        child = self._child
        if child is None or self._pid != os.getpid() or child.poll() is not None:
            return None
        return child.pid

    def submit(self, job: ConfirmationJob) -> None:
        """Hand ``job`` to the child; :class:`DeliveryFailed` if it cannot be reached."""
        self._send(("job", job.to_dict()))

    def send(self, message: EmailMessage) -> None:
        """Hand a finished ``message`` to the child."""
        self._send(("message", message))

    def flush(self, timeout: float | None) -> bool:
        """Wait until the child's queue is empty; ``False`` on timeout."""
        return bool(self._ask("flush", timeout))

    def pending(self) -> int:
        """What the child still has to deliver."""
        return int(self._ask("pending", 5.0) or 0)

    def close(self, timeout: float | None) -> None:
        """Let the child deliver for up to ``timeout`` seconds, then stop it."""
        child = self._child
        if child is None or self._pid != os.getpid():
            return
        if child.poll() is None:
            self._ask("close", timeout)
        self._child = None
        try:
            child.wait(5 if timeout is None else timeout + 5)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        for stream in (child.stdin, child.stdout):
            if stream is not None:
                stream.close()

    def _start(self) -> None:
        self._new_locks()
        child = subprocess.Popen(
            [sys.executable, "-c", "from credrecovery.delivery._process import main; main()"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            close_fds=True,
            bufsize=0,
        )
        assert child.stdin is not None and child.stdout is not None
        self._child, self._pid = child, os.getpid()
        # The path first, so that the child can import what the config names.
        _write(child.stdin, self._write_lock, list(sys.path))
        _write_raw(child.stdin, self._write_lock, _HEADER.pack(len(self._config)) + self._config)
        threading.Thread(
            target=self._listen,
            args=(child.stdout,),
            name="credrecovery-delivery-listener",
            daemon=True,
        ).start()

    def _alive(self) -> subprocess.Popen[bytes]:
        old = self._child
        forked = self._pid != os.getpid()
        if old is None or forked or old.poll() is not None:
            if old is not None:
                if not forked:
                    logger.error(
                        "the delivery process had stopped; starting another",
                        extra={"event": "delivery_restarted"},
                    )
                # A forked process closes only its own copies of the pipes.
                for stream in (old.stdin, old.stdout):
                    if stream is not None:
                        with contextlib.suppress(OSError):
                            stream.close()
            self._start()
        assert self._child is not None
        return self._child

    def _send(self, frame: tuple[Any, ...]) -> None:
        try:
            child = self._alive()
            assert child.stdin is not None
            _write(child.stdin, self._write_lock, frame)
        except (OSError, ValueError) as exc:
            raise DeliveryFailed("the delivery process cannot be reached") from exc

    def _ask(self, question: str, timeout: float | None) -> Any:
        with self._lock:
            self._sequence += 1
            sequence = self._sequence
            self._answers[sequence] = []
        try:
            self._send((question, sequence, timeout))
        except DeliveryFailed:
            return None
        wait = None if timeout is None else timeout + 5.0
        with self._answered:
            self._answered.wait_for(lambda: bool(self._answers[sequence]), wait)
            answer = self._answers.pop(sequence)
        return answer[0] if answer else None

    def _listen(self, stream: IO[bytes]) -> None:
        while (frame := _read(stream)) is not None:
            kind, body = frame
            if kind == "log":
                record = logging.makeLogRecord(body)
                target = logging.getLogger(record.name)
                if target.isEnabledFor(record.levelno):
                    target.handle(record)
            elif kind == "outcome":
                self._reported(*body)
            else:
                sequence, value = body
                with self._answered:
                    if sequence in self._answers:
                        self._answers[sequence].append(value)
                    self._answered.notify_all()

    def _reported(self, kind: str, number: str | None, reason: str) -> None:
        if self._report is None:
            return
        try:
            self._report(EventKind(kind), number, reason)
        except Exception as exc:  # noqa: BLE001 - the reader must go on reading
            logger.error(
                "a delivery outcome was not reported: %s",
                type(exc).__name__,
                extra={"event": "hook_failed", "error": type(exc).__name__},
            )


class _Forward(logging.Handler):
    """Sends the child's log records to the parent, already formatted."""

    def __init__(self, stream: IO[bytes], lock: threading.Lock) -> None:
        super().__init__(logging.DEBUG)
        self._stream = stream
        self._lock_out = lock

    def emit(self, record: logging.LogRecord) -> None:
        body = {k: v for k, v in vars(record).items() if k not in _RECORD_SKIP}
        body["msg"] = record.getMessage()
        try:
            _write(self._stream, self._lock_out, ("log", body))
        except (OSError, ValueError, pickle.PicklingError):
            self.handleError(record)


def main() -> None:
    """The child: deliver what the parent hands over until it says close or goes away."""
    from .background import BackgroundMailer
    from .inline import tell

    incoming = io.FileIO(sys.stdin.fileno(), "rb", closefd=False)
    outgoing = io.FileIO(sys.stdout.fileno(), "wb", closefd=False)
    # Nothing but frames may reach the parent's pipe.
    sys.stdout = sys.stderr
    lock = threading.Lock()
    sys.path[:0] = [p for p in _read(incoming) if p not in sys.path]
    config = _read(incoming)
    library = logging.getLogger("credrecovery")
    library.addHandler(_Forward(outgoing, lock))
    library.setLevel(logging.DEBUG)
    library.propagate = False
    mailer = BackgroundMailer(config["mailer"], isolation="thread", **config["options"])
    mailer._mailer_is_own_copy()
    mailer.bind(config["composer"])

    def report(kind: EventKind, number: str | None, reason: str) -> None:
        _write(outgoing, lock, ("outcome", (kind.value, number, reason)))

    mailer.report_to(report)
    while (frame := _read(incoming)) is not None:
        kind = frame[0]
        if kind == "job":
            job = ConfirmationJob.from_dict(frame[1])
            if not _take(mailer.submit, job):
                tell(report, EventKind.DELIVERY_FAILED, job)
        elif kind == "message":
            _take(mailer.send, frame[1])
        else:
            _, sequence, timeout = frame
            if kind == "flush":
                answer: object = mailer.flush(timeout)
            elif kind == "pending":
                answer = mailer.pending
            else:
                mailer.close(timeout)
                _write(outgoing, lock, ("answer", (sequence, True)))
                return
            _write(outgoing, lock, ("answer", (sequence, answer)))
    # The parent went away without closing: deliver what is queued, then stop.
    mailer.close(30.0)


def _take(put: Any, item: Any) -> bool:
    try:
        put(item)
    except DeliveryFailed as exc:
        logger.error(
            "confirmation mail not queued: %s",
            exc,
            extra={"event": "mail_dropped", "reason": str(exc)},
        )
        return False
    return True
