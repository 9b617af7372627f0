"""Orderly stop: reverse start order, grace periods, and stops that meet a
crash, a failing `on_stop` or an actor stopping itself."""

from __future__ import annotations

from functools import partial

import pytest
import trio
from trio.testing import wait_all_tasks_blocked

from runtime import Actor, RestartType, open_actor_system

from .kit import Add, Crash, Exit, Hang, Log, Message, Worker


async def test_children_stop_in_reverse_start_order() -> None:
    log = Log()
    async with open_actor_system() as system:
        await system.spawn(partial(Worker, "a", log))
        nested = await system.start_supervisor("nested")
        await nested.spawn(partial(Worker, "b", log))
        await nested.spawn(partial(Worker, "c", log))
        await system.spawn(partial(Worker, "d", log))

    assert log.started == ["a", "b", "c", "d"]
    assert log.stopped == ["d", "c", "b", "a"]


class HangingStop(Actor[Message]):
    def __init__(self, log: Log | None = None) -> None:
        self.log = log or Log()

    async def handle(self, message: Message) -> None:
        await trio.sleep_forever()

    async def on_stop(self) -> None:
        self.log.stopped.append("on_stop began")
        await trio.sleep_forever()


async def test_an_actor_whose_on_stop_hangs_is_cancelled_after_its_grace_period(
    autojump_clock: object,
) -> None:
    log = Log()
    async with open_actor_system() as system:
        ref = await system.spawn(partial(HangingStop, log), grace=3)
        began = trio.current_time()

        await ref.stop()

        assert trio.current_time() - began == pytest.approx(3)
        assert log.stopped == ["on_stop began"]
        assert ref.stopped


async def test_an_actor_whose_handler_hangs_is_cancelled_after_its_grace_period(
    autojump_clock: object,
) -> None:
    log = Log()
    async with open_actor_system() as system:
        ref = await system.spawn(partial(HangingStop, log), grace=2)
        ref.send_nowait(Hang())
        await wait_all_tasks_blocked()
        began = trio.current_time()

        await ref.stop()

        assert trio.current_time() - began == pytest.approx(2)
        assert log.stopped == []  # on_stop is not called once the grace ran out
        assert ref.stopped


@pytest.mark.parametrize(("concurrent_stop", "seconds"), [(True, 2), (False, 8)])
async def test_concurrent_stop_waits_one_grace_period_for_all_children_not_one_each(
    autojump_clock: object, concurrent_stop: bool, seconds: float
) -> None:
    async with open_actor_system() as system:
        pool = await system.start_supervisor("pool", concurrent_stop=concurrent_stop)
        refs = [await pool.spawn(HangingStop, grace=2) for _ in range(4)]
        began = trio.current_time()

        await pool.stop()

        assert trio.current_time() - began == pytest.approx(seconds)
        assert all(ref.stopped for ref in refs)


class FailingStop(Actor[Message]):
    hibernate = False

    def __init__(self, log: Log) -> None:
        self.log = log

    async def on_start(self) -> None:
        self.log.started.append("started")

    async def handle(self, message: Message) -> None:
        pass

    async def on_stop(self) -> None:
        raise RuntimeError("on_stop failed")


class HibernatingFailingStop(FailingStop):
    hibernate = True


@pytest.mark.parametrize("actor_class", [FailingStop, HibernatingFailingStop])
async def test_an_actor_stopped_through_its_ref_is_not_restarted_when_on_stop_raises(
    autojump_clock: object, actor_class: type[FailingStop]
) -> None:
    log = Log()
    async with open_actor_system() as system:
        ref = await system.spawn(partial(actor_class, log), grace=5)
        await wait_all_tasks_blocked()
        began = trio.current_time()

        with trio.fail_after(60):
            await ref.stop()

        assert trio.current_time() == began  # no grace period needed
        assert ref.stopped
        assert log.started == ["started"]
        assert ref.statistics().restarts == 0


async def test_stopping_an_actor_through_its_ref_while_it_stops_itself_does_not_restart_it(
    autojump_clock: object,
) -> None:
    log = Log()
    gate = trio.Event()
    async with open_actor_system() as system:
        ref = await system.spawn(partial(Worker, "w", log), grace=5)
        ref.send_nowait(Exit(gate))
        await wait_all_tasks_blocked()  # Actor.stop() was called; the handler waits
        began = trio.current_time()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(ref.stop)
            await wait_all_tasks_blocked()
            gate.set()

        assert trio.current_time() == began
        assert ref.stopped
        assert log.started == ["w"]


async def test_an_actor_that_crashes_while_draining_for_a_stop_through_its_ref_is_not_restarted(
    autojump_clock: object,
) -> None:
    log = Log()
    async with open_actor_system() as system:
        ref = await system.spawn(partial(Worker, "w", log), restart=RestartType.PERMANENT, grace=5)
        ref.send_nowait(Crash())  # still queued when the stop begins
        began = trio.current_time()

        await ref.stop()

        assert trio.current_time() == began
        assert ref.stopped
        assert log.started == ["w"]


async def test_stopping_a_supervisor_leaves_its_siblings_running() -> None:
    async with open_actor_system() as system:
        doomed = await system.start_supervisor("doomed")
        inside = await doomed.spawn(Worker)
        outside = await system.spawn(Worker)

        await doomed.stop()
        await wait_all_tasks_blocked()

        assert inside.stopped
        assert system.root.children == [outside]
        assert await outside.ask(Add(1)) == 1
