"""open_actor_system: the root supervisor, and the promise that nothing outlives it."""

from __future__ import annotations

from functools import partial
from typing import Any

import pytest
import trio
from trio.testing import wait_all_tasks_blocked

from runtime import Actor, ActorStopped, RestartIntensity, open_actor_system, raise_if_alone


def count_tasks() -> int:
    def walk(task: trio.lowlevel.Task) -> int:
        return 1 + sum(
            walk(child) for nursery in task.child_nurseries for child in nursery.child_tasks
        )

    return walk(trio.lowlevel.current_root_task())


class Busy(Actor[str]):
    """Keeps a task of its own running for as long as it lives."""

    async def on_start(self) -> None:
        self.start_task(trio.sleep_forever)

    async def handle(self, message: str) -> str:
        return message


class Sleepy(Actor[str]):
    hibernate = True

    async def handle(self, message: str) -> str:
        return message


class Stubborn(Actor[str]):
    """Never finishes its `on_stop`: only the grace period ends it."""

    async def handle(self, message: str) -> str:
        return message

    async def on_stop(self) -> None:
        await trio.sleep_forever()


async def test_leaving_the_actor_system_stops_every_actor_and_leaves_no_task_behind(
    autojump_clock: object,
) -> None:
    await wait_all_tasks_blocked()
    tasks_before = count_tasks()

    async with open_actor_system() as system:
        busy = await system.spawn(Busy)
        sleepy = await system.spawn(Sleepy)
        stubborn = await system.spawn(Stubborn, grace=1)
        nested = await system.start_supervisor("nested")
        deep = await nested.spawn(Busy)
        for ref in (busy, sleepy, stubborn, deep):
            assert await ref.ask("hello") == "hello"
        await wait_all_tasks_blocked()
        assert count_tasks() > tasks_before
        refs = [busy, sleepy, stubborn, deep]

    assert count_tasks() == tasks_before
    assert all(ref.stopped for ref in refs)
    assert {ref.statistics().state for ref in refs} == {"stopped"}
    with pytest.raises(ActorStopped):
        await busy.ask("anyone there?")


async def test_an_error_in_the_block_stops_every_actor_and_comes_out_as_raised() -> None:
    log: list[str] = []
    tasks_before = count_tasks()

    with pytest.raises(KeyError, match="the host app failed"):  # not in a group
        async with open_actor_system() as system:
            ref = await system.spawn(partial(Noted, "noted", log))
            raise KeyError("the host app failed")

    assert ref.stopped
    assert log == ["noted"]
    assert count_tasks() == tasks_before


async def test_an_error_from_the_block_keeps_its_chain() -> None:
    # It came out with its cause dropped and the system's group as its context.
    with pytest.raises(ValueError, match="wrapped") as raised:
        async with open_actor_system():
            try:
                {}["key"]
            except KeyError as error:
                raise ValueError("wrapped") from error
    with pytest.raises(ValueError, match="implicit") as implicit:
        async with open_actor_system():
            try:
                {}["key"]
            except KeyError:
                raise ValueError("implicit")  # noqa: B904 (the implicit chain is the point)

    assert isinstance(raised.value.__cause__, KeyError)
    assert raised.value.__suppress_context__
    assert isinstance(implicit.value.__context__, KeyError)
    assert implicit.value.__cause__ is None and not implicit.value.__suppress_context__


async def test_a_group_raised_by_the_block_comes_out_as_that_group_not_wrapped_again() -> None:
    async def fails() -> None:
        raise ValueError("inner")

    with pytest.raises(ExceptionGroup) as raised:
        async with open_actor_system(), trio.open_nursery() as nursery:  # the block's own
            nursery.start_soon(fails)

    assert len(raised.value.exceptions) == 1
    assert isinstance(raised.value.exceptions[0], ValueError)


class Noted(Actor[str]):
    def __init__(self, label: str, log: list[str]) -> None:
        self.label = label
        self.log = log

    async def on_stop(self) -> None:
        self.log.append(self.label)


class DormantNoted(Noted):
    hibernate = True


