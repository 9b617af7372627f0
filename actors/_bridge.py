"""The event bridge: the one actor that numbers, keeps and fans out events."""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import Any, NamedTuple

import attrs
import trio

import runtime
from runtime import Actor, ActorRef, ActorStopped, MailboxFull

from ._errors import CoreClosed
from ._events import Event, Gap
from ._streams import StreamBooks, Subscriber

log = logging.getLogger("greenroom")


class Emit(NamedTuple):
    """An event of a run, before the bridge numbers it. A tuple: one is made
    for every event, and a tuple is made in a third of the time."""

    user_id: str
    run_id: str
    type: str
    data: dict[str, Any]
    ts: float


#: `Emit` from a tuple of its fields, made by `tuple.__new__` itself: a
#: NamedTuple's own `__new__` is a Python function, a call per event. It
#: does not count the fields: give it all five, in order (the bridge
#: unpacks them).
new_emit = partial(tuple.__new__, Emit)


@attrs.frozen
class OpenRun:
    user_id: str
    run_id: str
    agent: str


@attrs.frozen
class EndOpenRuns:
    """End every open run of the user with `agent_error`; the reply is
    `(run_id, agent)` of each run it ended."""

    user_id: str
    reason: str
    detail: str


@attrs.frozen
class Subscribe:
    subscriber: Subscriber
    after: int


@attrs.frozen
class Unsubscribe:
    subscriber: Subscriber


@attrs.frozen
class EndSubscriptions:
    """End every subscription with `reason` (after the events queued before
    this message) and accept no new ones."""

    reason: str


@attrs.frozen
class SweepStreams:
    """Retire the streams that have been quiet long enough (`StreamBooks.sweep`)."""


def sweeps_in(seconds: float, retention: float) -> int:
    """How many of the bridge's stream sweeps (one every `retention / 2`
    seconds) make `seconds`; as good as endless for `math.inf`."""
    sweeps = seconds / retention * 2
    if sweeps >= 1 << 62:  # math.inf among them
        return 1 << 62
    return max(1, math.ceil(sweeps))


class BridgeActor(Actor[Any]):
    """Feeds `StreamBooks` and delivers with `send_nowait` only: a full
    subscriber queue ends that subscription ("overflow"); nobody waits.
    Every `retention / 2` seconds it sweeps the books, so that a user's
    stream is retired between `retention` and twice that after it went
    quiet."""

    mailbox_capacity = 65536
    kind = "bridge"
    #: Every user's events pass through here: in a burst it must not wait a
    #: whole scheduling round, behind every other task, for each 64.
    messages_per_turn = 1024
    #: Events are handled in the bridge's own task (`InlineBridgeActor`
    #: handles them in the emitter's while the bridge is idle).
    inline_sends = False

    def __init__(self, books: StreamBooks, retention: float) -> None:
        self.books = books
        self.retention = retention
        self.closed = False

    async def on_start(self) -> None:
        self.start_task(self._sweeper, name="stream sweeper")

    async def _sweeper(self) -> None:
        ref = self.ref
        while True:
            await runtime.sleep(self.retention / 2)
            try:
                await ref.send(SweepStreams())
            except ActorStopped:
                return  # the bridge is stopping

    def handle_now(self, message: Any) -> bool:
        """Events and run openings: handled without awaiting anything."""
        if type(message) is Emit:  # nearly every message: no match to try
            user_id, run_id, kind, data, ts = message
            event = self.books.number(user_id, run_id, kind, data, ts)
            if event is not None:
                self._deliver(event)
            return True
        if type(message) is OpenRun:
            self.books.open_run(message.user_id, message.run_id, message.agent)
            return True
        return False

    async def handle(self, message: Any) -> Any:
        # Events and run openings never get here: `handle_now` took them.
        books = self.books
        match message:
            case EndOpenRuns(user_id, reason, detail):
                ended = books.end_open_runs(user_id, reason, detail, time.time())
                for event, _ in ended:
                    self._deliver(event)
                return [(event.run_id, agent) for event, agent in ended]
            case Subscribe(subscriber, after):
                if self.closed:
                    raise CoreClosed("the core is shutting down")
                replay = books.replay(subscriber.user_id, after)
                books.attach(subscriber)
                return replay
            case Unsubscribe(subscriber):
                books.detach(subscriber)
            case SweepStreams():
                books.sweep()
            case EndSubscriptions(reason):
                self.closed = True
                for subscriber in books.all_subscribers():
                    self._end(subscriber, reason)
            case _:
                raise TypeError(f"the event bridge does not handle {message!r}")
        return None

    def _deliver(self, event: Event) -> None:
        for subscriber in list(self.books.subscribers(event.user_id)):
            deliver_now = subscriber.deliver_now
            if deliver_now is not None:
                try:
                    if deliver_now(event):
                        continue
                except Exception:
                    # One subscriber's failure must not take the bridge down.
                    log.exception("deliver_now failed for %s; queueing", subscriber.user_id)
            try:
                subscriber.send.send_nowait(event)
            except trio.WouldBlock:
                self.books.dropped_by_reason["subscriber_overflow"] += 1
                self._end(subscriber, "overflow")
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self.books.detach(subscriber)

    def _end(self, subscriber: Subscriber, reason: str) -> None:
        subscriber.reason = reason
        self.books.detach(subscriber)
        subscriber.send.close()

    async def on_stop(self) -> None:
        for subscriber in self.books.all_subscribers():
            self._end(subscriber, "shutdown")


