"""A user's engine: limits and queue, timeout, cancellation, agent errors."""

from __future__ import annotations

from typing import Any

import pytest
import trio
from trio.testing import wait_all_tasks_blocked

from actors import (
    DEMO_AGENTS,
    Agent,
    CoreConfig,
    DuplicateRun,
    EngineRules,
    RunContext,
    UnknownRun,
    UserContext,
    open_core,
)
from actors._bridge import BridgeActor, SweepStreams
from actors._engine import RunRecord
from runtime import MailboxFull

from ..instruments import counting_steps
from .kit import (
    FailingAgent,
    drain,
    read_until_ended,
    terminal_counts,
    terminal_of,
    types_of,
)

AGENTS = (*DEMO_AGENTS, FailingAgent)


def sleep(seconds: float, steps: int = 1) -> dict[str, Any]:
    return {"seconds": seconds, "steps": steps}


# --- EngineRules, without I/O ---------------------------------------------------


def record(run_id: str) -> RunRecord:
    return RunRecord(UserContext(user_id="alice", run_id=run_id), "echo", None)


def test_rules_start_then_queue_then_reject() -> None:
    rules = EngineRules(max_running=2, max_queued=1)

    assert [rules.admit(record(f"r{i}")) for i in range(4)] == [
        "started",
        "started",
        "queued",
        "rejected",
    ]
    assert (rules.running, rules.queued, rules.idle) == (2, 1, False)


def test_rules_start_the_oldest_queued_run_when_a_running_one_finishes() -> None:
    rules = EngineRules(max_running=1, max_queued=2)
    for run_id in ("a", "b", "c"):
        rules.admit(record(run_id))

    following = rules.finished("a")

    assert following is not None and following.run_id == "b"
    assert (rules.running, rules.queued) == (1, 1)
    assert rules.finished("b").run_id == "c"
    assert rules.finished("c") is None
    assert rules.idle


def test_rules_refuse_a_live_run_id_and_change_nothing() -> None:
    rules = EngineRules(max_running=1, max_queued=1)
    rules.admit(record("a"))
    rules.admit(record("b"))

    for run_id in ("a", "b"):
        with pytest.raises(DuplicateRun, match=f"run_id '{run_id}' is already a live run"):
            rules.admit(record(run_id))

    assert (rules.running, rules.queued) == (1, 1)


def test_rules_withdraw_a_queued_run_from_the_queue_but_leave_a_running_one() -> None:
    rules = EngineRules(max_running=1, max_queued=1)
    rules.admit(record("a"))
    rules.admit(record("b"))

    assert rules.withdraw("b")[0] == "queued"
    assert rules.withdraw("a")[0] == "running"
    assert (rules.running, rules.queued) == (1, 0)
    with pytest.raises(UnknownRun):
        rules.withdraw("b")


# --- engines in a core ------------------------------------------------------------


async def test_a_run_beyond_the_running_and_queued_limits_is_rejected(
    autojump_clock: trio.abc.Clock,
) -> None:
    config = CoreConfig(max_runs_per_user=2, max_queued_runs_per_user=1)
    async with open_core(config) as core, core.subscribe("alice") as events:
        run_ids = [await core.submit("alice", "sleep", sleep(10)) for _ in range(4)]
        await wait_all_tasks_blocked()
        now = drain(events)

        assert terminal_counts(now) == {run_ids[3]: 1}
        rejected = terminal_of(now, run_ids[3])
        assert rejected.type == "agent_error"
        assert rejected.data == {
            "reason": "rejected",
            "detail": "the user already has 2 runs running and 1 queued",
        }
        started = {e.run_id for e in now if e.type == "agent_started"}
        assert started == set(run_ids[:2])

        rest = await read_until_ended(events, run_ids[:3])

    assert [terminal_of(rest, run_id).type for run_id in run_ids[:3]] == ["agent_completed"] * 3


async def test_queued_runs_start_as_running_ones_end(autojump_clock: trio.abc.Clock) -> None:
    config = CoreConfig(max_runs_per_user=1, max_queued_runs_per_user=2)
    async with open_core(config) as core, core.subscribe("alice") as events:
        began = trio.current_time()
        run_ids = [await core.submit("alice", "sleep", sleep(10)) for _ in range(3)]
        starts = {}
        async for event in events:
            if event.type == "agent_started":
                starts[event.run_id] = trio.current_time() - began
            if event.terminal and event.run_id == run_ids[-1]:
                break

    assert [starts[run_id] for run_id in run_ids] == [0, 10, 20]


