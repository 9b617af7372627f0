"""Actors and their references."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, ClassVar, Final, Generic, TypeVar, final

import attrs
import outcome
import trio
from trio.lowlevel import Abort, Task, current_task, reschedule, wait_task_rescheduled

from ._exceptions import ActorStopped, MailboxFull
from ._stats import ActorStatistics

if TYPE_CHECKING:
    from ._cell import _Cell

M = TypeVar("M")

#: An actor checkpoints after this many messages handled without yielding,
#: and a task's run of `send` calls yields after this many, so neither can
#: starve the rest of the program.
YIELD_EVERY = 64


@final
class _Later:
    __slots__ = ()

    def __repr__(self) -> str:
        return "runtime.LATER"


#: What `Actor.answer_now` returns to have an ask queued for `handle`.
LATER: Final = _Later()


class Actor(Generic[M]):
    """Base class for actors: override `handle`, and the hooks as needed.

    An actor's state is touched only by its own task, one message at a time
    (`answer_now`, and `handle_now` with `inline_sends`, if the class has
    them, also run in a sender's task, but only while the actor's own is
    parked between messages).
    The kernel creates instances through the factory given to `spawn`, so a
    restart always starts from a fresh instance.

    Class attributes tune the kind: `mailbox_capacity` bounds the mailbox;
    with `hibernate = True` the actor holds no task while its mailbox is empty
    and its nursery idle, and wakes on the next message (how 100 000 idle
    actors fit in memory); `kind` names it in statistics (default: class name).
    """

    mailbox_capacity: ClassVar[int] = 1024
    hibernate: ClassVar[bool] = False
    #: Seconds a hibernating actor with nothing to do stays awake (state
    #: "lingering") before it goes dormant: a message in that time needs no
    #: new task. 0 hibernates at once. A class may let instances set it.
    hibernate_after: float = 0.0
    kind: ClassVar[str] = ""
    #: Whether a dormant actor is woken to run `on_stop` when it is stopped
    #: from outside. False says `on_stop` has nothing to do for an actor
    #: with no task and no message: it is then stopped as it lies, at once.
    stop_wakes: ClassVar[bool] = True
    #: Messages handled in a row before the actor yields to other tasks.
    #: Trio gives every runnable task one turn per round, so an actor that
    #: serves thousands of others (a hub) needs a larger share than 64.
    messages_per_turn: ClassVar[int] = YIELD_EVERY
    #: Whether `handle_now` is also offered each send while this actor is
    #: idle, in the sender's task. False keeps it to the actor's own task.
    inline_sends: ClassVar[bool] = True

    __slots__ = ("_cell",)
    _cell: _Cell

    async def on_start(self) -> None:
        """Called before the actor's ref is handed out, and after each restart."""

    async def handle(self, message: M) -> Any:
        """Handle one message. For an `ask`, the return value is the reply.

        An exception raised while handling an `ask` goes back to the asker
        and the actor carries on; one raised while handling a plain `send`
        crashes the actor, and its supervisor decides what happens next.
        """
        raise NotImplementedError(f"{type(self).__name__} does not handle {message!r}")

    def handle_now(self, message: M) -> bool:
        """Optionally handle a told message at once, without awaiting.

        Return True if it handled the message, False to leave it to
        `handle`. It must not await or block. Offered every told message,
        never an ask:

        - in the actor's own task, when the message's turn comes, before
          `handle`: a message handled here costs no coroutine;
        - and, if `inline_sends` (the default), in the sender's task, by
          each `send`/`send_nowait` while this actor is idle: its task
          parked on an empty mailbox, so the message would be the next one
          handled anyway and order is kept. Not to a dormant actor. A
          message it declines there is queued, and offered again in turn.
          Time spent there is not in the actor's `busy_seconds`.

        An exception it raises crashes the actor, in its own task, as one
        raised by `handle` for a `send` would. Notices the kernel tells the
        actor (`ChildExited`, to a monitor) are offered too: decline what
        you do not know.

        An actor that every other task tells something (a hub) saves them
        the wait for its next turn: under load, that turn comes only after
        every other runnable task has had one.
        """
        return False

    def answer_now(self, message: M) -> Any:
        """Optionally answer an asked message at once, in the asker's task.

        `handle_now`'s counterpart for `ask`: offered each ask while this
        actor is idle (its task parked on an empty mailbox; not while it is
        dormant). It must not await or block. Return `LATER` to have the
        message queued for `handle` as usual; anything else is the reply,
        and the ask returns it without yielding. An exception it raises is
        the asker's, as one from `handle` for an ask would be, and the
        actor carries on. Time spent here is not in `busy_seconds`.

        A round trip through an actor costs the asker two task switches
        and the actor one; an answer that needs no waiting saves all three.
        """
        return LATER

    async def on_stop(self) -> None:
        """Called on an orderly stop, after the queued messages were handled.

        Tasks still running in `nursery` are cancelled when it returns. Not
        called after a crash, nor when the grace period ran out.
        """

    @property
    def ref(self) -> ActorRef[M]:
        """This actor's own reference (stable across restarts)."""
        return ActorRef(self._cell)

    @property
    def ask_abandoned(self) -> bool:
        """Whether the asker of the ask being handled has given it up
        (cancelled while it waited), so that the reply will reach nobody:
        what the handler would hand over with it (a lease, say) is then
        better not taken. False when not handling an ask."""
        request = self._cell.current_ask
        return request is not None and request.task is None

    def forward(self, to: ActorRef[Any], message: Any) -> None:
        """Hand the ask being handled to `to`, as `message`: the asker gets
        `to`'s reply (or its error, or `ActorStopped` if `to` stops before
        replying) in place of this handler's, and is never woken in between.

        Never yields. Only while handling an ask (`RuntimeError` otherwise).
        Raises `MailboxFull` or `ActorStopped` if `to` cannot take it; the
        ask then stays this handler's to answer. Once it is forwarded, this
        handler's return value is ignored, and an exception it raises
        crashes the actor, as one raised handling a `send` does. An idle
        `to` may answer at once (`answer_now`), in this handler's task: the
        asker then has its reply (or the exception `answer_now` raised)
        when this returns, and `to`'s own task never wakes for it.
        """
        cell = self._cell
        request = cell.current_ask
        if request is None:
            raise RuntimeError(f"{cell.name} is not handling an ask; there is nothing to forward")
        target = to._cell
        if target.answer is not None and target.mailbox.waiting:
            # Still this handler's ask until answered: should anything but an
            # Exception escape, the asker hears of this actor's crash.
            try:
                reply = target.answer_inline(message)
            except Exception as error:
                cell.current_ask = None
                request.fail(error)
                return
            if reply is not LATER:
                cell.current_ask = None
                request.reply(reply)
                return
        original, request.message = request.message, message
        try:
            try:
                target.mailbox.put_nowait(request)  # an ask: never offered to handle_now
            except ActorStopped:
                target.books.dead_letter()
                raise
        except BaseException:
            request.message = original
            raise
        cell.current_ask = None

    @property
    def nursery(self) -> trio.Nursery:
        """The nursery of the actor's current activation, for its own tasks."""
        nursery = self._cell.nursery
        if nursery is None:
            raise RuntimeError(f"{self._cell.name} is not running")
        return nursery

    def start_task(self, fn: Callable[..., Awaitable[Any]], *args: Any, name: str = "") -> None:
        """Run `fn(*args)` in the actor's nursery.

        When its last task is done, a hibernating actor lingers for
        `hibernate_after` seconds and then goes dormant; one waiting on an
        empty mailbox is not woken for that until the linger is over. An
        exception from it crashes the actor.
        """
        self.nursery.start_soon(
            _run_then_notify,
            self._cell,
            fn,
            args,
            name=name or getattr(fn, "__qualname__", None),
        )

    def stop(self) -> None:
        """End this actor after the message being handled, as a normal exit.

        Messages already queued are handled first. A `permanent` actor is
        restarted after a normal exit; `transient` and `temporary` ones are not.
        """
        self._cell.request_stop(normal_exit=True)


