"""bench.bridge times the bridge's work alone, and checks it delivered every event."""

from __future__ import annotations

import json
from typing import Any

import pytest

from actors._streams import StreamBooks
from bench import bridge


def test_the_command_times_both_orders_of_users(capsys: pytest.CaptureFixture[str]) -> None:
    status = bridge.main(["--users", "20", "--events-per-user", "3", "--repeat", "2", "--json"])
    out = capsys.readouterr().out
    result = json.loads(out.splitlines()[-1])

    assert status == 0
    assert (result["users"], result["events_per_user"], result["repeat"]) == (20, 3, 2)
    for order in ("in turn", "random"):
        assert result["us_per_event"][order] > 0
        assert len(result["samples"][order]) == 2
        assert order in out


def test_an_event_lost_on_the_way_is_not_timed_as_delivered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    number = StreamBooks.number

    def losing_the_third(self: StreamBooks, *args: Any) -> Any:
        event = number(self, *args)
        return None if event is not None and event.seq == 3 else event

    monkeypatch.setattr(StreamBooks, "number", losing_the_third)
    with pytest.raises(AssertionError):
        bridge.time_events(users=4, events_per_user=3, order="random", seed=1)