async def test_another_users_runs_do_not_count_against_a_users_limits(
    autojump_clock: trio.abc.Clock,
) -> None:
    config = CoreConfig(max_runs_per_user=1, max_queued_runs_per_user=0)
    async with open_core(config) as core, core.subscribe("bob") as events:
        await core.submit("alice", "sleep", sleep(10))
        run_id = await core.submit("bob", "sleep", sleep(1))
        seen = await read_until_ended(events, [run_id])

    assert terminal_of(seen, run_id).type == "agent_completed"


async def test_a_run_longer_than_the_run_timeout_ends_with_timeout(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with open_core(CoreConfig(run_timeout=5)) as core, core.subscribe("alice") as events:
        began = trio.current_time()
        run_id = await core.submit("alice", "sleep", sleep(60, steps=60))
        seen = await read_until_ended(events, [run_id])
        ended_after = trio.current_time() - began

    assert ended_after == 5
    assert types_of(seen).count("agent_thinking") == 4  # steps at 1, 2, 3 and 4 s
    assert seen[-1].type == "agent_error"
    assert seen[-1].data == {
        "reason": "timeout",
        "detail": "the run took longer than 5s",
        "duration_ms": 5000.0,
    }


class Stubborn(Agent):
    """Catches the Cancelled that should end it, and returns all the same."""

    name = "stubborn"

    async def run(self, ctx: RunContext, input: Any) -> Any:
        try:
            await trio.sleep(100)
        except trio.Cancelled:
            pass  # an agent's bug, on purpose
        return "done anyway"


@pytest.mark.parametrize("stop", ["timeout", "cancelled"])
async def test_a_run_that_swallows_its_cancellation_still_ends_as_stopped(
    stop: str, autojump_clock: trio.abc.Clock
) -> None:
    # It ended with agent_completed: the engine looked only at whether the
    # scope caught the Cancelled.
    async with (
        open_core(CoreConfig(run_timeout=5), agents=(*AGENTS, Stubborn)) as core,
        core.subscribe("alice") as events,
    ):
        run_id = await core.submit("alice", "stubborn")
        if stop == "cancelled":
            await trio.sleep(1)
            await core.cancel("alice", run_id)
        seen = await read_until_ended(events, [run_id])

    assert terminal_of(seen, run_id).type == "agent_error"
    assert terminal_of(seen, run_id).data["reason"] == stop


async def test_the_run_timeout_counts_from_when_a_queued_run_starts(
    autojump_clock: trio.abc.Clock,
) -> None:
    config = CoreConfig(run_timeout=5, max_runs_per_user=1)
    async with open_core(config) as core, core.subscribe("alice") as events:
        first = await core.submit("alice", "sleep", sleep(4))
        second = await core.submit("alice", "sleep", sleep(4))
        seen = await read_until_ended(events, [first, second])

    assert terminal_of(seen, first).type == "agent_completed"
    assert terminal_of(seen, second).type == "agent_completed"


async def test_cancelling_a_running_run_ends_it_with_cancelled(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with open_core() as core, core.subscribe("alice") as events:
        run_id = await core.submit("alice", "sleep", sleep(60, steps=60))
        await trio.sleep(2.5)
        await core.cancel("alice", run_id)
        seen = await read_until_ended(events, [run_id])

    assert types_of(seen) == ["agent_started", "agent_thinking", "agent_thinking", "agent_error"]
    assert seen[-1].data == {
        "reason": "cancelled",
        "detail": "cancelled by the user",
        "duration_ms": 2500.0,
    }


async def test_cancelling_a_queued_run_ends_it_without_starting_it(
    autojump_clock: trio.abc.Clock,
) -> None:
    config = CoreConfig(max_runs_per_user=1)
    async with open_core(config) as core, core.subscribe("alice") as events:
        running = await core.submit("alice", "sleep", sleep(10))
        queued = await core.submit("alice", "sleep", sleep(10))
        await core.cancel("alice", queued)
        seen = await read_until_ended(events, [running, queued])

    assert types_of(seen, queued) == ["agent_error"]
    assert terminal_of(seen, queued).data == {
        "reason": "cancelled",
        "detail": "cancelled by the user",
    }
    assert terminal_of(seen, running).type == "agent_completed"
    assert seen[-1].run_id == running  # the queued run was ended first, at once


async def test_cancelling_a_run_that_is_not_live_raises_unknown_run(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with open_core() as core, core.subscribe("bob") as events:
        with pytest.raises(UnknownRun):
            await core.cancel("alice", "never")  # alice has no engine at all
        bobs = await core.submit("bob", "sleep", sleep(10))
        with pytest.raises(UnknownRun):
            await core.cancel("alice", bobs)  # another user's run is unknown here
        with pytest.raises(UnknownRun):
            await core.cancel("bob", "never")
        seen = await read_until_ended(events, [bobs])
        with pytest.raises(UnknownRun):
            await core.cancel("bob", bobs)  # it has ended

    assert terminal_of(seen, bobs).type == "agent_completed"


async def test_an_agents_exception_ends_its_run_and_the_engine_lives_on() -> None:
    async with open_core(agents=AGENTS) as core, core.subscribe("alice") as events:
        engine = await core.factory.create_for_user(UserContext(user_id="alice"))
        failed = await core.submit("alice", "fail", "now")
        after = await core.submit("alice", "echo", "still here")
        seen = await read_until_ended(events, [failed, after])

        assert engine.alive
        assert core.factory.metrics().engines_created_total == 1

    assert types_of(seen, failed) == ["agent_started", "agent_thinking", "agent_error"]
    error = terminal_of(seen, failed).data
    assert (error["reason"], error["detail"]) == ("exception", "ValueError: boom: now")
    assert terminal_of(seen, after).data["output"] == "still here"


class _AgentsOwn(BaseException):
    """An agent's error that is not an `Exception`."""


class Exits(Agent):
    """Raises SystemExit, or a BaseException of its own, from its run."""

    name = "exits"

    async def run(self, ctx: RunContext, input: Any) -> Any:
        await ctx.thinking("exiting")
        raise SystemExit(input) if input == 3 else _AgentsOwn(input)


async def test_an_agent_raising_what_is_not_an_exception_ends_only_its_own_run() -> None:
    # SystemExit from one run used to take the whole core down, other
    # users' runs with it, and a retry then hung the core's exit.
    async with (
        open_core(agents=(*AGENTS, Exits)) as core,
        core.subscribe("alice") as events,
        core.subscribe("bob") as bobs,
    ):
        long = await core.submit("bob", "sleep", sleep(0.05))
        exited = await core.submit("alice", "exits", 3)
        own = await core.submit("alice", "exits", "own")
        after = await core.submit("alice", "echo", "still here")
        seen = await read_until_ended(events, [exited, own, after])
        bob_seen = await read_until_ended(bobs, [long])

    assert terminal_of(seen, exited).data["detail"] == "SystemExit: 3"
    assert terminal_of(seen, own).data["detail"] == "_AgentsOwn: own"
    assert terminal_of(seen, own).data["reason"] == "exception"
    assert terminal_of(seen, after).data["output"] == "still here"
    assert terminal_of(bob_seen, long).type == "agent_completed"


async def test_every_run_ends_with_exactly_one_terminal_event(
    autojump_clock: trio.abc.Clock,
) -> None:
    config = CoreConfig(max_runs_per_user=2, max_queued_runs_per_user=2, run_timeout=5)
    async with open_core(config, agents=AGENTS) as core, core.subscribe("alice") as events:
        run_ids = [
            await core.submit("alice", "sleep", sleep(3)),  # completes
            await core.submit("alice", "sleep", sleep(9)),  # times out
            await core.submit("alice", "fail"),  # raises
            await core.submit("alice", "sleep", sleep(9)),  # is cancelled while queued
            await core.submit("alice", "echo"),  # is rejected
        ]
        await core.cancel("alice", run_ids[3])
        seen = await read_until_ended(events, run_ids)
        await trio.sleep(20)
        seen += drain(events)

    assert terminal_counts(seen) == dict.fromkeys(run_ids, 1)
    assert [terminal_of(seen, run_id).data.get("reason") for run_id in run_ids] == [
        None,
        "timeout",
        "exception",
        "cancelled",
        "rejected",
    ]
    for run_id in run_ids:
        assert types_of(seen, run_id)[-1] in ("agent_completed", "agent_error")


async def test_a_duplicate_live_run_id_is_refused_and_changes_nothing(
    autojump_clock: trio.abc.Clock,
) -> None:
    config = CoreConfig(max_runs_per_user=1)
    async with open_core(config) as core, core.subscribe("alice") as events:
        await core.submit("alice", "sleep", sleep(10), run_id="one")
        await core.submit("alice", "sleep", sleep(10), run_id="two")  # queued
        await wait_all_tasks_blocked()
        before = drain(events)
        outcomes_before = dict(core.run_books.outcomes)

        for run_id in ("one", "two"):
            with pytest.raises(DuplicateRun, match=f"run_id '{run_id}' is already a live run"):
                await core.submit("alice", "echo", "again", run_id=run_id)
        await wait_all_tasks_blocked()

        assert drain(events) == []
        assert dict(core.run_books.outcomes) == outcomes_before
        seen = await read_until_ended(events, ["one", "two"])
        again = await core.submit("alice", "echo", "reused", run_id="one")
        seen += await read_until_ended(events, [again])

    assert types_of(before) == ["agent_started"]
    assert [terminal_of(seen, "two").type] == ["agent_completed"]
    assert [e.data["output"] for e in seen if e.type == "agent_completed"] == [
        {"slept": 10, "steps": 1},
        {"slept": 10, "steps": 1},
        "reused",
    ]


# --- a run started in the caller's task, while the engine is idle ---------------


async def test_a_run_for_a_lingering_engine_starts_at_once_and_its_events_number_on(
    autojump_clock: trio.abc.Clock,
) -> None:
    config = CoreConfig(engine_linger=60)
    async with open_core(config) as core, core.subscribe("alice") as events:
        first = await core.submit("alice", "echo", "wake")
        await read_until_ended(events, [first])
        await wait_all_tasks_blocked()
        engine = await core.factory.lookup("alice")
        assert engine is not None and engine.statistics().state == "lingering"
        runs_before = core.run_books.active

        run_id = await core.submit("alice", "sleep", sleep(5))

        assert core.run_books.active == runs_before + 1  # started, not queued
        seen = await read_until_ended(events, [run_id])

    assert types_of(seen) == ["agent_started", "agent_thinking", "agent_completed"]
    assert [e.seq for e in seen] == [3, 4, 5]


async def test_a_runs_end_is_booked_in_its_own_task_and_does_not_wake_the_engine(
    autojump_clock: trio.abc.Clock,
) -> None:
    config = CoreConfig(engine_linger=60)
    async with open_core(config) as core, core.subscribe("alice") as events:
        run_id = await core.submit("alice", "sleep", sleep(5))
        engine = await core.factory.lookup("alice")
        assert engine is not None
        await wait_all_tasks_blocked()
        handled = engine.statistics().messages_handled
        with counting_steps(engine.statistics().name) as steps:
            seen = await read_until_ended(events, [run_id])
            await wait_all_tasks_blocked()

        stats = engine.statistics()
        assert (stats.state, stats.messages_handled) == ("lingering", handled + 1)
        assert steps.count == 0
        assert core.run_books.active == 0
    assert types_of(seen)[-1] == "agent_completed"


async def test_a_run_for_an_idle_engine_waits_for_room_when_the_bridge_is_full(
    monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.abc.Clock
) -> None:
    monkeypatch.setattr(BridgeActor, "mailbox_capacity", 4)
    config = CoreConfig(engine_linger=60)
    async with open_core(config) as core, core.subscribe("alice") as events:
        first = await core.submit("alice", "echo", "wake")
        await read_until_ended(events, [first])
        await wait_all_tasks_blocked()
        bridge = core._bridge
        while True:  # fill the bridge's mailbox, without letting it run
            try:
                bridge.send_nowait(SweepStreams())
            except MailboxFull:
                break

        run_id = await core.submit("alice", "echo", "through the queue")
        seen = await read_until_ended(events, [run_id])

    assert types_of(seen) == ["agent_started", "agent_completed"]
    assert terminal_of(seen, run_id).data["output"] == "through the queue"
