"""`Actor.forward`: an ask handed on, answered by the actor it was handed to."""

from __future__ import annotations

from typing import Any

import attrs
import pytest
import trio
from trio.lowlevel import Task, current_task
from trio.testing import wait_all_tasks_blocked

from runtime import (
    LATER,
    Actor,
    ActorRef,
    ActorStopped,
    MailboxFull,
    RestartType,
    open_actor_system,
)


@attrs.frozen
class Via:
    """Forward `message` to `to`, then return `then` (or raise it)."""

    to: ActorRef[Any]
    message: Any
    then: Any = "the relay's own answer"


@attrs.frozen
class Twice:
    to: ActorRef[Any]


class Relay(Actor[Any]):
    def __init__(self) -> None:
        self.handled = 0

    async def handle(self, message: Any) -> Any:
        self.handled += 1
        match message:
            case Via(to, inner, then):
                try:
                    self.forward(to, inner)
                except (MailboxFull, ActorStopped) as error:
                    return f"kept it: {type(error).__name__}"
                if isinstance(then, Exception):
                    raise then
                return then
            case Twice(to):
                self.forward(to, "first")
                self.forward(to, "second")
            case "forward me":
                self.forward(self.ref, "count")
            case "count":
                return self.handled
        return None


class Target(Actor[Any]):
    mailbox_capacity = 2

    def __init__(self) -> None:
        self.seen: list[Any] = []

    async def handle(self, message: Any) -> Any:
        self.seen.append(message)
        match message:
            case ValueError():
                raise message
            case trio.Event():
                await message.wait()
                return "waited"
            case _:
                return f"target got {message!r}"


class Fatal(BaseException):
    """Not an Exception: it crashes whatever task it escapes, and the system."""


class Answerer(Target):
    """Answers a str at once, in the task that asks (or forwards); declines
    anything else; and records what it is offered to handle at once."""

    def __init__(self) -> None:
        super().__init__()
        self.answered_in: list[Task] = []
        self.offered: list[Any] = []

    def answer_now(self, message: Any) -> Any:
        if isinstance(message, (KeyError, Fatal)):
            raise message
        if not isinstance(message, str):
            return LATER
        self.answered_in.append(current_task())
        return f"answered {message!r} at once"

    def handle_now(self, message: Any) -> bool:
        self.offered.append(message)
        return False


async def test_the_asker_gets_the_reply_of_the_actor_the_ask_was_forwarded_to() -> None:
    async with open_actor_system() as system:
        relay = await system.spawn(Relay)
        target = await system.spawn(Target)

        assert await relay.ask(Via(target, "hello")) == "target got 'hello'"
        assert await relay.ask("forward me") == 3  # Via, "forward me", then "count"


async def test_an_error_raised_by_the_target_goes_back_to_the_asker() -> None:
    async with open_actor_system() as system:
        relay = await system.spawn(Relay)
        target = await system.spawn(Target)

        with pytest.raises(ValueError, match="refused"):
            await relay.ask(Via(target, ValueError("refused")))

        assert not target.stopped
        assert relay.statistics().restarts == 0


async def test_a_target_that_stops_before_replying_fails_the_ask_with_actor_stopped() -> None:
    async with open_actor_system() as system:
        relay = await system.spawn(Relay)
        target = await system.spawn(Target, grace=0.01)
        never = trio.Event()
        result: list[Any] = []

        async def ask() -> None:
            with pytest.raises(ActorStopped):
                await relay.ask(Via(target, never))
            result.append("failed")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(ask)
            await wait_all_tasks_blocked()
            await target.stop()

        assert result == ["failed"]


async def test_an_ask_the_target_cannot_take_stays_with_the_handler() -> None:
    async with open_actor_system() as system:
        relay = await system.spawn(Relay)
        target = await system.spawn(Target)
        gone = await system.spawn(Target)
        await gone.stop()
        blocker = trio.Event()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(target.ask, blocker)  # the target is busy with this
            await wait_all_tasks_blocked()
            target.send_nowait("one")
            target.send_nowait("two")  # and its mailbox is full

            assert await relay.ask(Via(target, "three")) == "kept it: MailboxFull"
            assert await relay.ask(Via(gone, "four")) == "kept it: ActorStopped"
            blocker.set()

        assert target._cell.handled == 3  # nothing forwarded slipped in
        assert target.statistics().mailbox_depth == 0


async def test_forward_outside_an_ask_is_an_error_that_crashes_a_told_actor() -> None:
    async with open_actor_system() as system:
        relay = await system.spawn(Relay, restart=RestartType.PERMANENT)
        target = await system.spawn(Target)

        await relay.send(Via(target, "told"))
        await wait_all_tasks_blocked()

        assert relay.statistics().restarts == 1
        assert await target.ask("anything") == "target got 'anything'"
        assert target.statistics().messages_handled == 1  # "told" never arrived


