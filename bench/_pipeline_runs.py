"""The two variants `bench.pipeline` measures, each one `trio.run` of its own.

Both share the users' side: N `User`s are ready before a start signal; then
each, after its own random offset (the same offsets for both variants of a
round), starts M runs one after another, the next once the previous run's
terminal event has been delivered. Every delivered event is encoded as the
server writes it (`text_frame` of the JSON) and tallied the same way
(`User.take`). The CPU window opens at the start signal and closes in the
delivery of the last terminal event.
"""

from __future__ import annotations

import gc
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Final

import attrs
import trio
import trio.testing

import actors
import runtime
from actors._events import AGENT_ERROR, TERMINAL_TYPES
from actors._json import Encoder
from actors._serve import GC_THRESHOLD, tuned_gc
from actors._websocket import text_frame

from ._pipeline_tasks import TaskClock

Result = dict[str, float]

#: The encoder `actors.Event.to_json` uses (`actors._json`), so that both
#: variants pay the same for JSON (`json.dumps(value, separators=...)` builds
#: a new encoder on every call, about twice the cost of the encoding itself).
_ENCODER: Final = Encoder(repr)


@attrs.frozen(kw_only=True)
class Workload:
    """N users x M `sleep` runs of `{"seconds": S, "steps": K}`; `seed` picks the offsets."""

    users: int
    runs_per_user: int
    seconds: float
    steps: int
    seed: int = 0

    @property
    def events_per_run(self) -> int:
        return self.steps + 2

    @property
    def events(self) -> int:
        return self.users * self.runs_per_user * self.events_per_run

    @property
    def input(self) -> dict[str, Any]:
        return {"seconds": self.seconds, "steps": self.steps}

    def offsets(self) -> list[float]:
        """Each user's delay before its first run: uniform within one step."""
        step = self.seconds / self.steps
        pick = random.Random(self.seed).uniform
        return [pick(0.0, step) for _ in range(self.users)]

    @property
    def timeout(self) -> float:
        """Seconds after the start signal at which a round is cut short (its
        missing events then count as lost): twice the runs' own length plus
        1 ms of CPU per event, far more than either variant needs."""
        return 10.0 + 2 * self.runs_per_user * self.seconds + self.events * 1e-3

    def with_seed(self, seed: int) -> Workload:
        return attrs.evolve(self, seed=seed)


@attrs.define(eq=False)
class Tally:
    """What all users received, and the CPU and wall time of the measured part."""

    expected_runs: int
    runs_done: int = 0
    runs_failed: int = 0
    frame_bytes: int = 0
    cpu_began: float = 0.0
    wall_began: float = 0.0
    cpu_ended: float = 0.0
    wall_ended: float = 0.0
    finished: trio.Event = attrs.Factory(trio.Event)
    #: Books the window's CPU task by task (`bench.pipeline --tasks`), if given.
    task_clock: TaskClock | None = None

    def begin(self) -> None:
        self.cpu_began = time.process_time()
        self.wall_began = time.perf_counter()
        if self.task_clock is not None:
            self.task_clock.start()

    def run_ended(self, failed: bool) -> None:
        self.runs_done += 1
        if failed:
            self.runs_failed += 1
        if self.runs_done == self.expected_runs:
            self.end()

    def end(self) -> None:
        """Close the window, once: after a timeout closed it, a run that was
        already woken may still deliver the last terminal event."""
        if self.finished.is_set():
            return
        if self.task_clock is not None:
            self.task_clock.stop()
        self.cpu_ended = time.process_time()
        self.wall_ended = time.perf_counter()
        self.finished.set()

    async def measure(self, start: trio.Event, timeout: float, users: trio.Nursery) -> None:
        """Give the start signal and wait for the last terminal event, with the
        collector tuned as `greenroom serve` tunes it. After `timeout` seconds
        the window closes anyway and the users are cancelled."""
        with tuned_gc(GC_THRESHOLD):
            self.begin()
            start.set()
            with trio.move_on_after(timeout):
                await self.finished.wait()
        if not self.finished.is_set():
            self.end()
            users.cancel_scope.cancel()


@attrs.define(eq=False)
class User:
    """One simulated user: the events it was delivered, in order or not."""

    user_id: str
    tally: Tally
    events: int = 0
    misordered: int = 0
    #: The bare variant numbers its events here, as the bare server does per connection.
    seq: int = 0
    run_over: trio.Event = attrs.Factory(trio.Event)

    def take(self, frame: bytes, seq: int, type: str) -> None:
        """Tally one delivered event (its frame, seq and type)."""
        self.events += 1
        self.tally.frame_bytes += len(frame)
        if seq != self.events:
            self.misordered += 1
        if type in TERMINAL_TYPES:
            self.tally.run_ended(type == AGENT_ERROR)
            self.run_over.set()

    def send(self, type: str, run_id: str, data: dict[str, Any]) -> None:
        """The bare variant's emit: the bare server's event dict, encoded and tallied."""
        self.seq += 1
        event = {
            "type": type,
            "seq": self.seq,
            "user_id": self.user_id,
            "run_id": run_id,
            "ts": time.time(),
            "data": data,
        }
        self.take(text_frame(_ENCODER.encode(event)), self.seq, type)


StartRun = Callable[[User], Awaitable[None]]


