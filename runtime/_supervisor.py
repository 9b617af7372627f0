"""Supervision: who starts actors, restarts them, and stops them in order."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import attrs
import trio

from ._actor import Actor, ActorRef
from ._cell import _Cell, _Pacer
from ._exceptions import RestartIntensityExceeded
from ._mailbox import Mailbox
from ._restart import (
    ChildSpec,
    RestartBook,
    RestartIntensity,
    RestartType,
    _Verdict,
    check_restart,
)
from ._stats import KindBooks

log = logging.getLogger("runtime")

#: With `concurrent_stop`, how many children are stopped at once.
CONCURRENT_STOPS = 256

A = TypeVar("A", bound=Actor[Any])


@attrs.define(eq=False, slots=True)
class SystemBooks:
    """What all supervisors of one actor system share: kinds, names, pacing."""

    kinds: dict[str, KindBooks] = attrs.Factory(dict)
    pacer: _Pacer = attrs.Factory(_Pacer)
    _serial: int = 0

    def kind(self, name: str) -> KindBooks:
        books = self.kinds.get(name)
        if books is None:
            books = self.kinds[name] = KindBooks(name)
        return books

    def next_name(self, kind: str) -> str:
        self._serial += 1
        return f"{kind}-{self._serial}"


def _one_error(error: BaseException) -> BaseException:
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return error


def _check_monitor(monitor: object) -> None:
    if monitor is not None and not isinstance(monitor, ActorRef):
        raise TypeError(f"monitor must be an ActorRef or None, got {monitor!r}")


def _starts_dormant(actor: Actor[Any]) -> bool:
    """A hibernating actor with nothing to run before its first message."""
    return type(actor).hibernate and type(actor).on_start is Actor.on_start


@attrs.define(eq=False)
class Supervisor:
    """Owns a nursery; starts, restarts and stops its children.

    Children start with `nursery.start`: `spawn` returns once the actor's
    `on_start` has run. Stopping goes in reverse start order (or all at once
    with `concurrent_stop`), each child given its grace period before it is
    cancelled. Too many restarts within the intensity window stop every child
    and escalate `RestartIntensityExceeded` to the parent.
    """

    name: str
    books: SystemBooks
    intensity: RestartIntensity = attrs.Factory(RestartIntensity)
    restart: RestartType = RestartType.PERMANENT
    concurrent_stop: bool = False
    _nursery: trio.Nursery | None = attrs.field(default=None, init=False)
    _children: dict[_Cell | Supervisor, None] = attrs.field(factory=dict, init=False)
    _restarts: RestartBook = attrs.field(init=False)
    _escalation: RestartIntensityExceeded | None = attrs.field(default=None, init=False)
    _stopping: bool = attrs.field(default=False, init=False)

    def __attrs_post_init__(self) -> None:
        self._restarts = RestartBook(self.intensity)

    @property
    def children(self) -> list[ActorRef[Any] | Supervisor]:
        """Live children in start order."""
        return [c if isinstance(c, Supervisor) else ActorRef(c) for c in self._children]

    def _open_nursery(self) -> trio.Nursery:
        if self._nursery is None or self._stopping:
            raise RuntimeError(f"supervisor {self.name} is not running")
        return self._nursery

    async def spawn(
        self,
        factory: Callable[[], A],
        *,
        name: str | None = None,
        restart: RestartType = RestartType.PERMANENT,
        grace: float = 5.0,
        mailbox_capacity: int | None = None,
        monitor: ActorRef[Any] | None = None,
    ) -> ActorRef[Any]:
        """Create an actor with `factory()`, start it, and return its ref.

        Returns once `on_start` has completed; an exception from the factory
        or from `on_start` is raised here and nothing is left behind. A
        hibernating actor with no `on_start` of its own starts dormant, with
        no task until its first message. When the child stops for good,
        `monitor` (if given) receives `ChildExited`.
        """
        nursery = self._open_nursery()
        spec = ChildSpec(factory=factory, restart=restart, grace=grace)
        _check_monitor(monitor)
        actor = factory()
        dormant = _starts_dormant(actor)
        cell = self._enlist(actor, spec, name, mailbox_capacity, monitor, dormant=dormant)
        if not dormant:
            await nursery.start(self._activation, cell, name=cell.name)
        return ActorRef(cell)

    def spawn_dormant(
        self,
        factory: Callable[[], A],
        *,
        name: str | None = None,
        restart: RestartType = RestartType.PERMANENT,
        grace: float = 5.0,
        mailbox_capacity: int | None = None,
        monitor: ActorRef[Any] | None = None,
    ) -> ActorRef[Any]:
        """`spawn` for a hibernating actor with no `on_start` of its own,
        which starts dormant: nothing to wait for, so this never yields.
        Raises `TypeError`, having created nothing, for any other actor."""
        self._open_nursery()
        spec = ChildSpec(factory=factory, restart=restart, grace=grace)
        _check_monitor(monitor)
        actor = factory()
        if not _starts_dormant(actor):
            raise TypeError(
                f"{type(actor).__name__} does not start dormant (it does not hibernate, "
                "or has an on_start); use spawn"
            )
        return ActorRef(self._enlist(actor, spec, name, mailbox_capacity, monitor, dormant=True))

    def _enlist(
        self,
        actor: Actor[Any],
        spec: ChildSpec,
        name: str | None,
        mailbox_capacity: int | None,
        monitor: ActorRef[Any] | None,
        *,
        dormant: bool,
    ) -> _Cell:
        """A cell for the new `actor` among this supervisor's children;
        a dormant one gets its first task from its first message."""
        kind = type(actor).kind or type(actor).__name__
        name = name or self.books.next_name(kind)
        cell = _Cell(
            name=name,
            spec=spec,
            supervisor=self,
            mailbox=Mailbox(
                type(actor).mailbox_capacity if mailbox_capacity is None else mailbox_capacity,
                name,
            ),
            pacer=self.books.pacer,
            books=self.books.kind(kind),
            monitor=monitor,
        )
        cell.adopt(actor)
        cell.books.enlist(cell)
        self._children[cell] = None
        if dormant:
            actor._cell = cell
            cell.state = "dormant"
            cell.mailbox.on_arrival = cell.wake
        return cell

    async def start_supervisor(
        self,
        name: str,
        *,
        intensity: RestartIntensity | None = None,
        restart: RestartType = RestartType.PERMANENT,
        concurrent_stop: bool = False,
    ) -> Supervisor:
        """Start a child supervisor. When it escalates, this one treats that
        as the child's crash: restart it (its children start afresh under the
        same refs) within this supervisor's intensity, or escalate in turn."""
        nursery = self._open_nursery()
        check_restart(restart)
        child = Supervisor(
            name,
            self.books,
            intensity or RestartIntensity(),
            restart,
            concurrent_stop,
        )
        self._children[child] = None
        await nursery.start(self._supervise, child, name=f"supervisor {child.name}")
        return child

    def activate(self, cell: _Cell) -> None:
        """Start a task for a dormant child (called when a message arrives).
        If this supervisor's nursery has closed under it (torn down by an
        error that is not an `Exception`), the child stops instead, failing
        what waits in its mailbox, rather than staying awake with no task."""
        assert self._nursery is not None
        try:
            self._nursery.start_soon(self._activation, cell, name=cell.name)
        except RuntimeError:  # "Nursery is closed to new arrivals"
            self._forget(cell, None)

    def stopped_dormant(self, cell: _Cell) -> None:
        """A dormant child that need not wake to stop has been stopped."""
        self._forget(cell, None)

    async def stop_child(self, cell: _Cell) -> None:
        """Stop one child: drain, `on_stop`, and cancel it after its grace."""
        await self._stop_cells([cell])

    async def stop_actors(self, refs: Iterable[ActorRef[Any]]) -> None:
        """Stop these children together: every stop is requested before any
        is waited for, so a thousand idle actors stop in about the time one
        takes, not in a thousand waits. Each drains its queue and runs
        `on_stop`, as `ActorRef.stop()` does, and is cancelled if still
        running at the end of its own grace period (counted from now). None
        is restarted. Raises `ValueError`, having stopped nothing, for a ref
        that is not a child of this supervisor.

        Called by an actor with its own ref among `refs`, it only asks for
        its own stop, as `ActorRef.stop()` does. If the call is cancelled,
        the stops it asked for go on, but an actor past its grace is no
        longer cancelled for it."""
        cells = list(dict.fromkeys(ref._cell for ref in refs))
        for cell in cells:
            if cell.supervisor is not self:
                raise ValueError(f"{cell.name} is not a child of supervisor {self.name}")
        await self._stop_cells(cells)

    async def _stop_cells(self, cells: list[_Cell]) -> None:
        began = trio.current_time()
        for n, cell in enumerate(cells, 1):
            cell.request_stop()  # a dormant one that need not wake is stopped here
            if n % CONCURRENT_STOPS == 0:
                await trio.lowlevel.checkpoint()  # others run meanwhile
        me = trio.lowlevel.current_task()
        waiting = [cell for cell in cells if cell.state != "stopped" and cell.task is not me]
        # First every deadline, cancelling whoever overran it; only then wait
        # for those cancelled, so that no one's slow exit delays the next one.
        late = []
        for cell in sorted(waiting, key=lambda cell: cell.spec.grace):
            with trio.move_on_at(began + cell.spec.grace):
                await cell.wait_stopped()
            if cell.state != "stopped":
                self._cancel_late(cell)
                late.append(cell)
        for cell in late:
            await cell.wait_stopped()
        await trio.lowlevel.checkpoint()

    def _cancel_late(self, cell: _Cell) -> None:
        log.warning("actor %s did not stop within %ss; cancelling it", cell.name, cell.spec.grace)
        if cell.scope is not None:
            cell.scope.cancel()

    async def stop(self) -> None:
        """Stop every child (reverse start order, or concurrently), then self."""
        self._stopping = True
        await self._stop_children()
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()

    async def _stop_children(self) -> None:
        children = list(reversed(self._children))
        if self.concurrent_stop:
            # At most CONCURRENT_STOPS at once: each child's grace period
            # starts when its own stop does.
            limiter = trio.CapacityLimiter(CONCURRENT_STOPS)

            async def stop_one(child: _Cell | Supervisor) -> None:
                async with limiter:
                    await self._stop_one(child)

            async with trio.open_nursery() as nursery:
                for child in children:
                    nursery.start_soon(stop_one, child)
        else:
            for child in children:
                await self._stop_one(child)

    async def _stop_one(self, child: _Cell | Supervisor) -> None:
        if isinstance(child, Supervisor):
            await child.stop()
        else:
            await self.stop_child(child)

    async def run(
        self, *, task_status: trio.TaskStatus[Supervisor] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Own the nursery until stopped; raise `RestartIntensityExceeded` on escalation."""
        self._escalation = None
        self._stopping = False
        self._restarts.reset()
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            for child in list(self._children):
                await self._revive(nursery, child)
            task_status.started(self)
            await trio.sleep(math.inf)  # until stop() cancels the nursery
        self._nursery = None
        if self._escalation is not None:
            raise self._escalation

    async def _revive(self, nursery: trio.Nursery, child: _Cell | Supervisor) -> None:
        """After this supervisor restarted: start a child again, or forget it."""
        if isinstance(child, Supervisor):
            if child.restart is RestartType.TEMPORARY:
                del self._children[child]
            else:
                await nursery.start(self._supervise, child, name=f"supervisor {child.name}")
        elif child.spec.restart is RestartType.TEMPORARY:
            del self._children[child]
        else:
            child.revive()
            await nursery.start(self._activation, child, name=child.name)

    async def _supervise(
        self,
        child: Supervisor,
        *,
        task_status: trio.TaskStatus[Supervisor] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        while True:
            try:
                await child.run(task_status=task_status)
                self._forget_supervisor(child)
                return
            except RestartIntensityExceeded as error:
                task_status = trio.TASK_STATUS_IGNORED
                verdict = self._verdict(child.restart, normal=False)
                log.error("supervisor %s gave up: %s", child.name, error)
                if verdict is _Verdict.RESTART:
                    continue
                self._forget_supervisor(child, keep=verdict is _Verdict.ESCALATE)
                if verdict is _Verdict.ESCALATE:
                    await self._escalate(error)
                return

    def _verdict(self, restart: RestartType, *, normal: bool) -> _Verdict:
        if self._stopping or restart is RestartType.TEMPORARY:
            return _Verdict.STOP
        if normal and restart is not RestartType.PERMANENT:
            return _Verdict.STOP
        if self._restarts.allow(trio.current_time()):
            return _Verdict.RESTART
        return _Verdict.ESCALATE

    async def _escalate(self, error: BaseException) -> None:
        if self._escalation is not None:
            return
        limit = self.intensity
        escalation = RestartIntensityExceeded(
            f"supervisor {self.name}: more than {limit.max_restarts} restarts "
            f"within {limit.window}s"
        )
        escalation.__cause__ = error
        self._escalation = escalation
        self._stopping = True
        await self._stop_children()
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()

    async def _activation(
        self, cell: _Cell, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """One stretch of an actor's life with a task: from a wake-up (or its
        start) until it goes dormant or stops, restarting it in between."""
        starting = cell.state == "starting"
        cell.mailbox.on_arrival = None
        cell.task = trio.lowlevel.current_task()
        try:
            while True:
                crash: BaseException | None = None
                # The nursery's own scope is the one `stop_child` cancels.
                stopped_in_order = False
                try:
                    async with trio.open_nursery() as nursery:
                        scope = cell.scope = nursery.cancel_scope
                        cell.nursery = nursery
                        actor = cell.actor
                        if actor is None:
                            actor = cell.spec.factory()
                            cell.adopt(actor)
                        if not hasattr(actor, "_cell"):
                            actor._cell = cell
                            await actor.on_start()
                        if starting:
                            starting = False
                            if cell.state == "starting":
                                cell.state = "running"
                            task_status.started()
                        await cell.serve(actor)
                        if cell.state == "stopping":
                            await actor.on_stop()
                            stopped_in_order = True
                            nursery.cancel_scope.cancel()
                except Exception as error:
                    cell.nursery = None
                    if starting:
                        # spawn raises what on_start raised, not our nursery's
                        # group, and a monitor hears of that error too.
                        failure = _one_error(error)
                        self._forget(cell, failure)
                        if failure is error:
                            raise
                        raise failure from failure.__cause__
                    crash = _one_error(error)
                    cell.fail_current_ask(crash)
                    log.error("actor %s crashed", cell.name, exc_info=crash)
                    if cell.mailbox.closed:  # stopped from outside: never restarted
                        verdict = _Verdict.STOP
                    else:
                        verdict = self._verdict(cell.spec.restart, normal=False)
                except BaseException:
                    cell.nursery = None
                    self._forget(cell, None)
                    raise
                else:
                    cell.nursery = None
                    cut = scope.cancelled_caught and not stopped_in_order
                    if cell.state != "stopping" and not cut:
                        if len(cell.mailbox):
                            continue
                        cell.state = "dormant"
                        cell.scope = None  # exited; a wake-up opens a new one
                        cell.mailbox.shrink()
                        cell.mailbox.on_arrival = cell.wake
                        return
                    if cell.mailbox.closed or cut:
                        verdict = _Verdict.STOP
                    else:
                        verdict = self._verdict(cell.spec.restart, normal=cell.normal_exit)
                if verdict is _Verdict.RESTART:
                    cell.restart()
                    continue
                self._forget(cell, crash, keep=verdict is _Verdict.ESCALATE)
                if verdict is _Verdict.ESCALATE:
                    assert crash is not None
                    await self._escalate(crash)
                return
        finally:
            cell.task = None  # a dormant actor holds no task, not even a finished one

    def _forget_supervisor(self, child: Supervisor, *, keep: bool = False) -> None:
        """A child supervisor has stopped; keep its place as `_forget` does."""
        revivable = child.restart is not RestartType.TEMPORARY
        if not (revivable and (keep or self._stopping)):
            self._children.pop(child, None)

    def _forget(self, cell: _Cell, reason: BaseException | None, *, keep: bool = False) -> None:
        """Mark a child stopped; keep its place only if a restart of this
        supervisor would start it again."""
        cell.finish(reason)
        revivable = cell.spec.restart is not RestartType.TEMPORARY
        if not (revivable and (keep or self._stopping)):
            self._children.pop(cell, None)
