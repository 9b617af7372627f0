"""The engine factory when an engine crashes: the crash stays with its user,
the runs it ends are each counted once, and a run submitted or cancelled as
it crashes finds a fresh engine or no live run."""

from __future__ import annotations

import logging

import attrs
import pytest
import trio
from trio.testing import wait_all_tasks_blocked

from actors import (
    CoreConfig,
    UnknownRun,
    open_core,
)

from .kit import audit_lines, read_until_ended, sleep, terminal_of, types_of, user


@attrs.frozen
class Unhandled:
    """A message no engine handles: sending one makes the engine crash."""


async def test_an_engine_crash_is_contained_to_its_user(autojump_clock: trio.abc.Clock) -> None:
    config = CoreConfig(max_runs_per_user=1, max_queued_runs_per_user=1)
    async with (
        open_core(config) as core,
        core.subscribe("alice") as alice_events,
        core.subscribe("bob") as bob_events,
    ):
        running = await core.submit("alice", "sleep", sleep(60))
        queued = await core.submit("alice", "sleep", sleep(60))
        bobs = await core.submit("bob", "sleep", sleep(10, steps=10))
        await trio.sleep(1)
        engine = await core.factory.create_for_user(user("alice"))

        await engine._ref.send(Unhandled())  # the engine raises TypeError and dies
        alice_seen = await read_until_ended(alice_events, [running, queued])
        await wait_all_tasks_blocked()
        stats = core.factory.metrics()

        bob_seen = await read_until_ended(bob_events, [bobs])
        again = await core.submit("alice", "echo", "back")
        alice_seen += await read_until_ended(alice_events, [again])
        assert core.factory.metrics().engines_created_total == 3

    assert not engine.alive
    for run_id in (running, queued):
        error = terminal_of(alice_seen, run_id)
        assert error.type == "agent_error"
        assert error.data["reason"] == "exception"
    assert "TypeError" in terminal_of(alice_seen, queued).data["detail"]
    assert stats.engines_reaped_total == {"crash": 1}
    assert stats.engines_active == 1
    assert types_of(bob_seen) == ["agent_started", *["agent_thinking"] * 10, "agent_completed"]
    assert [e.seq for e in bob_seen] == list(range(1, 13))
    assert terminal_of(alice_seen, again).data["output"] == "back"


async def test_the_runs_an_engine_crash_ends_are_each_counted_and_audited_once(
    caplog: pytest.LogCaptureFixture, autojump_clock: trio.abc.Clock
) -> None:
    caplog.set_level(logging.INFO, logger="greenroom.audit")
    config = CoreConfig(max_runs_per_user=1, max_queued_runs_per_user=2)
    async with open_core(config) as core, core.subscribe("alice") as events:
        running = await core.submit("alice", "sleep", sleep(60))
        queued = [await core.submit("alice", agent, "x") for agent in ("echo", "echo")]
        await trio.sleep(1)
        engine = await core.factory.create_for_user(user("alice"))

        await engine._ref.send(Unhandled())
        await read_until_ended(events, [running, *queued])
        await wait_all_tasks_blocked()

        def runs_total(agent: str) -> float | None:
            labels = {"agent": agent, "outcome": "exception"}
            return core.registry.get_sample_value("greenroom_runs_total", labels)

        assert (runs_total("sleep"), runs_total("echo")) == (1, 2)
        assert core.registry.get_sample_value("greenroom_runs_active") == 0
    ended = audit_lines(caplog, "run_ended")
    assert sorted(line["run_id"] for line in ended) == sorted([running, *queued])
    assert {line["outcome"] for line in ended} == {"exception"}


async def test_a_run_submitted_as_the_users_engine_crashes_runs_on_a_fresh_engine() -> None:
    async with open_core() as core, core.subscribe("alice") as events:
        for attempt in range(20):  # the crash and the submit race: try both orders
            engine = await core.factory.create_for_user(user("alice"))
            await engine._ref.send(Unhandled())
            run_id = await core.submit("alice", "echo", attempt)
            seen = await read_until_ended(events, [run_id])

            assert terminal_of(seen, run_id).data["output"] == attempt
            assert not engine.alive

        assert core.factory.metrics().engines_reaped_total == {"crash": 20}


async def test_cancelling_a_run_as_its_engine_crashes_finds_no_live_run(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with open_core() as core, core.subscribe("alice") as events:
        for _ in range(20):  # the crash and the cancel race: try both orders
            run_id = await core.submit("alice", "sleep", sleep(60))
            engine = await core.factory.create_for_user(user("alice"))
            await engine._ref.send(Unhandled())

            with pytest.raises(UnknownRun):
                await core.cancel("alice", run_id)
            seen = await read_until_ended(events, [run_id])

            assert terminal_of(seen, run_id).data["reason"] == "exception"


@pytest.mark.parametrize("then", ["cleanup", "shutdown"])
async def test_an_engine_crashing_as_it_is_stopped_still_ends_every_run_once(
    then: str, autojump_clock: trio.abc.Clock
) -> None:
    config = CoreConfig(max_runs_per_user=1, max_queued_runs_per_user=2)
    async with open_core(config) as core, core.subscribe("alice") as events:
        running = await core.submit("alice", "sleep", sleep(60))
        queued = [await core.submit("alice", "echo", "x") for _ in range(2)]  # never started
        engine = await core.factory.lookup("alice")
        assert engine is not None

        # The crash and the cleanup (or shutdown) in one step: whichever the
        # scheduler runs first, the engine's ChildExited reaches the factory
        # after the factory's own message.
        engine._ref.send_nowait(Unhandled())
        if then == "cleanup":
            assert await core.factory.cleanup_engine("alice")
        else:
            await core.factory.shutdown()

        seen = await read_until_ended(events, [running, *queued])
        for run_id in queued:
            assert terminal_of(seen, run_id).data["reason"] in ("exception", "shutdown")
        assert not engine.alive and core.factory.metrics().engines_active == 0
