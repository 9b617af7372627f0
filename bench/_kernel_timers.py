"""Many tasks sleeping often: `trio.sleep` against the kernel's `runtime.sleep`.

`trio.sleep` opens a cancel scope per sleep and wakes by raising and catching
`Cancelled`; `runtime.sleep` parks the task in a heap that one system task
per trio run drains, its deadlines rounded up to the millisecond. Each
measurement starts N tasks that sleep a fixed period K times, their first
sleeps spread over one period so that they wake at different moments, like
actors that were started at different times:

  busy   1,000 tasks (300 with --quick) every 20 ms: more sleeps than
         trio.sleep can serve on one core, so the CPU a sleep costs decides
         how late the sleepers wake
  light  100 tasks (50 with --quick): neither variant is short of CPU, so
         the lateness is the timer's own (runtime.sleep's includes its
         rounding up to the millisecond), and each wake-up carries more of
         the run loop's own cost

Reported per sleep: process CPU time (`time.process_time`, from the moment
all tasks are spawned until the last one ends, divided by N * K), and the
wake-up lateness p50 / p99 in ms (when the task ran again, minus when it
asked to be woken). Every sleep records its lateness, one clock read and one
list append, inside the CPU window of both variants alike. `cpu_share` is
CPU over wall time: near 1.0, the run was bound by CPU, not by its timers.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import trio

import runtime

from . import _report
from ._kernel_workload import Result, Workload

Sleep = Callable[[float], Awaitable[None]]


def _sleepers(sleep: Sleep, tasks: int, work: Workload, prefix: str) -> Result:
    """`tasks` tasks each awaiting `sleep(period)` `work.sleeps_per_task` times."""
    period = work.sleep_period_s
    sleeps = work.sleeps_per_task
    lateness: list[float] = []

    async def sleeper(first: float) -> None:
        clock = trio.current_time
        record = lateness.append
        length = first
        asked = clock()
        for _ in range(sleeps):
            await sleep(length)
            woke = clock()
            record(woke - asked - length)
            asked = woke
            length = period

    async def main() -> tuple[float, float]:
        async with trio.open_nursery() as nursery:
            for i in range(tasks):
                nursery.start_soon(sleeper, period * (1 + i / tasks))
            cpu_began = time.process_time()
            wall_began = time.perf_counter()
        return time.process_time() - cpu_began, time.perf_counter() - wall_began

    cpu, wall = trio.run(main)
    assert len(lateness) == tasks * sleeps, len(lateness)
    return {
        f"{prefix}_cpu_us": cpu / (tasks * sleeps) * 1e6,
        f"{prefix}_late_p50_ms": _report.percentile(lateness, 50) * 1e3,
        f"{prefix}_late_p99_ms": _report.percentile(lateness, 99) * 1e3,
        f"{prefix}_cpu_share": cpu / wall,
    }


def trio_sleep_busy(work: Workload) -> Result:
    """`work.sleepers` tasks sleeping with `trio.sleep`."""
    return _sleepers(trio.sleep, work.sleepers, work, "trio_sleep_busy")


def runtime_sleep_busy(work: Workload) -> Result:
    """`work.sleepers` tasks sleeping with `runtime.sleep`."""
    return _sleepers(runtime.sleep, work.sleepers, work, "runtime_sleep_busy")


def trio_sleep_light(work: Workload) -> Result:
    """`work.light_sleepers` tasks sleeping with `trio.sleep`."""
    return _sleepers(trio.sleep, work.light_sleepers, work, "trio_sleep_light")


def runtime_sleep_light(work: Workload) -> Result:
    """`work.light_sleepers` tasks sleeping with `runtime.sleep`."""
    return _sleepers(runtime.sleep, work.light_sleepers, work, "runtime_sleep_light")
