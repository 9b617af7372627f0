"""Sleeping for many tasks at once, without a cancel scope per sleep.

`trio.sleep` opens a cancel scope whose deadline raises `Cancelled` into
the sleeper and catches it again on the way out: about 80 µs of CPU per
sleep on a 2-core machine, most of it the exception. A process whose
thousands of tasks each sleep many times a second spends a core there.

`sleep` parks the task instead. One system task per trio run keeps every
sleeper's deadline in a heap and wakes the due ones; it alone waits on a
trio deadline, and wakes without an exception. Deadlines are rounded up
to `RESOLUTION`, so sleepers due within the same millisecond wake together.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from typing import Any

import attrs
import trio
from trio.lowlevel import Abort, RunVar, Task, current_task, reschedule, wait_task_rescheduled

#: Deadlines are rounded up to a whole multiple of this many seconds.
RESOLUTION = 0.001
#: Cancelled sleeps left in the heap before it is rebuilt without them.
_COMPACT_AT = 1024


@attrs.define(eq=False, slots=True)
class _Sleeper:
    """A sleeping task to wake, or a callback to call, once due. Both are
    None once it has fired or been cancelled."""

    task: Task | None
    callback: Callable[[], None] | None = None

    @property
    def live(self) -> bool:
        return self.task is not None or self.callback is not None


@attrs.define(eq=False)
class _Timers:
    """The sleepers of one trio run, and the system task that wakes them."""

    _heap: list[tuple[float, int, _Sleeper]] = attrs.Factory(list)
    _count: int = 0
    _cancelled: int = 0
    #: The waker, when it is parked with nothing to wait for.
    _idle: Task | None = None
    #: The waker's deadline scope, while it waits for the earliest sleeper.
    _scope: trio.CancelScope | None = None

    def add(self, deadline: float, sleeper: _Sleeper) -> None:
        self._count += 1
        heapq.heappush(self._heap, (deadline, self._count, sleeper))
        if self._idle is not None:
            waker, self._idle = self._idle, None
            reschedule(waker)
        elif self._scope is not None and deadline < self._scope.deadline:
            self._scope.deadline = deadline

    def cancel(self, sleeper: _Sleeper) -> None:
        if not sleeper.live:
            return  # it has fired (or was cancelled) already
        sleeper.task = sleeper.callback = None
        self._cancelled += 1
        if self._cancelled >= _COMPACT_AT and self._cancelled * 2 > len(self._heap):
            self._heap = [entry for entry in self._heap if entry[2].live]
            heapq.heapify(self._heap)
            self._cancelled = 0

    def wake_due(self, now: float) -> None:
        heap = self._heap
        while heap and heap[0][0] <= now:
            sleeper = heapq.heappop(heap)[2]
            task, callback = sleeper.task, sleeper.callback
            sleeper.task = sleeper.callback = None
            if callback is not None:
                callback()
            elif task is not None:
                reschedule(task)
            else:
                self._cancelled -= 1

    async def run(self) -> None:
        while True:
            self.wake_due(trio.current_time())
            if self._heap:
                await self._wait_until(self._heap[0][0])
            else:
                self._idle = current_task()
                await wait_task_rescheduled(self._abort_idle)

    def _abort_idle(self, _: Any) -> Abort:
        self._idle = None
        return Abort.SUCCEEDED

    async def _wait_until(self, deadline: float) -> None:
        """Park until `deadline` (which `add` may bring forward). Its expiry
        reschedules this task with a plain value instead of raising."""
        task = current_task()
        with trio.CancelScope(deadline=deadline) as scope:
            self._scope = scope

            def abort(raise_cancel: Any) -> Abort:
                if trio.current_time() >= scope.deadline:
                    reschedule(task)
                    return Abort.FAILED
                return Abort.SUCCEEDED  # the run is ending

            try:
                await wait_task_rescheduled(abort)
            finally:
                self._scope = None


_TIMERS: RunVar[_Timers] = RunVar("greenroom_timers")


def _timers() -> _Timers:
    try:
        return _TIMERS.get()
    except LookupError:
        timers = _Timers()
        trio.lowlevel.spawn_system_task(timers.run, name="greenroom timers")
        _TIMERS.set(timers)  # only once a waker runs for it
        return timers


def call_at(deadline: float, callback: Callable[[], None]) -> _Sleeper:
    """Call `callback` (from the timers' task, so it must not block) once
    trio's clock reaches `deadline`, rounded up as for `sleep_until`.
    Returns a handle for `cancel_call`. Call from inside a trio run."""
    timers = _timers()
    handle = _Sleeper(None, callback)
    timers.add(_rounded(deadline), handle)
    return handle


def cancel_call(handle: _Sleeper) -> None:
    """Forget a `call_at` that has not fired yet; nothing if it has."""
    _timers().cancel(handle)


def _rounded(deadline: float) -> float:
    ticks = deadline / RESOLUTION
    if ticks < 2**53:  # beyond, a float has no finer steps to round to
        deadline = max(deadline, math.ceil(ticks) * RESOLUTION)
    return deadline


async def sleep_until(deadline: float) -> None:
    """Park the calling task until trio's clock reaches `deadline` (rounded
    up to `RESOLUTION`). Like `trio.sleep_until` it always checkpoints, never
    returns early, and raises `Cancelled` if cancelled, leaving nothing
    behind; unlike it, it opens no cancel scope of its own."""
    if math.isnan(deadline):
        raise ValueError("deadline must not be NaN")
    if deadline <= trio.current_time():
        await trio.lowlevel.checkpoint()
        return
    if math.isinf(deadline):
        await trio.sleep_forever()  # as trio.sleep_until(inf) does
    timers = _timers()
    sleeper = _Sleeper(current_task())

    def abort(_: Any) -> Abort:
        timers.cancel(sleeper)
        return Abort.SUCCEEDED

    timers.add(_rounded(deadline), sleeper)
    await wait_task_rescheduled(abort)


async def sleep(seconds: float) -> None:
    """`sleep_until(now + seconds)`: `trio.sleep` for tasks that sleep often."""
    if not seconds >= 0:
        raise ValueError(f"sleep length must be a number >= 0, got {seconds!r}")
    await sleep_until(trio.current_time() + seconds)
