"""Supervision: restart types, restart intensity and escalation."""

from __future__ import annotations

from functools import partial
from typing import Any

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st
from trio.testing import wait_all_tasks_blocked

from runtime import (
    ActorStopped,
    RestartBook,
    RestartIntensity,
    RestartIntensityExceeded,
    RestartType,
    open_actor_system,
)

from .kit import Add, Exit, Get, Log, Worker, crash

# Restart types


@pytest.mark.parametrize(
    ("restart", "comes_back"),
    [(RestartType.PERMANENT, True), (RestartType.TRANSIENT, True), (RestartType.TEMPORARY, False)],
)
async def test_the_restart_type_decides_whether_a_crashed_actor_comes_back(
    restart: RestartType, comes_back: bool
) -> None:
    async with open_actor_system() as system:
        ref = await system.spawn(Worker, restart=restart)
        await ref.ask(Add(3))

        await crash(ref)

        assert ref.stopped is not comes_back
        if comes_back:
            assert ref.statistics().restarts == 1
            assert await ref.ask(Get()) == 0
        else:
            with pytest.raises(ActorStopped):
                await ref.ask(Get())


@pytest.mark.parametrize(
    ("restart", "comes_back"),
    [(RestartType.PERMANENT, True), (RestartType.TRANSIENT, False), (RestartType.TEMPORARY, False)],
)
async def test_the_restart_type_decides_whether_an_actor_that_stopped_itself_comes_back(
    restart: RestartType, comes_back: bool
) -> None:
    log = Log()
    async with open_actor_system() as system:
        ref = await system.spawn(partial(Worker, "w", log), restart=restart)
        await ref.ask(Add(3))

        await ref.send(Exit())
        await wait_all_tasks_blocked()

        assert log.stopped == ["w"]  # a normal exit is an orderly stop
        assert ref.stopped is not comes_back
        if comes_back:
            assert log.started == ["w", "w"]
            assert await ref.ask(Get()) == 0
        else:
            assert log.started == ["w"]
            with pytest.raises(ActorStopped):
                await ref.ask(Get())


class Tasker(Worker):
    """A worker with a task of its own running all its life."""

    async def on_start(self) -> None:
        await super().on_start()
        self.start_task(trio.sleep_forever)


@pytest.mark.parametrize(
    ("restart", "comes_back"), [(RestartType.PERMANENT, True), (RestartType.TRANSIENT, False)]
)
async def test_an_actor_that_stopped_itself_with_tasks_running_is_restarted_by_its_type(
    restart: RestartType, comes_back: bool
) -> None:
    log = Log()
    async with open_actor_system() as system:
        ref = await system.spawn(partial(Tasker, "t", log), restart=restart)

        await ref.send(Exit())
        await wait_all_tasks_blocked()

        # Cancelling its own tasks after on_stop is part of an orderly stop.
        assert log.stopped == ["t"]
        assert ref.stopped is not comes_back
        assert log.started == (["t", "t"] if comes_back else ["t"])


async def test_an_actor_stopped_through_its_ref_is_not_restarted_even_if_permanent() -> None:
    log = Log()
    async with open_actor_system() as system:
        ref = await system.spawn(partial(Worker, "w", log), restart=RestartType.PERMANENT)

        await ref.stop()
        await wait_all_tasks_blocked()

        assert ref.stopped
        assert log.started == ["w"]
        assert log.stopped == ["w"]


# Restart intensity and escalation


async def test_a_fourth_crash_within_five_seconds_escalates_out_of_the_actor_system(
    autojump_clock: object,
) -> None:
    with pytest.raises(RestartIntensityExceeded) as excinfo:
        async with open_actor_system() as system:
            ref = await system.spawn(Worker)
            for _ in range(3):
                await crash(ref)
                await trio.sleep(1)
            assert ref.statistics().restarts == 3

            await crash(ref)  # the 4th, 3 s after the first
            await trio.sleep(60)

    assert isinstance(excinfo.value.__cause__, RuntimeError)
    assert "crashed on purpose" in str(excinfo.value.__cause__)
    assert trio.current_time() < 10  # the block was cancelled, not slept through
    assert ref.stopped


