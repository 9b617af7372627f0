"""bench.pipeline delivers every event of every run, in both variants."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trio

from bench import pipeline
from bench._pipeline_runs import Result, Tally, Workload, bare_round, core_round
from bench._pipeline_tasks import BETWEEN, TaskClock, task_group


@pytest.mark.parametrize("variant", [bare_round, core_round], ids=["bare", "core"])
async def test_each_variant_delivers_every_event_of_every_run_in_order(
    variant: Callable[[Workload], Awaitable[Result]],
) -> None:
    work = Workload(users=5, runs_per_user=2, seconds=0.05, steps=2)
    result = await variant(work)
    assert result["events"] == 5 * 2 * (2 + 2) == work.events
    assert result["events_lost"] == 0
    assert result["users_short"] == 0
    assert result["misordered"] == 0
    assert (result["runs_done"], result["runs_failed"]) == (5 * 2, 0)
    assert result["cpu_s"] > 0 and result["wall_s"] >= 0.05


def test_the_command_reports_both_variants_with_no_events_lost(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["--users", "5", "--runs-per-user", "1", "--seconds", "0.05", "--steps", "2"]
    status = pipeline.main([*argv, "--repeat", "1", "--json"])
    result = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert status == 0
    assert result["faults"] == {"bare": {}, "core": {}}
    for variant in ("bare", "core"):
        assert result[variant]["events"] == 5 * 1 * (2 + 2)
        assert result[variant]["events_lost"] == 0
    assert result["core_vs_bare_cpu_ratio"] > 0


def test_on_a_virtual_clock_runs_of_a_minute_take_no_real_minute_and_nothing_is_saturated(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["--users", "5", "--runs-per-user", "2", "--seconds", "60", "--steps", "3"]
    status = pipeline.main([*argv, "--repeat", "1", "--json", "--virtual-clock"])
    result = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert status == 0
    assert result["virtual_clock"] is True
    for variant in ("bare", "core"):
        assert result[variant]["events"] == 5 * 2 * (3 + 2)
        assert result[variant]["misordered"] == 0
        # Two runs of 60 s one after the other, done without waiting for them.
        assert result[variant]["wall_s"] < 60
        assert result[variant]["saturated"] is False


def test_one_variant_can_run_alone_and_then_there_is_no_ratio(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["--users", "5", "--runs-per-user", "1", "--seconds", "0.05", "--steps", "2"]
    status = pipeline.main([*argv, "--repeat", "1", "--json", "--variant", "core"])
    out = capsys.readouterr().out
    result = json.loads(out.splitlines()[-1])
    assert status == 0
    assert result["variants"] == ["core"]
    assert result["core"]["events"] == 5 * 1 * (2 + 2)
    assert result["bare"] is None
    assert result["core_vs_bare_cpu_ratio"] is None
    assert "bare trio tasks" not in out and "core_vs_bare_cpu_ratio (" not in out


@pytest.mark.parametrize(
    ("name", "group"),
    [
        ("engine:alice", "engine"),
        ("bridge", "bridge"),
        ("run alice/0f3a", "run"),
        ("bench._pipeline_runs._core_user", "_core_user"),
        ("greenroom timers", "greenroom timers"),
        ("<TrioToken.run_sync_soon task>", "<TrioToken.run_sync_soon task>"),
    ],
)
def test_a_task_is_booked_to_its_actor_or_its_function(name: str, group: str) -> None:
    assert task_group(name) == group


def test_with_tasks_each_variant_gets_one_more_round_booked_task_by_task(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["--users", "5", "--runs-per-user", "2", "--seconds", "60", "--steps", "3"]
    status = pipeline.main([*argv, "--repeat", "1", "--json", "--virtual-clock", "--tasks"])
    out = capsys.readouterr().out
    result = json.loads(out.splitlines()[-1])
    assert status == 0
    core, bare = result["tasks"]["core"], result["tasks"]["bare"]

    # The core's own actors each took steps and CPU; the bare tasks have none of them.
    for group in ("engine", "bridge", "factory", "run"):
        assert core[group]["steps_per_event"] > 0 and core[group]["cpu_us_per_event"] > 0
        assert group not in bare
    # A run's task steps once to start and once a step of its agent: 4 steps
    # for 5 events; but for the step that ends the window (the bare run's
    # last), which is not booked.
    assert round(core["run"]["steps_per_event"] * 50) in (39, 40)
    assert round(bare["_bare_run"]["steps_per_event"] * 50) in (39, 40)
    # What no task took is the rest of the window's CPU (so the groups add up
    # to it by construction): the tasks' own steps took no more than that.
    for variant, rows in (("core", core), ("bare", bare)):
        booked = sum(row["cpu_us_per_event"] for row in rows.values())
        assert booked == pytest.approx(result["tasks_cpu_us_per_event"][variant], rel=1e-3)
        assert BETWEEN in rows
    # The instrumented rounds are not among the measured ones.
    for variant in ("core", "bare"):
        assert len(result["samples"][variant]["cpu_us_per_event"]) == 1
    assert "greenroom core, task by task" in out and "bare trio tasks, no runtime, task by" in out


def test_a_task_clock_books_only_between_start_and_stop() -> None:
    clock = TaskClock()

    async def three_engines() -> None:
        async with trio.open_nursery() as nursery:
            for _ in range(3):
                nursery.start_soon(trio.sleep, 0, name="engine:x")

    async def main() -> None:
        await three_engines()  # before the start: not booked
        clock.start()
        await three_engines()
        clock.stop()
        await three_engines()  # after the stop: not booked

    trio.run(main)
    # Each of the three tasks: one step to start, one to wake from sleep(0).
    assert clock.steps["engine"] == 6
    rows = clock.per_event(events=3, cpu_seconds=1.0)
    assert rows["engine"]["steps_per_event"] == 2
    # What no group took is the rest of the CPU given.
    assert sum(row["cpu_us_per_event"] for row in rows.values()) == pytest.approx(1e6 / 3)


def test_a_window_closes_once_though_a_last_event_comes_after_a_timeout() -> None:
    async def main() -> Tally:
        tally = Tally(expected_runs=1, task_clock=TaskClock())
        tally.begin()
        tally.end()  # the timeout closed it
        ended = tally.cpu_ended, tally.wall_ended
        tally.run_ended(failed=False)  # the last run's terminal event, late
        assert (tally.cpu_ended, tally.wall_ended) == ended
        return tally

    tally = trio.run(main)
    assert tally.runs_done == 1


def test_with_deliver_inline_the_core_delivers_every_event_without_the_bridge_taking_a_step(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["--users", "5", "--runs-per-user", "2", "--seconds", "60", "--steps", "3"]
    found = {}
    for inline in (False, True):
        flags = ["--deliver-inline"] if inline else []
        status = pipeline.main(
            [*argv, *flags, "--repeat", "1", "--json", "--virtual-clock", "--tasks"]
        )
        found[inline] = json.loads(capsys.readouterr().out.splitlines()[-1])
        assert status == 0
        assert found[inline]["deliver_inline"] is inline
        assert found[inline]["faults"] == {"bare": {}, "core": {}}
        assert found[inline]["core"]["events"] == 5 * 2 * (3 + 2)

    # By default the bridge's task takes about a step an event (nothing else
    # runs at once here); inline, the events are numbered in the runs' tasks.
    assert found[False]["tasks"]["core"]["bridge"]["steps_per_event"] > 0.5
    assert "bridge" not in found[True]["tasks"]["core"]


def test_a_fault_in_the_instrumented_round_fails_the_command_too(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    measure = pipeline.measure

    def losing_in_the_tasks_round(*args: Any, **kwargs: Any) -> Result:
        result = measure(*args, **kwargs)
        if kwargs.get("task_clock") is not None:
            result["events_lost"] += 1
        return result

    monkeypatch.setattr(pipeline, "measure", losing_in_the_tasks_round)
    argv = ["--users", "5", "--runs-per-user", "1", "--seconds", "60", "--steps", "2"]
    status = pipeline.main([*argv, "--repeat", "1", "--json", "--virtual-clock", "--tasks"])
    result = json.loads(capsys.readouterr().out.splitlines()[-1])

    assert status == 1
    assert result["faults"] == {"bare": {"events_lost": 1}, "core": {"events_lost": 1}}


def test_more_steps_than_the_sleep_agent_takes_are_refused_before_any_round(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Taken, the bare round ran, then every core run failed.
    with pytest.raises(SystemExit) as exit:
        pipeline.main(["--quick", "--steps", "10001"])
    assert exit.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "--steps must be at most 10,000 (the sleep agent's limit)" in captured.err
