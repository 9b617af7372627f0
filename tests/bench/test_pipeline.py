"""bench.pipeline delivers every event of every run, in both variants."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

import pytest

from bench import pipeline
from bench._pipeline_runs import Result, Workload, bare_round, core_round


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