async def test_a_cancelled_block_still_stops_every_actor_in_order(autojump_clock: object) -> None:
    log: list[str] = []
    tasks_before = count_tasks()

    with trio.move_on_after(1) as scope:
        async with open_actor_system() as system:
            a = await system.spawn(partial(Noted, "a", log))
            nested = await system.start_supervisor("nested")
            b = await nested.spawn(partial(DormantNoted, "b", log))
            c = await system.spawn(partial(Noted, "c", log))
            await trio.sleep_forever()

    assert scope.cancelled_caught
    assert log == ["c", "b", "a"]
    assert all(ref.stopped for ref in (a, b, c))
    assert count_tasks() == tasks_before


async def test_actors_can_be_named_and_are_otherwise_numbered_by_kind() -> None:
    class Greeter(Actor[str]):
        kind = "greeter"

        async def handle(self, message: str) -> Any:
            return f"hello {message}"

    async with open_actor_system() as system:
        named = await system.spawn(Greeter, name="front-desk")
        numbered = await system.spawn(Greeter)

        assert named.name == "front-desk"
        assert numbered.name.startswith("greeter-")
        assert numbered.statistics().kind == "greeter"
        assert await named.ask("ada") == "hello ada"
        assert system.statistics().kinds["greeter"].actors == 2


async def test_system_statistics_add_up_dead_letters_across_kinds() -> None:
    class First(Actor[str]):
        pass

    class Second(Actor[str]):
        pass

    async with open_actor_system() as system:
        first = await system.spawn(First)
        second = await system.spawn(Second)
        await first.stop()
        await second.stop()

        for _ in range(2):
            with pytest.raises(ActorStopped):
                first.send_nowait("lost")
        with pytest.raises(ActorStopped):
            await second.send("lost")

        stats = system.statistics()
        assert stats.kinds["First"].dead_letters == 2
        assert stats.kinds["Second"].dead_letters == 1
        assert stats.dead_letters == 3


def test_raise_if_alone_unwraps_only_a_group_that_holds_nothing_but_the_error() -> None:
    error = KeyError("mine")
    other = ValueError("theirs")

    with pytest.raises(KeyError) as raised:
        raise_if_alone(ExceptionGroup("outer", [ExceptionGroup("inner", [error])]), error)
    assert raised.value is error

    raise_if_alone(ExceptionGroup("two", [error, other]), error)  # both must be seen
    raise_if_alone(ExceptionGroup("not mine", [other]), error)
    raise_if_alone(ExceptionGroup("no block error", [other]), None)


class TaskName(Actor[str]):
    """Answers with the name of the task handling its messages; crashes on "crash"."""

    async def handle(self, message: str) -> str:
        if message == "crash":
            raise RuntimeError("asked to")
        return trio.lowlevel.current_task().name


class SleepyTaskName(TaskName):
    hibernate = True


def task_names() -> list[str]:
    def walk(task: trio.lowlevel.Task) -> list[str]:
        names = [task.name]
        for nursery in task.child_nurseries:
            for child in nursery.child_tasks:
                names += walk(child)
        return names

    return walk(trio.lowlevel.current_root_task())


async def test_the_task_serving_an_actor_or_a_supervisor_is_named_after_it() -> None:
    # So that a trio instrument, a debugger or a profile can tell whose it is.
    async with open_actor_system() as system:
        workers = await system.start_supervisor(
            "workers", intensity=RestartIntensity(max_restarts=0)
        )
        await workers.start_supervisor("inner")
        assert task_names().count("supervisor workers") == 1
        assert task_names().count("supervisor inner") == 1
        started = await workers.spawn(TaskName, name="at-once")
        woken = await workers.spawn(SleepyTaskName, name="woken")
        assert woken.statistics().state == "dormant"

        assert await started.ask("name?") == "at-once"
        assert await woken.ask("name?") == "woken"

        # One crash is over the limit: `workers` restarts, starting its
        # children again, the actors and the supervisor.
        await started.send("crash")
        await wait_all_tasks_blocked()
        assert started.statistics().restarts == 0  # restarted with its supervisor, afresh
        assert await started.ask("name?") == "at-once"
        assert task_names().count("supervisor workers") == 1
        assert task_names().count("supervisor inner") == 1  # started again by `workers`