class InlineBridgeActor(BridgeActor):
    """The bridge of a core with `deliver_inline`: while the bridge is idle,
    an event is numbered and delivered in the task that emits it
    (`Actor.handle_now`), so it never waits for the bridge's next turn,
    which under load comes only after every runnable task has had one.
    Order is kept: an event finding the bridge busy is queued, and so is
    every later one until the bridge is idle again."""

    inline_sends = True


@attrs.define(eq=False)
class Subscription:
    """A user's events as an async iterator: first a `Gap` if events were
    lost to the replay window, then the replayed events, then live ones.

    Iteration ends when the bridge ends the subscription; `closed_reason`
    then says why: "overflow" (this consumer fell behind its queue; resume
    from the last seq it saw) or "shutdown".
    """

    user_id: str
    _backlog: deque[Event | Gap]
    _receive: trio.MemoryReceiveChannel[Event]
    _subscriber: Subscriber

    @property
    def closed_reason(self) -> str | None:
        return self._subscriber.reason

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Event | Gap:
        if self._backlog:
            await trio.lowlevel.checkpoint()
            return self._backlog.popleft()
        try:
            return await self._receive.receive()
        except trio.EndOfChannel:
            raise StopAsyncIteration from None

    def take_ready(self, first: Event | Gap, limit: int) -> list[Event | Gap]:
        """`first`, then whatever is ready without waiting, `limit` items in
        all at most: what one socket write can carry."""
        batch = [first]
        try:
            while len(batch) < limit:
                batch.append(self.receive_nowait())
        except (trio.WouldBlock, trio.EndOfChannel):
            pass
        return batch

    def receive_nowait(self) -> Event | Gap:
        """The next item without waiting; raises `trio.WouldBlock` if none is
        ready and `trio.EndOfChannel` once the subscription has ended."""
        if self._backlog:
            return self._backlog.popleft()
        return self._receive.receive_nowait()


@asynccontextmanager
async def open_subscription(
    bridge: ActorRef[Any],
    user_id: str,
    after: int,
    queue_size: int,
    deliver_now: Callable[[Event], bool] | None = None,
) -> AsyncIterator[Subscription]:
    send, receive = trio.open_memory_channel[Event](queue_size)
    subscriber = Subscriber(user_id, send, deliver_now)
    try:
        gap, events = await bridge.ask(Subscribe(subscriber, after))
    except ActorStopped:
        raise CoreClosed("the core is shutting down") from None
    except BaseException:
        # Cancelled (or refused) after the bridge may have taken it: it is
        # attached when the bridge gets to it, and this detaches it after.
        receive.close()
        with contextlib.suppress(ActorStopped, MailboxFull):
            bridge.send_nowait(Unsubscribe(subscriber))
        raise
    backlog: deque[Event | Gap] = deque(events)
    if gap is not None:
        backlog.appendleft(gap)
    try:
        yield Subscription(user_id, backlog, receive, subscriber)
    finally:
        receive.close()
        if subscriber.reason is None:
            # If this is lost, the closed channel detaches it at the next delivery.
            with contextlib.suppress(ActorStopped, MailboxFull):
                bridge.send_nowait(Unsubscribe(subscriber))
