"""bench.load judges the throughput target only when the load could have met it."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from bench._load_client import Load
from bench._load_report import TARGET_LOAD, _load_notes, _verdicts, overhead_note
from bench._report import median_interval, print_json
from bench.load import _ratio


def _load(users: int = 1000, steps: int = 20, agent: str = "sleep") -> Load:
    return Load(users=users, runs_per_user=3, agent=agent, seconds=1.0, steps=steps,
                concurrency=100, client="raw")  # fmt: skip


def _phase(events_per_s: float, *, saturated: bool = False) -> dict[str, Any]:
    return {
        "events_per_s": events_per_s,
        "p99_ms": 20.0,
        "violations": 0,
        "server_saturated": saturated,
        "server_cpu_share": 0.95 if saturated else 0.7,
        "capacity_events_per_s": 25_000.0,
    }


def test_a_sleep_load_asks_for_its_users_events_every_run_length() -> None:
    assert _load(users=1000, steps=28).asked_events_per_s == 30_000
    assert _load(users=500, steps=20).asked_events_per_s == 11_000


def test_echo_and_calc_ask_as_fast_as_the_server_answers() -> None:
    assert _load(agent="echo").asked_events_per_s is None
    assert _load(agent="calc").asked_events_per_s is None


def test_a_load_asking_for_fewer_events_than_the_target_leaves_it_not_tested() -> None:
    load = _load(users=500)

    met = _verdicts(_phase(10_500), 1.2, load.asked_events_per_s)
    notes = _load_notes(_phase(10_500), load)

    assert met["events_per_s"] is None
    assert met["p99_ms"] is True and met["overhead_ratio"] is True
    assert any("asks for at most 11,000 events/s" in note and TARGET_LOAD in note for note in notes)


def test_a_load_asking_for_enough_is_judged_either_way() -> None:
    asked = _load(steps=28).asked_events_per_s

    assert _verdicts(_phase(23_800), 1.2, asked)["events_per_s"] is True
    assert _verdicts(_phase(19_000, saturated=True), 1.2, asked)["events_per_s"] is False
    assert _verdicts(_phase(40_000), 1.2, None)["events_per_s"] is True


def test_a_short_rate_from_a_server_with_cpu_to_spare_is_put_down_to_the_load() -> None:
    load = _load(steps=20)  # 22,000 events/s asked, less a round trip a run

    notes = _load_notes(_phase(18_500), load)

    assert _verdicts(_phase(18_500), 1.2, load.asked_events_per_s)["events_per_s"] is False
    assert any("the load set the rate" in note and "25,000/s" in note for note in notes)
    saturated = _load_notes(_phase(18_500, saturated=True), load)
    assert not any("the load set the rate" in note for note in saturated)


def test_a_run_at_another_size_than_the_targets_says_so() -> None:
    assert any("this run has 500" in note for note in _load_notes(_phase(10_500), _load(users=500)))
    assert not any("this run has" in note for note in _load_notes(_phase(23_800), _load(steps=28)))


def test_the_median_interval_takes_the_order_statistics_the_binomial_law_allows() -> None:
    assert median_interval(range(5)) is None  # no interval reaches 95 % with 5
    assert median_interval(range(6)) == (0, 5)  # 96.9 %
    assert median_interval(range(8)) == (0, 7)  # the 2nd and 7th would give 93 %
    assert median_interval([9, 1, 8, 2, 7, 3, 6, 4, 5, 0, 11, 10]) == (2, 9)  # 96.1 %
    assert median_interval(range(20)) == (5, 14)  # 95.9 %
    assert median_interval(range(20), confidence=0.99) == (3, 16)  # 99.7 %


def test_the_overhead_note_says_whether_the_target_lies_within_the_noise() -> None:
    assert overhead_note([1.2] * 5) is None  # too few rounds for an interval
    spread = [1.05, 1.1, 1.15, 1.2, 1.22, 1.3, 1.35, 1.4]
    note = overhead_note(spread)
    assert note is not None and "holds the target 1.25" in note and "1.05-1.40" in note
    assert "met beyond the noise" in str(overhead_note([1.0, 1.05, 1.1, 1.1, 1.2, 1.24]))
    assert "missed beyond the noise" in str(overhead_note([1.26, 1.3, 1.3, 1.35, 1.4, 1.5]))


@pytest.mark.parametrize(
    ("greenroom", "bare", "ratio"),
    [(50.0, 40.0, 1.25), (0.0, 40.0, None), (50.0, 0.0, None), (math.nan, 40.0, None)],
)
def test_a_rounds_ratio_needs_both_servers_cpu_measured(
    greenroom: float, bare: float, ratio: float | None
) -> None:
    # A server that used no measurable CPU (a tiny load) divided by zero,
    # after every run had passed, or gave a ratio of 0 judged "met".
    assert _ratio(greenroom, bare) == ratio


def test_a_cpu_with_nothing_to_measure_leaves_no_note_of_a_nan_capacity() -> None:
    phase = _phase(5_000) | {"capacity_events_per_s": math.nan}
    assert not any("nan" in note for note in _load_notes(phase, _load(steps=28)))


def test_the_json_line_writes_what_was_not_measured_as_null(
    capsys: pytest.CaptureFixture[str],
) -> None:
    print_json({"ratio": math.nan, "rows": [math.inf, 1.5], "nested": {"x": -math.inf}})

    line = capsys.readouterr().out.splitlines()[-1]
    assert json.loads(line, parse_constant=lambda name: pytest.fail(name)) == {
        "nested": {"x": None},
        "ratio": None,
        "rows": [None, 1.5],
    }
