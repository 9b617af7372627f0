"""One user's engine: the runs of that user, their limits, timeouts and ends."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Awaitable
from typing import Any, Literal

import attrs
import trio

from runtime import LATER, Actor, ActorRef, ActorStopped, MailboxFull

from ._agents import AgentRegistry, RunContext
from ._bridge import Emit, OpenRun, new_emit
from ._context import UserContext
from ._errors import DuplicateRun, UnknownRun
from ._events import AGENT_COMPLETED, AGENT_ERROR, AGENT_STARTED
from ._stats import RunBooks, audit

Admission = Literal["started", "queued", "rejected"]


@attrs.define(eq=False, slots=True)
class RunRecord:
    ctx: UserContext
    agent: str
    input: Any
    #: The context's, kept here: read a dozen times in a run's life.
    run_id: str = attrs.field(
        init=False, default=attrs.Factory(lambda self: self.ctx.run_id, takes_self=True)
    )
    scope: trio.CancelScope | None = None
    #: Why the run is being ended from outside ("cancelled", "shutdown").
    end_reason: str | None = None
    end_detail: str = ""


@attrs.define(eq=False, slots=True)
class EngineRules:
    """Admission for one user's runs, without I/O.

    At most `max_running` run at once and `max_queued` wait; a run beyond
    both is rejected. Run ids are unique among the user's live runs.
    """

    max_running: int
    max_queued: int
    _running: dict[str, RunRecord] | None = None
    _queued: deque[RunRecord] | None = None

    @property
    def running(self) -> int:
        return len(self._running) if self._running else 0

    @property
    def queued(self) -> int:
        return len(self._queued) if self._queued else 0

    @property
    def idle(self) -> bool:
        return not self._running and not self._queued

    def _live(self, run_id: str) -> RunRecord | None:
        if self._running and run_id in self._running:
            return self._running[run_id]
        for record in self._queued or ():
            if record.run_id == run_id:
                return record
        return None

    def starts(self, run_id: str) -> bool:
        """Whether a new run `run_id` would start at once (not queued,
        rejected, nor a duplicate)."""
        return self.running < self.max_running and self._live(run_id) is None

    def admit(self, record: RunRecord) -> Admission:
        """Decide for a new run; raises `DuplicateRun` and changes nothing."""
        if self._live(record.run_id) is not None:
            raise DuplicateRun(f"run_id {record.run_id!r} is already a live run of this user")
        if self.running < self.max_running:
            if self._running is None:
                self._running = {}
            self._running[record.run_id] = record
            return "started"
        if self.queued < self.max_queued:
            if self._queued is None:
                self._queued = deque()
            self._queued.append(record)
            return "queued"
        return "rejected"

    def finished(self, run_id: str) -> RunRecord | None:
        """A running run ended; return the queued run that starts in its place."""
        if self._running:
            self._running.pop(run_id, None)
        if self._queued and self.running < self.max_running:
            record = self._queued.popleft()
            assert self._running is not None
            self._running[record.run_id] = record
            return record
        return None

    def withdraw(self, run_id: str) -> tuple[Literal["running", "queued"], RunRecord]:
        """Find a live run to cancel; a queued one leaves the queue. Raises
        `UnknownRun` if the user has no live run with that id."""
        if self._running and run_id in self._running:
            return "running", self._running[run_id]
        for record in self._queued or ():
            if record.run_id == run_id:
                assert self._queued is not None
                self._queued.remove(record)
                return "queued", record
        raise UnknownRun(f"no live run {run_id!r} for this user")

    def withdraw_all(self) -> tuple[list[RunRecord], list[RunRecord]]:
        """(running, queued): the queue is emptied; running runs stay until they end."""
        queued = list(self._queued or ())
        self._queued = None
        return list((self._running or {}).values()), queued


@attrs.frozen
class EngineEnv:
    """What every engine of a core shares (one object, not one per engine)."""

    bridge: ActorRef[Any]
    agents: AgentRegistry
    runs: RunBooks
    max_running: int
    max_queued: int
    run_timeout: float
    linger: float = 0.0


@attrs.frozen
class Submit:
    ctx: UserContext
    agent: str
    input: Any


@attrs.frozen
class Cancel:
    run_id: str


@attrs.frozen
class EndAll:
    reason: str
    detail: str


@attrs.frozen
class _RunEnded:
    run_id: str


class _RunEmitter:
    """How a run's agent emits: straight to the bridge, as its user's run.
    (One object, not a closure's function and cells: a run holds it as
    long as it lives.)"""

    __slots__ = ("bridge", "run_id", "user_id")

    def __init__(self, bridge: ActorRef[Any], user_id: str, run_id: str) -> None:
        self.bridge = bridge
        self.user_id = user_id
        self.run_id = run_id

    def __call__(self, type: str, data: dict[str, Any]) -> Awaitable[None]:
        # The bridge's send itself is the awaitable: no frame of our own per event.
        return self.bridge.send(new_emit((self.user_id, self.run_id, type, data, time.time())))


def _passes_through(error: BaseException) -> bool:
    """Whether `error` from an agent must go on up through its run's task:
    trio's cancellation, Ctrl-C and a closing coroutine, alone or in a group
    (an agent's own nursery), are the task's, not the run's to report."""
    if isinstance(error, BaseExceptionGroup):
        return any(_passes_through(inner) for inner in error.exceptions)
    return isinstance(error, trio.Cancelled | KeyboardInterrupt | GeneratorExit)


class EngineActor(Actor[Any]):
    """Runs one user's agent runs in its own nursery.

    Hibernates: with no run and no message it holds no task, which is what
    lets 100 000 idle engines fit in memory.
    """

    hibernate = True
    #: A dormant engine has no run, queued or running: nothing to end.
    stop_wakes = False
    kind = "engine"
    mailbox_capacity = 256
    __slots__ = ("env", "hibernate_after", "rules", "user_id")

    def __init__(self, user_id: str, env: EngineEnv) -> None:
        self.user_id = user_id
        self.env = env
        self.rules = EngineRules(env.max_running, env.max_queued)
        self.hibernate_after = env.linger  # per core, not per class

    def answer_now(self, message: Any) -> Any:
        """A run that starts at once, while this engine is idle: started in
        the asker's task. One to queue or reject, or a bridge with no room
        for its opening, is left to `handle`."""
        if type(message) is not Submit or not self.rules.starts(message.ctx.run_id):
            return LATER
        self.env.agents.get(message.agent)  # UnknownAgent, to the asker
        record = RunRecord(message.ctx, message.agent, message.input)
        try:
            self.env.bridge.send_nowait(OpenRun(self.user_id, record.run_id, record.agent))
        except MailboxFull:
            return LATER
        admission = self.rules.admit(record)
        assert admission == "started"
        self._start(record)
        return admission

    def handle_now(self, message: Any) -> bool:
        """A run's end: booked (and the next queued run started) in the
        run's own task while this engine is idle, so that no run's end
        wakes the engine's task."""
        if type(message) is not _RunEnded:
            return False
        following = self.rules.finished(message.run_id)
        if following is not None:
            self._start(following)
        return True

    async def handle(self, message: Any) -> Any:
        match message:
            case Submit(ctx, agent, input):
                self.env.agents.get(agent)  # UnknownAgent, to the asker: nothing changed
                return await self._submit(RunRecord(ctx, agent, input))
            case Cancel(run_id):
                where, record = self.rules.withdraw(run_id)
                await self._end(record, "cancelled", "cancelled by the user", where)
            case EndAll(reason, detail):
                await self._end_all(reason, detail)
            case _:
                raise TypeError(f"an engine does not handle {message!r}")
        return None

    async def on_stop(self) -> None:
        await self._end_all("shutdown", "the server is shutting down")

    async def _end_all(self, reason: str, detail: str) -> None:
        running, queued = self.rules.withdraw_all()
        for record in queued:
            await self._end(record, reason, detail, "queued")
        for record in running:
            await self._end(record, reason, detail, "running")

    async def _submit(self, record: RunRecord) -> Admission:
        admission = self.rules.admit(record)
        await self.env.bridge.send(OpenRun(self.user_id, record.run_id, record.agent))
        if admission == "started":
            self._start(record)
        elif admission == "rejected":
            rules = self.rules
            detail = f"the user already has {rules.running} runs running and {rules.queued} queued"
            await self._emit(record, AGENT_ERROR, {"reason": "rejected", "detail": detail})
            self.env.runs.ended(record.agent, "rejected", None)
            audit("run_rejected", user_id=self.user_id, run_id=record.run_id, detail=detail)
        return admission

    async def _end(self, record: RunRecord, reason: str, detail: str, where: str) -> None:
        """End a live run from outside: cancel a running one (its task emits
        the terminal event), or end a queued one here."""
        if where == "running":
            if record.end_reason is None:
                record.end_reason, record.end_detail = reason, detail
            assert record.scope is not None
            record.scope.cancel()
            return
        await self._emit(record, AGENT_ERROR, {"reason": reason, "detail": detail})
        self.env.runs.ended(record.agent, reason, None)
        audit("run_ended", user_id=self.user_id, run_id=record.run_id, outcome=reason)

    def _start(self, record: RunRecord) -> None:
        record.scope = trio.CancelScope(deadline=trio.current_time() + self.env.run_timeout)
        self.env.runs.started()
        self.start_task(self._execute, record, name=f"run {self.user_id}/{record.run_id}")

    async def _emit(self, record: RunRecord, type: str, data: dict[str, Any]) -> None:
        await self.env.bridge.send(Emit(self.user_id, record.run_id, type, data, time.time()))

    async def _execute(self, record: RunRecord) -> None:
        env = self.env
        began = trio.current_time()
        audit("run_started", user_id=self.user_id, run_id=record.run_id, agent=record.agent)
        outcome = "exception"
        data: dict[str, Any] = {"reason": "exception", "detail": "the user's engine failed"}
        try:
            assert record.scope is not None
            with record.scope:
                agent_cls = env.agents.get(record.agent)
                await self._emit(
                    record, AGENT_STARTED, {"agent": record.agent, "input": record.input}
                )
                emit = _RunEmitter(env.bridge, self.user_id, record.run_id)
                output = await agent_cls().run(RunContext(record.ctx, emit), record.input)
                outcome, data = "completed", {"output": output}
            # Cancelled, or past its deadline: even if the agent caught the
            # Cancelled and returned, the run was stopped (or timed out).
            if record.scope.cancel_called:
                outcome = record.end_reason or "timeout"
                detail = record.end_detail or f"the run took longer than {env.run_timeout}s"
                data = {"reason": outcome, "detail": detail}
        except Exception as error:
            data = {"reason": "exception", "detail": f"{type(error).__name__}: {error}"}
        except BaseException as error:
            if _passes_through(error):
                # Cancelled past the run's own scope: the engine's nursery is
                # being cancelled (or Ctrl-C). If the run was ended on purpose
                # (shutdown), say so.
                if record.end_reason is not None:
                    outcome = record.end_reason
                    data = {"reason": outcome, "detail": record.end_detail}
                raise
            # SystemExit, or an agent's own BaseException: this run's failure,
            # not the server's.
            data = {"reason": "exception", "detail": f"{type(error).__name__}: {error}"}
        finally:
            seconds = trio.current_time() - began
            data["duration_ms"] = round(seconds * 1000.0, 3)
            terminal = AGENT_COMPLETED if outcome == "completed" else AGENT_ERROR
            last = Emit(self.user_id, record.run_id, terminal, data, time.time())
            try:
                try:
                    env.bridge.send_nowait(last)
                except MailboxFull:
                    with trio.CancelScope(shield=True):  # nothing may stop the terminal event
                        await env.bridge.send(last)
            except ActorStopped:
                pass
            env.runs.ended(record.agent, outcome, seconds)
            audit("run_ended", user_id=self.user_id, run_id=record.run_id, outcome=outcome)
        try:
            await self.ref.send(_RunEnded(record.run_id))
        except ActorStopped:
            pass  # the engine is stopping; nothing follows this run
