"""Actors and their refs: dispatch, ask, crashes, lifecycle hooks and fairness."""

from __future__ import annotations

import gc
import weakref
from collections import Counter as Tally
from functools import partial
from typing import Any

import attrs
import pytest
import trio
from trio.lowlevel import Task, current_task
from trio.testing import wait_all_tasks_blocked

from runtime import YIELD_EVERY, Actor, ActorRef, ActorStopped, RestartType, open_actor_system

from .kit import Add, Crash, Get


@attrs.frozen
class Fail:
    reason: str


@attrs.frozen
class Wait:
    """Handled by waiting on `event` (forever unless somebody sets it)."""

    event: trio.Event


@attrs.frozen
class CrashInTask:
    """Start a task that crashes the actor while the handler is still waiting."""


@attrs.frozen
class Me:
    pass


Message = Add | Get | Fail | Crash | Wait | CrashInTask | Me


class Counter(Actor[Message]):
    def __init__(self) -> None:
        self.total = 0
        self.seen: list[int] = []

    async def handle(self, message: Message) -> Any:
        match message:
            case Add(n):
                self.total += n
                self.seen.append(n)
                return self.total
            case Get():
                return self.total
            case Fail(reason):
                raise ValueError(reason)
            case Crash():
                raise RuntimeError("crashed on purpose")
            case Wait(event):
                await event.wait()
                self.seen.append(-1)
                return "done waiting"
            case CrashInTask():
                self.start_task(self._explode)
                await trio.sleep_forever()
            case Me():
                return self.ref

    async def _explode(self) -> None:
        await trio.lowlevel.checkpoint()
        raise RuntimeError("a task of the actor crashed")


async def test_an_actor_dispatches_typed_messages_and_ask_returns_the_reply() -> None:
    async with open_actor_system() as system:
        ref = await system.spawn(Counter)

        assert await ref.ask(Add(2)) == 2
        await ref.send(Add(3))
        ref.send_nowait(Add(4))
        assert await ref.ask(Get()) == 9


async def test_the_ref_an_actor_sees_as_its_own_is_the_ref_spawn_returned() -> None:
    async with open_actor_system() as system:
        ref = await system.spawn(Counter)
        other = await system.spawn(Counter)

        own: ActorRef[Message] = await ref.ask(Me())

        assert own == ref
        assert hash(own) == hash(ref)
        assert own != other


async def test_an_exception_raised_while_handling_an_ask_is_reraised_in_the_caller() -> None:
    async with open_actor_system() as system:
        ref = await system.spawn(Counter)
        await ref.ask(Add(5))

        with pytest.raises(ValueError, match="bad input"):
            await ref.ask(Fail("bad input"))

        assert await ref.ask(Get()) == 5  # same instance, same state
        assert ref.statistics().restarts == 0
        assert ref.statistics().state == "running"


async def test_an_exception_while_handling_a_send_restarts_a_permanent_actor_afresh() -> None:
    async with open_actor_system() as system:
        ref = await system.spawn(Counter, restart=RestartType.PERMANENT)
        await ref.ask(Add(5))

        await ref.send(Crash())
        await wait_all_tasks_blocked()

        assert ref.statistics().restarts == 1
        assert await ref.ask(Get()) == 0
        assert not ref.stopped


async def test_messages_sent_to_a_stopped_actor_raise_actor_stopped_and_count_as_dead() -> None:
    async with open_actor_system() as system:
        ref = await system.spawn(Counter)
        await ref.stop()
        assert ref.stopped

        with pytest.raises(ActorStopped):
            ref.send_nowait(Add(1))
        with pytest.raises(ActorStopped):
            await ref.send(Add(1))
        with pytest.raises(ActorStopped):
            await ref.ask(Get())

        assert system.statistics().dead_letters == 3
        assert system.statistics().kinds["Counter"].dead_letters == 3


async def test_an_ask_whose_actor_crashes_before_replying_raises_actor_stopped(
    autojump_clock: object,
) -> None:
    async with open_actor_system() as system:
        ref = await system.spawn(Counter)
        await ref.ask(Add(1))

        with trio.fail_after(10), pytest.raises(ActorStopped) as excinfo:
            await ref.ask(CrashInTask())

        assert isinstance(excinfo.value.__cause__, RuntimeError)
        await wait_all_tasks_blocked()
        assert ref.statistics().restarts == 1
        assert await ref.ask(Get()) == 0


