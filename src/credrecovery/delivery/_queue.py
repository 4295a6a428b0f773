"""The background mailer's queue: jobs by due time, mails composed ahead, and those in hand.

Worker threads take what is due, a mail composed ahead first; the composing
thread takes due jobs while fewer than ``ahead`` mails wait composed, so that
a worker goes from one mail to the next without composing in between. One
lock guards it all; :meth:`TimedQueue.flush` waits until nothing is queued,
composed ahead or in hand.
"""

from __future__ import annotations

import collections
import heapq
import itertools
import threading
from collections.abc import Callable
from email.message import EmailMessage

from ..exceptions import DeliveryFailed
from ..jobs import ConfirmationJob

__all__ = ["Item", "TimedQueue"]


class Item:
    """A confirmation job, its mail once composed, or a finished message; and its attempt."""

    __slots__ = ("attempt", "job", "message")

    def __init__(self, job: ConfirmationJob | None, message: EmailMessage | None) -> None:
        self.job = job
        self.message = message
        self.attempt = 1


class TimedQueue:
    """Items by due time on ``clock``, at most ``max_queue`` of them not yet in hand."""

    def __init__(self, clock: Callable[[], float], max_queue: int, ahead: int) -> None:
        self._clock = clock
        self._max_queue = max_queue
        self._ahead = ahead
        lock = threading.RLock()
        self._cond = threading.Condition(lock)
        # The composing thread waits apart, woken when a job is queued, when a
        # worker is through with one it did not send, and either when a worker
        # takes one or, where the mailer tells, when a worker's message is written
        # (room_to_compose): composing then does not compete with the worker's
        # commands and their answers for the interpreter lock.
        self._compose_wake = threading.Condition(lock)
        self.compose_on_take = True
        # (due time on the clock, order, item); a heap.
        self._heap: list[tuple[float, int, Item]] = []
        # Mails composed ahead, due already.
        self._ready: collections.deque[Item] = collections.deque()
        self._order = itertools.count()
        self._in_hand = 0
        # 1 while the composing thread holds a job taken out of the heap.
        self._held_ahead = 0
        self._closed = False

    @property
    def pending(self) -> int:
        """Items queued, composed ahead, waiting for a retry, or in hand."""
        with self._cond:
            return len(self._heap) + len(self._ready) + self._in_hand

    def put(self, item: Item, wait: float) -> None:
        """Queue ``item``, due in ``wait`` seconds; :class:`DeliveryFailed` if full or closed."""
        with self._cond:
            if self._closed:
                raise DeliveryFailed("the background mailer is closed", temporary=False)
            if len(self._heap) + len(self._ready) + self._held_ahead >= self._max_queue:
                raise DeliveryFailed("the delivery queue is full")
            heapq.heappush(self._heap, (self._clock() + wait, next(self._order), item))
            # All: a flush() waiting on this condition must not take the one wake-up.
            self._cond.notify_all()
            self._compose_wake.notify()

    def retry(self, item: Item, due: float) -> None:
        """Queue ``item`` again, due at ``due`` on the clock, whatever the queue holds."""
        with self._cond:
            heapq.heappush(self._heap, (due, next(self._order), item))

    def take(self) -> Item | None:
        """For a worker: the next due item, a mail composed ahead first; ``None`` once closed."""
        with self._cond:
            while True:
                if self._closed:
                    return None
                if self._ready:
                    item = self._ready.popleft()
                    break
                now = self._clock()
                if self._heap and self._heap[0][0] <= now:
                    item = heapq.heappop(self._heap)[2]
                    break
                self._cond.wait(self._heap[0][0] - now if self._heap else None)
            self._in_hand += 1
            if self.compose_on_take:
                # Room for one more composed ahead, or another job at the heap's head.
                self._compose_wake.notify()
            return item

    def room_to_compose(self) -> None:
        """Wake the composing thread: a worker's message is written, and its reply awaited."""
        with self._cond:
            self._compose_wake.notify()

    def done(self, sent: bool) -> None:
        """A worker is through with the item it took, whose mail went if ``sent``."""
        with self._cond:
            self._in_hand -= 1
            self._cond.notify_all()
            if not sent:
                # No message was written, so room_to_compose may not have been called.
                self._compose_wake.notify()

    def take_to_compose(self) -> Item | None:
        """For the composing thread: a due job, once fewer than ``ahead`` wait composed."""
        with self._cond:
            while True:
                if self._closed:
                    return None
                wait = None
                if self._heap and len(self._ready) < self._ahead:
                    due, _, item = self._heap[0]
                    now = self._clock()
                    if due > now:
                        wait = due - now
                    elif item.message is None:
                        heapq.heappop(self._heap)
                        self._in_hand += 1
                        self._held_ahead = 1
                        return item
                self._compose_wake.wait(wait)

    def composed(self, item: Item, ready: bool) -> bool:
        """The composing thread is through with ``item``: a mail to send if ``ready``.

        Returns whether the queue closed meanwhile, leaving that mail undelivered.
        """
        with self._cond:
            self._in_hand -= 1
            self._held_ahead = 0
            late = ready and self._closed
            if ready and not late:
                self._ready.append(item)
            self._cond.notify_all()
            return late

    def flush(self, timeout: float | None) -> bool:
        """Make every first attempt due now; wait until nothing is left. ``False`` on timeout."""
        with self._cond:
            self._heap = [
                (0.0, order, item) if item.attempt == 1 else (due, order, item)
                for due, order, item in self._heap
            ]
            heapq.heapify(self._heap)
            self._cond.notify_all()
            self._compose_wake.notify()
            return self._cond.wait_for(
                lambda: not self._heap and not self._ready and not self._in_hand, timeout
            )

    def close(self) -> list[Item]:
        """Close for good: the items still queued or composed ahead, taken out."""
        with self._cond:
            self._closed = True
            left = [*self._ready, *(item for _, _, item in self._heap)]
            self._heap.clear()
            self._ready.clear()
            self._cond.notify_all()
            self._compose_wake.notify()
            return left
