"""The engine factory: one engine per user, cleanup and shutdown, direct
submits. An engine's crash: test_factory_crashes.py; when engines are
reaped (idle, for room) and leases: test_factory_reaping.py."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import trio
from trio.testing import wait_all_tasks_blocked

from actors import (
    CoreClosed,
    CoreConfig,
    EngineGone,
    EngineLimitReached,
    UserContext,
    UserEngine,
    open_core,
)
from actors._engine import EndAll, EngineActor, Submit
from actors._factory import _is_idle

from .kit import audit_lines, drain, read_until_ended, sleep, terminal_of, types_of, user


async def test_a_thousand_concurrent_requests_for_one_user_create_one_engine() -> None:
    engines: list[UserEngine] = []
    async with open_core() as core:

        async def request() -> None:
            engines.append(await core.factory.create_for_user(user("alice")))

        async with trio.open_nursery() as nursery:
            for _ in range(1000):
                nursery.start_soon(request)

        stats = core.factory.metrics()
        assert len(engines) == 1000
        assert len({engine.statistics().name for engine in engines}) == 1
        assert stats.engines_created_total == 1
        assert stats.engines_active == 1
        assert core.system.statistics().kinds["engine"].actors == 1


async def test_each_user_gets_an_engine_of_their_own() -> None:
    async with open_core() as core:
        alice = await core.factory.create_for_user(user("alice"))
        bob = await core.factory.create_for_user(user("bob"))

        assert (alice.user_id, bob.user_id) == ("alice", "bob")
        assert alice.statistics().name != bob.statistics().name
        assert core.factory.metrics().engines_created_total == 2
        with pytest.raises(ValueError, match="this engine is for 'alice', not for 'bob'"):
            await alice.submit(UserContext(user_id="bob"), "echo", None)


async def test_cleanup_ends_live_runs_with_cancelled_and_removes_the_engine(
    autojump_clock: trio.abc.Clock,
) -> None:
    config = CoreConfig(max_runs_per_user=1, max_queued_runs_per_user=1)
    async with open_core(config) as core, core.subscribe("alice") as events:
        running = await core.submit("alice", "sleep", sleep(60))
        queued = await core.submit("alice", "sleep", sleep(60))
        engine = await core.factory.lookup("alice")
        assert engine is not None

        assert await core.factory.cleanup_engine("alice") is True
        seen = await read_until_ended(events, [running, queued])
        stats = core.factory.metrics()
        assert await core.factory.cleanup_engine("alice") is False
        assert await core.factory.lookup("alice") is None

        again = await core.submit("alice", "echo", "back")
        seen += await read_until_ended(events, [again])

    for run_id in (running, queued):
        assert terminal_of(seen, run_id).data["reason"] == "cancelled"
        assert terminal_of(seen, run_id).data["detail"] == "the user's engine was cleaned up"
    assert types_of(seen, queued) == ["agent_error"]
    assert not engine.alive
    assert stats.engines_active == 0
    assert stats.engines_reaped_total == {"cleanup": 1}
    assert terminal_of(seen, again).data["output"] == "back"
    assert core.factory.metrics().engines_created_total == 2


async def test_after_shutdown_no_engine_is_created_and_shutdown_is_idempotent() -> None:
    async with open_core() as core:
        engine = await core.factory.create_for_user(user("alice"))

        await core.factory.shutdown()
        await core.factory.shutdown()

        assert not engine.alive
        assert core.factory.metrics().engines_reaped_total == {"shutdown": 1}
        with pytest.raises(CoreClosed):
            await core.factory.create_for_user(user("bob"))
        with pytest.raises(CoreClosed):
            async with core.factory.user_execution_scope(user("alice")):
                raise AssertionError("no engine should be handed out")
    with pytest.raises(CoreClosed):
        await core.factory.create_for_user(user("alice"))
    assert await core.factory.cleanup_engine("alice") is False


async def test_shutdown_stops_dormant_lingering_and_busy_engines_alike(
    caplog: pytest.LogCaptureFixture, autojump_clock: trio.abc.Clock
) -> None:
    caplog.set_level(logging.INFO, logger="greenroom.audit")
    async with open_core(CoreConfig(engine_linger=60)) as core, core.subscribe("busy") as events:
        await core.factory.create_for_user(user("dormant"))
        await core.submit("lingering", "echo", "x")
        busy_run = await core.submit("busy", "sleep", sleep(100))
        await wait_all_tasks_blocked()
        engines = {
            name: await core.factory.lookup(name) for name in ("dormant", "lingering", "busy")
        }
        states = {name: e.statistics().state for name, e in engines.items() if e is not None}
        assert states == {"dormant": "dormant", "lingering": "lingering", "busy": "running"}

        await core.factory.shutdown()
        seen = await read_until_ended(events, [busy_run])

        assert terminal_of(seen, busy_run).data["reason"] == "shutdown"
        assert not any(e is not None and e.alive for e in engines.values())
        assert core.factory.metrics().engines_reaped_total == {"shutdown": 3}
    reaped = audit_lines(caplog, "engine_reaped")
    assert sorted(line["user_id"] for line in reaped) == ["busy", "dormant", "lingering"]
    assert {line["reason"] for line in reaped} == {"shutdown"}


async def test_submit_through_the_factory_creates_the_engine_and_takes_no_lease() -> None:
    async with open_core() as core, core.subscribe("alice") as events:
        ctx = user("alice")

        assert await core.factory.submit(ctx, "echo", "hi") == "started"
        seen = await read_until_ended(events, [ctx.run_id])

        assert terminal_of(seen, ctx.run_id).data["output"] == "hi"
        stats = core.factory.metrics()
        assert (stats.engines_active, stats.leases) == (1, 0)
        again = user("alice")
        assert await core.factory.submit(again, "echo", 2) == "started"
        assert core.factory.metrics().engines_created_total == 1


async def test_an_engine_handed_out_and_since_stopped_says_so_and_the_core_goes_on() -> None:
    async with open_core() as core, core.subscribe("alice") as events:
        engine = await core.factory.create_for_user(user("alice"))
        assert await core.factory.cleanup_engine("alice") is True
        assert not engine.alive

        with pytest.raises(EngineGone, match="alice"):
            await engine.submit(user("alice"), "echo", "x")
        with pytest.raises(EngineGone, match="alice"):
            await engine.cancel("some-run")

        run_id = await core.submit("alice", "echo", "x")  # a fresh engine
        assert types_of(await read_until_ended(events, [run_id])) == [
            "agent_started",
            "agent_completed",
        ]


async def test_an_engine_with_a_run_handed_to_it_is_not_idle_before_its_task_runs() -> None:
    async with open_core(CoreConfig(max_engines=1)) as core:
        engine = await core.factory.create_for_user(user("alice"))
        await wait_all_tasks_blocked()
        entry = core.factory._books.get("alice")
        assert entry is not None and _is_idle(entry)

        engine._ref.send_nowait(Submit(user("alice"), "echo", None))

        # Its task has not run yet, but it was woken: the run waiting counts.
        assert engine.statistics().state == "running"
        assert not _is_idle(entry)
        with pytest.raises(EngineLimitReached):
            await core.factory.create_for_user(user("bob"))
        assert engine.alive


async def test_a_run_the_engines_full_mailbox_cannot_take_is_submitted_by_the_caller(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(EngineActor, "mailbox_capacity", 1)
    async with open_core(CoreConfig(max_queued_runs_per_user=4)) as core:
        async with core.subscribe("alice") as events:
            # No engine yet: all three go to the factory, which creates one.
            runs = [user("alice") for _ in range(3)]
            results: list[str] = []
            by_caller: list[str] = []
            submit_to_engine = UserEngine.submit

            async def spy(engine: UserEngine, ctx: UserContext, agent: str, input: Any) -> str:
                by_caller.append(ctx.run_id)
                return await submit_to_engine(engine, ctx, agent, input)

            monkeypatch.setattr(UserEngine, "submit", spy)

            async def submit(ctx: UserContext) -> None:
                results.append(await core.factory.submit(ctx, "echo", ctx.run_id))

            async with trio.open_nursery() as nursery:
                for ctx in runs:  # all three reach the factory in one go
                    nursery.start_soon(submit, ctx)

            # The first fills the new, dormant engine's mailbox; the other
            # two come back to their callers, which wait for room.
            assert len(by_caller) == 2
            assert set(by_caller) < {ctx.run_id for ctx in runs}
            assert set(results) <= {"started", "queued"} and len(results) == 3
            seen = await read_until_ended(events, [ctx.run_id for ctx in runs])
        for ctx in runs:
            assert terminal_of(seen, ctx.run_id).data["output"] == ctx.run_id


async def test_a_lingering_engine_given_a_run_at_once_is_busy_and_keeps_its_room(
    autojump_clock: trio.abc.Clock,
) -> None:
    config = CoreConfig(max_engines=1, engine_linger=60)
    async with (
        open_core(config) as core,
        core.subscribe("alice") as alice_events,
        core.subscribe("bob") as bob_events,
    ):
        first = await core.submit("alice", "echo", "x")
        await read_until_ended(alice_events, [first])
        await wait_all_tasks_blocked()
        alice = await core.factory.lookup("alice")
        assert alice is not None and alice.statistics().state == "lingering"

        # Both idle and parked: the run starts in this task, before submit returns.
        long_run = await core.submit("alice", "sleep", sleep(30))
        assert alice.statistics().state == "running"
        rejected = await core.submit("bob", "echo", "y")  # no idle engine to reap
        bob_seen = await read_until_ended(bob_events, [rejected])
        alice_seen = await read_until_ended(alice_events, [long_run])

    assert terminal_of(bob_seen, rejected).data["reason"] == "rejected"
    assert terminal_of(alice_seen, long_run).type == "agent_completed"
    assert alice.statistics().restarts == 0


def factory_messages(core: Any) -> float | None:
    return core.registry.get_sample_value("greenroom_actor_messages_total", {"kind": "factory"})


async def test_a_direct_run_waits_for_room_in_a_full_engine_mailbox_and_one_cancelled_leaves_none(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(EngineActor, "mailbox_capacity", 1)
    gate = trio.Event()
    handle = EngineActor.handle

    async def held(engine: EngineActor, message: Any) -> Any:
        if isinstance(message, Submit) and message.input == "held":
            await gate.wait()  # the engine's task is busy, so its mailbox fills
        return await handle(engine, message)

    monkeypatch.setattr(EngineActor, "handle", held)
    results: dict[str, str] = {}

    async def submit(core: Any, ctx: UserContext, input: str) -> None:
        results[ctx.run_id] = await core.factory.submit(ctx, "echo", input)

    async with open_core() as core, core.subscribe("alice") as events:
        first, filler = user("alice"), user("alice")
        waiting, cancelled = user("alice"), user("alice")
        async with trio.open_nursery() as nursery:
            # A new user's run goes to the factory, then into the new engine's mailbox.
            nursery.start_soon(submit, core, first, "held")
            await wait_all_tasks_blocked()
            nursery.start_soon(submit, core, filler, "fills the mailbox")  # direct
            await wait_all_tasks_blocked()
            engine = await core.factory.lookup("alice")
            assert engine is not None and engine.statistics().mailbox_depth == 1
            factory_turns = factory_messages(core)

            give_up = trio.CancelScope()

            async def submit_then_give_up() -> None:
                with give_up:
                    await submit(core, cancelled, "gives up")

            nursery.start_soon(submit, core, waiting, "waits for room")
            nursery.start_soon(submit_then_give_up)
            await wait_all_tasks_blocked()
            give_up.cancel()
            await wait_all_tasks_blocked()
            assert results == {}  # nobody's run was taken while the engine was held
            assert factory_messages(core) == factory_turns  # nor sent the factory's way
            gate.set()

        assert give_up.cancelled_caught
        assert results == dict.fromkeys([first.run_id, filler.run_id, waiting.run_id], "started")
        seen = await read_until_ended(events, [first.run_id, filler.run_id, waiting.run_id])
        await wait_all_tasks_blocked()
        seen += drain(events)
    assert cancelled.run_id not in {event.run_id for event in seen}
    assert terminal_of(seen, waiting.run_id).data["output"] == "waits for room"
    assert [event.seq for event in seen] == list(range(1, len(seen) + 1))


async def test_a_run_for_a_user_with_an_engine_reaches_it_without_the_factorys_turn() -> None:
    async with open_core() as core, core.subscribe("alice") as events:
        first = await core.submit("alice", "echo", 1)  # creates the engine
        await read_until_ended(events, [first])
        await wait_all_tasks_blocked()
        handled = factory_messages(core)

        runs = [await core.submit("alice", "echo", n) for n in range(3)]
        seen = await read_until_ended(events, runs)

        assert factory_messages(core) == handled
        assert [terminal_of(seen, run).data["output"] for run in runs] == [0, 1, 2]
        assert core.factory.metrics().engines_created_total == 1


async def test_a_run_submitted_while_cleanup_ends_the_users_runs_gets_a_fresh_engine(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    release = trio.Event()
    handle = EngineActor.handle

    async def slow_end_all(engine: EngineActor, message: Any) -> Any:
        if isinstance(message, EndAll):
            await release.wait()
        return await handle(engine, message)

    monkeypatch.setattr(EngineActor, "handle", slow_end_all)
    async with open_core() as core, core.subscribe("alice") as events:
        long_run = await core.submit("alice", "sleep", sleep(30))
        old = await core.factory.lookup("alice")
        assert old is not None
        results: list[Any] = []

        async def submit_late() -> None:
            results.append(await core.submit("alice", "echo", "late"))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(core.factory.cleanup_engine, "alice")
            await wait_all_tasks_blocked()  # the engine is ending alice's runs
            nursery.start_soon(submit_late)
            await wait_all_tasks_blocked()
            release.set()

        seen = await read_until_ended(events, [long_run, *results])
        assert terminal_of(seen, long_run).data["reason"] == "cancelled"
        assert terminal_of(seen, results[0]).type == "agent_completed"
        new = await core.factory.lookup("alice")
        assert not old.alive and new is not None and new.alive
        assert core.factory.metrics().engines_created_total == 2


async def test_a_run_submitted_once_shutdown_has_begun_is_refused_even_where_an_engine_waits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("actors._factory.STOP_CONCURRENCY", 1)  # one engine stops at a time
    release = trio.Event()
    stopping: list[str] = []
    on_stop = EngineActor.on_stop

    async def slow_on_stop(engine: EngineActor) -> None:
        stopping.append(engine.user_id)
        if len(stopping) == 1:  # the first to stop holds the other back
            await release.wait()
        await on_stop(engine)

    monkeypatch.setattr(EngineActor, "on_stop", slow_on_stop)
    async with open_core() as core:
        for name in ("alice", "bob"):  # both busy, so they are stopped one at a time
            await core.submit(name, "sleep", sleep(60))
        refused: list[type[BaseException]] = []

        async def submit_for(name: str) -> None:
            try:
                await core.factory.submit(user(name), "echo", "late")
            except CoreClosed:
                refused.append(CoreClosed)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(core.factory.shutdown)
            await wait_all_tasks_blocked()  # one engine is stopping, the other waits
            assert len(stopping) == 1
            waiting = ({"alice", "bob"} - set(stopping)).pop()
            nursery.start_soon(submit_for, waiting)
            await wait_all_tasks_blocked()
            release.set()

        assert refused == [CoreClosed]
