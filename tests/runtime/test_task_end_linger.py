"""A hibernating actor's tasks ending while it waits: the last one starts its
linger without waking it; the others do not wake it at all."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import trio
from trio.testing import wait_all_tasks_blocked

from runtime import ActorRef, ActorSystem, RestartType, open_actor_system

from ..instruments import counting_steps
from .hibernating import (
    Add,
    Handled,
    Later,
    Message,
    Question,
    SleepyOracle,
    SlowSleeper,
    StartWork,
    Work,
)


@asynccontextmanager
async def actor_system() -> AsyncIterator[ActorSystem]:
    """An actor system that must be done within a minute: time is virtual,
    so a deadlock fails at once instead of hanging."""
    with trio.fail_after(60):
        async with open_actor_system() as system:
            yield system


async def working(ref: ActorRef[object], *events: trio.Event) -> None:
    """`ref` busy with a task for each of `events`, waiting on its mailbox."""
    for done in events:
        assert await ref.ask(StartWork(done)) == "working"
    await wait_all_tasks_blocked()
    assert ref.statistics().state == "running"


async def lingering_after_its_task(ref: ActorRef[object]) -> float:
    """`ref`'s only task ended just now: it lingers; returns when it ended."""
    done = trio.Event()
    await working(ref, done)
    done.set()
    await wait_all_tasks_blocked()
    assert ref.statistics().state == "lingering"
    return trio.current_time()


async def test_the_last_task_ending_starts_the_linger_without_waking_the_actor(
    autojump_clock: trio.abc.Clock,
) -> None:
    done = trio.Event()
    async with actor_system() as system:
        ref = await system.spawn(SlowSleeper)  # lingers 5 s
        await working(ref, done)
        with counting_steps(ref.name) as steps:
            done.set()
            await wait_all_tasks_blocked()
            ended = trio.current_time()
            assert (ref.statistics().state, steps.count) == ("lingering", 0)

            await trio.sleep(4.9)
            assert (ref.statistics().state, steps.count) == ("lingering", 0)
            await trio.sleep(0.2)
            assert ref.statistics().state == "dormant"
        assert steps.first_at is not None  # woken at the linger's end, to go dormant
        assert 5 <= steps.first_at - ended < 5.01
        assert await ref.ask(Add(1)) == 1  # and woken again by a message


async def test_while_other_tasks_run_a_task_ending_does_not_wake_the_actor(
    autojump_clock: trio.abc.Clock,
) -> None:
    first, second = trio.Event(), trio.Event()
    async with actor_system() as system:
        ref = await system.spawn(SlowSleeper)
        await working(ref, first, second)
        with counting_steps(ref.name) as steps:
            first.set()
            await wait_all_tasks_blocked()
            assert (ref.statistics().state, steps.count) == ("running", 0)
            second.set()
            await wait_all_tasks_blocked()
            assert (ref.statistics().state, steps.count) == ("lingering", 0)


async def test_a_message_during_that_linger_is_handled_and_the_actor_lingers_afresh(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with actor_system() as system:
        ref = await system.spawn(SlowSleeper)
        ended = await lingering_after_its_task(ref)

        await trio.sleep(3)
        assert await ref.ask(Add(1)) == 1
        # The linger the task's end started is over at +5, but the message
        # started a new one, to +8: it does not go dormant in between.
        await trio.sleep_until(ended + 7.9)
        assert ref.statistics().state == "lingering"
        await trio.sleep_until(ended + 8.1)
        assert ref.statistics().state == "dormant"


async def test_stopping_during_that_linger_stops_the_actor_at_once(
    autojump_clock: trio.abc.Clock,
) -> None:
    log: list[str] = []
    async with actor_system() as system:
        ref = await system.spawn(partial(SlowSleeper, log))
        await lingering_after_its_task(ref)

        began = trio.current_time()
        with trio.fail_after(1):
            await ref.stop()
        assert trio.current_time() == began
        assert (ref.statistics().state, log) == ("stopped", ["on_stop"])
        await trio.sleep(10)  # past the linger: nothing wakes it
        assert ref.statistics().state == "stopped"


class SelfStopping(SlowSleeper):
    """Its task asks for the actor's stop as it ends."""

    async def handle(self, message: Message) -> Any:
        if isinstance(message, StartWork):
            self.start_task(self._work_then_stop, message.done)
            return "working"
        return await super().handle(message)

    async def _work_then_stop(self, done: trio.Event) -> None:
        await done.wait()
        self.stop()


async def test_a_stop_asked_for_as_the_last_task_ends_stops_the_actor(
    autojump_clock: trio.abc.Clock,
) -> None:
    log: list[str] = []
    done = trio.Event()
    async with actor_system() as system:
        ref = await system.spawn(partial(SelfStopping, log), restart=RestartType.TEMPORARY)
        await working(ref, done)

        began = trio.current_time()
        done.set()
        await wait_all_tasks_blocked()
        assert trio.current_time() == began
        assert (ref.statistics().state, log) == ("stopped", ["on_stop"])


async def busy_oracle(system: ActorSystem, log: list[Handled], done: trio.Event) -> ActorRef[Any]:
    """An oracle (lingers 10 s) busy with a task started by an answer given
    at once, and past its first linger: it waits on its mailbox, busy."""
    ref = await system.spawn(partial(SleepyOracle, log))
    await ref.ask(Later(0))
    assert await ref.ask(Work(done)) == "working"
    await trio.sleep(11)
    assert ref.statistics().state == "running"
    return ref


async def test_an_answer_given_at_once_during_that_linger_starts_it_afresh_without_waking(
    autojump_clock: trio.abc.Clock,
) -> None:
    log: list[Handled] = []
    done = trio.Event()
    async with actor_system() as system:
        ref = await busy_oracle(system, log, done)
        with counting_steps(ref.name) as steps:
            done.set()
            await wait_all_tasks_blocked()
            ended = trio.current_time()
            assert ref.statistics().state == "lingering"

            await trio.sleep(3)
            assert await ref.ask(Question(1)) == 10
            assert ref.statistics().state == "lingering"
            await trio.sleep_until(ended + 12.9)  # past the first linger's end
            assert ref.statistics().state == "lingering"
            await trio.sleep_until(ended + 13.1)
            assert ref.statistics().state == "dormant"
        assert steps.first_at is not None
        assert 13 <= steps.first_at - ended < 13.01  # woken only to go dormant


async def test_a_task_started_by_an_answer_during_that_linger_is_waited_for_without_waking(
    autojump_clock: trio.abc.Clock,
) -> None:
    log: list[Handled] = []
    done, more = trio.Event(), trio.Event()
    async with actor_system() as system:
        ref = await busy_oracle(system, log, done)
        with counting_steps(ref.name) as steps:
            done.set()
            await trio.sleep(3)
            assert await ref.ask(Work(more)) == "working"
            assert ref.statistics().state == "running"

            await trio.sleep(20)  # well past the linger the first task's end began
            assert (ref.statistics().state, steps.count) == ("running", 0)
            more.set()
            await wait_all_tasks_blocked()
            assert (ref.statistics().state, steps.count) == ("lingering", 0)
            await trio.sleep(10.1)
            assert ref.statistics().state == "dormant"
