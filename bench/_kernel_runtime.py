"""The greenroom kernel's own numbers: `ref.send` and `ref.ask` on a counting actor.

  send  `await ref.send(x)` N times, then one `ask` to be sure all were
        handled; with a mailbox big enough for all N, with the default
        capacity (1024), and with a capacity of 16, below the pacing interval,
        so the producer really waits for room (backpressure)
  ask   sequential `await ref.ask(x)`: a throughput loop, then a latency loop

The timed loops carry no instrumentation. `probe_send` replays a send run
untimed, reading the mailbox depth before every send, to show how deep the
queue got and how many sends had to wait for room: a send rate means little
without knowing whether backpressure was in play.
"""

from __future__ import annotations

import time
from typing import Any

import trio

from runtime import Actor, open_actor_system

from ._kernel_workload import DEFAULT_CAPACITY, SMALL_CAPACITY, Result, Workload, latency


class _Counter(Actor[Any]):
    """Counts the messages it handles; an `ask` gets the count so far."""

    __slots__ = ("count",)

    def __init__(self) -> None:
        self.count = 0

    async def handle(self, message: Any) -> int:
        self.count += 1
        return self.count


def _kernel_send(n: int, capacity: int) -> float:
    async def main() -> float:
        async with open_actor_system(name="bench") as system:
            ref = await system.spawn(_Counter, mailbox_capacity=capacity)
            send = ref.send
            began = time.perf_counter()
            for i in range(n):
                await send(i)
            handled = await ref.ask(None)
            elapsed = time.perf_counter() - began
        assert handled == n + 1, handled
        return n / elapsed

    return trio.run(main)


def kernel_send(work: Workload) -> Result:
    """`await ref.send(x)` into a mailbox big enough for all N messages."""
    return {"send_msgs_per_s": _kernel_send(work.hops, capacity=work.hops)}


def kernel_send_default_capacity(work: Workload) -> Result:
    """`await ref.send(x)` into the default mailbox (1024): backpressure applies."""
    return {"send_default_capacity_msgs_per_s": _kernel_send(work.hops, DEFAULT_CAPACITY)}


def kernel_send_small_capacity(work: Workload) -> Result:
    """`await ref.send(x)` into a 16-message mailbox: the producer often waits."""
    return {"send_small_capacity_msgs_per_s": _kernel_send(work.hops, SMALL_CAPACITY)}


def probe_send(n: int, capacity: int) -> dict[str, int]:
    """Replay a send run, untimed, reading the mailbox depth around every send.

    A send that finds the mailbox at capacity is one that waits for room.
    Reading statistics adds no checkpoint, so the interleaving is the timed run's.
    """

    async def main() -> dict[str, int]:
        async with open_actor_system(name="bench") as system:
            ref = await system.spawn(_Counter, mailbox_capacity=capacity)
            waited = deepest = 0
            for i in range(n):
                depth = ref.statistics().mailbox_depth
                if depth >= capacity:
                    waited += 1
                await ref.send(i)
                deepest = max(deepest, depth, ref.statistics().mailbox_depth)
            await ref.ask(None)
        return {"sends": n, "sends_waited": waited, "max_depth": deepest, "capacity": capacity}

    return trio.run(main)


def kernel_ask(work: Workload) -> Result:
    """Sequential `await ref.ask(x)`: a throughput loop, then a latency loop."""

    async def main() -> Result:
        async with open_actor_system(name="bench") as system:
            ref = await system.spawn(_Counter)
            ask = ref.ask

            n = work.round_trips
            began = time.perf_counter()
            for i in range(n):
                await ask(i)
            rate = n / (time.perf_counter() - began)

            samples: list[int] = []
            clock = time.perf_counter_ns
            for i in range(work.latency_samples):
                start = clock()
                await ask(i)
                samples.append(clock() - start)
            handled = await ask(None)
        assert handled == n + work.latency_samples + 1, handled
        return {"ask_per_s": rate, **latency(samples, "ask")}

    return trio.run(main)