async def _run_then_notify(cell: _Cell, fn: Callable[..., Awaitable[Any]], args: Any) -> None:
    """An actor's task (`Actor.start_task`): when it ends, its cell is told."""
    try:
        await fn(*args)
    finally:
        cell.task_ended()


class _Ask:
    """A request in a mailbox, with the parked task that awaits its reply."""

    __slots__ = ("message", "task")

    def __init__(self, message: Any, task: Task) -> None:
        self.message = message
        self.task: Task | None = task

    def reply(self, value: Any) -> None:
        task = self.task
        if task is not None:
            self.task = None
            reschedule(task, outcome.Value(value))

    def fail(self, error: BaseException) -> None:
        task = self.task
        if task is not None:
            self.task = None
            reschedule(task, outcome.Error(error))


@final
class ActorRef(Generic[M]):
    """The only handle to an actor that others get. Stable across restarts.

    `send` and `send_nowait` tell; `ask` waits for the reply. All three raise
    `ActorStopped` once the actor has stopped (and count a dead letter).
    """

    __slots__ = ("_cell",)

    def __init__(self, cell: _Cell) -> None:
        self._cell = cell

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ActorRef) and other._cell is self._cell

    def __hash__(self) -> int:
        return id(self._cell)

    def __repr__(self) -> str:
        return f"<ActorRef {self._cell.name} ({self._cell.state})>"

    @property
    def name(self) -> str:
        return self._cell.name

    @property
    def stopped(self) -> bool:
        """True once the actor has stopped for good."""
        return self._cell.state == "stopped"

    def send_nowait(self, message: M) -> None:
        """Queue `message` without yielding.

        Raises `MailboxFull` when the mailbox is at capacity (nothing queued)
        and `ActorStopped` when the actor has stopped.
        """
        cell = self._cell
        if cell.inline is not None and cell.mailbox.waiting and cell.handle_inline(message):
            return
        try:
            cell.mailbox.put_nowait(message)
        except ActorStopped:
            cell.books.dead_letter()
            raise

    async def send(self, message: M) -> None:
        """Queue `message`, waiting while the mailbox is full (backpressure).

        Fast path: when there is room this returns without yielding, except
        that a task yields once every `YIELD_EVERY` sends, so a loop of sends
        stays fair. If cancelled while waiting for room, nothing was queued.
        An idle actor may handle the message before this returns
        (`Actor.handle_now`, if its class has `inline_sends`).
        """
        cell = self._cell
        pacer = cell.pacer
        pacer.sends += 1
        if pacer.sends >= YIELD_EVERY:
            pacer.sends = 0
            # Before the message goes: cancelled here, nothing was sent.
            await trio.lowlevel.checkpoint()
        mailbox = cell.mailbox
        if not (cell.inline is not None and mailbox.waiting and cell.handle_inline(message)):
            try:
                try:
                    mailbox.put_nowait(message)
                except MailboxFull:
                    await mailbox.put(message)
            except ActorStopped:
                cell.books.dead_letter()
                raise

    async def ask(self, message: M) -> Any:
        """Send `message` and wait for the handler's return value.

        The handler's exception, if it raised one, is re-raised here. Raises
        `ActorStopped` if the actor stops or crashes before replying. A timeout
        is the caller's: wrap the call in `trio.fail_after`. If cancelled, the
        reply is abandoned; the message may still be handled. An idle actor
        may answer at once (`Actor.answer_now`): the ask then returns
        without yielding, except once every `YIELD_EVERY` sends and asks
        that did not, as `send` does.
        """
        cell = self._cell
        if cell.answer is not None and cell.mailbox.waiting:
            pacer = cell.pacer
            pacer.sends += 1
            if pacer.sends >= YIELD_EVERY:
                pacer.sends = 0
                # Before it is answered: cancelled here, nothing was asked.
                await trio.lowlevel.checkpoint()
            if cell.mailbox.waiting:  # still idle, after that turn
                reply = cell.answer_inline(message)
                if reply is not LATER:
                    return reply
        request = _Ask(message, current_task())
        try:
            try:
                cell.mailbox.put_nowait(request)
            except MailboxFull:
                await cell.mailbox.put(request)
        except ActorStopped:
            cell.books.dead_letter()
            raise

        def abort(_: Any) -> Abort:
            request.task = None
            return Abort.SUCCEEDED

        return await wait_task_rescheduled(abort)

    async def stop(self) -> None:
        """Stop the actor and wait until it has stopped; it is not restarted.

        Queued messages are handled first, then `on_stop` runs; past the
        child's grace period the actor is cancelled. Idempotent. Called by
        the actor on itself, from its handler, it cannot wait for itself: it
        asks for the stop and returns at once, and the actor stops after the
        message it is handling (and those queued).
        """
        cell = self._cell
        if cell.task is not None and cell.task is current_task():
            cell.request_stop()
            return
        await cell.supervisor.stop_child(cell)

    def statistics(self) -> ActorStatistics:
        return self._cell.statistics()


@attrs.frozen
class ChildExited:
    """Delivered to a child's monitor when the child has stopped for good.

    `error` is the crash that ended it, or None for an orderly stop. It is
    queued past the monitor's mailbox capacity, so it is never lost while the
    monitor lives.
    """

    ref: ActorRef[Any]
    error: BaseException | None
