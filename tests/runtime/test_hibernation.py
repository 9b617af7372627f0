"""Hibernating actors: no task while idle, woken by the next message, state kept."""

from __future__ import annotations

import gc
from functools import partial
from typing import Any

import pytest
import trio
from trio.testing import wait_all_tasks_blocked

from runtime import LATER, Actor, ActorStopped, RestartType, open_actor_system

from .hibernating import Add, Crash, Sleeper, SlowSleeper, StartWork


def count_tasks() -> int:
    def walk(task: trio.lowlevel.Task) -> int:
        return 1 + sum(
            walk(child) for nursery in task.child_nurseries for child in nursery.child_tasks
        )

    return walk(trio.lowlevel.current_root_task())


async def test_a_hibernating_actor_goes_dormant_when_idle_and_holds_no_task() -> None:
    async with open_actor_system() as system:
        await wait_all_tasks_blocked()
        tasks_before = count_tasks()

        ref = await system.spawn(Sleeper)
        await wait_all_tasks_blocked()

        assert ref.statistics().state == "dormant"
        assert count_tasks() == tasks_before


class Spawned(trio.abc.Instrument):
    """Counts the tasks spawned (only those named `name`, if given)."""

    def __init__(self, name: str | None = None) -> None:
        self.name = name
        self.count = 0

    def task_spawned(self, task: trio.lowlevel.Task) -> None:
        if self.name is None or task.name == self.name:
            self.count += 1


async def test_a_hibernating_actor_without_on_start_is_spawned_dormant_without_a_task() -> None:
    spawned = Spawned()
    async with open_actor_system() as system:
        trio.lowlevel.add_instrument(spawned)
        ref = await system.spawn(Sleeper)
        assert (spawned.count, ref.statistics().state) == (0, "dormant")

        assert await ref.ask(Add(2)) == 2  # its first message gives it its first task
        assert spawned.count == 1
        trio.lowlevel.remove_instrument(spawned)


async def test_spawn_dormant_enlists_a_dormant_child_without_yielding() -> None:
    spawned = Spawned()
    async with open_actor_system() as system:
        supervisor = await system.start_supervisor("sleepers")
        trio.lowlevel.add_instrument(spawned)
        with trio.CancelScope() as scope:
            scope.cancel()  # any checkpoint in spawn_dormant would raise here
            ref = supervisor.spawn_dormant(Sleeper, name="sleeper")
        assert supervisor.children == [ref]
        assert (spawned.count, ref.statistics().state) == (0, "dormant")

        assert await ref.ask(Add(3)) == 3  # its first message gives it its first task
        assert spawned.count == 1
        trio.lowlevel.remove_instrument(spawned)


class Awake(Actor[Any]):
    async def handle(self, message: Any) -> Any:
        return message


async def test_spawn_dormant_refuses_an_actor_that_must_start_awake_and_creates_nothing() -> None:
    async with open_actor_system() as system:
        supervisor = await system.start_supervisor("sleepers")

        for factory in (Awake, SleeperWithStart):
            with pytest.raises(TypeError, match=f"{factory.__name__} does not start dormant"):
                supervisor.spawn_dormant(factory)

        assert supervisor.children == []
        assert "Awake" not in system.statistics().kinds


class SleeperWithStart(Sleeper):
    async def on_start(self) -> None:
        await trio.lowlevel.checkpoint()
        self.log.append("on_start")


async def test_a_hibernating_actor_with_on_start_has_run_it_when_spawn_returns() -> None:
    log: list[str] = []
    async with open_actor_system() as system:
        ref = await system.spawn(partial(SleeperWithStart, log))
        assert log == ["on_start"]
        await wait_all_tasks_blocked()
        assert ref.statistics().state == "dormant"
        assert await ref.ask(Add(1)) == 1
        assert log == ["on_start"]


