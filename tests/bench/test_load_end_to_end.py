"""bench.load end to end: both servers started as subprocesses, real
WebSockets, every event checked, SIGTERM with every socket open, and the
report the issue asks for."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import load

USERS, RUNS, STEPS, ROUNDS = 12, 2, 2, 2


def test_the_command_runs_both_servers_checks_every_event_and_reports_the_contract(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    plot = tmp_path / "load.png"
    argv = ["--users", str(USERS), "--runs-per-user", str(RUNS), "--seconds", "0.2",
            "--steps", str(STEPS), "--concurrency", "4", "--repeat", str(ROUNDS),
            "--json", "--plot", str(plot)]  # fmt: skip

    status = load.main(argv)

    out = capsys.readouterr().out
    result = json.loads(out.splitlines()[-1])
    assert status == 0
    assert result["violations"] == 0
    for name in ("greenroom", "bare"):
        phase = result[name]
        assert phase["connected"] == USERS
        assert phase["events"] == USERS * RUNS * (STEPS + 2)
        assert phase["runs_failed"] == 0
        # Every socket, in every round, closed by the server with 1001 on SIGTERM.
        assert phase["close_codes"] == {"1001": USERS * ROUNDS}
        assert phase["exit_code"] == 0
        assert phase["rss_peak_mb"] > 0
    for key in ("events_per_s", "p99_ms"):
        assert result[key] == result["greenroom"][key] > 0
    assert len(result["overhead_ratio_rounds"]) == ROUNDS
    assert result["rounds_first"] == ["bare", "greenroom"]
    assert result["overhead_ratio"] > 0
    assert "(bare first)" in out and "(greenroom first)" in out
    assert plot.stat().st_size > 0
    # 12 users asking for 4 events every 0.2 s cannot test 20,000 events/s.
    assert result["asked_events_per_s"] == USERS * (STEPS + 2) / 0.2
    assert result["targets_met"]["events_per_s"] is None
    assert "not tested" in out


def test_a_round_with_no_measurable_server_cpu_has_no_ratio_and_the_others_keep_their_labels(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Such a round divided by zero once every run had passed; then, skipped,
    # it shifted the later rounds' "(... first)" labels by one.
    measured = iter([(0.0, 10.0), (30.0, 10.0), (12.0, 10.0)])  # µs an event: greenroom, bare
    real_round = load.run_round

    async def priced(*args: object) -> dict[str, dict[str, object]]:
        found = await real_round(*args)  # type: ignore[arg-type]
        found["greenroom"]["server_cpu_us_per_event"], found["bare"]["server_cpu_us_per_event"] = (
            next(measured)
        )
        return found

    monkeypatch.setattr(load, "run_round", priced)
    argv = ["--users", "2", "--runs-per-user", "1", "--agent", "echo", "--repeat", "3", "--json"]

    status = load.main(argv)

    out = capsys.readouterr().out
    result = json.loads(out.splitlines()[-1])
    assert status == 0
    assert result["overhead_ratio_rounds"] == [None, 3.0, 1.2]
    assert result["rounds_first"] == ["bare", "greenroom", "bare"]
    assert result["overhead_ratio"] == 2.1
    assert "not measured (bare first), 3.00 (greenroom first), 1.20 (bare first)" in out
    assert "overhead_ratio: not measured in 1 of 3 round(s)" in out
