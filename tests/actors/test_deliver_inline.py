"""`CoreConfig.deliver_inline`: events delivered in the task that emits them
while the bridge is idle, and the same streams either way."""

from __future__ import annotations

import random
from typing import Any

import pytest
import trio

from actors import Agent, Core, CoreConfig, Event, RunContext, open_core

from .kit import terminal_counts, types_of


@pytest.mark.parametrize("inline", [False, True])
async def test_with_deliver_inline_an_event_is_delivered_before_the_agent_goes_on(
    inline: bool,
) -> None:
    delivered: list[Event] = []
    delivered_by_then: list[int] = []

    class Probe(Agent):
        name = "probe"

        async def run(self, ctx: RunContext, input: Any) -> None:
            await ctx.thinking("one")
            delivered_by_then.append(len(delivered))

    def deliver_now(event: Event) -> bool:
        delivered.append(event)
        return True

    config = CoreConfig(deliver_inline=inline)
    async with (
        open_core(config, agents=[Probe]) as core,
        core.subscribe("alice", deliver_now=deliver_now),
    ):
        await core.submit("alice", "probe")
        with trio.fail_after(5):
            while len(delivered) < 3:
                await trio.sleep(0.001)

    # Inline, agent_started and the thought were on their way out before
    # `thinking` returned; queued, both still waited for the bridge's turn.
    assert delivered_by_then == ([2] if inline else [0])
    assert types_of(delivered) == ["agent_started", "agent_thinking", "agent_completed"]


@pytest.mark.parametrize("inline", [False, True])
async def test_streams_are_gapless_ordered_and_separate_whether_or_not_events_go_inline(
    inline: bool, autojump_clock: trio.abc.Clock
) -> None:
    """Six users, up to three runs each at once, and consumers that take
    some events at once and have the others queued (`deliver_now` refusing
    every fifth): every user gets each of their events once, numbered from
    1 without gaps, and every run its events in causal order with one
    terminal. (The two ways in are merged by seq: `deliver_now` taking
    events again while some are queued is the consumer's own reordering.)"""
    users = [f"user-{n}" for n in range(6)]
    received: dict[str, list[Event]] = {user: [] for user in users}
    submitted: dict[str, list[str]] = {user: [] for user in users}
    rng = random.Random(7)

    async def consume(core: Core, user: str, *, task_status: Any) -> None:
        def deliver_now(event: Event) -> bool:
            if event.seq % 5 == 0:
                return False
            received[user].append(event)
            return True

        async with core.subscribe(user, deliver_now=deliver_now) as events:
            task_status.started()
            async for event in events:
                assert isinstance(event, Event)
                received[user].append(event)

    async def runs(core: Core, user: str) -> None:
        for _ in range(8):
            if rng.random() < 0.7:
                steps = rng.randint(1, 6)
                agent, input = "sleep", {"seconds": rng.uniform(0.1, 2.0), "steps": steps}
            else:
                agent, input = "calc", {"expression": "6*7"}
            submitted[user].append(await core.submit(user, agent, input))
            await trio.sleep(rng.uniform(0, 0.5))

    config = CoreConfig(deliver_inline=inline, max_runs_per_user=3)
    async with open_core(config) as core, trio.open_nursery() as consumers:
        for user in users:
            await consumers.start(consume, core, user)
        async with trio.open_nursery() as nursery:
            for user in users:
                nursery.start_soon(runs, core, user)
        await trio.sleep(30)
        consumers.cancel_scope.cancel()

    for user in users:
        events = sorted(received[user], key=lambda e: e.seq)
        assert [e.seq for e in events] == list(range(1, len(events) + 1))
        assert {e.user_id for e in events} == {user}
        assert terminal_counts(events) == {run_id: 1 for run_id in submitted[user]}
        for run_id in submitted[user]:
            kinds = types_of(events, run_id)
            assert kinds[0] == "agent_started" and kinds[-1] == "agent_completed", kinds
