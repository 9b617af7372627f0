"""`Actor.answer_now`: an idle actor answering an ask in the asker's task."""

from __future__ import annotations

from typing import Any

import pytest
import trio
from trio.lowlevel import current_task
from trio.testing import wait_all_tasks_blocked

from runtime import YIELD_EVERY, ActorStopped, open_actor_system

from .hibernating import Boom, Handled, Hold, Later, Oracle, Question, SleepyOracle, Work


class Ticker:
    """Counts how often the program got to run another task."""

    def __init__(self) -> None:
        self.ticks = 0

    async def run(self) -> None:
        while True:
            await trio.lowlevel.checkpoint()
            self.ticks += 1


async def test_an_idle_actor_answers_an_ask_in_the_askers_task_without_yielding() -> None:
    log: list[Handled] = []
    ticker = Ticker()
    async with open_actor_system() as system, trio.open_nursery() as nursery:
        ref = await system.spawn(lambda: Oracle(log))
        await wait_all_tasks_blocked()  # parked on its empty mailbox
        nursery.start_soon(ticker.run)
        await trio.sleep(0)
        ticks = ticker.ticks

        assert await ref.ask(Question(4)) == 40

        assert ticker.ticks == ticks  # nobody else ran in between
        assert log == [Handled("now", Question(4), current_task())]
        assert ref.statistics().messages_handled == 1
        assert ref.statistics().mailbox_depth == 0
        nursery.cancel_scope.cancel()


async def test_an_ask_it_declines_is_answered_by_handle_in_the_actors_own_task() -> None:
    log: list[Handled] = []
    async with open_actor_system() as system:
        ref = await system.spawn(lambda: Oracle(log))
        await wait_all_tasks_blocked()

        assert await ref.ask(Later(1)) == "handled"

    assert [(a.where, a.message) for a in log] == [("queued", Later(1))]
    assert log[0].task is not current_task()


async def test_while_the_actor_is_busy_asks_queue_behind_and_order_is_kept() -> None:
    log: list[Handled] = []
    async with open_actor_system() as system, trio.open_nursery() as nursery:
        ref = await system.spawn(lambda: Oracle(log))
        await wait_all_tasks_blocked()
        release = trio.Event()
        replies: list[Any] = []

        async def ask(message: Any) -> None:
            replies.append(await ref.ask(message))

        nursery.start_soon(ask, Hold(release))
        await wait_all_tasks_blocked()  # now inside `handle`, waiting
        nursery.start_soon(ask, Question(1))
        await wait_all_tasks_blocked()
        assert log == []  # busy: the question waits its turn
        release.set()
        await wait_all_tasks_blocked()
        assert await ref.ask(Question(2)) == 20  # idle again

    assert [(a.where, a.message) for a in log] == [
        ("queued", Hold(release)),
        ("queued", Question(1)),
        ("now", Question(2)),
    ]
    assert replies == ["handled", "handled"]


async def test_a_told_message_is_never_offered_to_answer_now() -> None:
    log: list[Handled] = []
    async with open_actor_system() as system:
        ref = await system.spawn(lambda: Oracle(log))
        await wait_all_tasks_blocked()

        await ref.send(Question(1))
        await wait_all_tasks_blocked()

    assert [(a.where, a.message) for a in log] == [("queued", Question(1))]


async def test_a_dormant_actor_is_woken_and_answers_from_handle() -> None:
    log: list[Handled] = []
    async with open_actor_system() as system:
        ref = await system.spawn(lambda: SleepyOracle(log))
        assert ref.statistics().state == "dormant"

        assert await ref.ask(Question(1)) == "handled"
        assert await ref.ask(Question(2)) == 20  # lingering now: parked, idle

    assert [(a.where, a.message) for a in log] == [("queued", Question(1)), ("now", Question(2))]


async def test_an_exception_from_answer_now_is_the_askers_and_the_actor_carries_on() -> None:
    log: list[Handled] = []
    async with open_actor_system() as system:
        ref = await system.spawn(lambda: Oracle(log))
        await wait_all_tasks_blocked()

        with pytest.raises(ValueError, match="no answer to that"):
            await ref.ask(Boom())

        assert await ref.ask(Question(3)) == 30
        stats = ref.statistics()
        assert (stats.restarts, stats.messages_handled) == (0, 2)


async def test_a_loop_of_asks_answered_at_once_still_yields_every_yield_every() -> None:
    log: list[Handled] = []
    ticker = Ticker()
    async with open_actor_system() as system, trio.open_nursery() as nursery:
        ref = await system.spawn(lambda: Oracle(log))
        await wait_all_tasks_blocked()
        nursery.start_soon(ticker.run)
        await trio.sleep(0)
        ticks = ticker.ticks

        for n in range(YIELD_EVERY * 4):
            await ref.ask(Question(n))

        assert all(a.where == "now" for a in log)
        assert 3 <= ticker.ticks - ticks <= 5
        nursery.cancel_scope.cancel()


async def test_answering_at_once_while_lingering_keeps_the_actor_awake_for_a_fresh_linger(
    autojump_clock: trio.abc.Clock,
) -> None:
    log: list[Handled] = []
    async with open_actor_system() as system:
        ref = await system.spawn(lambda: SleepyOracle(log))
        await ref.ask(Later(0))  # wakes it; it lingers 10 s from now
        await trio.sleep(6)
        assert ref.statistics().state == "lingering"

        assert await ref.ask(Question(1)) == 10

        # Its first linger would have ended at 10 s; another follows it, so
        # it stays awake at least 10 s after the answer, and then sleeps.
        await trio.sleep(10)
        assert ref.statistics().state == "lingering"
        await trio.sleep(5)
        assert ref.statistics().state == "dormant"


async def test_a_task_started_answering_at_once_makes_a_lingering_actor_busy_until_it_ends(
    autojump_clock: trio.abc.Clock,
) -> None:
    log: list[Handled] = []
    async with open_actor_system() as system:
        ref = await system.spawn(lambda: SleepyOracle(log))
        await ref.ask(Later(0))
        await wait_all_tasks_blocked()
        assert ref.statistics().state == "lingering"
        done = trio.Event()

        assert await ref.ask(Work(done)) == "working"
        # Not idle the moment the answer is given: it has work of its own.
        assert ref.statistics().state == "running"
        await trio.sleep(60)
        assert ref.statistics().state == "running"

        done.set()
        await wait_all_tasks_blocked()
        assert ref.statistics().state == "lingering"
        await trio.sleep(11)
        assert ref.statistics().state == "dormant"


async def test_a_stopped_actor_refuses_asks_and_answers_none_at_once() -> None:
    log: list[Handled] = []
    async with open_actor_system() as system:
        ref = await system.spawn(lambda: Oracle(log))
        await wait_all_tasks_blocked()
        await ref.stop()

        with pytest.raises(ActorStopped):
            await ref.ask(Question(1))

    assert log == []
    assert system.statistics().dead_letters == 1
