"""The peer: Pykka's `ThreadingActor` doing what the kernel benchmark asks of the kernel.

Pykka is a widely used Python actor library, and one of the kernel's targets
is an `ask` faster than Pykka's. Its actors run on threads, so its numbers
include thread hand-offs where the kernel has trio task switches:

  tell  N `tell`s, then one `ask(...).get()` to be sure all were handled
  ask   sequential `ask(...).get()`: a throughput loop, then a latency loop
"""

from __future__ import annotations

import time
from typing import Any

import pykka

from ._kernel_workload import Result, Workload, latency


class _PykkaCounter(pykka.ThreadingActor):
    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def on_receive(self, message: Any) -> int:
        self.count += 1
        return self.count


def pykka_tell(work: Workload) -> Result:
    """N `tell`s, then one `ask(...).get()` to be sure all were handled."""
    n = work.pykka_tells
    ref = _PykkaCounter.start()
    try:
        tell = ref.tell
        began = time.perf_counter()
        for i in range(n):
            tell(i)
        handled = ref.ask(None, block=False).get()
        elapsed = time.perf_counter() - began
    finally:
        ref.stop()
    assert handled == n + 1, handled
    return {"pykka_tell_msgs_per_s": n / elapsed}


def pykka_ask(work: Workload) -> Result:
    """Sequential `ask(...).get()`: a throughput loop, then a latency loop."""
    ref = _PykkaCounter.start()
    try:
        ask = ref.ask
        n = work.pykka_round_trips
        began = time.perf_counter()
        for i in range(n):
            ask(i, block=False).get()
        rate = n / (time.perf_counter() - began)

        samples: list[int] = []
        clock = time.perf_counter_ns
        for i in range(min(work.latency_samples, n)):
            start = clock()
            ask(i, block=False).get()
            samples.append(clock() - start)
    finally:
        ref.stop()
    return {"pykka_ask_per_s": rate, **latency(samples, "pykka_ask")}
