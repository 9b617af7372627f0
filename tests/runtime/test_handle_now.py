"""`Actor.handle_now`: a told message handled without awaiting, in the sender's
task while the actor is idle, else in the actor's own before `handle`."""

from __future__ import annotations

from typing import Any

import attrs
import pytest
import trio
from trio.lowlevel import current_task
from trio.testing import wait_all_tasks_blocked

from runtime import Actor, ActorStopped, RestartType, open_actor_system

from .hibernating import Boom, Handled, Hold, Later


@attrs.frozen
class Note:
    n: int


class Hub(Actor[Any]):
    def __init__(self, log: list[Handled]) -> None:
        self.log = log

    def handle_now(self, message: Any) -> bool:
        match message:
            case Boom():
                raise RuntimeError("boom")
            case Note():
                self.log.append(Handled("now", message, current_task()))
                return True
        return False

    async def handle(self, message: Any) -> Any:
        if isinstance(message, Hold):
            await message.event.wait()
        self.log.append(Handled("queued", message, current_task()))
        return "done"


class SleepyHub(Hub):
    hibernate = True


async def test_an_idle_actor_handles_a_told_message_in_the_senders_task_before_send_returns() -> (
    None
):
    log: list[Handled] = []
    async with open_actor_system() as system:
        ref = await system.spawn(lambda: Hub(log))
        await wait_all_tasks_blocked()  # parked on its empty mailbox

        await ref.send(Note(1))
        assert log == [Handled("now", Note(1), current_task())]
        ref.send_nowait(Note(2))
        assert log[-1] == Handled("now", Note(2), current_task())
        assert ref.statistics().messages_handled == 2
        assert ref.statistics().mailbox_depth == 0


async def test_a_message_it_declines_is_queued_and_handled_by_the_actors_own_task() -> None:
    log: list[Handled] = []
    async with open_actor_system() as system:
        ref = await system.spawn(lambda: Hub(log))
        await wait_all_tasks_blocked()

        await ref.send(Later(1))
        assert log == []
        await wait_all_tasks_blocked()

    assert [(h.where, h.message) for h in log] == [("queued", Later(1))]
    assert log[0].task is not current_task()


async def test_while_the_actor_is_busy_messages_queue_and_order_is_kept() -> None:
    log: list[Handled] = []
    async with open_actor_system() as system:
        ref = await system.spawn(lambda: Hub(log))
        await wait_all_tasks_blocked()
        release = trio.Event()

        await ref.send(Hold(release))  # declined: queued, and the actor wakes to it
        await wait_all_tasks_blocked()  # now inside `handle`, waiting
        await ref.send(Note(1))
        ref.send_nowait(Note(2))
        assert log == []  # busy: neither was handled at once
        release.set()
        await wait_all_tasks_blocked()
        await ref.send(Note(3))  # idle again
        actor_task = log[0].task

    # Queued, each was offered to `handle_now` again in its turn, in the
    # actor's own task; the last, sent while idle, was handled in ours.
    assert [(h.where, h.message, h.task) for h in log] == [
        ("queued", Hold(release), actor_task),
        ("now", Note(1), actor_task),
        ("now", Note(2), actor_task),
        ("now", Note(3), current_task()),
    ]
    assert actor_task is not current_task()


async def test_an_ask_is_never_offered_to_handle_now() -> None:
    log: list[Handled] = []
    async with open_actor_system() as system:
        ref = await system.spawn(lambda: Hub(log))
        await wait_all_tasks_blocked()

        assert await ref.ask(Note(1)) == "done"

    assert [(h.where, h.message) for h in log] == [("queued", Note(1))]


async def test_a_dormant_actor_is_woken_rather_than_handled_at_once() -> None:
    log: list[Handled] = []
    async with open_actor_system() as system:
        ref = await system.spawn(lambda: SleepyHub(log))
        assert ref.statistics().state == "dormant"

        await ref.send(Note(1))
        assert log == []
        await wait_all_tasks_blocked()
        assert ref.statistics().state == "dormant"  # handled, and asleep again

    assert [(h.where, h.message) for h in log] == [("now", Note(1))]
    assert log[0].task is not current_task()  # in the task it was woken with


class OwnTaskHub(Hub):
    """A `Hub` whose `handle_now` is never offered in a sender's task."""

    inline_sends = False