async def test_a_stop_between_a_dormant_actors_wake_up_and_its_task_stops_it_once(
    autojump_clock: trio.abc.Clock,
) -> None:
    made: list[Sleeper] = []

    def make() -> Sleeper:
        made.append(Sleeper())
        return made[-1]

    async with open_actor_system() as system:
        ref = await system.spawn(make)
        ref.send_nowait(Add(1))  # wakes it: its task is scheduled, not yet run
        with trio.fail_after(1):  # well within the grace period
            await ref.stop()
        await wait_all_tasks_blocked()

        assert ref.statistics().state == "stopped"
        assert ref.statistics().messages_handled == 1  # what was queued is handled
        assert (len(made), made[0].total, made[0].log) == (1, 1, ["on_stop"])


class LightSleeper(Sleeper):
    stop_wakes = False


async def test_a_dormant_actor_that_need_not_wake_to_stop_is_stopped_at_once_without_on_stop() -> (
    None
):
    log: list[str] = []
    spawned = Spawned()
    async with open_actor_system() as system:
        ref = await system.spawn(partial(LightSleeper, log))
        assert await ref.ask(Add(1)) == 1
        await wait_all_tasks_blocked()
        trio.lowlevel.add_instrument(spawned)
        await ref.stop()
        trio.lowlevel.remove_instrument(spawned)

        assert ref.statistics().state == "stopped"
        assert (spawned.count, log) == (0, [])
        assert system.root.children == []


async def test_an_awake_actor_that_need_not_wake_to_stop_still_runs_on_stop(
    autojump_clock: trio.abc.Clock,
) -> None:
    log: list[str] = []
    done = trio.Event()
    async with open_actor_system() as system:
        ref = await system.spawn(partial(LightSleeper, log))
        assert await ref.ask(StartWork(done)) == "working"
        await ref.stop()  # its task is cancelled after on_stop

        assert ref.statistics().state == "stopped"
        assert log == ["on_stop"]