async def test_crashes_spaced_beyond_the_restart_window_never_escalate(
    autojump_clock: object,
) -> None:
    async with open_actor_system() as system:
        ref = await system.spawn(Worker)
        for _ in range(10):
            await crash(ref)  # at most 3 crashes in any 5 s
            await trio.sleep(2)

        assert ref.statistics().restarts == 10
        assert await ref.ask(Add(1)) == 1


async def test_restart_intensity_is_set_per_actor_system(autojump_clock: object) -> None:
    with pytest.raises(RestartIntensityExceeded):
        async with open_actor_system(
            intensity=RestartIntensity(max_restarts=1, window=60)
        ) as system:
            ref = await system.spawn(Worker)
            await crash(ref)
            await trio.sleep(30)
            assert not ref.stopped
            await crash(ref)
            await trio.sleep(60)


async def test_an_escalating_nested_supervisor_is_restarted_with_fresh_children_under_the_same_refs(
    autojump_clock: object,
) -> None:
    log = Log()
    async with open_actor_system() as system:
        workers = await system.start_supervisor(
            "workers", intensity=RestartIntensity(max_restarts=0)
        )
        keeper = await workers.spawn(partial(Worker, "keeper", log))
        crasher = await workers.spawn(partial(Worker, "crasher", log))
        await keeper.ask(Add(5))

        await crash(crasher)  # no restarts allowed: the supervisor gives up

        assert workers.children == [keeper, crasher]
        assert log.started == ["keeper", "crasher", "keeper", "crasher"]
        assert log.stopped == ["keeper"]  # orderly stop of the survivor; not the crashed one
        with trio.fail_after(1):
            assert await keeper.ask(Get()) == 0
            assert await crasher.ask(Add(1)) == 1


async def test_a_supervisor_restarted_by_its_parent_starts_its_own_child_supervisors_again(
    autojump_clock: object,
) -> None:
    async with open_actor_system() as system:
        middle = await system.start_supervisor("middle", intensity=RestartIntensity(max_restarts=0))
        first = await middle.spawn(Worker)  # stopped after inner: middle yields in between
        inner = await middle.start_supervisor("inner")
        deep = await inner.spawn(Worker)
        crasher = await middle.spawn(Worker)
        await deep.ask(Add(5))

        await crash(crasher)

        assert middle.children == [first, inner, crasher]
        assert inner.children == [deep]
        with trio.fail_after(1):
            assert await first.ask(Get()) == 0
            assert await deep.ask(Get()) == 0
            assert await crasher.ask(Get()) == 0


async def test_a_supervisor_escalating_past_its_parent_intensity_restarts_the_grandparent_subtree(
    autojump_clock: object,
) -> None:
    async with open_actor_system() as system:
        middle = await system.start_supervisor("middle", intensity=RestartIntensity(max_restarts=0))
        inner = await middle.start_supervisor("inner", intensity=RestartIntensity(max_restarts=0))
        deep = await inner.spawn(Worker)
        sibling = await middle.spawn(Worker)
        await sibling.ask(Add(5))

        await crash(deep)  # inner gives up, and middle may not restart it: middle gives up

        with trio.fail_after(1):
            assert await sibling.ask(Get()) == 0
            assert await deep.ask(Add(1)) == 1


async def test_escalation_past_the_root_intensity_raises_out_of_the_actor_system(
    autojump_clock: object,
) -> None:
    with pytest.raises(RestartIntensityExceeded) as excinfo:
        async with open_actor_system(intensity=RestartIntensity(max_restarts=1)) as system:
            workers = await system.start_supervisor(
                "workers", intensity=RestartIntensity(max_restarts=0)
            )
            ref = await workers.spawn(Worker)

            await crash(ref)  # workers escalates; the root restarts it
            assert await ref.ask(Add(1)) == 1

            await crash(ref)  # workers escalates again; the root gives up
            await trio.sleep(60)

    nested = excinfo.value.__cause__
    assert isinstance(nested, RestartIntensityExceeded)
    assert "workers" in str(nested)
    assert isinstance(nested.__cause__, RuntimeError)