async def test_after_forwarding_the_handlers_own_answer_is_ignored_and_an_error_crashes_it() -> (
    None
):
    async with open_actor_system() as system:
        relay = await system.spawn(Relay, restart=RestartType.PERMANENT)
        target = await system.spawn(Target)

        reply = await relay.ask(Via(target, "x", then=RuntimeError("after forwarding")))

        assert reply == "target got 'x'"
        await wait_all_tasks_blocked()
        assert relay.statistics().restarts == 1


async def test_an_ask_can_be_forwarded_only_once() -> None:
    async with open_actor_system() as system:
        relay = await system.spawn(Relay, restart=RestartType.PERMANENT)
        target = await system.spawn(Target)

        assert await relay.ask(Twice(target)) == "target got 'first'"
        await wait_all_tasks_blocked()
        assert relay.statistics().restarts == 1  # the second forward raised
        assert target.statistics().messages_handled == 1


async def test_a_cancelled_asker_abandons_the_reply_and_the_target_carries_on() -> None:
    async with open_actor_system() as system:
        relay = await system.spawn(Relay)
        target = await system.spawn(Target)
        release = trio.Event()

        with trio.move_on_after(1) as scope:
            await relay.ask(Via(target, release))
        release.set()
        await wait_all_tasks_blocked()

        assert scope.cancelled_caught
        assert target.statistics().messages_handled == 1
        assert await target.ask("next") == "target got 'next'"


async def spawn_answerer(system: Any) -> tuple[ActorRef[Any], Answerer]:
    made: list[Answerer] = []

    def make() -> Answerer:
        made.append(Answerer())
        return made[-1]

    ref = await system.spawn(make)
    await wait_all_tasks_blocked()  # parked on its empty mailbox
    return ref, made[0]


async def test_an_idle_target_answers_a_forwarded_ask_in_the_forwarding_handlers_task() -> None:
    async with open_actor_system() as system:
        relay = await system.spawn(Relay)
        target, answerer = await spawn_answerer(system)

        assert await relay.ask(Via(target, "hi")) == "answered 'hi' at once"

        assert len(answerer.answered_in) == 1
        assert answerer.answered_in[0] is not current_task()  # the relay's task
        assert answerer.seen == []  # its handle never ran
        assert target.statistics().messages_handled == 1
        # Answered or not, the ask was handed on: a second forward is refused.
        assert await relay.ask(Twice(target)) == "answered 'first' at once"
        await wait_all_tasks_blocked()
        assert relay.statistics().restarts == 1


async def test_a_forwarded_ask_the_target_declines_at_once_is_answered_by_its_handle() -> None:
    async with open_actor_system() as system:
        relay = await system.spawn(Relay)
        target, answerer = await spawn_answerer(system)

        assert await relay.ask(Via(target, 7)) == "target got 7"

        assert answerer.answered_in == []
        assert answerer.seen == [7]


async def test_an_error_from_answering_a_forwarded_ask_at_once_is_the_askers() -> None:
    async with open_actor_system() as system:
        relay = await system.spawn(Relay)
        target, _ = await spawn_answerer(system)

        with pytest.raises(KeyError, match="nope"):
            await relay.ask(Via(target, KeyError("nope")))

        assert relay.statistics().restarts == 0
        assert target.statistics().restarts == 0
        assert await relay.ask(Via(target, "again")) == "answered 'again' at once"


async def test_a_forwarded_ask_is_never_offered_to_handle_now() -> None:
    async with open_actor_system() as system:
        relay = await system.spawn(Relay)
        target, answerer = await spawn_answerer(system)

        assert await relay.ask(Via(target, 7)) == "target got 7"
        target.send_nowait("told")
        await wait_all_tasks_blocked()

        # Only what was told: by the send (declined), then in its turn.
        assert answerer.offered == ["told", "told"]


async def test_an_asker_hears_when_answering_its_forwarded_ask_at_once_kills_the_relay() -> None:
    heard: list[BaseException] = []
    with pytest.raises(BaseExceptionGroup) as caught:  # out of nested nurseries
        async with open_actor_system() as system:
            relay = await system.spawn(Relay)
            target, _ = await spawn_answerer(system)
            try:
                await relay.ask(Via(target, Fatal()))
            except ActorStopped as error:
                heard.append(error)
            await trio.sleep_forever()  # the system is going down with Fatal

    fatal, rest = caught.value.split(Fatal)
    assert fatal is not None and rest is None
    assert len(heard) == 1  # not left to hang, nor cancelled unanswered