async def test_a_lingering_actor_takes_messages_for_a_while_without_a_new_task_then_sleeps(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with open_actor_system() as system:
        ref = await system.spawn(SlowSleeper)
        spawned = Spawned(ref.name)  # its own tasks, not the timers'
        trio.lowlevel.add_instrument(spawned)
        assert await ref.ask(Add(1)) == 1
        assert spawned.count == 1  # its first task

        for _ in range(3):  # each within the 5 s of the one before
            await trio.sleep(4.9)
            assert ref.statistics().state == "lingering"
            assert await ref.ask(Add(1)) > 1
        assert spawned.count == 1

        await trio.sleep(5.1)
        assert ref.statistics().state == "dormant"
        assert await ref.ask(Add(1)) == 5
        assert spawned.count == 2
        trio.lowlevel.remove_instrument(spawned)


async def test_stopping_a_lingering_actor_runs_on_stop_at_once(
    autojump_clock: trio.abc.Clock,
) -> None:
    log: list[str] = []
    async with open_actor_system() as system:
        ref = await system.spawn(partial(SlowSleeper, log))
        assert await ref.ask(Add(1)) == 1
        await wait_all_tasks_blocked()
        assert ref.statistics().state == "lingering"

        began = trio.current_time()
        await ref.stop()
        assert trio.current_time() == began
        assert (ref.statistics().state, log) == ("stopped", ["on_stop"])


async def test_a_dormant_actor_wakes_on_the_next_message_and_keeps_its_state() -> None:
    async with open_actor_system() as system:
        ref = await system.spawn(Sleeper)
        assert await ref.ask(Add(2)) == 2
        await wait_all_tasks_blocked()
        assert ref.statistics().state == "dormant"

        ref.send_nowait(Add(3))
        await wait_all_tasks_blocked()
        assert ref.statistics().state == "dormant"

        with trio.fail_after(1):
            assert await ref.ask(Add(4)) == 9
        assert ref.statistics().messages_handled == 3
        assert ref.statistics().restarts == 0


async def test_a_hibernating_actor_stays_running_while_its_task_is_alive(
    autojump_clock: object,
) -> None:
    done = trio.Event()
    async with open_actor_system() as system:
        ref = await system.spawn(Sleeper)

        assert await ref.ask(StartWork(done)) == "working"
        await wait_all_tasks_blocked()
        assert ref.statistics().state == "running"
        with trio.fail_after(1):
            assert await ref.ask(Add(2)) == 2  # still handling messages meanwhile
        await wait_all_tasks_blocked()
        assert ref.statistics().state == "running"

        done.set()
        await wait_all_tasks_blocked()
        assert ref.statistics().state == "dormant"
        assert await ref.ask(Add(1)) == 3


async def test_stopping_a_dormant_actor_runs_on_stop() -> None:
    log: list[str] = []
    async with open_actor_system() as system:
        ref = await system.spawn(partial(Sleeper, log))
        await wait_all_tasks_blocked()
        assert ref.statistics().state == "dormant"

        with trio.fail_after(1):
            await ref.stop()

        assert log == ["on_stop"]
        assert ref.stopped


async def test_leaving_the_system_runs_on_stop_of_dormant_actors() -> None:
    log: list[str] = []
    async with open_actor_system() as system:
        refs = [await system.spawn(partial(Sleeper, log)) for _ in range(3)]
        await wait_all_tasks_blocked()
        assert {ref.statistics().state for ref in refs} == {"dormant"}

    assert log == ["on_stop"] * 3
    assert all(ref.stopped for ref in refs)


async def test_a_crashed_hibernating_actor_is_restarted_afresh_and_goes_dormant_again() -> None:
    async with open_actor_system() as system:
        ref = await system.spawn(Sleeper, restart=RestartType.PERMANENT)
        await ref.ask(Add(5))

        ref.send_nowait(Crash())
        await wait_all_tasks_blocked()

        assert ref.statistics().restarts == 1
        assert ref.statistics().state == "dormant"
        assert await ref.ask(Add(1)) == 1


class QuickSleeper(Sleeper):
    """A `Sleeper` that also answers and handles at once while idle."""

    def answer_now(self, message: Any) -> Any:
        return LATER

    def handle_now(self, message: Any) -> bool:
        return False


def _objects_alive() -> int:
    """Tracked objects alive once every cycle is gone: garbage with a
    finalizer, left by an earlier test, may take more than one collection."""
    while gc.collect():
        pass
    return len(gc.get_objects())


async def _objects_per_dormant_actor(cls: type[Sleeper], n: int = 500) -> float:
    async with open_actor_system() as system:
        supervisor = await system.start_supervisor(cls.__name__)
        before = _objects_alive()
        refs = [supervisor.spawn_dormant(cls) for _ in range(n)]
        per_actor = (_objects_alive() - before) / n
        assert all(ref.statistics().state == "dormant" for ref in refs)
        return per_actor


async def test_answering_and_handling_at_once_cost_a_dormant_actor_nothing() -> None:
    # Each of a hundred thousand idle engines would pay for a bound method
    # per hook; the cell calls the class's function with the instance instead.
    plain = await _objects_per_dormant_actor(Sleeper)
    quick = await _objects_per_dormant_actor(QuickSleeper)

    # Whole objects per actor: meanwhile a thread an earlier test left (trio's
    # worker threads linger a while) may end and free a few, in all.
    assert round(quick) == round(plain)


class _Fatal(BaseException):
    """Not an Exception: it tears down the task it escapes, and the system."""


class _Fails(Actor[Any]):
    async def handle(self, message: Any) -> None:
        raise _Fatal


async def test_a_dormant_actor_whose_supervisor_was_torn_down_stops_when_a_message_comes() -> None:
    # Before, the message's wake-up raised "Nursery is closed to new arrivals"
    # in the sender, and left the actor awake with no task: a stop waited on
    # it for ever.
    with pytest.raises(BaseExceptionGroup) as caught:
        async with open_actor_system() as system:
            supervisor = await system.start_supervisor("sleepers")
            sleeper = supervisor.spawn_dormant(Sleeper, name="sleeper")
            failing = await system.spawn(_Fails)
            await failing.send("now")
            await trio.sleep_forever()
    assert caught.group_contains(_Fatal)

    with pytest.raises(ActorStopped):
        await sleeper.ask(Add(1))
    assert sleeper.stopped
