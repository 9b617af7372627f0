"""bench.load's per-event checker reports every kind of violation it claims to."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bench._load_client import Books, Load, User

LOAD = Load(
    users=1, runs_per_user=1, agent="sleep", seconds=1.0, steps=2, concurrency=1, client="raw"
)


def event(kind: str, seq: int, *, user: str = "alice", run: str = "r1") -> str:
    return json.dumps(
        {"type": kind, "seq": seq, "user_id": user, "run_id": run, "ts": 0.0, "data": {}}
    )


def check(frames: list[Any]) -> Books:
    books = Books(LOAD)
    user = User("alice", books)
    user.run_id = "r1"
    user.take(frames, now=1.0)
    return books


def test_a_clean_run_has_no_violations() -> None:
    frames = [
        event("agent_started", 1),
        event("agent_thinking", 2),
        event("agent_thinking", 3),
        event("agent_completed", 4),
    ]
    books = check(frames)
    assert books.violations == {} and books.runs_done == 1 and books.events == 4


@pytest.mark.parametrize(
    ("frames", "kind"),
    [
        ([event("agent_started", 1), event("agent_thinking", 3)], "gap"),
        ([event("agent_started", 1), event("agent_started", 1)], "duplicate_or_reordered"),
        ([event("agent_started", 1, user="bob")], "cross_user"),
        ([event("agent_started", 1, run="other")], "stray_event"),
        ([event("agent_thinking", 1)], "misordered"),
        ([event("agent_started", 1), event("agent_completed", 2)], "wrong_event_count"),
        ([event("agent_started", 1), event("agent_completed", 2), event("agent_error", 3)],
         "stray_event"),
        (["not json"], "not_an_event"),
        ([event("agent_started", 1).replace('"seq": 1', '"seq": "1"')], "not_an_event"),
        ([event("agent_started", 1).replace('"ts": 0.0', '"ts": null')], "not_an_event"),
        ([event("agent_started", 1).replace('"data": {}', '"data": []')], "not_an_event"),
    ],
)  # fmt: skip
def test_each_kind_of_violation_is_reported(frames: list[Any], kind: str) -> None:
    assert check(frames).violations[kind] >= 1
