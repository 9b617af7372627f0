"""StreamBooks against a simple model: numbering, open runs, replay and gaps."""

from __future__ import annotations

import gc
import itertools
from collections import Counter
from typing import Any

import pytest
import trio
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from actors import EVENT_TYPES, Event, Gap, InvalidResume, StreamBooks
from actors._streams import Subscriber

USERS = ("ann", "ben")


class StreamBooksMachine(RuleBasedStateMachine):
    """The model keeps every event ever numbered; the books keep a window."""

    @initialize(
        window=st.integers(min_value=1, max_value=5),
        # An event here takes about 100 to 130 characters.
        replay_bytes=st.integers(min_value=1, max_value=600) | st.just(1 << 62),
        forget_after=st.integers(min_value=1, max_value=4),
    )
    def start(self, window: int, replay_bytes: int, forget_after: int) -> None:
        self.window = window
        self.replay_bytes = replay_bytes
        self.books = StreamBooks(
            window, replay_bytes=replay_bytes, forget_after_sweeps=forget_after
        )
        # Rotations of the retired seqs: every `forget_after` sweeps; a seq
        # retired in rotation g is forgotten when rotation g + 2 begins.
        self.forget_after = forget_after
        self.sweeps = 0
        self.rotation = 0
        self.retired_in: dict[str, int | None] = {user: None for user in USERS}
        self.numbered: dict[str, list[Event]] = {user: [] for user in USERS}
        self.open: dict[str, list[str]] = {user: [] for user in USERS}
        self.runs: dict[str, list[str]] = {user: [] for user in USERS}
        self.terminals: Counter[tuple[str, str]] = Counter()
        self.by_type: Counter[str] = Counter()
        self.dropped = 0
        self.subscribers: dict[str, list[Subscriber]] = {user: [] for user in USERS}
        self.serial = itertools.count()
        self.agents: dict[str, str] = {}
        # Retirement: whether the books hold a stream for the user, the
        # sweeps in a row that found it quiet, its seq at the last sweep,
        # and how many of its events a retirement dropped from replay.
        self.held: dict[str, bool] = {user: False for user in USERS}
        self.quiet: dict[str, int] = {user: 0 for user in USERS}
        self.swept: dict[str, int] = {user: 0 for user in USERS}
        self.dropped_from_replay: dict[str, int] = {user: 0 for user in USERS}

    def window_of(self, user: str) -> list[Event]:
        """What the window holds: the newest events retirement left, at most
        `window` of them and at most `replay_bytes` of wire form, but
        always the newest one."""
        kept = self.numbered[user][self.dropped_from_replay[user] :]
        held: list[Event] = []
        size = 0
        for event in reversed(kept):
            length = len(event.to_json())
            if len(held) == self.window or (held and size + length > self.replay_bytes):
                break
            held.append(event)
            size += length
        return held[::-1]

    def touch(self, user: str) -> None:
        """The books make (or bring back) the user's stream."""
        if not self.held[user]:
            self.held[user] = True
            self.retired_in[user] = None
            self.quiet[user] = 0
            self.swept[user] = len(self.numbered[user])

    @rule(user=st.sampled_from(USERS), agent=st.sampled_from(["echo", "sleep"]))
    def open_run(self, user: str, agent: str) -> None:
        run_id = f"run-{next(self.serial)}"
        self.books.open_run(user, run_id, agent)
        self.agents[run_id] = agent
        self.touch(user)
        self.open[user].append(run_id)
        self.runs[user].append(run_id)

    @rule(
        user=st.sampled_from(USERS),
        pick=st.integers(min_value=0, max_value=50),
        type=st.sampled_from(EVENT_TYPES),
        stranger=st.booleans(),
    )
    def number(self, user: str, pick: int, type: str, stranger: bool) -> None:
        runs = self.runs[user]
        run_id = "never-opened" if stranger or not runs else runs[pick % len(runs)]
        data = {"n": pick}

        event = self.books.number(user, run_id, type, data, ts=float(pick))

        if run_id not in self.open[user]:
            assert event is None
            self.dropped += 1
            return
        self.record(user, run_id, event, type, data)

    @rule(
        user=st.sampled_from(USERS),
        pick=st.integers(min_value=0, max_value=50),
        count=st.integers(min_value=1, max_value=6),
    )
    def think(self, user: str, pick: int, count: int) -> None:
        if not self.open[user]:
            return
        run_id = self.open[user][pick % len(self.open[user])]
        for n in range(count):
            data = {"text": f"thought {n}"}
            event = self.books.number(user, run_id, "agent_thinking", data, ts=0.0)
            self.record(user, run_id, event, "agent_thinking", data)

    @rule(user=st.sampled_from(USERS))
    def end_open_runs(self, user: str) -> None:
        ended = self.books.end_open_runs(user, "exception", "engine failed", ts=1.0)
        events = [event for event, _ in ended]

        assert [e.run_id for e in events] == self.open[user]
        assert [agent for _, agent in ended] == [self.agents[e.run_id] for e in events]
        for event in events:
            assert event.type == "agent_error"
            self.record(user, event.run_id, event, "agent_error", event.data)
        assert self.open[user] == []

    def record(
        self, user: str, run_id: str, event: Event | None, type: str, data: dict[str, Any]
    ) -> None:
        assert event is not None
        expected_seq = len(self.numbered[user]) + 1
        assert (event.type, event.seq, event.user_id, event.run_id, event.data) == (
            type,
            expected_seq,
            user,
            run_id,
            data,
        )
        self.numbered[user].append(event)
        self.by_type[type] += 1
        if event.terminal:
            self.open[user].remove(run_id)
            self.terminals[user, run_id] += 1

    @rule(user=st.sampled_from(USERS), data=st.data())
    def replay(self, user: str, data: st.DataObject) -> None:
        last = len(self.numbered[user])
        after = data.draw(st.integers(min_value=-2, max_value=last + 2), label="after")
        if not 0 <= after <= last:
            with pytest.raises(InvalidResume):
                self.books.replay(user, after)
            return

        gap, events = self.books.replay(user, after)

        held = self.window_of(user)
        assert events == [e for e in held if e.seq > after]
        held_seqs = {e.seq for e in held}
        missing = [seq for seq in range(after + 1, last + 1) if seq not in held_seqs]
        if missing:
            assert missing == list(range(missing[0], missing[-1] + 1))
            assert gap == Gap(missing[0], missing[-1])
        else:
            assert gap is None

    @rule(user=st.sampled_from(USERS), after=st.sampled_from([-1, True, 0.5, "1"]))
    def replay_of_nonsense(self, user: str, after: Any) -> None:
        with pytest.raises(InvalidResume):
            self.books.replay(user, after)

    @rule(user=st.sampled_from(USERS))
    def attach(self, user: str) -> None:
        send, _ = trio.open_memory_channel[Event](1)
        subscriber = Subscriber(user, send)
        self.books.attach(subscriber)
        self.subscribers[user].append(subscriber)
        self.touch(user)

    @rule()
    def sweep(self) -> None:
        self.sweeps += 1
        if self.sweeps >= self.forget_after:
            self.sweeps = 0
            self.rotation += 1
            for user in USERS:
                retired_in = self.retired_in[user]
                if retired_in is not None and retired_in <= self.rotation - 2:
                    # Forgotten: back, the user starts again at seq 1.
                    self.retired_in[user] = None
                    self.numbered[user] = []
                    self.dropped_from_replay[user] = 0
        retiring = []
        for user in USERS:
            if not self.held[user]:
                continue
            seq = len(self.numbered[user])
            if self.subscribers[user] or self.open[user] or seq != self.swept[user]:
                self.quiet[user], self.swept[user] = 0, seq
                continue
            self.quiet[user] += 1
            if self.quiet[user] >= 3:
                retiring.append(user)

        assert self.books.sweep() == len(retiring)

        for user in retiring:
            self.held[user] = False
            self.retired_in[user] = self.rotation
            self.dropped_from_replay[user] = len(self.numbered[user])

    @precondition(lambda self: any(self.subscribers.values()))
    @rule(data=st.data())
    def detach(self, data: st.DataObject) -> None:
        user = data.draw(st.sampled_from([u for u in USERS if self.subscribers[u]]))
        subscriber = data.draw(st.sampled_from(self.subscribers[user]))

        assert self.books.detach(subscriber) is True
        assert self.books.detach(subscriber) is False
        self.subscribers[user].remove(subscriber)

    @invariant()
    def numbering_is_gapless_from_one_per_user(self) -> None:
        for user in USERS:
            assert self.books.last_seq(user) == len(self.numbered[user])
            assert [e.seq for e in self.numbered[user]] == list(
                range(1, len(self.numbered[user]) + 1)
            )

    @invariant()
    def retired_seqs_are_remembered_until_forgotten(self) -> None:
        remembered = [u for u in USERS if self.retired_in[u] is not None and self.numbered[u]]
        assert self.books.retired == len(remembered)

    @invariant()
    def runs_end_at_most_once_and_open_runs_match(self) -> None:
        assert all(count == 1 for count in self.terminals.values())
        for user in USERS:
            assert self.books.open_runs(user) == self.open[user]
            for run_id in self.runs[user]:
                ended = (user, run_id) in self.terminals
                assert ended != (run_id in self.open[user])

    @invariant()
    def counters_match_the_model(self) -> None:
        assert {k: v for k, v in self.books.events_by_type.items() if v} == dict(self.by_type)
        assert self.books.dropped_by_reason.get("run_not_open", 0) == self.dropped

    @invariant()
    def the_replay_held_is_what_retirement_left(self) -> None:
        windows = [len(self.window_of(u)) for u in USERS]
        assert self.books.replay_held == (sum(1 for n in windows if n), sum(windows))

    @invariant()
    def subscribers_match_the_model(self) -> None:
        for user in USERS:
            assert self.books.subscribers(user) == self.subscribers[user]
        assert self.books.subscriber_count == sum(map(len, self.subscribers.values()))


StreamBooksMachine.TestCase.settings = settings(
    max_examples=80, stateful_step_count=50, deadline=None
)
test_stream_books_keep_their_promises = StreamBooksMachine.TestCase


def test_the_replay_window_holds_nothing_the_garbage_collector_walks() -> None:
    """Held events are kept as their wire form: strings, which the collector
    never tracks, so a full window costs no collection time."""
    books = StreamBooks(10)
    books.open_run("ann", "run-1", "echo")
    for n in range(5):
        data = {"text": f"thought {n}", "nested": {"list": [n, [n]]}}
        books.number("ann", "run-1", "agent_thinking", data, ts=float(n))

    window = books._streams["ann"].replay
    held = gc.get_referents(window)
    assert len(held) == 5
    assert not any(gc.is_tracked(item) for item in held)
    gap, events = books.replay("ann", 2)
    assert gap is None
    assert [(e.seq, e.data["nested"]) for e in events] == [
        (3, {"list": [2, [2]]}),
        (4, {"list": [3, [3]]}),
        (5, {"list": [4, [4]]}),
    ]
