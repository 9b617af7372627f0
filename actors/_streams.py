"""The rules of users' event streams, without I/O: numbering, replay, runs.

`StreamBooks` never awaits. The bridge actor feeds it messages one at a
time and does the delivering; tests drive it directly.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable
from itertools import islice
from typing import Any

import attrs

from ._errors import InvalidResume
from ._events import AGENT_ERROR, TERMINAL_TYPES, Event, Gap, numbered_event

#: Why an event was not delivered: its run was not open (never opened, or
#: already ended), or a subscriber fell behind and was ended.
DROP_REASONS = ("run_not_open", "subscriber_overflow")


@attrs.define(eq=False, slots=True)
class Subscriber:
    """One delivery target of a user's stream (a connection, say)."""

    user_id: str
    send: Any  # trio.MemorySendChannel[Event]
    #: Tried before queueing a live event: True if it delivered the event
    #: at once (it must not block), False to have it queued.
    deliver_now: Callable[[Event], bool] | None = None
    #: Why the bridge ended it: "overflow", "shutdown", or None while live.
    reason: str | None = None


@attrs.define(eq=False, slots=True)
class _Stream:
    last_seq: int = 0
    #: The newest events, as their wire form (a str holds no references,
    #: so the garbage collector never walks the window); the last is `last_seq`.
    replay: deque[str] | None = None
    #: The characters (so bytes: the wire form is ASCII) in `replay`.
    replay_size: int = 0
    #: The runs opened and not yet ended, by run id: their agents.
    open_runs: dict[str, str] | None = None
    subscribers: list[Subscriber] = attrs.Factory(list)
    #: Sweeps in a row that found the stream quiet, and its last seq then.
    quiet_sweeps: int = 0
    swept_seq: int = 0


#: A stream found quiet by this many sweeps in a row (so for at least two
#: sweep intervals) is retired.
RETIRE_AFTER_SWEEPS = 3


