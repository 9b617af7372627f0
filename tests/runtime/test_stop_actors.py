"""`Supervisor.stop_actors`: many children stopped together, each within its own grace."""

from __future__ import annotations

from functools import partial
from typing import Any

import attrs
import pytest
import trio

from runtime import Actor, ChildExited, RestartType, open_actor_system


@attrs.define
class Barrier:
    """Opens once `parties` actors have begun to stop."""

    parties: int
    arrived: int = 0
    open: trio.Event = attrs.Factory(trio.Event)


class StopsWithOthers(Actor[Any]):
    """Its `on_stop` finishes only once every party's `on_stop` has begun."""

    def __init__(self, barrier: Barrier, finished: list[str], name: str) -> None:
        self.barrier = barrier
        self.finished = finished
        self.name = name

    async def handle(self, message: Any) -> None:
        pass

    async def on_stop(self) -> None:
        self.barrier.arrived += 1
        if self.barrier.arrived == self.barrier.parties:
            self.barrier.open.set()
        await self.barrier.open.wait()
        self.finished.append(self.name)


class HangsOnStop(Actor[Any]):
    async def handle(self, message: Any) -> None:
        pass

    async def on_stop(self) -> None:
        await trio.sleep_forever()


class Lingering(Actor[Any]):
    """Hibernates a while after each message: awake, with nothing to do."""

    hibernate = True
    hibernate_after = 60.0

    async def handle(self, message: Any) -> None:
        pass


class StopTimes(Actor[Any]):
    """Notes when each monitored child stopped for good."""

    def __init__(self, times: dict[str, float]) -> None:
        self.times = times

    async def handle(self, message: Any) -> None:
        if isinstance(message, ChildExited):
            self.times[message.ref.name] = trio.current_time()


async def test_stop_actors_asks_every_stop_before_it_waits_for_any(
    autojump_clock: object,
) -> None:
    barrier, finished = Barrier(parties=3), []
    async with open_actor_system() as system:
        pool = await system.start_supervisor("pool")
        refs = [
            await pool.spawn(partial(StopsWithOthers, barrier, finished, name), grace=5)
            for name in "abc"
        ]
        began = trio.current_time()

        await pool.stop_actors(refs)

        # One stop at a time, the first would have waited out its grace.
        assert trio.current_time() == began
        assert sorted(finished) == ["a", "b", "c"]
        assert all(ref.stopped for ref in refs)


async def test_stop_actors_stops_idle_awake_and_dormant_actors_alike() -> None:
    async with open_actor_system() as system:
        pool = await system.start_supervisor("pool")
        dormant = await pool.spawn(Lingering)
        awake = await pool.spawn(Lingering)
        await awake.ask("wake up")
        assert [dormant.statistics().state, awake.statistics().state] == ["dormant", "lingering"]

        await pool.stop_actors([dormant, awake])

        assert dormant.stopped and awake.stopped
        assert pool.children == []


async def stopped_after(*children: tuple[str, type[Actor[Any]], float]) -> dict[str, float]:
    """Spawn each (name, class, grace) in a pool, stop them all with one
    `stop_actors`, and say how many seconds after that call each stopped."""
    times: dict[str, float] = {}
    async with open_actor_system() as system:
        pool = await system.start_supervisor("pool")
        monitor = await system.spawn(partial(StopTimes, times))
        refs = [
            await pool.spawn(cls, name=name, grace=grace, monitor=monitor)
            for name, cls, grace in children
        ]
        began = trio.current_time()

        await pool.stop_actors(refs)
        await trio.testing.wait_all_tasks_blocked()

        assert all(ref.stopped for ref in refs)
    return {name: at - began for name, at in times.items()}


async def test_stop_actors_cancels_each_actor_at_the_end_of_its_own_grace_period(
    autojump_clock: object,
) -> None:
    assert await stopped_after(
        ("slow", HangsOnStop, 5), ("quick", HangsOnStop, 2), ("idle", Lingering, 5)
    ) == {"idle": 0, "quick": pytest.approx(2), "slow": pytest.approx(5)}


async def test_stop_actors_refuses_an_actor_of_another_supervisor_and_stops_none() -> None:
    async with open_actor_system() as system:
        pool = await system.start_supervisor("pool")
        mine = await pool.spawn(Lingering, restart=RestartType.TEMPORARY)
        theirs = await system.spawn(Lingering)

        with pytest.raises(ValueError, match="not a child of supervisor"):
            await pool.stop_actors([mine, theirs])

        assert not mine.stopped and not theirs.stopped
        await mine.ask("still here")


class SlowToLeave(Actor[Any]):
    """Hangs in `on_stop`; once cancelled, takes 10 s to clean up."""

    async def handle(self, message: Any) -> None:
        pass

    async def on_stop(self) -> None:
        try:
            await trio.sleep_forever()
        finally:
            with trio.CancelScope(shield=True):
                await trio.sleep(10)


async def test_an_actor_slow_to_leave_once_cancelled_delays_no_one_elses_cancel(
    autojump_clock: object,
) -> None:
    assert await stopped_after(("slow to leave", SlowToLeave, 1), ("hangs", HangsOnStop, 2)) == {
        "hangs": pytest.approx(2),
        "slow to leave": pytest.approx(11),
    }


@attrs.frozen
class StopUsAll:
    pool: Any
    others: list[Any]


class StopsItsPool(Actor[Any]):
    async def handle(self, message: StopUsAll) -> None:
        await message.pool.stop_actors([self.ref, *message.others])


async def test_an_actor_stopping_itself_among_others_only_asks_for_its_own_stop(
    autojump_clock: object,
) -> None:
    times: dict[str, float] = {}
    async with open_actor_system() as system:
        pool = await system.start_supervisor("pool")
        monitor = await system.spawn(partial(StopTimes, times))
        stopper = await pool.spawn(StopsItsPool, name="stopper", grace=3, monitor=monitor)
        hangs = await pool.spawn(HangsOnStop, name="hangs", grace=1, monitor=monitor)
        began = trio.current_time()

        stopper.send_nowait(StopUsAll(pool, [hangs]))
        await trio.sleep(5)

        assert {name: at - began for name, at in times.items()} == {
            "hangs": pytest.approx(1),
            "stopper": pytest.approx(1),
        }


async def test_stop_actors_takes_duplicates_and_is_a_checkpoint_even_with_nothing_to_stop() -> None:
    async with open_actor_system() as system:
        pool = await system.start_supervisor("pool")
        ref = await pool.spawn(Lingering)

        await pool.stop_actors([ref, ref])
        assert ref.stopped

        with trio.CancelScope() as scope:
            scope.cancel()
            await pool.stop_actors([])
        assert scope.cancelled_caught