async def _runs(user: User, start_run: StartRun, offset: float, work: Workload) -> None:
    """After `offset`, M runs one after another, each once the last one's terminal
    event was delivered."""
    await runtime.sleep(offset)
    for _ in range(work.runs_per_user):
        user.run_over = trio.Event()
        await start_run(user)
        await user.run_over.wait()


# greenroom's core -------------------------------------------------------------


async def _core_user(
    core: actors.Core,
    user: User,
    offset: float,
    work: Workload,
    start: trio.Event,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    record_delivery = core.delivery_seconds.observe_since  # as a connection calls it

    def deliver_now(event: actors.Event) -> bool:
        frame = text_frame(event.to_json())
        record_delivery(event.ts)
        user.take(frame, event.seq, event.type)
        return True

    async def submit(user: User) -> None:
        await core.submit(user.user_id, "sleep", work.input)

    async with core.subscribe(user.user_id, deliver_now=deliver_now):
        task_status.started()
        await start.wait()
        await _runs(user, submit, offset, work)
        # Stay subscribed until the end, so no unsubscribing falls in the window.
        await user.tally.finished.wait()


async def core_round(
    work: Workload, task_clock: TaskClock | None = None, deliver_inline: bool = False
) -> Result:
    """The workload through `open_core`; each event delivered by `deliver_now`
    (with `deliver_inline`, a core of that setting: events numbered and
    delivered in the task that emits them while the bridge is idle)."""
    tally = Tally(work.users * work.runs_per_user, task_clock=task_clock)
    users = [User(f"user-{i:05d}", tally) for i in range(work.users)]
    start = trio.Event()
    config = actors.CoreConfig(max_engines=work.users + 10, deliver_inline=deliver_inline)
    async with actors.open_core(config) as core, trio.open_nursery() as nursery:
        for user, offset in zip(users, work.offsets(), strict=True):
            await nursery.start(_core_user, core, user, offset, work, start)
        await tally.measure(start, work.timeout, nursery)
    return _result(work, tally, users)


# the bare baseline ------------------------------------------------------------


async def _bare_run(user: User, run_id: str, work: Workload) -> None:
    """What bench/_bare_server.py's run does for `sleep`, minus the socket."""
    began = trio.current_time()
    user.send("agent_started", run_id, {"agent": "sleep", "input": work.input})
    seconds, steps = work.seconds, work.steps
    for step in range(1, steps + 1):
        await runtime.sleep(seconds / steps)
        user.send("agent_thinking", run_id, {"text": f"step {step} of {steps}"})
    output = {"slept": seconds, "steps": steps}
    duration = round((trio.current_time() - began) * 1000.0, 3)
    user.send("agent_completed", run_id, {"output": output, "duration_ms": duration})


async def _bare_user(
    runs: trio.Nursery,
    user: User,
    offset: float,
    work: Workload,
    start: trio.Event,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    async def submit(user: User) -> None:
        runs.start_soon(_bare_run, user, uuid.uuid4().hex, work)

    task_status.started()
    await start.wait()
    await _runs(user, submit, offset, work)


async def bare_round(
    work: Workload, task_clock: TaskClock | None = None, deliver_inline: bool = False
) -> Result:
    """The workload as plain trio tasks, one per run; no runtime (so no
    bridge, and `deliver_inline` changes nothing)."""
    tally = Tally(work.users * work.runs_per_user, task_clock=task_clock)
    users = [User(f"user-{i:05d}", tally) for i in range(work.users)]
    start = trio.Event()
    async with trio.open_nursery() as nursery:
        for user, offset in zip(users, work.offsets(), strict=True):
            await nursery.start(_bare_user, nursery, user, offset, work, start)
        await tally.measure(start, work.timeout, nursery)
    return _result(work, tally, users)


# one measurement --------------------------------------------------------------

VARIANTS: Final[dict[str, Callable[[Workload, TaskClock | None, bool], Awaitable[Result]]]] = {
    "bare": bare_round,
    "core": core_round,
}


def measure(
    variant: str,
    work: Workload,
    *,
    virtual_clock: bool = False,
    task_clock: TaskClock | None = None,
    deliver_inline: bool = False,
) -> Result:
    """One round of `variant` ("bare" or "core") in a trio run of its own;
    with `virtual_clock`, on a clock that jumps to the next deadline whenever
    every task waits, so that the same work is scheduled the same way in
    every run. `task_clock`, if given, books the measured window task by
    task; `deliver_inline` is the core's setting of that name."""
    gc.collect()
    clock = trio.testing.MockClock(autojump_threshold=0) if virtual_clock else None
    return trio.run(VARIANTS[variant], work, task_clock, deliver_inline, clock=clock)


def _result(work: Workload, tally: Tally, users: list[User]) -> Result:
    events = sum(user.events for user in users)
    cpu = tally.cpu_ended - tally.cpu_began
    wall = tally.wall_ended - tally.wall_began
    per_user = work.runs_per_user * work.events_per_run
    return {
        "events": events,
        "events_lost": work.events - events,
        "users_short": sum(user.events != per_user for user in users),
        "misordered": sum(user.misordered for user in users),
        "runs_done": tally.runs_done,
        "runs_failed": tally.runs_failed,
        "wall_s": wall,
        "cpu_s": cpu,
        "events_per_s": events / wall,
        "cpu_us_per_event": cpu / events * 1e6,
        "cpu_share": cpu / wall,
        "frame_bytes_per_event": tally.frame_bytes / events,
    }
