"""Shared helpers for the actors tests: reading a user's stream, a failing agent."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from typing import Any

import attrs
import pytest
import trio
from trio.testing import MockClock

from actors import Agent, Core, Event, Gap, RunContext, Subscription, UserContext


def drain(subscription: Subscription) -> list[Event | Gap]:
    """Everything the subscription holds right now, without waiting."""
    items: list[Event | Gap] = []
    while True:
        try:
            items.append(subscription.receive_nowait())
        except (trio.WouldBlock, trio.EndOfChannel):
            return items


async def read_until_ended(subscription: Subscription, run_ids: Iterable[str]) -> list[Event]:
    """Read events until every run in `run_ids` has had its terminal event.

    Fails, rather than hangs, if one never comes: after an hour of virtual
    time under `autojump_clock`, or ten real seconds otherwise.
    """
    waiting = set(run_ids)
    events: list[Event] = []
    virtual = isinstance(trio.lowlevel.current_clock(), MockClock)
    with trio.fail_after(3600 if virtual else 10):
        async for item in subscription:
            assert isinstance(item, Event), f"unexpected {item!r}"
            events.append(item)
            if item.terminal:
                waiting.discard(item.run_id)
            if not waiting:
                return events
    raise AssertionError(f"the subscription ended before {sorted(waiting)} ended")


def types_of(events: Iterable[Event], run_id: str | None = None) -> list[str]:
    return [e.type for e in events if run_id is None or e.run_id == run_id]


def terminal_of(events: Iterable[Event], run_id: str) -> Event:
    """The one terminal event of `run_id` (fails if there is not exactly one)."""
    found = [e for e in events if e.run_id == run_id and e.terminal]
    assert len(found) == 1, f"{run_id}: {len(found)} terminal events in {list(events)!r}"
    return found[0]


def terminal_counts(events: Iterable[Event]) -> Counter[str]:
    return Counter(e.run_id for e in events if e.terminal)


@attrs.define(eq=False)
class Recorder:
    """Collects a user's stream in a task of its own until the stream ends.

    Start with `await nursery.start(recorder.run, core)`: it returns once
    the subscription is attached, so nothing emitted afterwards is missed.
    """

    user_id: str
    after: int = 0
    queue_size: int | None = None
    items: list[Event | Gap] = attrs.Factory(list)
    closed_reason: str | None = None
    ended: trio.Event = attrs.Factory(trio.Event)

    @property
    def events(self) -> list[Event]:
        return [item for item in self.items if isinstance(item, Event)]

    async def run(self, core: Core, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        async with core.subscribe(
            self.user_id, after=self.after, queue_size=self.queue_size
        ) as subscription:
            task_status.started()
            async for item in subscription:
                self.items.append(item)
            self.closed_reason = subscription.closed_reason
        self.ended.set()


class FailingAgent(Agent):
    """Raises from its run."""

    name = "fail"

    async def run(self, ctx: RunContext, input: Any) -> Any:
        await ctx.thinking("about to fail")
        raise ValueError(f"boom: {input}")


def audit_lines(caplog: pytest.LogCaptureFixture, event: str | None = None) -> list[Any]:
    """The audit records captured so far, each parsed from its JSON line;
    only those of `event` if given."""
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "greenroom.audit"]
    return [line for line in lines if event is None or line["event"] == event]


def user(user_id: str) -> UserContext:
    return UserContext(user_id=user_id)


def sleep(seconds: float, steps: int = 1) -> dict[str, Any]:
    """A `sleep` agent's input."""
    return {"seconds": seconds, "steps": steps}
