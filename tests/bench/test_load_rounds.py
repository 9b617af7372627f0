"""bench.load's rounds alternate which server is measured first."""

from __future__ import annotations

from bench._load_phase import phase_order


def test_the_bare_server_goes_first_in_odd_rounds_and_second_in_even_ones() -> None:
    orders = [phase_order(number, baseline=True) for number in range(1, 5)]

    assert orders == [
        ["bare", "greenroom"],
        ["greenroom", "bare"],
        ["bare", "greenroom"],
        ["greenroom", "bare"],
    ]


def test_without_a_baseline_every_round_measures_greenroom_alone() -> None:
    assert [phase_order(number, baseline=False) for number in (1, 2)] == [
        ["greenroom"],
        ["greenroom"],
    ]