async def test_without_inline_sends_handle_now_runs_only_in_the_actors_own_task() -> None:
    log: list[Handled] = []
    async with open_actor_system() as system:
        ref = await system.spawn(lambda: OwnTaskHub(log))
        await wait_all_tasks_blocked()  # idle: parked on its empty mailbox

        await ref.send(Note(1))
        ref.send_nowait(Note(2))
        await ref.send(Later(3))
        assert log == []  # queued, idle or not
        assert ref.statistics().mailbox_depth == 3
        await wait_all_tasks_blocked()
        assert ref.statistics().messages_handled == 3

    assert [(h.where, h.message) for h in log] == [
        ("now", Note(1)),
        ("now", Note(2)),
        ("queued", Later(3)),  # declined: `handle`, after those before it
    ]
    assert len({h.task for h in log}) == 1
    assert log[0].task is not current_task()


@pytest.mark.parametrize("hub", [Hub, OwnTaskHub], ids=["inline sends", "own task only"])
async def test_an_exception_in_handle_now_crashes_the_actor_in_its_own_task_not_the_sender(
    hub: type[Hub], caplog: pytest.LogCaptureFixture
) -> None:
    logs: list[list[Handled]] = []

    def make() -> Hub:
        logs.append([])
        return hub(logs[-1])

    async with open_actor_system() as system:
        ref = await system.spawn(make, restart=RestartType.PERMANENT)
        await wait_all_tasks_blocked()

        await ref.send(Boom())  # returns normally: the crash is the actor's
        await wait_all_tasks_blocked()
        assert ref.statistics().restarts == 1
        await ref.send(Note(1))  # the fresh instance, idle again
        await wait_all_tasks_blocked()  # (handled in its own task, without inline sends)

    assert len(logs) == 2
    assert [(h.where, h.message) for h in logs[1]] == [("now", Note(1))]
    assert any("crashed" in r.getMessage() and r.exc_info for r in caplog.records)


async def test_a_stopped_actor_still_refuses_messages() -> None:
    log: list[Handled] = []
    async with open_actor_system() as system:
        ref = await system.spawn(lambda: Hub(log))
        await wait_all_tasks_blocked()
        await ref.stop()

        with pytest.raises(ActorStopped):
            await ref.send(Note(1))
        with pytest.raises(ActorStopped):
            ref.send_nowait(Note(2))

    assert log == []


class LingeringOwnTaskHub(OwnTaskHub):
    hibernate = True
    hibernate_after = 10.0


async def test_without_inline_sends_a_lingering_actor_handles_in_its_own_task_and_sleeps_later(
    autojump_clock: trio.abc.Clock,
) -> None:
    log: list[Handled] = []
    async with open_actor_system() as system:
        ref = await system.spawn(lambda: LingeringOwnTaskHub(log))
        assert ref.statistics().state == "dormant"

        await ref.send(Note(1))  # wakes it
        await wait_all_tasks_blocked()
        assert ref.statistics().state == "lingering"
        await ref.send(Note(2))  # lingering: parked, but not offered here
        assert len(log) == 1
        await wait_all_tasks_blocked()
        assert ref.statistics().state == "lingering"
        await trio.sleep(11)
        assert ref.statistics().state == "dormant"

    assert [(h.where, h.message) for h in log] == [("now", Note(1)), ("now", Note(2))]
    assert log[0].task is not current_task() and log[1].task is not current_task()


class PingPong(Actor[Any]):
    """Answers each int with the next one to its peer, from `handle_now`,
    noting how deep its own handle_now calls nest."""

    def __init__(self, seen: list[int], depth: list[int]) -> None:
        self.peer: Any = None
        self.seen, self.depth = seen, depth
        self.inside = 0

    def handle_now(self, message: Any) -> bool:
        if not isinstance(message, int):
            return False
        self.inside += 1
        self.depth.append(self.inside)
        self.seen.append(message)
        if message < 5_000:
            self.peer.send_nowait(message + 1)
        self.inside -= 1
        return True

    async def handle(self, message: Any) -> None:
        self.peer = message


async def test_handle_now_is_never_entered_again_from_within_itself() -> None:
    # Two idle actors sending to each other from handle_now nested one call
    # in the other, one level a message, until RecursionError left both
    # awake with no receiver: every later message hung.
    seen: list[int] = []
    depth: list[int] = []
    async with open_actor_system() as system:
        a = await system.spawn(lambda: PingPong(seen, depth))
        b = await system.spawn(lambda: PingPong(seen, depth))
        await a.send(b)
        await b.send(a)
        await wait_all_tasks_blocked()
        a.send_nowait(0)
        with trio.fail_after(5):
            while len(seen) < 5_001:
                await trio.sleep(0.01)

    assert seen == list(range(5_001))
    assert max(depth) == 1
