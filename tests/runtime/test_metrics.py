"""The Prometheus collector: actor statistics read at scrape time, per kind."""

from __future__ import annotations

from functools import partial
from typing import Any

import attrs
import pytest
import trio
from prometheus_client import CollectorRegistry
from trio.testing import wait_all_tasks_blocked

from runtime import Actor, ActorStopped, RestartIntensity, open_actor_system


@attrs.frozen
class Add:
    n: int


@attrs.frozen
class Crash:
    pass


class Counter(Actor[Add | Crash]):
    def __init__(self) -> None:
        self.total = 0

    async def handle(self, message: Add | Crash) -> Any:
        match message:
            case Add(n):
                self.total += n
                return self.total
            case Crash():
                raise RuntimeError("crashed on purpose")


class Gated(Actor[int]):
    kind = "gated"

    def __init__(self, gate: trio.Event) -> None:
        self.gate = gate

    async def handle(self, message: int) -> None:
        await self.gate.wait()


def sample(registry: CollectorRegistry, name: str, kind: str | None = None) -> float | None:
    labels = {} if kind is None else {"kind": kind}
    return registry.get_sample_value(f"greenroom_{name}", labels)


async def test_the_collector_exposes_exact_actor_statistics_per_kind() -> None:
    registry = CollectorRegistry()
    gate = trio.Event()
    async with open_actor_system(registry=registry) as system:
        first = await system.spawn(Counter)
        second = await system.spawn(Counter)
        doomed = await system.spawn(Counter)
        gated = await system.spawn(partial(Gated, gate))

        for n in range(3):
            await first.ask(Add(n))
        await second.send(Add(1))
        await second.ask(Add(1))
        await doomed.ask(Add(1))
        for _ in range(2):
            await first.send(Crash())
            await wait_all_tasks_blocked()
        await doomed.stop()
        for _ in range(2):
            with pytest.raises(ActorStopped):
                doomed.send_nowait(Add(1))
        for i in range(4):
            gated.send_nowait(i)
        await wait_all_tasks_blocked()  # gated holds message 0 and has 3 queued

        assert sample(registry, "actors", "Counter") == 2
        assert sample(registry, "actors", "gated") == 1
        assert sample(registry, "actor_mailbox_depth", "Counter") == 0
        assert sample(registry, "actor_mailbox_depth", "gated") == 3
        assert sample(registry, "actor_messages_total", "Counter") == 6
        assert sample(registry, "actor_messages_total", "gated") == 0
        assert sample(registry, "actor_restarts_total", "Counter") == 2
        assert sample(registry, "actor_restarts_total", "gated") == 0
        assert sample(registry, "dead_letters_total") == 2

        gate.set()
        await wait_all_tasks_blocked()

        assert sample(registry, "actor_mailbox_depth", "gated") == 0
        assert sample(registry, "actor_messages_total", "gated") == 4
        assert (sample(registry, "actor_busy_seconds_total", "gated") or 0) > 0


async def test_the_collector_is_unregistered_when_the_system_closes() -> None:
    registry = CollectorRegistry()
    async with open_actor_system(registry=registry) as system:
        ref = await system.spawn(Counter)
        await ref.ask(Add(1))
        assert sample(registry, "actor_messages_total", "Counter") == 1

    assert sample(registry, "actor_messages_total", "Counter") is None
    assert sample(registry, "actors", "Counter") is None
    assert sample(registry, "dead_letters_total") is None

    async with open_actor_system(registry=registry) as system:
        await system.spawn(Counter)
        assert sample(registry, "actors", "Counter") == 1
        assert sample(registry, "actor_messages_total", "Counter") == 0


async def test_a_system_exposes_its_metrics_under_its_own_namespace() -> None:
    registry = CollectorRegistry()
    async with open_actor_system(registry=registry, namespace="lab") as system:
        await system.spawn(Counter)

        assert registry.get_sample_value("lab_actors", {"kind": "Counter"}) == 1
        assert sample(registry, "actors", "Counter") is None


async def test_counters_are_not_counted_twice_after_a_supervisor_restart() -> None:
    registry = CollectorRegistry()
    async with open_actor_system(registry=registry) as system:
        workers = await system.start_supervisor(
            "workers", intensity=RestartIntensity(max_restarts=1)
        )
        survivor = await workers.spawn(Counter)
        crasher = await workers.spawn(Counter)
        for n in range(3):
            await survivor.ask(Add(n))

        await crasher.send(Crash())  # restarted by workers
        await wait_all_tasks_blocked()
        await crasher.send(Crash())  # workers gives up and is restarted by the root
        await wait_all_tasks_blocked()
        await survivor.ask(Add(1))

        assert survivor.statistics().messages_handled == 4
        assert sample(registry, "actors", "Counter") == 2
        assert sample(registry, "actor_messages_total", "Counter") == 4
        assert sample(registry, "actor_restarts_total", "Counter") == 1


async def test_two_live_systems_cannot_share_one_registry() -> None:
    registry = CollectorRegistry()
    async with open_actor_system(registry=registry):
        with pytest.raises(ValueError, match="Duplicated timeseries"):
            async with open_actor_system(registry=registry):
                pass
