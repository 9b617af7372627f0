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