async def test_an_ask_whose_actor_is_stopped_before_replying_raises_actor_stopped(
    autojump_clock: object,
) -> None:
    async with open_actor_system() as system:
        ref = await system.spawn(Counter, grace=1)
        errors: list[BaseException] = []

        async def ask_forever() -> None:
            try:
                await ref.ask(Wait(trio.Event()))
            except ActorStopped as error:
                errors.append(error)

        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(ask_forever)
                await wait_all_tasks_blocked()
                await ref.stop()  # the handler never returns: cancelled after 1 s

        assert len(errors) == 1
        assert ref.stopped


async def test_an_actor_stopping_itself_through_its_ref_stops_after_the_message_for_good(
    autojump_clock: trio.abc.Clock,
) -> None:
    handled: list[str] = []

    class Quitter(Actor[str]):
        async def handle(self, message: str) -> Any:
            handled.append(message)
            if message == "quit":
                await self.ref.stop()  # cannot wait for itself: returns at once
                return "bye"
            return "ok"

    async with open_actor_system() as system:
        ref = await system.spawn(Quitter)  # permanent, yet not restarted
        ref.send_nowait("queued before")
        began = trio.current_time()
        assert await ref.ask("quit") == "bye"
        await ref.stop()

        assert trio.current_time() == began  # no grace period waited out
        assert ref.stopped and ref.statistics().restarts == 0
        assert handled == ["queued before", "quit"]


async def test_asks_queued_behind_the_crash_of_a_temporary_actor_raise_actor_stopped(
    autojump_clock: object,
) -> None:
    async with open_actor_system() as system:
        ref = await system.spawn(Counter, restart=RestartType.TEMPORARY)
        ref.send_nowait(Crash())

        with trio.fail_after(10), pytest.raises(ActorStopped):
            await ref.ask(Get())

        assert ref.stopped


async def test_a_cancelled_ask_is_abandoned_and_the_actor_carries_on(
    autojump_clock: object,
) -> None:
    gate = trio.Event()
    async with open_actor_system() as system:
        ref = await system.spawn(Counter)

        with trio.move_on_after(1) as being_handled:
            await ref.ask(Wait(gate))
        with trio.move_on_after(1) as still_queued:
            await ref.ask(Add(7))  # queued behind the Wait, which is still blocked

        assert being_handled.cancelled_caught
        assert still_queued.cancelled_caught
        gate.set()
        with trio.fail_after(1):
            assert await ref.ask(Get()) == 7  # both abandoned messages were still handled
        assert ref.statistics().restarts == 0


class SlowStart(Actor[Get]):
    def __init__(self, log: list[str]) -> None:
        self.log = log
        self.ready = False

    async def on_start(self) -> None:
        await trio.sleep(1)
        self.ready = True
        self.log.append("on_start finished")

    async def handle(self, message: Get) -> bool:
        return self.ready


async def test_spawn_returns_the_ref_only_after_on_start_has_finished(
    autojump_clock: object,
) -> None:
    log: list[str] = []
    async with open_actor_system() as system:
        ref = await system.spawn(partial(SlowStart, log))
        log.append("spawn returned")

        assert log == ["on_start finished", "spawn returned"]
        assert ref.statistics().state == "running"
        assert await ref.ask(Get()) is True


class BrokenStart(Actor[Get]):
    async def on_start(self) -> None:
        raise ValueError("no database")


async def test_an_exception_in_on_start_is_raised_from_spawn_and_leaves_nothing_behind() -> None:
    async with open_actor_system() as system:
        with pytest.raises(ValueError, match="no database"):
            await system.spawn(BrokenStart)

        assert system.root.children == []
        assert system.statistics().kinds["BrokenStart"].actors == 0
        ref = await system.spawn(Counter)  # the system itself carries on
        assert await ref.ask(Add(1)) == 1


class Logged(Actor[int]):
    def __init__(self, log: list[object]) -> None:
        self.log = log

    async def handle(self, message: int) -> None:
        self.log.append(message)

    async def on_stop(self) -> None:
        self.log.append("on_stop")


async def test_on_stop_runs_on_an_orderly_stop_after_the_queued_messages_were_handled() -> None:
    log: list[object] = []
    async with open_actor_system() as system:
        ref = await system.spawn(partial(Logged, log))
        for i in range(3):
            ref.send_nowait(i)  # queued; the actor has not run yet

        await ref.stop()

        assert log == [0, 1, 2, "on_stop"]
        assert system.statistics().dead_letters == 0


class TaskSteps(trio.abc.Instrument):
    """Counts the steps each task has run: a task that yields starts a new step."""

    def __init__(self) -> None:
        self.steps: Tally[Task] = Tally()

    def after_task_step(self, task: Task) -> None:
        self.steps[task] += 1


