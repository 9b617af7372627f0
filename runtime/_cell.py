"""The cell that carries an actor across restarts: its mailbox, counters,
state, and the loop that serves its messages."""

from __future__ import annotations

from collections.abc import Callable
from time import perf_counter
from typing import TYPE_CHECKING, Any, Final

import attrs
import trio
from trio.lowlevel import Task

from ._actor import LATER, Actor, ActorRef, ChildExited, _Ask
from ._exceptions import ActorStopped
from ._mailbox import Mailbox
from ._stats import ActorStatistics, KindBooks
from ._timers import call_at, cancel_call

if TYPE_CHECKING:
    from ._restart import ChildSpec
    from ._supervisor import Supervisor
    from ._timers import _Sleeper


@attrs.define(eq=False, slots=True)
class _Pacer:
    """Counts sends that returned without yielding (one per actor system)."""

    sends: int = 0


#: What `_Cell.serve` finds in an empty mailbox.
_EMPTY: Final = object()


def _own_handle_now(cls: type[Actor[Any]]) -> Callable[[Any, Any], bool] | None:
    """The class's `handle_now`, or None if it only has `Actor`'s (which
    declines everything)."""
    return cls.handle_now if cls.handle_now is not Actor.handle_now else None


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
    #: The class's `handle_now`, if it has one of its own and offers it to
    #: senders (`inline_sends`), called with the instance (a function shared
    #: by every cell of the class, not a bound method for each: 64 bytes an
    #: idle engine).
    inline: Callable[[Any, Any], bool] | None = None
    #: The class's `answer_now`, if it has one of its own, likewise.
    answer: Callable[[Any, Any], Any] | None = None
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
    #: While a hibernating actor waits on its empty mailbox, having had
    #: tasks running when it began to: its `hibernate_after`, for the linger
    #: that starts when it becomes idle without being woken (`task_ended`,
    #: `_handled_inline`); else None.
    _linger_when_idle: float | None = None
    #: That linger, once started: the timer that wakes the actor at its end.
    _linger_timer: _Sleeper | None = None
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
        self.actor = self.inline = self.answer = None
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
        cls = type(actor)
        own = _own_handle_now(cls)
        self.inline = own if cls.inline_sends else None
        self.answer = cls.answer_now if cls.answer_now is not Actor.answer_now else None

    def handle_inline(self, message: Any) -> bool:
        """Offer `message` to the idle actor's `handle_now`; the caller has
        seen its task parked on the empty mailbox. An exception crashes the
        actor: it is raised in the actor's own task, from its wait."""
        assert self.inline is not None
        mailbox = self.mailbox
        parked = mailbox.set_aside()  # one message at a time: a send from in here queues
        try:
            done = self.inline(self.actor, message)
        except Exception as error:
            mailbox.restore(parked, wake=False)
            self.inline = self.answer = None  # nothing more reaches the failed instance
            mailbox.throw(error)
            return True
        except BaseException:
            mailbox.restore(parked)
            raise
        mailbox.restore(parked)
        if done:
            self._handled_inline()
        return done

    def answer_inline(self, message: Any) -> Any:
        """Offer the asked `message` to the idle actor's `answer_now` (the
        caller has seen its task parked on the empty mailbox): its reply,
        or `LATER`. An exception it raises is the asker's."""
        assert self.answer is not None
        mailbox = self.mailbox
        parked = mailbox.set_aside()  # one message at a time: a send from in here queues
        try:
            reply = self.answer(self.actor, message)
        except Exception:
            self.handled += 1
            raise
        finally:
            mailbox.restore(parked)
        if reply is not LATER:
            self._handled_inline()
        return reply

    def _handled_inline(self) -> None:
        self.handled += 1
        if self.state == "lingering":
            # It had nothing to do; now it may have (a task it started), so
            # it is not idle, and lingers afresh once it is.
            self.state = "running"
            if self._cancel_linger():  # one that `task_ended` started
                assert self.nursery is not None
                if not self.nursery.child_tasks:
                    self._linger_without_waking()  # idle still: afresh, from now

    def task_ended(self) -> None:
        """A task the actor started (`Actor.start_task`) is ending, in that
        task. If it was the last one of a hibernating actor that waits on
        its empty mailbox, the actor is idle now: its linger starts here,
        without waking it, and its task next runs when the linger is over
        (to go dormant) or a message comes. While other tasks run, the
        waiting actor is not woken at all. Otherwise it is woken, to see
        for itself."""
        if self._linger_when_idle is None or not self.mailbox.waiting:
            self.mailbox.poke()  # not hibernating, or woken already (to stop, say)
            return
        assert self.nursery is not None
        if len(self.nursery.child_tasks) == 1:  # this one, until it returns
            self._linger_without_waking()

    def _linger_without_waking(self) -> None:
        """Start the linger of an actor that waits on its empty mailbox
        (`_linger_when_idle` is set) and has just become idle: a timer
        wakes it when the linger is over."""
        assert self._linger_when_idle is not None and self._linger_timer is None
        self.state = "lingering"
        deadline = trio.current_time() + self._linger_when_idle
        self._linger_timer = call_at(deadline, self.mailbox.poke)

    def _cancel_linger(self) -> bool:
        """Forget the linger `_linger_without_waking` started, if any;
        whether there was one."""
        timer = self._linger_timer
        if timer is None:
            return False
        cancel_call(timer)
        self._linger_timer = None
        return True

    def wake(self) -> None:
        """A message reached this dormant actor: give it a task again. It
        counts as running from now on, so that a stop requested before
        that task runs does not start a second one."""
        self.state = "running"
        self.supervisor.activate(self)

    def restart(self) -> None:
        """Forget the failed instance; the next one comes from the factory."""
        self.actor = self.inline = self.answer = None
        self.restarts += 1
        self.normal_exit = False
        self.state = "running"

    def revive(self) -> None:
        """Make a stopped cell startable again (its supervisor restarted)."""
        self.mailbox.reopen()
        self.actor = self.inline = self.answer = None
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
        handle_now = _own_handle_now(type(actor))
        batch = 0
        began = perf_counter()
        try:
            while True:
                # No exception when the mailbox runs dry, which it does at
                # every wait; and a parked actor holds no message (nor its
                # reply) alive: `item` is cleared before it waits.
                item = mailbox.get_or(_EMPTY)
                if item is _EMPTY:
                    if self.state == "stopping":
                        return
                    idle = hibernate and not nursery.child_tasks
                    if idle and (lingered or linger <= 0):
                        return
                    self.busy_seconds += perf_counter() - began
                    item = result = None
                    if idle:  # awake a while yet, in case more comes
                        lingered = True
                        self.state = "lingering"
                        await mailbox.wait(trio.current_time() + linger)
                        if self.state == "lingering":
                            self.state = "running"
                        else:  # a message was handled inline meanwhile
                            lingered = False
                    else:
                        if hibernate and linger > 0:
                            self._linger_when_idle = linger
                        await mailbox.wait()
                        self._linger_when_idle = None
                        # Idle meanwhile, it has lingered since (unless stopping).
                        if self._cancel_linger() and self.state == "lingering":
                            self.state = "running"
                            lingered = True
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
                elif handle_now is None or not handle_now(actor, item):
                    await handle(item)
                self.handled += 1
                batch += 1
                if batch >= per_turn:
                    batch = 0
                    await trio.lowlevel.checkpoint()
        finally:
            self.busy_seconds += perf_counter() - began
            self._linger_when_idle = None
            self._cancel_linger()

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
