"""A send or an ask cancelled: what it did and did not do, and what the
handler of an abandoned ask can tell."""

from __future__ import annotations

from typing import Any

import trio
from trio.testing import wait_all_tasks_blocked

from runtime import Actor, open_actor_system

from .kit import Add, Get, Worker


class Judge(Actor[Any]):
    """Waits for `release`, then records whether its asker still waits."""

    def __init__(self, release: trio.Event, seen: list[bool]) -> None:
        self.release = release
        self.seen = seen

    async def handle(self, message: Any) -> Any:
        self.seen.append(self.ask_abandoned)
        await self.release.wait()
        self.seen.append(self.ask_abandoned)
        return message


async def test_a_handler_can_tell_that_its_asker_has_given_up_the_ask(
    autojump_clock: trio.abc.Clock,
) -> None:
    release, seen = trio.Event(), []
    async with open_actor_system() as system:
        ref = await system.spawn(lambda: Judge(release, seen))
        with trio.move_on_after(1) as scope:
            await ref.ask("wanted")
        assert scope.cancelled_caught
        release.set()
        await wait_all_tasks_blocked()
        assert seen == [False, True]  # waited for, then given up

        await ref.send("told")  # a send is not an ask
        await wait_all_tasks_blocked()
        assert seen[2] is False


class Ticket(Actor[Any]):
    """Hands out numbered tickets from `answer_now`."""

    def __init__(self) -> None:
        self.given = 0

    def answer_now(self, message: Any) -> Any:
        self.given += 1
        return self.given

    async def handle(self, message: Any) -> Any:
        return self.given


async def test_a_send_or_an_ask_that_raises_cancelled_has_done_nothing() -> None:
    # The yield every YIELD_EVERY sends came after the message had gone: a
    # send raised Cancelled having sent it, and an ask lost its answer.
    async with open_actor_system() as system:
        counter = await system.spawn(Worker)
        tickets = await system.spawn(Ticket)
        sent = asked = 0
        with trio.CancelScope() as scope:
            scope.cancel()
            while True:
                await counter.send(Add(1))
                sent += 1
        with trio.CancelScope() as scope:
            scope.cancel()
            while True:
                await tickets.ask("ticket")
                asked += 1

        assert await counter.ask(Get()) == sent
        assert tickets._cell.actor.given == asked  # type: ignore[union-attr]
