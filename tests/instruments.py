"""trio instruments the tests watch tasks with."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import trio


class Steps(trio.abc.Instrument):
    """Counts the steps of the tasks named `name` (an actor's own task is
    named after the actor), and notes when the first was taken."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.count = 0
        self.first_at: float | None = None

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        if task.name == self.name:
            self.count += 1
            if self.first_at is None:
                self.first_at = trio.current_time()


@contextmanager
def counting_steps(name: str) -> Iterator[Steps]:
    """`Steps` of the tasks named `name`, counted inside the block."""
    steps = Steps(name)
    trio.lowlevel.add_instrument(steps)
    try:
        yield steps
    finally:
        trio.lowlevel.remove_instrument(steps)