async def test_a_crash_in_one_child_leaves_its_siblings_state_untouched() -> None:
    log = Log()
    async with open_actor_system() as system:
        left = await system.spawn(partial(Worker, "left", log))
        crasher = await system.spawn(partial(Worker, "crasher", log))
        right = await system.spawn(partial(Worker, "right", log))
        await left.ask(Add(1))
        await crasher.ask(Add(2))
        await right.ask(Add(3))

        await crash(crasher)

        assert await left.ask(Get()) == 1
        assert await crasher.ask(Get()) == 0
        assert await right.ask(Get()) == 3
        assert log.started == ["left", "crasher", "right", "crasher"]
        assert log.stopped == []


# The restart-intensity rule on its own


# Quarter seconds are exact in binary, so restarts often fall right on a window's edge.
quarters = st.integers(min_value=0, max_value=400).map(lambda q: q / 4)
seconds = st.floats(min_value=0, max_value=100, allow_nan=False, allow_infinity=False)


@given(
    max_restarts=st.integers(min_value=0, max_value=5),
    window=st.integers(min_value=1, max_value=40).map(lambda q: q / 4)
    | st.floats(min_value=0.1, max_value=20, allow_nan=False, allow_infinity=False),
    times=st.lists(quarters | seconds, max_size=40).map(sorted),
)
def test_a_restart_book_refuses_exactly_when_more_than_max_restarts_fall_within_the_window(
    max_restarts: int, window: float, times: list[float]
) -> None:
    book = RestartBook(RestartIntensity(max_restarts=max_restarts, window=window))
    for i, now in enumerate(times):
        in_window = sum(1 for t in times[: i + 1] if now - window < t <= now)

        assert book.allow(now) is (in_window <= max_restarts)


def test_a_reset_restart_book_forgets_earlier_restarts() -> None:
    book = RestartBook(RestartIntensity(max_restarts=1, window=10))
    assert book.allow(0.0)
    assert not book.allow(1.0)

    book.reset()

    assert book.allow(2.0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_restarts": -1}, "max_restarts must be a whole number >= 0"),
        ({"max_restarts": 1.5}, "max_restarts must be a whole number >= 0"),
        ({"window": 0}, "window must be a number > 0"),
        ({"window": -5.0}, "window must be a number > 0"),
    ],
)
def test_a_restart_intensity_that_cannot_work_is_refused(
    kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        RestartIntensity(**kwargs)


@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    [
        ({"monitor": "factory"}, TypeError, "monitor must be an ActorRef or None, got 'factory'"),
        ({"restart": "permanent"}, TypeError, "restart must be a RestartType, got 'permanent'"),
        ({"mailbox_capacity": 0}, ValueError, "capacity must be a positive integer, got 0"),
    ],
)
async def test_spawn_refuses_a_bad_argument_and_starts_nothing(
    arguments: dict[str, Any], error: type[Exception], message: str
) -> None:
    # A str monitor was taken and failed at shutdown; "permanent" as a str
    # behaved as transient; a capacity of 0 silently became the default.
    async with open_actor_system() as system:
        with pytest.raises(error, match=message):
            await system.spawn(Worker, **arguments)
        assert system.root.children == []


async def test_start_supervisor_refuses_a_restart_type_that_is_not_one() -> None:
    async with open_actor_system() as system:
        with pytest.raises(TypeError, match="restart must be a RestartType, got 'transient'"):
            await system.start_supervisor("workers", restart="transient")  # type: ignore[arg-type]
        assert system.root.children == []
