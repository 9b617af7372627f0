"""Raw trio baselines: the fastest a message or a round trip can go without the kernel.

Each is what the kernel does with the kernel taken away, so the kernel's
numbers are judged against what trio itself costs on this machine, measured
moments before:

  awaited hop       `await send_channel.send(x)` to an `async for` consumer
  non-blocking hop  `send_nowait` / `receive_nowait`, awaiting only on
                    WouldBlock (full or empty): what `ref.send` is held to
  request/reply     (request, slot) over a memory channel, the client awaiting
                    a `trio.Event` in the one-shot slot: what `ref.ask` is held to
"""

from __future__ import annotations

import time
from typing import Any

import trio

from ._kernel_workload import DEFAULT_CAPACITY, Result, Workload, latency


def raw_awaited_hop(work: Workload) -> Result:
    """Producer awaits every `send`; consumer is an `async for` loop."""
    n = work.awaited_hops

    async def main() -> float:
        send_channel, receive_channel = trio.open_memory_channel[int](DEFAULT_CAPACITY)
        done = trio.Event()

        async def consume(*, task_status: trio.TaskStatus[None]) -> None:
            count = 0
            task_status.started()
            async for _ in receive_channel:
                count += 1
            assert count == n, count
            done.set()

        async with trio.open_nursery() as nursery:
            await nursery.start(consume)
            send = send_channel.send
            began = time.perf_counter()
            for i in range(n):
                await send(i)
            await send_channel.aclose()
            await done.wait()
            return n / (time.perf_counter() - began)

    return {"raw_awaited_msgs_per_s": trio.run(main)}


def raw_nowait_hop(work: Workload) -> Result:
    """`send_nowait` / `receive_nowait`, awaiting only when full or empty.

    The buffer holds all N messages, so the producer never has to wait and
    never checkpoints: the fastest a message can cross a trio memory channel.
    """
    n = work.hops

    async def main() -> float:
        send_channel, receive_channel = trio.open_memory_channel[int](n)
        done = trio.Event()

        async def consume(*, task_status: trio.TaskStatus[None]) -> None:
            count = 0
            receive_nowait = receive_channel.receive_nowait
            task_status.started()
            while True:
                try:
                    receive_nowait()
                except trio.WouldBlock:
                    try:
                        await receive_channel.receive()
                    except trio.EndOfChannel:
                        break
                except trio.EndOfChannel:
                    break
                count += 1
            assert count == n, count
            done.set()

        async with trio.open_nursery() as nursery:
            await nursery.start(consume)
            send_nowait = send_channel.send_nowait
            began = time.perf_counter()
            for i in range(n):
                try:
                    send_nowait(i)
                except trio.WouldBlock:
                    await send_channel.send(i)
            await send_channel.aclose()
            await done.wait()
            return n / (time.perf_counter() - began)

    return {"raw_nowait_msgs_per_s": trio.run(main)}


class _Slot:
    """A one-shot reply slot: the server fills `value` and sets `event`."""

    __slots__ = ("event", "value")

    def __init__(self) -> None:
        self.event = trio.Event()
        self.value: Any = None


def raw_request_reply(work: Workload) -> Result:
    """A server task answering (request, slot) pairs; sequential round trips."""

    async def main() -> Result:
        send_channel, receive_channel = trio.open_memory_channel[tuple[int, _Slot]](
            DEFAULT_CAPACITY
        )

        async def serve(*, task_status: trio.TaskStatus[None]) -> None:
            task_status.started()
            async for request, slot in receive_channel:
                slot.value = request
                slot.event.set()

        async with trio.open_nursery() as nursery:
            await nursery.start(serve)
            send_nowait = send_channel.send_nowait

            n = work.round_trips
            began = time.perf_counter()
            for i in range(n):
                slot = _Slot()
                send_nowait((i, slot))
                await slot.event.wait()
            rate = n / (time.perf_counter() - began)

            samples: list[int] = []
            clock = time.perf_counter_ns
            for i in range(work.latency_samples):
                start = clock()
                slot = _Slot()
                send_nowait((i, slot))
                await slot.event.wait()
                samples.append(clock() - start)
            assert slot.value == work.latency_samples - 1
            await send_channel.aclose()
        return {"raw_rr_per_s": rate, **latency(samples, "raw_rr")}

    return trio.run(main)
