"""When the delivery queue wakes its composing thread.

Workers take composed mails; the composing thread refills what they took. It is
woken when a worker takes a mail, or, once the mailer tells when a message is
written (the delivery process's own SMTPMailer), only then and when a worker
is through with a job it did not send: composing then does not compete with a
worker's commands and their answers for the interpreter lock.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from credrecovery.delivery._queue import Item, TimedQueue

#: Ample time for a woken thread to return; one that stays waiting is not woken.
SETTLE = 0.2


@contextmanager
def composer_waiting(queue: TimedQueue) -> Iterator[list[Item]]:
    """A composing thread blocked in take_to_compose(); the list gets what it returns."""
    got: list[Item] = []
    thread = threading.Thread(target=lambda: got.append(queue.take_to_compose()))  # type: ignore[arg-type]
    thread.start()
    try:
        yield got
    finally:
        queue.close()
        thread.join(5)
        assert not thread.is_alive()


def full_queue(compose_on_take: bool) -> TimedQueue:
    """One mail composed ahead (the most allowed), and a job behind it."""
    queue = TimedQueue(time.monotonic, max_queue=10, ahead=1)
    queue.compose_on_take = compose_on_take
    queue.put(Item(None, None), 0.0)
    queue.put(Item(None, None), 0.0)
    first = queue.take_to_compose()
    assert first is not None
    assert queue.composed(first, ready=True) is False
    return queue


def still_waiting(got: list[Item]) -> bool:
    time.sleep(SETTLE)
    return got == []


def test_taking_a_mail_wakes_the_composer_by_default() -> None:
    """A host's mailer tells nothing: room made by a worker's take is refilled at once."""
    queue = full_queue(compose_on_take=True)
    with composer_waiting(queue) as got:
        assert still_waiting(got)
        assert queue.take() is not None
        time.sleep(SETTLE)
        assert len(got) == 1


def test_with_the_mailer_telling_the_composer_waits_for_the_written_message() -> None:
    """The delivery process's own SMTPMailer tells: a take alone does not wake the composer."""
    queue = full_queue(compose_on_take=False)
    with composer_waiting(queue) as got:
        assert queue.take() is not None
        assert still_waiting(got)
        queue.room_to_compose()
        time.sleep(SETTLE)
        assert len(got) == 1


def test_a_mail_that_did_not_go_wakes_the_composer_and_a_sent_one_does_not() -> None:
    """A mail refused before its message went never called room_to_compose: done() does."""
    for sent in (True, False):
        queue = full_queue(compose_on_take=False)
        with composer_waiting(queue) as got:
            assert queue.take() is not None
            queue.done(sent)
            time.sleep(SETTLE)
            assert len(got) == (0 if sent else 1)
