"""`runtime.sleep`: trio.sleep's promises, kept by one waker task per run."""

from __future__ import annotations

import math
import random

import pytest
import trio
import trio.testing

from runtime import sleep, sleep_until
from runtime._timers import _COMPACT_AT, _TIMERS, RESOLUTION, call_at, cancel_call


async def test_a_sleep_ends_at_its_deadline_rounded_up_to_the_resolution(
    autojump_clock: trio.testing.MockClock,
) -> None:
    start = trio.current_time()
    await sleep(0.25)
    assert 0.25 <= trio.current_time() - start <= 0.25 + RESOLUTION


async def test_a_sleep_never_ends_early_even_between_ticks(
    autojump_clock: trio.testing.MockClock,
) -> None:
    await trio.sleep(0.0004)  # the clock off the resolution's grid
    start = trio.current_time()
    await sleep(0.0101)
    assert trio.current_time() - start >= 0.0101


async def test_sleepers_wake_in_deadline_order_whatever_order_they_slept_in(
    autojump_clock: trio.testing.MockClock,
) -> None:
    woke: list[float] = []
    lengths = [0.5, 0.1, 0.3, 0.2, 0.4, 0.05]

    async def sleeper(seconds: float) -> None:
        await sleep(seconds)
        woke.append(seconds)

    async with trio.open_nursery() as nursery:
        for seconds in lengths:
            nursery.start_soon(sleeper, seconds)
    assert woke == sorted(lengths)


async def test_a_shorter_sleep_started_during_a_long_one_wakes_on_time(
    autojump_clock: trio.testing.MockClock,
) -> None:
    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sleep, 100)
        await trio.testing.wait_all_tasks_blocked()
        await sleep(0.5)
        assert trio.current_time() - start < 0.5 + 2 * RESOLUTION
        nursery.cancel_scope.cancel()


async def test_a_sleep_after_all_sleepers_are_gone_still_wakes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    await sleep(0.1)
    await trio.testing.wait_all_tasks_blocked()  # the waker is parked, idle
    start = trio.current_time()
    await sleep(0.2)
    assert 0.2 <= trio.current_time() - start <= 0.2 + RESOLUTION


async def test_a_cancelled_sleep_raises_cancelled_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    start = trio.current_time()
    with trio.move_on_after(1) as scope:
        await sleep(60)
    assert scope.cancelled_caught
    assert trio.current_time() - start == pytest.approx(1)


async def test_sleep_is_a_checkpoint_even_for_zero_and_past_deadlines() -> None:
    with trio.CancelScope() as scope:
        scope.cancel()
        with pytest.raises(trio.Cancelled):
            await sleep(0)
    with trio.CancelScope() as scope:
        scope.cancel()
        with pytest.raises(trio.Cancelled):
            await sleep_until(trio.current_time() - 1)


async def test_a_negative_or_nan_length_is_refused() -> None:
    with pytest.raises(ValueError, match="must be a number >= 0"):
        await sleep(-1)
    with pytest.raises(ValueError, match="must be a number >= 0"):
        await sleep(math.nan)
    with pytest.raises(ValueError, match="NaN"):
        await sleep_until(math.nan)


async def test_cancelled_sleeps_do_not_pile_up_in_the_heap(
    autojump_clock: trio.testing.MockClock,
) -> None:
    for _ in range(3 * _COMPACT_AT):
        with trio.move_on_after(0.001):
            await sleep(3600)
    assert len(_TIMERS.get()._heap) < 2 * _COMPACT_AT


async def test_many_sleepers_with_random_lengths_each_wake_once_after_their_length(
    autojump_clock: trio.testing.MockClock,
) -> None:
    rng = random.Random(7)
    late: list[float] = []

    async def sleeper(seconds: float) -> None:
        for _ in range(5):
            start = trio.current_time()
            await sleep(seconds)
            late.append(trio.current_time() - start - seconds)

    async with trio.open_nursery() as nursery:
        for _ in range(500):
            nursery.start_soon(sleeper, rng.uniform(0, 0.2))
    assert len(late) == 2500
    assert min(late) >= 0
    assert max(late) <= RESOLUTION + 1e-9


async def test_the_waker_ends_with_the_run() -> None:
    """A sleep leaves a system task behind; the run still ends (pytest-trio
    would hang otherwise), and a new run gets a waker of its own."""

    async def nap() -> None:
        await sleep(0.001)

    await trio.to_thread.run_sync(trio.run, nap)
    await trio.to_thread.run_sync(trio.run, nap)


async def test_an_endless_sleep_lasts_until_cancelled_as_trios_does(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.move_on_after(10**9) as scope:
        await sleep(math.inf)
    assert scope.cancelled_caught
    with trio.move_on_after(5) as scope:
        await sleep(1e308)
    assert scope.cancelled_caught


async def test_a_call_at_runs_once_at_its_deadline_and_a_cancelled_one_never(
    autojump_clock: trio.testing.MockClock,
) -> None:
    fired: list[tuple[str, float]] = []
    start = trio.current_time()
    kept = call_at(start + 2.0004, lambda: fired.append(("kept", trio.current_time())))
    dropped = call_at(start + 1, lambda: fired.append(("dropped", trio.current_time())))
    cancel_call(dropped)
    await sleep(5)
    cancel_call(kept)  # after it fired: nothing happens
    cancel_call(dropped)  # twice: nothing either

    assert fired == [("kept", pytest.approx(start + 2.001))]
    timers = _TIMERS.get()
    assert (timers._heap, timers._cancelled) == ([], 0)


async def test_a_pending_call_at_survives_the_heap_being_compacted(
    autojump_clock: trio.testing.MockClock,
) -> None:
    fired: list[str] = []
    call_at(trio.current_time() + 3600, lambda: fired.append("late"))
    for _ in range(3 * _COMPACT_AT):
        cancel_call(call_at(trio.current_time() + 60, lambda: fired.append("cancelled")))
    assert len(_TIMERS.get()._heap) < 2 * _COMPACT_AT  # it was compacted

    await sleep(3601)
    assert fired == ["late"]
