"""Actors, their references, and the cell that carries one across restarts."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from time import perf_counter
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar, final

import attrs
import outcome
import trio
from trio.lowlevel import Abort, Task, current_task, reschedule, wait_task_rescheduled

from ._exceptions import ActorStopped, MailboxFull
from ._mailbox import Mailbox
from ._stats import ActorStatistics, KindBooks

if TYPE_CHECKING:
    from ._supervisor import ChildSpec, Supervisor

M = TypeVar("M")

#: An actor checkpoints after this many messages handled without yielding,
#: and a task's run of `send` calls yields after this many, so neither can
#: starve the rest of the program.
YIELD_EVERY = 64


class Actor(Generic[M]):
    """Base class for actors: override `handle`, and the hooks as needed.

    An actor's state is touched only by its own task, one message at a time
    (`handle_now`, if the class has one, runs in a sender's task, but only
    while the actor's own is parked between messages).
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
        """Optionally handle a told message at once, in the sender's task.

        Offered each `send`/`send_nowait` while this actor is idle: its task
        parked on an empty mailbox, so the message would be the next one
        handled anyway and order is kept. It must not await or block.
        Return True if it handled the message, False to have it queued for
        `handle` as usual. An exception it raises crashes the actor, in its
        own task, as one raised by `handle` for a `send` would. Not offered
        asks, nor messages to a dormant actor. Time spent here is not in
        the actor's `busy_seconds`.

        An actor that every other task tells something (a hub) saves them
        the wait for its next turn: under load, that turn comes only after
        every other runnable task has had one.
        """
        return False

    async def on_stop(self) -> None:
        """Called on an orderly stop, after the queued messages were handled.

        Tasks still running in `nursery` are cancelled when it returns. Not
        called after a crash, nor when the grace period ran out.
        """

    @property
    def ref(self) -> ActorRef[M]:
        """This actor's own reference (stable across restarts)."""
        return ActorRef(self._cell)

    def forward(self, to: ActorRef[Any], message: Any) -> None:
        """Hand the ask being handled to `to`, as `message`: the asker gets
        `to`'s reply (or its error, or `ActorStopped` if `to` stops before
        replying) in place of this handler's, and is never woken in between.

        Never yields. Only while handling an ask (`RuntimeError` otherwise).
        Raises `MailboxFull` or `ActorStopped` if `to` cannot take it; the
        ask then stays this handler's to answer. Once it is forwarded, this
        handler's return value is ignored, and an exception it raises
        crashes the actor, as one raised handling a `send` does.
        """
        cell = self._cell
        request = cell.current_ask
        if request is None:
            raise RuntimeError(f"{cell.name} is not handling an ask; there is nothing to forward")
        original, request.message = request.message, message
        try:
            to.send_nowait(request)
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

        When it ends the actor is woken, so a hibernating actor can go dormant
        once its last task is done. An exception from it crashes the actor.
        """
        cell = self._cell

        async def run() -> None:
            try:
                await fn(*args)
            finally:
                cell.mailbox.poke()

        self.nursery.start_soon(run, name=name or getattr(fn, "__qualname__", None))

    def stop(self) -> None:
        """End this actor after the message being handled, as a normal exit.

        Messages already queued are handled first. A `permanent` actor is
        restarted after a normal exit; `transient` and `temporary` ones are not.
        """
        self._cell.request_stop(normal_exit=True)


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
        (`Actor.handle_now`).
        """
        cell = self._cell
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
        pacer = cell.pacer
        pacer.sends += 1
        if pacer.sends >= YIELD_EVERY:
            pacer.sends = 0
            await trio.lowlevel.checkpoint()

    async def ask(self, message: M) -> Any:
        """Send `message` and wait for the handler's return value.

        The handler's exception, if it raised one, is re-raised here. Raises
        `ActorStopped` if the actor stops or crashes before replying. A timeout
        is the caller's: wrap the call in `trio.fail_after`. If cancelled, the
        reply is abandoned; the message may still be handled.
        """
        cell = self._cell
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


@attrs.define(eq=False, slots=True)
class _Pacer:
    """Counts sends that returned without yielding (one per actor system)."""

    sends: int = 0


@attrs.define(eq=False, slots=True)
class _Cell:
    """What outlives an actor instance: its mailbox, counters and place in a tree.

    Touched by the actor's own activation task and, synchronously, by the
    supervisor that owns it.
    """

    name: str
    spec: ChildSpec
    supervisor: Supervisor
    mailbox: Mailbox
    pacer: _Pacer
    books: KindBooks
    actor: Actor[Any] | None = None
    #: The task handling its messages, while it has one.
    task: Task | None = None
    #: The instance's `handle_now`, if its class has one of its own.
    inline: Callable[[Any], bool] | None = None
    nursery: trio.Nursery | None = None
    scope: trio.CancelScope | None = None
    # "starting" -> "running" | "dormant" <-> "running" <-> "lingering" -> "dormant";
    # any but "stopped" -> "stopping" -> "stopped"
    state: str = "starting"
    normal_exit: bool = False
    current_ask: _Ask | None = None
    monitor: ActorRef[Any] | None = None
    handled: int = 0
    busy_seconds: float = 0.0
    restarts: int = 0
    _done: trio.Event | None = None

    def request_stop(self, *, normal_exit: bool = False) -> None:
        """Ask the actor to stop once its queue is drained (never blocks)."""
        if self.state == "stopped":
            return
        if self.state == "stopping":
            if self.normal_exit and not normal_exit:
                # A stop from outside overrides the actor's own: no restart.
                self.normal_exit = False
                self.mailbox.close()
            return
        self.normal_exit = normal_exit
        if not normal_exit:
            self.mailbox.close()
        was_dormant = self.state == "dormant"
        self.state = "stopping"
        if not was_dormant:
            self.mailbox.poke()
        elif not normal_exit and self.actor is not None and not self.actor.stop_wakes:
            self.supervisor.stopped_dormant(self)
        else:
            self.supervisor.activate(self)

    async def wait_stopped(self) -> None:
        if self.state == "stopped":
            return
        if self._done is None:
            self._done = trio.Event()
        await self._done.wait()

    def finish(self, reason: BaseException | None) -> None:
        """Mark the actor stopped for good: fail what waits, free what it held."""
        if self.state == "stopped":
            return
        self.state = "stopped"
        self.mailbox.close()
        self.fail_current_ask(reason)
        for item in self.mailbox.take_all():
            if isinstance(item, _Ask):
                item.fail(ActorStopped(f"{self.name} stopped before replying"))
            else:
                self.books.dead_letter()
        self.books.retire(self)
        self.actor = self.inline = None
        if self._done is not None:
            self._done.set()
        if self.monitor is not None:
            try:
                self.monitor._cell.mailbox.put_urgent(ChildExited(ActorRef(self), reason))
            except ActorStopped:
                self.monitor._cell.books.dead_letter()

    def adopt(self, actor: Actor[Any]) -> None:
        """`actor` is now the instance behind this cell."""
        self.actor = actor
        self.inline = actor.handle_now if type(actor).handle_now is not Actor.handle_now else None

    def handle_inline(self, message: Any) -> bool:
        """Offer `message` to the idle actor's `handle_now`; the caller has
        seen its task parked on the empty mailbox. An exception crashes the
        actor: it is raised in the actor's own task, from its wait."""
        assert self.inline is not None
        try:
            done = self.inline(message)
        except Exception as error:
            self.inline = None  # nothing more reaches the failed instance
            self.mailbox.throw(error)
            return True
        if done:
            self.handled += 1
        return done

    def wake(self) -> None:
        """A message reached this dormant actor: give it a task again. It
        counts as running from now on, so that a stop requested before
        that task runs does not start a second one."""
        self.state = "running"
        self.supervisor.activate(self)

    def restart(self) -> None:
        """Forget the failed instance; the next one comes from the factory."""
        self.actor = self.inline = None
        self.restarts += 1
        self.normal_exit = False
        self.state = "running"

    def revive(self) -> None:
        """Make a stopped cell startable again (its supervisor restarted)."""
        self.mailbox.reopen()
        self.actor = self.inline = None
        self.normal_exit = False
        self.state = "starting"
        self._done = None
        self.books.enlist(self)

    def fail_current_ask(self, reason: BaseException | None) -> None:
        request, self.current_ask = self.current_ask, None
        if request is not None:
            error = ActorStopped(f"{self.name} stopped before replying")
            error.__cause__ = reason
            request.fail(error)

    async def serve(self, actor: Actor[Any]) -> None:
        """Handle messages until a stop is requested and the queue is empty,
        or, for a hibernating actor, until there is nothing left to do."""
        mailbox = self.mailbox
        handle = actor.handle
        nursery = self.nursery
        assert nursery is not None
        hibernate = actor.hibernate
        linger = actor.hibernate_after
        lingered = False
        per_turn = actor.messages_per_turn
        batch = 0
        began = perf_counter()
        try:
            while True:
                try:
                    item = mailbox.get_nowait()
                except trio.WouldBlock:
                    if self.state == "stopping":
                        return
                    idle = hibernate and not nursery.child_tasks
                    if idle and (lingered or linger <= 0):
                        return
                    self.busy_seconds += perf_counter() - began
                    if idle:  # awake a while yet, in case more comes
                        lingered = True
                        self.state = "lingering"
                        await mailbox.wait(trio.current_time() + linger)
                        if self.state == "lingering":
                            self.state = "running"
                    else:
                        await mailbox.wait()
                    began = perf_counter()
                    batch = 0
                    continue
                lingered = False
                if type(item) is _Ask:
                    self.current_ask = item
                    try:
                        result = await handle(item.message)
                    except Exception as error:
                        if self.current_ask is not item:
                            raise  # forwarded: the asker is no longer ours to answer
                        item.fail(error)
                    else:
                        if self.current_ask is item:
                            item.reply(result)
                    self.current_ask = None
                else:
                    await handle(item)
                self.handled += 1
                batch += 1
                if batch >= per_turn:
                    batch = 0
                    await trio.lowlevel.checkpoint()
        finally:
            self.busy_seconds += perf_counter() - began

    def statistics(self) -> ActorStatistics:
        return ActorStatistics(
            name=self.name,
            kind=self.books.kind,
            state=self.state,
            mailbox_depth=len(self.mailbox),
            mailbox_capacity=self.mailbox.capacity,
            messages_handled=self.handled,
            busy_seconds=self.busy_seconds,
            restarts=self.restarts,
        )