@attrs.define(eq=False)
class StreamBooks:
    """Every user's stream: the last `seq`, a bounded replay window, the runs
    that have not yet ended, and who is subscribed.

    Guarantees, per user: `seq` starts at 1 and has no gaps; a run's events
    are numbered only between its opening and its one terminal event (later
    ones are dropped and counted); the replay window keeps the newest
    `replay_window` events, fewer if they would take more than
    `replay_bytes` (but always the newest one).
    """

    replay_window: int
    replay_bytes: int = 1 << 62
    #: Sweeps between two rotations of the retired seqs: a retired stream's
    #: last seq is forgotten at the second rotation after it retired.
    forget_after_sweeps: int = 1 << 62
    _streams: dict[str, _Stream] = attrs.Factory(dict)
    #: The last seq of each retired stream, so that a returning user's seq
    #: carries on: those retired since the last rotation, and before it.
    _retired: dict[str, int] = attrs.Factory(dict)
    _retired_before: dict[str, int] = attrs.Factory(dict)
    _sweeps: int = 0
    events_by_type: Counter[str] = attrs.Factory(Counter)
    dropped_by_reason: Counter[str] = attrs.Factory(Counter)

    def _stream(self, user_id: str) -> _Stream:
        stream = self._streams.get(user_id)
        if stream is None:
            last_seq = self._retired.pop(user_id, None)
            if last_seq is None:
                last_seq = self._retired_before.pop(user_id, 0)
            stream = self._streams[user_id] = _Stream(last_seq, swept_seq=last_seq)
        return stream

    def last_seq(self, user_id: str) -> int:
        stream = self._streams.get(user_id)
        if stream is not None:
            return stream.last_seq
        return self._retired.get(user_id) or self._retired_before.get(user_id, 0)

    @property
    def retired(self) -> int:
        """Retired streams whose last seq is still remembered."""
        return len(self._retired) + len(self._retired_before)

    def sweep(self) -> int:
        """Retire every stream that this sweep and the two before found quiet:
        no subscriber, no open run, no new event. A retired stream keeps
        only its last seq; its replay window is dropped, so a resume into it
        gets a `Gap`. Every `forget_after_sweeps` sweeps the retired seqs
        rotate, and those retired before the last rotation are forgotten: a
        user back after that starts again at seq 1, as after a restart.
        Called at a fixed interval; returns how many retired."""
        self._sweeps += 1
        if self._sweeps >= self.forget_after_sweeps:
            self._sweeps = 0
            self._retired_before, self._retired = self._retired, {}
        quiet: list[str] = []
        for user_id, stream in self._streams.items():
            if stream.subscribers or stream.open_runs or stream.last_seq != stream.swept_seq:
                stream.quiet_sweeps = 0
                stream.swept_seq = stream.last_seq
                continue
            stream.quiet_sweeps += 1
            if stream.quiet_sweeps >= RETIRE_AFTER_SWEEPS:
                quiet.append(user_id)
        for user_id in quiet:
            stream = self._streams.pop(user_id)
            if stream.last_seq:
                self._retired[user_id] = stream.last_seq
        return len(quiet)

    @property
    def replay_held(self) -> tuple[int, int]:
        """(users, events) in replay windows now."""
        windows = [len(s.replay) for s in self._streams.values() if s.replay]
        return len(windows), sum(windows)

    def open_run(self, user_id: str, run_id: str, agent: str) -> None:
        """Accept the events of the user's run `run_id` (of `agent`) until its terminal one."""
        stream = self._stream(user_id)
        if stream.open_runs is None:
            stream.open_runs = {}
        stream.open_runs[run_id] = agent

    def open_runs(self, user_id: str) -> list[str]:
        stream = self._streams.get(user_id)
        return [] if stream is None or not stream.open_runs else list(stream.open_runs)

    def number(
        self, user_id: str, run_id: str, type: str, data: dict[str, Any], ts: float
    ) -> Event | None:
        """Give the event its `seq` and keep it for replay; None (dropped)
        if its run is not open: never opened, or already ended."""
        stream = self._streams.get(user_id)
        if stream is None or not stream.open_runs or run_id not in stream.open_runs:
            self.dropped_by_reason["run_not_open"] += 1
            return None
        if type in TERMINAL_TYPES:
            del stream.open_runs[run_id]
        stream.last_seq += 1
        event = numbered_event(type, stream.last_seq, user_id, run_id, ts, data)
        wire = event.to_json()
        replay = stream.replay
        if replay is None:
            replay = stream.replay = deque()
        replay.append(wire)
        size = stream.replay_size + len(wire)
        window, most = self.replay_window, self.replay_bytes
        if len(replay) > window or size > most:  # the newest one always stays
            while len(replay) > 1 and (len(replay) > window or size > most):
                size -= len(replay.popleft())
        stream.replay_size = size
        self.events_by_type[type] += 1
        return event

    def end_open_runs(
        self, user_id: str, reason: str, detail: str, ts: float
    ) -> list[tuple[Event, str]]:
        """End every open run of the user with `agent_error`: each terminal
        event, with the agent of its run."""
        stream = self._streams.get(user_id)
        if stream is None or not stream.open_runs:
            return []
        ended = []
        for run_id, agent in list(stream.open_runs.items()):
            data = {"reason": reason, "detail": detail}
            event = self.number(user_id, run_id, AGENT_ERROR, data, ts)
            assert event is not None  # the run is open
            ended.append((event, agent))
        return ended

    def replay(self, user_id: str, after: int) -> tuple[Gap | None, list[Event]]:
        """What a subscriber resuming after `after` must get before live events:
        a `Gap` for what is no longer held, then the held events past `after`,
        rebuilt from their wire form (`Event.from_json`)."""
        last = self.last_seq(user_id)
        if isinstance(after, bool) or not isinstance(after, int) or not 0 <= after <= last:
            raise InvalidResume(
                f"after must be a whole number from 0 to {last} (the last seq numbered "
                f"for this user), got {after!r}"
            )
        stream = self._streams.get(user_id)
        held = stream.replay if stream is not None and stream.replay else ()
        first = last - len(held) + 1  # the window ends with the last seq
        gap = Gap(after + 1, first - 1) if after + 1 < first else None
        start = max(0, after + 1 - first)
        return gap, [Event.from_json(wire) for wire in islice(held, start, None)]

    def attach(self, subscriber: Subscriber) -> None:
        self._stream(subscriber.user_id).subscribers.append(subscriber)

    def detach(self, subscriber: Subscriber) -> bool:
        stream = self._streams.get(subscriber.user_id)
        if stream is None or subscriber not in stream.subscribers:
            return False
        stream.subscribers.remove(subscriber)
        return True

    def subscribers(self, user_id: str) -> list[Subscriber]:
        stream = self._streams.get(user_id)
        return [] if stream is None else stream.subscribers

    def all_subscribers(self) -> list[Subscriber]:
        return [s for stream in self._streams.values() for s in stream.subscribers]

    @property
    def subscriber_count(self) -> int:
        return sum(len(stream.subscribers) for stream in self._streams.values())
