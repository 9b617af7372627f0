"""The mailbox as senders see it: bounded, FIFO per sender, backpressure on `send`."""

from __future__ import annotations

from functools import partial
from typing import Any

import pytest
import trio
from trio.testing import wait_all_tasks_blocked

from runtime import Actor, ActorStopped, Mailbox, MailboxFull, open_actor_system


class Gated(Actor[object]):
    """Handles each message only once `gate` is set, recording it in `handled`."""

    def __init__(self, gate: trio.Event, handled: list[object]) -> None:
        self.gate = gate
        self.handled = handled

    async def handle(self, message: object) -> None:
        await self.gate.wait()
        self.handled.append(message)


class Recorder(Actor[object]):
    """Records every message, yielding once per message so senders interleave."""

    def __init__(self, handled: list[object]) -> None:
        self.handled = handled

    async def handle(self, message: object) -> None:
        self.handled.append(message)
        await trio.lowlevel.checkpoint()


async def test_send_nowait_on_a_full_mailbox_raises_mailbox_full_and_queues_nothing() -> None:
    gate = trio.Event()
    handled: list[object] = []
    async with open_actor_system() as system:
        ref = await system.spawn(partial(Gated, gate, handled), mailbox_capacity=2)
        ref.send_nowait(0)
        await wait_all_tasks_blocked()  # the actor has taken 0 and waits at the gate
        ref.send_nowait(1)
        ref.send_nowait(2)

        with pytest.raises(MailboxFull) as excinfo:
            ref.send_nowait(3)

        assert isinstance(excinfo.value, trio.WouldBlock)
        assert ref.statistics().mailbox_depth == 2
        gate.set()
        await wait_all_tasks_blocked()
        assert handled == [0, 1, 2]
        assert system.statistics().dead_letters == 0


async def test_mailbox_full_can_be_caught_as_trio_would_block() -> None:
    gate = trio.Event()
    async with open_actor_system() as system:
        ref = await system.spawn(partial(Gated, gate, []), mailbox_capacity=1)
        ref.send_nowait("taken")
        await wait_all_tasks_blocked()
        ref.send_nowait("queued")

        with pytest.raises(trio.WouldBlock):
            ref.send_nowait("refused")

        gate.set()


async def test_send_waits_while_the_mailbox_is_full_and_proceeds_once_there_is_room() -> None:
    gate = trio.Event()
    handled: list[object] = []
    sent = trio.Event()
    async with open_actor_system() as system:
        ref = await system.spawn(partial(Gated, gate, handled), mailbox_capacity=1)
        ref.send_nowait("first")
        await wait_all_tasks_blocked()
        ref.send_nowait("second")  # the mailbox is now full

        async def send_third() -> None:
            await ref.send("third")
            sent.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(send_third)
            await wait_all_tasks_blocked()
            assert not sent.is_set()
            assert ref.statistics().mailbox_depth == 1

            gate.set()  # the actor finishes "first" and takes "second"
            with trio.fail_after(1):
                await sent.wait()

        await wait_all_tasks_blocked()
        assert handled == ["first", "second", "third"]


async def test_a_cancelled_send_waiting_for_room_queues_nothing(autojump_clock: object) -> None:
    gate = trio.Event()
    handled: list[object] = []
    async with open_actor_system() as system:
        ref = await system.spawn(partial(Gated, gate, handled), mailbox_capacity=1)
        ref.send_nowait("first")
        await wait_all_tasks_blocked()
        ref.send_nowait("second")

        with trio.move_on_after(1) as scope:
            await ref.send("abandoned")

        assert scope.cancelled_caught
        gate.set()
        await wait_all_tasks_blocked()
        assert handled == ["first", "second"]


async def test_messages_from_one_sender_arrive_in_the_order_they_were_sent() -> None:
    handled: list[Any] = []
    senders, per_sender = 4, 50
    async with open_actor_system() as system:
        ref = await system.spawn(partial(Recorder, handled), mailbox_capacity=3)

        async def send_all(sender: int) -> None:
            for i in range(per_sender):
                await ref.send((sender, i))

        async with trio.open_nursery() as nursery:
            for sender in range(senders):
                nursery.start_soon(send_all, sender)
        await wait_all_tasks_blocked()

    assert len(handled) == senders * per_sender
    for sender in range(senders):
        assert [i for s, i in handled if s == sender] == list(range(per_sender))


async def test_a_sender_waiting_on_a_full_mailbox_gets_actor_stopped_when_the_actor_stops() -> None:
    gate = trio.Event()
    handled: list[object] = []
    errors: list[BaseException] = []
    async with open_actor_system() as system:
        ref = await system.spawn(partial(Gated, gate, handled), mailbox_capacity=1)
        ref.send_nowait("first")
        await wait_all_tasks_blocked()
        ref.send_nowait("second")

        async def send_third() -> None:
            try:
                await ref.send("third")
            except ActorStopped as error:
                errors.append(error)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(send_third)
            await wait_all_tasks_blocked()
            nursery.start_soon(ref.stop)
            await wait_all_tasks_blocked()

            assert len(errors) == 1
            gate.set()  # let the actor drain what it had accepted, so stop returns

        assert ref.stopped
        assert handled == ["first", "second"]
        assert system.statistics().dead_letters == 1


@pytest.mark.parametrize("capacity", [0, -1, True, 1.5, "8"])
def test_a_mailbox_capacity_must_be_a_positive_integer(capacity: object) -> None:
    with pytest.raises(ValueError, match="capacity must be a positive integer"):
        Mailbox(capacity)


def test_a_closed_mailbox_refuses_new_messages_but_keeps_the_queued_ones() -> None:
    mailbox = Mailbox(4, "inbox")
    mailbox.put_nowait("a")
    mailbox.put_nowait("b")
    mailbox.close()

    with pytest.raises(ActorStopped, match="inbox has stopped"):
        mailbox.put_nowait("c")

    assert mailbox.get_nowait() == "a"
    assert mailbox.take_all() == ["b"]
    with pytest.raises(trio.WouldBlock):
        mailbox.get_nowait()


def test_get_or_takes_the_oldest_item_and_returns_the_marker_when_empty() -> None:
    mailbox = Mailbox(4, "inbox")
    empty = object()
    mailbox.put_nowait("a")
    mailbox.put_nowait("b")

    assert mailbox.get_or(empty) == "a"
    assert mailbox.get_or(empty) == "b"
    assert mailbox.get_or(empty) is empty
    assert len(mailbox) == 0


async def test_get_or_makes_room_for_a_sender_waiting_on_a_full_mailbox() -> None:
    mailbox = Mailbox(1, "inbox")
    mailbox.put_nowait("first")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(mailbox.put, "second")
        await wait_all_tasks_blocked()

        assert mailbox.get_or(None) == "first"
        await wait_all_tasks_blocked()

        assert mailbox.get_or(None) == "second"
