"""A bounded mailbox that waits only when it must.

Built directly on `trio.lowlevel` parking: the consumer parks only when the
mailbox is empty, a producer only when it is full. Everything else is a deque
operation, which is what makes the actor fast path possible.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from typing import Any

import attrs
import outcome
import trio
from trio.lowlevel import Abort, ParkingLot, Task, current_task, reschedule, wait_task_rescheduled

from ._exceptions import ActorStopped, MailboxFull
from ._timers import call_at, cancel_call

#: What `get_nowait` asks `get_or` to return for an empty mailbox.
_NOTHING = object()


def _positive(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{attribute.name} must be a positive integer, got {value!r}")


# Validated when made; a generated `__setattr__` would check every later
# assignment too, on the path of every message.
@attrs.define(eq=False, slots=True, on_setattr=attrs.setters.NO_OP)
class Mailbox:
    """A FIFO of at most `capacity` messages with one consumer.

    `put_nowait` never yields; it raises `MailboxFull` at capacity and
    `ActorStopped` once closed. `put` waits for room (backpressure). The queue
    itself is allocated on the first message and dropped again by `shrink`,
    so an empty, dormant mailbox costs a few dozen bytes.
    """

    capacity: int = attrs.field(validator=_positive)
    name: str = "actor"
    _items: deque[Any] | None = attrs.field(default=None, init=False)
    _receiver: Task | None = attrs.field(default=None, init=False)
    _senders: ParkingLot | None = attrs.field(default=None, init=False)
    _closed: bool = attrs.field(default=False, init=False)
    # Called once, on the next arrival, when nobody is parked to receive it:
    # how a dormant actor is woken.
    on_arrival: Callable[[], None] | None = attrs.field(default=None, init=False)

    def __len__(self) -> int:
        return 0 if self._items is None else len(self._items)

    @property
    def closed(self) -> bool:
        return self._closed

    def put_nowait(self, item: Any) -> None:
        """Queue `item` without yielding, or raise `MailboxFull` / `ActorStopped`."""
        if self._closed:
            raise ActorStopped(f"{self.name} has stopped")
        items = self._items
        if items is None:
            items = self._items = deque()
        elif len(items) >= self.capacity:
            raise MailboxFull(f"{self.name}'s mailbox is full ({self.capacity} messages)")
        items.append(item)
        if self._receiver is not None or self.on_arrival is not None:
            self._wake()  # else nobody needs waking: the consumer's task will find it

    def put_urgent(self, item: Any) -> None:
        """Queue `item` even past capacity (for notices that must never be
        lost, such as `ChildExited`); raise `ActorStopped` once closed."""
        if self._closed:
            raise ActorStopped(f"{self.name} has stopped")
        if self._items is None:
            self._items = deque()
        self._items.append(item)
        self._wake()

    async def put(self, item: Any) -> None:
        """Queue `item`, waiting while the mailbox is full.

        Returns without yielding when there is room. If cancelled while
        waiting, nothing was queued.
        """
        while True:
            try:
                self.put_nowait(item)
                return
            except MailboxFull:
                if self._senders is None:
                    self._senders = ParkingLot()
                await self._senders.park()

    def get_nowait(self) -> Any:
        """Take the oldest item; raise `trio.WouldBlock` if there is none."""
        item = self.get_or(_NOTHING)
        if item is _NOTHING:
            raise trio.WouldBlock
        return item

    def get_or(self, empty: Any) -> Any:
        """Take the oldest item, or return `empty` if there is none: what an
        actor's loop asks after every message, without the exception that
        `get_nowait` would raise each time the mailbox runs dry."""
        items = self._items
        if not items:
            return empty
        item = items.popleft()
        if self._senders:
            self._senders.unpark()
        return item

    async def wait(self, deadline: float = math.inf) -> None:
        """Park the consumer until an item arrives, `poke` is called, or
        trio's clock reaches `deadline` (to the millisecond).

        Returns at once if items are waiting. Cancellable.
        """
        if self._items:
            return
        self._receiver = current_task()
        if deadline == math.inf:
            await wait_task_rescheduled(self._abort_wait)
            return
        timer = call_at(deadline, self.poke)
        try:
            await wait_task_rescheduled(self._abort_wait)
        finally:
            cancel_call(timer)

    def _abort_wait(self, _: Any) -> Abort:
        self._receiver = None
        return Abort.SUCCEEDED

    @property
    def waiting(self) -> bool:
        """The consumer is parked in `wait` (so nothing is queued)."""
        return self._receiver is not None

    def set_aside(self) -> Task | None:
        """Take the parked consumer out of sight while its actor handles a
        message in another task (`handle_now`, `answer_now`): `waiting` is
        False meanwhile, so a message sent to it then is queued, never
        handled inside that handling. Give it back with `restore`."""
        task, self._receiver = self._receiver, None
        return task

    def restore(self, task: Task | None, *, wake: bool = True) -> None:
        """Park `task` (from `set_aside`) again; woken at once if something
        was queued meanwhile (unless `wake` is False)."""
        self._receiver = task
        if wake and self._items and task is not None:
            self._wake()

    def poke(self) -> None:
        """Wake a parked consumer without giving it an item."""
        self._wake()

    def throw(self, error: BaseException) -> None:
        """Wake the parked consumer with `error` raised from its `wait`."""
        task = self._receiver
        if task is not None:
            self._receiver = None
            reschedule(task, outcome.Error(error))

    def _wake(self) -> None:
        task = self._receiver
        if task is not None:
            self._receiver = None
            reschedule(task)
        elif self.on_arrival is not None:
            callback, self.on_arrival = self.on_arrival, None
            callback()

    def shrink(self) -> None:
        """Drop the empty queue's storage (a dormant mailbox holds no deque)."""
        if not self._items:
            self._items = None

    def close(self) -> None:
        """Refuse further puts; what is queued stays to be taken.

        Producers parked on a full mailbox are woken and get `ActorStopped`.
        """
        self._closed = True
        self.on_arrival = None
        if self._senders is not None:
            self._senders.unpark_all()

    def reopen(self) -> None:
        """Accept puts again (the actor behind it was started afresh)."""
        self._closed = False

    def take_all(self) -> list[Any]:
        """Remove and return everything queued, oldest first."""
        leftover = list(self._items or ())
        self._items = None
        return leftover
