"""The core's Prometheus metrics, read back from `core.registry` after a known workload."""

from __future__ import annotations

from typing import Any

import trio
from prometheus_client import CollectorRegistry, generate_latest
from trio.testing import wait_all_tasks_blocked

from actors import CoreConfig, UserContext, open_core

from .kit import read_until_ended


def sleep(seconds: float, steps: int = 1) -> dict[str, Any]:
    return {"seconds": seconds, "steps": steps}


async def test_the_metrics_count_exactly_what_a_known_workload_did(
    autojump_clock: trio.abc.Clock,
) -> None:
    config = CoreConfig(
        max_engines=2, max_runs_per_user=1, max_queued_runs_per_user=0, run_timeout=5
    )
    async with (
        open_core(config) as core,
        core.subscribe("alice") as alice,
        core.subscribe("alice", queue_size=1) as never_read,
        core.subscribe("bob") as bob,
        core.subscribe("carol") as carol,
    ):
        registry = core.registry

        def value(name: str, **labels: str) -> float | None:
            return registry.get_sample_value(f"greenroom_{name}", labels)

        assert value("connections_active") == 4
        alice_runs = []
        for agent, input in [
            ("echo", "hi"),  # completed: 2 events
            ("calc", {"expression": "2+3"}),  # completed: 5 events
            ("calc", {"expression": "1/0"}),  # exception: 5 events
        ]:
            alice_runs.append(await core.submit("alice", agent, input))
            await read_until_ended(alice, alice_runs[-1:])
        timed_out = await core.submit("bob", "sleep", sleep(10))  # timeout: 2 events
        rejected = await core.submit("bob", "echo", "too many")  # rejected: 1 event
        await wait_all_tasks_blocked()
        assert value("runs_active") == 1
        await read_until_ended(bob, [timed_out, rejected])
        last = await core.submit("carol", "echo", "hi")  # reaps alice's engine: 2 events
        await read_until_ended(carol, [last])
        await wait_all_tasks_blocked()

        assert value("engines_active") == 2
        assert value("engines_created_total") == 3
        assert {
            reason: value("engines_reaped_total", reason=reason)
            for reason in ("idle", "lru", "cleanup", "crash", "shutdown")
        } == {"idle": 0, "lru": 1, "cleanup": 0, "crash": 0, "shutdown": 0}
        assert value("engine_create_seconds_count") == 3

        assert value("runs_active") == 0
        assert value("runs_total", agent="echo", outcome="completed") == 2
        assert value("runs_total", agent="calc", outcome="completed") == 1
        assert value("runs_total", agent="calc", outcome="exception") == 1
        assert value("runs_total", agent="sleep", outcome="timeout") == 1
        assert value("runs_total", agent="echo", outcome="rejected") == 1
        assert value("runs_total", agent="sleep", outcome="completed") is None
        assert value("run_seconds_count") == 5  # the rejected run never started
        assert value("run_seconds_sum") == 5.0  # only the timed-out run took virtual time

        assert {
            kind: value("events_total", type=kind)
            for kind in (
                "agent_started",
                "agent_thinking",
                "tool_executing",
                "tool_completed",
                "agent_completed",
                "agent_error",
            )
        } == {
            "agent_started": 5,
            "agent_thinking": 2,
            "tool_executing": 2,
            "tool_completed": 2,
            "agent_completed": 3,
            "agent_error": 3,
        }
        assert value("events_dropped_total", reason="subscriber_overflow") == 1
        assert value("events_dropped_total", reason="run_not_open") == 0
        assert never_read.closed_reason == "overflow"
        assert value("connections_active") == 3

        assert value("actors", kind="engine") == 2
        assert value("actors", kind="bridge") == value("actors", kind="factory") == 1

    assert registry.get_sample_value("greenroom_engines_active") is None  # unregistered


async def test_delivery_latency_is_observed_when_a_write_is_recorded() -> None:
    async with open_core() as core:
        core.record_delivery(emitted_at=0.0)
        core.record_delivery(emitted_at=1e18)  # a clock skew counts as zero

        registry = core.registry
        assert registry.get_sample_value("greenroom_event_delivery_seconds_count") == 2
        assert (
            registry.get_sample_value("greenroom_event_delivery_seconds_bucket", {"le": "0.0001"})
            == 1
        )


async def test_metrics_go_to_the_registry_given_and_render_as_text() -> None:
    registry = CollectorRegistry()
    async with open_core(registry=registry) as core:
        await core.factory.create_for_user(UserContext(user_id="alice"))
        text = generate_latest(registry).decode()

        assert core.registry is registry
        assert "greenroom_engines_active 1.0" in text
        assert "greenroom_engines_created_total 1.0" in text
        assert 'greenroom_engines_reaped_total{reason="idle"} 0.0' in text
        assert "# TYPE greenroom_engine_create_seconds histogram" in text
        assert "# TYPE greenroom_run_seconds histogram" in text
        assert "# TYPE greenroom_event_delivery_seconds histogram" in text
        assert 'greenroom_events_total{type="agent_error"} 0.0' in text
        assert "greenroom_dead_letters_total" in text
