"""Monitors: the `ChildExited` notice a supervised child's monitor gets."""

from __future__ import annotations

from functools import partial
from typing import Any

import pytest
import trio
from trio.testing import wait_all_tasks_blocked

from runtime import Actor, ChildExited, RestartType, open_actor_system

from .kit import Worker, crash


class Watcher(Actor[Any]):
    """Records every `ChildExited` it hears, even while its mailbox is full."""

    mailbox_capacity = 1

    def __init__(self, heard: list[ChildExited], gate: trio.Event | None = None) -> None:
        self.heard = heard
        self.gate = gate

    async def handle(self, message: Any) -> None:
        if isinstance(message, ChildExited):
            self.heard.append(message)
        elif self.gate is not None:
            await self.gate.wait()


async def test_a_monitor_hears_when_a_child_crashes_for_good() -> None:
    heard: list[ChildExited] = []
    async with open_actor_system() as system:
        watcher = await system.spawn(partial(Watcher, heard))
        child = await system.spawn(Worker, restart=RestartType.TEMPORARY, monitor=watcher)

        await crash(child)

        assert [notice.ref for notice in heard] == [child]
        assert isinstance(heard[0].error, RuntimeError)


async def test_a_monitor_hears_of_an_orderly_stop_without_an_error() -> None:
    heard: list[ChildExited] = []
    async with open_actor_system() as system:
        watcher = await system.spawn(partial(Watcher, heard))
        child = await system.spawn(Worker, monitor=watcher)

        await child.stop()
        await wait_all_tasks_blocked()

        assert heard == [ChildExited(child, None)]


async def test_a_monitor_does_not_hear_of_a_child_that_was_restarted() -> None:
    heard: list[ChildExited] = []
    async with open_actor_system() as system:
        watcher = await system.spawn(partial(Watcher, heard))
        child = await system.spawn(Worker, restart=RestartType.PERMANENT, monitor=watcher)

        await crash(child)

        assert heard == []
        assert child.statistics().restarts == 1


async def test_a_child_exited_notice_is_queued_even_when_the_monitor_mailbox_is_full() -> None:
    heard: list[ChildExited] = []
    gate = trio.Event()
    async with open_actor_system() as system:
        watcher = await system.spawn(partial(Watcher, heard, gate))
        watcher.send_nowait("busy")
        await wait_all_tasks_blocked()
        watcher.send_nowait("queued")  # the watcher's mailbox (capacity 1) is full
        child = await system.spawn(Worker, restart=RestartType.TEMPORARY, monitor=watcher)

        await crash(child)
        assert watcher.statistics().mailbox_depth == 2

        gate.set()
        await wait_all_tasks_blocked()
        assert [notice.ref for notice in heard] == [child]
        assert system.statistics().dead_letters == 0


async def test_a_notice_to_a_monitor_that_has_stopped_counts_as_a_dead_letter() -> None:
    heard: list[ChildExited] = []
    async with open_actor_system() as system:
        watcher = await system.spawn(partial(Watcher, heard))
        child = await system.spawn(Worker, restart=RestartType.TEMPORARY, monitor=watcher)
        await watcher.stop()

        await crash(child)

        assert heard == []
        assert system.statistics().dead_letters == 1


class FailsToStart(Actor[Any]):
    async def on_start(self) -> None:
        raise OSError("no")

    async def handle(self, message: Any) -> None:
        pass


async def test_a_monitor_hears_of_a_failed_start_with_the_error_itself() -> None:
    # It heard the supervisor's nursery's exception group, not the OSError.
    heard: list[ChildExited] = []
    async with open_actor_system() as system:
        watcher = await system.spawn(partial(Watcher, heard))
        with pytest.raises(OSError, match="no"):
            await system.spawn(FailsToStart, monitor=watcher)
        await wait_all_tasks_blocked()

    assert len(heard) == 1
    assert type(heard[0].error) is OSError and str(heard[0].error) == "no"