class Sink(Actor[object]):
    def __init__(self, record: list[object] | None = None) -> None:
        self.record = record

    async def handle(self, message: object) -> Any:
        if self.record is not None:
            self.record.append(message)
        return None


async def test_a_loop_of_sends_yields_at_least_every_yield_every_messages() -> None:
    total = 10 * YIELD_EVERY
    steps = TaskSteps()
    async with open_actor_system() as system:
        ref = await system.spawn(Sink, mailbox_capacity=total)
        me = current_task()
        step_of_send: list[int] = []
        trio.lowlevel.add_instrument(steps)
        try:
            for i in range(total):
                await ref.send(i)
                step_of_send.append(steps.steps[me])
        finally:
            trio.lowlevel.remove_instrument(steps)

    sends_per_step = Tally(step_of_send)
    assert max(sends_per_step.values()) <= YIELD_EVERY
    assert len(sends_per_step) >= total // YIELD_EVERY


async def test_an_actor_working_through_a_long_backlog_lets_other_tasks_run() -> None:
    total = 10 * YIELD_EVERY
    steps = TaskSteps()
    ticks = 0
    record: list[tuple[int, int]] = []

    class Backlogged(Actor[object]):
        async def handle(self, message: object) -> Any:
            record.append((steps.steps[current_task()], ticks))
            return None

    async def tick() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await trio.lowlevel.checkpoint()

    async with open_actor_system() as system:
        ref = await system.spawn(Backlogged)
        for i in range(total):
            ref.send_nowait(i)  # the whole backlog is queued before the actor runs
        trio.lowlevel.add_instrument(steps)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(tick)
                await ref.ask("the last one")
                nursery.cancel_scope.cancel()
        finally:
            trio.lowlevel.remove_instrument(steps)

    assert len(record) == total + 1
    handled_per_step = Tally(step for step, _ in record)
    assert max(handled_per_step.values()) <= YIELD_EVERY
    ticks_seen = {seen for _, seen in record}
    assert len(ticks_seen) >= total // YIELD_EVERY // 2  # trio runs each batch in any order


@pytest.mark.parametrize("per_turn", [5, 4 * YIELD_EVERY])
async def test_an_actor_handles_its_messages_per_turn_in_a_row_then_yields(per_turn: int) -> None:
    total = 3 * per_turn + 2
    steps = TaskSteps()
    record: list[int] = []

    class Hub(Actor[object]):
        messages_per_turn = per_turn

        async def handle(self, message: object) -> Any:
            record.append(steps.steps[current_task()])
            return None

    async with open_actor_system() as system:
        ref = await system.spawn(Hub, mailbox_capacity=total)
        for i in range(total - 1):
            ref.send_nowait(i)  # queued before the actor runs
        trio.lowlevel.add_instrument(steps)
        try:
            await ref.ask("the last one")
        finally:
            trio.lowlevel.remove_instrument(steps)

    assert list(Tally(record).values()) == [per_turn, per_turn, per_turn, 2]


async def test_statistics_report_the_messages_an_actor_has_handled() -> None:
    async with open_actor_system() as system:
        ref = await system.spawn(Counter, name="counter-a", mailbox_capacity=16)
        for n in range(5):
            await ref.send(Add(n))
        await ref.ask(Get())

        stats = ref.statistics()

        assert stats.name == "counter-a"
        assert stats.kind == "Counter"
        assert stats.messages_handled == 6
        assert stats.mailbox_depth == 0
        assert stats.mailbox_capacity == 16
        assert stats.state == "running"


@attrs.frozen
class Echo:
    """Handled by returning `value`."""

    value: Any


@attrs.define(eq=False)
class Payload:
    """Something a test can watch being freed (weakref-able)."""


class Echoer(Actor[Echo]):
    async def handle(self, message: Echo) -> Any:
        return message.value


async def test_an_idle_actor_keeps_nothing_alive_of_what_it_handled() -> None:
    """Parked on its empty mailbox, an actor holds neither its last message,
    nor the reply it gave, nor the exception an empty mailbox is found by."""
    async with open_actor_system() as system:
        ref = await system.spawn(Echoer)
        told, reply = Payload(), Payload()
        assert await ref.ask(Echo(reply)) is reply
        ref.send_nowait(Echo(told))
        gone = [weakref.ref(told), weakref.ref(reply)]
        del told, reply
        await wait_all_tasks_blocked()
        gc.collect()

        assert [each() for each in gone] == [None, None]
        assert not [o for o in gc.get_objects() if isinstance(o, trio.WouldBlock)]
