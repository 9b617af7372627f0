"""Where a pipeline round's CPU goes, task by task (`bench.pipeline --tasks`).

A trio `Instrument` times every task step of the measured window with
`time.process_time()` and books it to the step's task group: an actor's task
by its actor's name up to the first ':' (`engine:alice` -> `engine`,
`bridge`, `factory`), a run of an engine (`run alice/<id>`) as `run`, any
other task by its function's own name (`bench._pipeline_runs._core_user` ->
`_core_user`). trio's waits for I/O and timers (`epoll_wait`, even when it
does not block) are booked apart, and what is left of the window's CPU is
the scheduler's own, between steps, together with the instrument's calls.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import trio
from trio.lowlevel import Task

#: The two groups that are not tasks.
IO_WAIT = "(trio waiting for I/O and timers)"
BETWEEN = "(trio between steps, and this instrument)"


def task_group(name: str) -> str:
    """The group a task named `name` is booked to."""
    if name.startswith("run "):
        return "run"
    if name.startswith("<"):
        return name  # trio's own, such as "<TrioToken.run_sync_soon task>"
    return name.partition(":")[0].rpartition(".")[2]


class TaskClock(trio.abc.Instrument):
    """CPU seconds and steps per task group, between `start` and `stop`."""

    def __init__(self) -> None:
        self.steps: Counter[str] = Counter()
        self.seconds: Counter[str] = Counter()
        self._began = 0.0

    def start(self) -> None:
        """Book from now on; called within a step, whose rest is booked too."""
        self._began = time.process_time()
        trio.lowlevel.add_instrument(self)

    def stop(self) -> None:
        trio.lowlevel.remove_instrument(self)

    def before_task_step(self, task: Task) -> None:
        self._began = time.process_time()

    def after_task_step(self, task: Task) -> None:
        group = task_group(task.name)
        self.steps[group] += 1
        self.seconds[group] += time.process_time() - self._began

    def before_io_wait(self, timeout: float) -> None:
        self._began = time.process_time()

    def after_io_wait(self, timeout: float) -> None:
        self.steps[IO_WAIT] += 1
        self.seconds[IO_WAIT] += time.process_time() - self._began

    def per_event(self, events: int, cpu_seconds: float) -> dict[str, dict[str, float]]:
        """Each group's steps and CPU µs per event, biggest CPU first, then
        `BETWEEN`: what of `cpu_seconds` (the window's) no group took."""
        booked = sum(self.seconds.values())
        table: dict[str, dict[str, Any]] = {
            group: {
                "steps_per_event": self.steps[group] / events,
                "cpu_us_per_event": seconds / events * 1e6,
            }
            for group, seconds in self.seconds.most_common()
        }
        table[BETWEEN] = {
            "steps_per_event": 0.0,
            "cpu_us_per_event": max(0.0, cpu_seconds - booked) / events * 1e6,
        }
        return table
