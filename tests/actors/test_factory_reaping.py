"""The engine factory's reaping: idle engines after the idle timeout, the
least recently used one for room at `max_engines`, never one that is busy
or held in a `user_execution_scope` (a lease)."""

from __future__ import annotations

from contextlib import AsyncExitStack

import pytest
import trio
from trio.testing import wait_all_tasks_blocked

from actors import CoreConfig, EngineLimitReached, open_core
from actors._factory import FactoryActor

from .kit import read_until_ended, sleep, terminal_of, types_of, user


async def test_at_the_limit_the_least_recently_used_idle_engine_is_reaped() -> None:
    async with open_core(CoreConfig(max_engines=2)) as core:
        alice = await core.factory.create_for_user(user("alice"))
        bob = await core.factory.create_for_user(user("bob"))
        await core.factory.create_for_user(user("alice"))  # alice is now the most recent
        await wait_all_tasks_blocked()

        carol = await core.factory.create_for_user(user("carol"))

        stats = core.factory.metrics()
        assert (alice.alive, bob.alive, carol.alive) == (True, False, True)
        assert stats.engines_active == 2
        assert stats.engines_created_total == 3
        assert stats.engines_reaped_total == {"lru": 1}


async def test_when_every_engine_is_busy_new_users_are_rejected(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with (
        open_core(CoreConfig(max_engines=1)) as core,
        core.subscribe("alice") as alice_events,
        core.subscribe("bob") as bob_events,
    ):
        long_run = await core.submit("alice", "sleep", sleep(60))
        await wait_all_tasks_blocked()

        with pytest.raises(EngineLimitReached, match="all 1 engines are busy"):
            await core.factory.create_for_user(user("bob"))
        rejected = await core.submit("bob", "echo", "hello")
        bob_seen = await read_until_ended(bob_events, [rejected])
        stats = core.factory.metrics()

        alice_seen = await read_until_ended(alice_events, [long_run])
        accepted = await core.submit("bob", "echo", "hello again")
        bob_seen += await read_until_ended(bob_events, [accepted])

    assert types_of(bob_seen, rejected) == ["agent_error"]
    assert terminal_of(bob_seen, rejected).data == {
        "reason": "rejected",
        "detail": "all 1 engines are busy; try again when a run ends",
    }
    assert (stats.engines_active, stats.engines_created_total) == (1, 1)
    assert terminal_of(alice_seen, long_run).type == "agent_completed"
    assert terminal_of(bob_seen, accepted).data["output"] == "hello again"


async def test_an_engine_held_in_a_user_execution_scope_is_not_reaped_for_room() -> None:
    async with open_core(CoreConfig(max_engines=1)) as core:
        async with core.factory.user_execution_scope(user("alice")) as alice:
            await wait_all_tasks_blocked()
            with pytest.raises(EngineLimitReached):
                await core.factory.create_for_user(user("bob"))
            assert alice.alive
            assert core.factory.metrics().leases == 1
        await wait_all_tasks_blocked()

        bob = await core.factory.create_for_user(user("bob"))

        assert bob.alive and not alice.alive
        assert core.factory.metrics().leases == 0


async def test_an_idle_engine_is_reaped_after_the_idle_timeout_and_not_before(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with open_core(CoreConfig(idle_timeout=10)) as core:
        began = trio.current_time()
        engine = await core.factory.create_for_user(user("alice"))

        await trio.sleep_until(began + 9.99)
        assert engine.alive
        assert core.factory.metrics().engines_reaped_total == {}

        await trio.sleep_until(began + 10 + 2.5 + 0.01)  # one sweep (idle_timeout / 4) later
        stats = core.factory.metrics()
        assert not engine.alive
        assert stats.engines_reaped_total == {"idle": 1}
        assert stats.engines_active == 0


@pytest.mark.parametrize("again", ["asks for the engine", "submits a run to it"])
async def test_coming_back_to_an_engine_counts_as_activity(
    again: str, autojump_clock: trio.abc.Clock
) -> None:
    async with open_core(CoreConfig(idle_timeout=10)) as core, core.subscribe("alice") as events:
        began = trio.current_time()
        engine = await core.factory.create_for_user(user("alice"))
        await trio.sleep_until(began + 8)
        if again == "asks for the engine":
            await core.factory.create_for_user(user("alice"))
        else:  # straight to the engine, not through the factory
            await read_until_ended(events, [await core.submit("alice", "echo", 1)])

        await trio.sleep_until(began + 17.99)
        assert engine.alive

        await trio.sleep_until(began + 18 + 2.5 + 0.01)
        assert not engine.alive
        assert core.factory.metrics().engines_created_total == 1
        assert core.factory.metrics().engines_reaped_total == {"idle": 1}


async def test_a_busy_engine_is_not_reaped_but_its_own_events_are_not_activity(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with open_core(CoreConfig(idle_timeout=10)) as core, core.subscribe("alice") as events:
        began = trio.current_time()
        # It ends between two sweeps (one every 2.5 s), so that it is seen
        # alive once idle, however the two are ordered within an instant.
        run_id = await core.submit("alice", "sleep", sleep(31, steps=31))
        engine = await core.factory.lookup("alice")
        assert engine is not None

        seen = await read_until_ended(events, [run_id])
        assert trio.current_time() - began == 31
        assert engine.alive  # busy for 31 s, three idle timeouts

        await trio.sleep_until(began + 32.5 + 0.01)  # the next sweep
        assert not engine.alive
        assert core.factory.metrics().engines_reaped_total == {"idle": 1}

    assert types_of(seen).count("agent_thinking") == 31


async def test_an_engine_is_held_while_inside_its_user_execution_scope(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with open_core(CoreConfig(idle_timeout=10)) as core:
        async with core.factory.user_execution_scope(user("alice")) as engine:
            await trio.sleep(100)
            assert engine.alive
        left = trio.current_time()

        await trio.sleep_until(left + 9.99)
        assert engine.alive
        await trio.sleep_until(left + 10 + 2.5 + 0.01)
        assert not engine.alive


async def test_an_engine_lingering_after_its_run_is_idle_and_gives_up_its_room(
    autojump_clock: trio.abc.Clock,
) -> None:
    config = CoreConfig(max_engines=1, engine_linger=60)
    async with open_core(config) as core, core.subscribe("bob") as events:
        await core.submit("alice", "echo", "x")
        await wait_all_tasks_blocked()
        alice = await core.factory.lookup("alice")
        assert alice is not None and alice.statistics().state == "lingering"

        run_id = await core.submit("bob", "echo", "y")  # takes alice's room
        seen = await read_until_ended(events, [run_id])

    assert types_of(seen) == ["agent_started", "agent_completed"]
    assert not alice.alive


async def test_an_engine_given_a_run_while_the_sweep_reaps_another_is_not_reaped(
    autojump_clock: trio.abc.Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with open_core(CoreConfig(idle_timeout=10)) as core, core.subscribe("bob") as events:
        await core.factory.create_for_user(user("alice"))
        await core.factory.create_for_user(user("bob"))  # both expire at the same sweep
        bob = await core.factory.lookup("bob")
        assert bob is not None
        reap = FactoryActor._reap
        bobs_run: list[str] = []

        async def reap_then_run_for_bob(factory: FactoryActor, user_id: str, reason: str) -> None:
            await reap(factory, user_id, reason)
            if user_id == "alice":  # bob is next in the sweep's list: he submits now
                bobs_run.append(await core.submit("bob", "sleep", sleep(30)))

        monkeypatch.setattr(FactoryActor, "_reap", reap_then_run_for_bob)
        await trio.sleep(10 + 2.5 + 0.01)
        assert core.factory.metrics().engines_reaped_total == {"idle": 1}
        assert bob.alive and bobs_run

        seen = await read_until_ended(events, bobs_run)
        assert terminal_of(seen, bobs_run[0]).type == "agent_completed"


async def test_leaving_a_scope_whose_engine_was_replaced_leaves_the_new_engines_lease() -> None:
    async with open_core() as core:
        factory = core.factory
        async with AsyncExitStack() as first_scope, AsyncExitStack() as third_scope:
            first = await first_scope.enter_async_context(
                factory.user_execution_scope(user("alice"))
            )
            assert await factory.cleanup_engine("alice") is True  # first is gone
            async with factory.user_execution_scope(user("alice")) as second:
                assert second.alive and not first.alive
                assert factory.metrics().leases == 1
            await wait_all_tasks_blocked()  # the release is told, not asked
            assert factory.metrics().leases == 0
            third = await third_scope.enter_async_context(
                factory.user_execution_scope(user("alice"))
            )
            assert third.statistics().name == second.statistics().name
            assert factory.metrics().leases == 1

            await first_scope.aclose()  # gives back its lease on the engine that is gone
            await wait_all_tasks_blocked()

            assert factory.metrics().leases == 1  # the third's, still held
            assert third.alive


async def test_a_lease_asked_for_by_a_scope_cancelled_on_its_way_in_is_not_taken() -> None:
    # The factory handles the abandoned Acquire all the same: its lease, which
    # no block would ever release, used to keep the engine from ever being
    # reaped, and at the limit every new user was then rejected.
    async with open_core(CoreConfig(max_engines=1)) as core:
        with trio.move_on_after(0):
            async with core.factory.user_execution_scope(user("carol")):
                pass  # never reached
        await wait_all_tasks_blocked()

        assert core.factory.metrics().leases == 0
        async with core.subscribe("dave") as events:
            run = await core.submit("dave", "echo", 1)  # carol's idle engine makes room
            seen = await read_until_ended(events, [run])
    assert terminal_of(seen, run).type == "agent_completed"
