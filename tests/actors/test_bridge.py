"""The event bridge: per-user numbering, replay and resume, fan-out, overflow."""

from __future__ import annotations

import datetime
import json
from typing import Any

import pytest
import trio
from trio.testing import wait_all_tasks_blocked

from actors import Agent, CoreConfig, Event, Gap, InvalidResume, RunContext, open_core
from actors._bridge import Emit, sweeps_in

from .kit import Recorder, drain, read_until_ended, terminal_of, types_of


def sleep(seconds: float, steps: int = 1) -> dict[str, Any]:
    return {"seconds": seconds, "steps": steps}


async def test_a_users_events_are_numbered_from_one_without_gaps_across_runs(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with open_core() as core, core.subscribe("alice") as events:
        run_ids = [
            await core.submit("alice", "sleep", sleep(3, steps=3)),
            await core.submit("alice", "calc", {"expression": "1+1"}),
            await core.submit("alice", "sleep", sleep(2, steps=2)),
            await core.submit("alice", "echo", "x"),
        ]
        seen = await read_until_ended(events, run_ids)
        last_seq = core.last_seq("alice")

    assert [e.seq for e in seen] == list(range(1, len(seen) + 1))
    assert last_seq == len(seen) == 5 + 5 + 4 + 2
    assert {e.user_id for e in seen} == {"alice"}


async def test_events_carry_the_wire_fields_and_serialise_to_json() -> None:
    async with open_core() as core, core.subscribe("alice") as events:
        run_id = await core.submit("alice", "echo", {"n": 1})
        seen = await read_until_ended(events, [run_id])

    wire = json.loads(seen[0].to_json())
    assert set(wire) == {"type", "seq", "user_id", "run_id", "ts", "data"}
    assert wire["type"] == "agent_started" and wire["seq"] == 1
    assert wire["run_id"] == run_id and isinstance(wire["ts"], float)
    assert wire["data"] == {"agent": "echo", "input": {"n": 1}}
    assert json.loads(Gap(1, 4).to_json()) == {"type": "gap", "from": 1, "to": 4}


async def test_two_users_streams_never_mix(autojump_clock: trio.abc.Clock) -> None:
    recorders = {user_id: Recorder(user_id) for user_id in ("alice", "bob", "carol")}
    async with trio.open_nursery() as nursery, open_core() as core:
        for recorder in recorders.values():
            await nursery.start(recorder.run, core)
        submitted: dict[str, list[str]] = {user_id: [] for user_id in recorders}
        for step in range(4):
            for user_id in recorders:
                run_id = await core.submit(user_id, "sleep", sleep(step + 1, steps=step + 1))
                submitted[user_id].append(run_id)
        await trio.sleep(10)

    for user_id, recorder in recorders.items():
        assert {e.user_id for e in recorder.events} == {user_id}
        assert {e.run_id for e in recorder.events} == set(submitted[user_id])
        assert [e.seq for e in recorder.events] == list(range(1, len(recorder.events) + 1))
        assert len(recorder.events) == sum(2 + n for n in range(1, 5))


async def test_every_subscriber_of_a_user_gets_every_event() -> None:
    async with (
        open_core() as core,
        core.subscribe("alice") as first,
        core.subscribe("alice") as second,
        core.subscribe("alice") as third,
    ):
        run_id = await core.submit("alice", "calc", {"expression": "6*7"})
        seen = [await read_until_ended(s, [run_id]) for s in (first, second, third)]
        assert core.stream_books.subscriber_count == 3

    assert seen[0] == seen[1] == seen[2]
    assert len(seen[0]) == 5


async def test_with_no_subscriber_events_still_enter_the_replay_window() -> None:
    async with open_core() as core:
        run_id = await core.submit("alice", "calc", {"expression": "2+2"})
        await wait_all_tasks_blocked()
        assert core.last_seq("alice") == 5

        async with core.subscribe("alice", after=0) as events:
            await wait_all_tasks_blocked()
            replayed = drain(events)

    assert types_of(replayed) == [
        "agent_started",
        "agent_thinking",
        "tool_executing",
        "tool_completed",
        "agent_completed",
    ]
    assert [e.seq for e in replayed] == [1, 2, 3, 4, 5]
    assert terminal_of(replayed, run_id).data["output"] == 4


async def test_the_replay_window_is_bounded_and_a_gap_stands_for_what_fell_out() -> None:
    async with open_core(CoreConfig(replay_window=3)) as core:
        for _ in range(5):
            await core.submit("alice", "echo", "x")  # two events each
        await wait_all_tasks_blocked()

        async with core.subscribe("alice", after=0) as events:
            from_start = drain(events)
        async with core.subscribe("alice", after=3) as events:
            from_three = drain(events)
        async with core.subscribe("alice", after=7) as events:
            from_seven = drain(events)
        async with core.subscribe("alice", after=8) as events:
            from_eight = drain(events)
        async with core.subscribe("alice", after=10) as events:
            from_end = drain(events)

    assert from_start[0] == Gap(1, 7)
    assert [e.seq for e in from_start[1:]] == [8, 9, 10]
    assert from_three == [Gap(4, 7), *from_start[1:]]
    assert from_seven == from_start[1:]
    assert [e.seq for e in from_eight] == [9, 10]
    assert from_end == []


async def test_large_events_hold_the_replay_window_to_its_bytes_but_the_newest_stays() -> None:
    async with open_core(CoreConfig(replay_window=1000, replay_bytes=20_000)) as core:
        for n in range(6):
            await core.submit("alice", "echo", str(n) * 6_000)  # two events of ~6 kB each
        await wait_all_tasks_blocked()
        await core.submit("alice", "echo", "y" * 30_000)  # each event alone past the bound
        await wait_all_tasks_blocked()

        async with core.subscribe("alice", after=0) as events:
            replayed = drain(events)

    # Only the newest event fits: it is kept; everything before is a gap.
    assert replayed[0] == Gap(1, 13)
    assert [(e.seq, e.type) for e in replayed[1:]] == [(14, "agent_completed")]
    assert replayed[1].data["output"] == "y" * 30_000


async def test_the_replay_window_keeps_the_newest_events_that_fit_its_bytes() -> None:
    async with open_core(CoreConfig(replay_window=1000, replay_bytes=20_000)) as core:
        for n in range(6):
            await core.submit("alice", "echo", str(n) * 6_000)  # two events of ~6 kB each
        await wait_all_tasks_blocked()

        async with core.subscribe("alice", after=0) as events:
            replayed = drain(events)

    assert replayed[0] == Gap(1, 9)
    assert [e.seq for e in replayed[1:]] == [10, 11, 12]
    assert sum(len(e.to_json()) for e in replayed[1:]) <= 20_000


def replay_gauges(core: Any) -> tuple[float | None, float | None]:
    registry = core.registry
    return (
        registry.get_sample_value("greenroom_replay_users"),
        registry.get_sample_value("greenroom_replay_events"),
    )


async def test_a_quiet_users_replay_window_is_dropped_after_the_retention_and_seq_carries_on(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with open_core(CoreConfig(replay_retention=60)) as core:
        await core.submit("alice", "echo", "x")  # two events, nobody connected
        await core.submit("bob", "echo", "x")
        async with core.subscribe("bob"):  # bob stays connected
            await trio.sleep(59)
            assert replay_gauges(core) == (2, 4)
            async with core.subscribe("alice", after=0) as events:
                await wait_all_tasks_blocked()
                assert [e.seq for e in drain(events)] == [1, 2]  # still held

            await trio.sleep(121)  # past twice the retention since alice left
            assert replay_gauges(core) == (1, 2)  # bob's window stays while he is here

            async with core.subscribe("alice", after=0) as events:
                await wait_all_tasks_blocked()
                assert drain(events) == [Gap(1, 2)]
                assert core.last_seq("alice") == 2
                run_id = await core.submit("alice", "echo", "y")
                seen = await read_until_ended(events, [run_id])

    assert [e.seq for e in seen] == [3, 4]


async def test_a_stream_is_kept_while_events_come_and_dropped_within_twice_the_retention(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with open_core(CoreConfig(replay_retention=60)) as core:
        for _ in range(4):  # an event every 59 s keeps it
            await core.submit("alice", "echo", "x")
            await trio.sleep(59)
        assert replay_gauges(core) == (1, 8)  # quiet for 59 s now
        await trio.sleep(61)  # twice the retention
        assert replay_gauges(core) == (0, 0)


async def test_a_retired_users_seq_is_remembered_for_the_seq_retention_then_starts_again(
    autojump_clock: trio.abc.Clock,
) -> None:
    # Sweeps every 30 s: a stream quiet for three in a row retires. Every
    # 20 sweeps (600 s) the retired seqs rotate; the second rotation after a
    # stream retired forgets its seq.
    config = CoreConfig(replay_retention=60, seq_retention=600)
    async with open_core(config) as core:

        def retired() -> float | None:
            return core.registry.get_sample_value("greenroom_retired_streams")

        await core.submit("alice", "echo", "x")
        await trio.sleep(610)  # alice retired at 120 s; first rotation at 600 s
        assert (core.last_seq("alice"), retired()) == (2, 1)
        await core.submit("bob", "echo", "x")
        await trio.sleep(600)  # bob retired at 720 s; second rotation at 1,200 s
        assert (core.last_seq("alice"), core.last_seq("bob"), retired()) == (0, 2, 1)

        async with (
            core.subscribe("alice") as alice,
            core.subscribe("bob", after=2) as bob,  # where bob's client left off
        ):
            alice_run = await core.submit("alice", "echo", "back")
            bob_run = await core.submit("bob", "echo", "back")
            seen = (
                await read_until_ended(alice, [alice_run]),
                await read_until_ended(bob, [bob_run]),
            )

    assert [[e.seq for e in events] for events in seen] == [[1, 2], [3, 4]]


async def test_a_replayed_event_is_what_was_sent_and_a_live_one_is_encoded_once(
    autojump_clock: trio.abc.Clock,
) -> None:
    class Shapes(Agent):
        name = "shapes"

        async def run(self, ctx: RunContext, input: Any) -> Any:
            await ctx.thinking("x")
            return {"pair": (1, 2), "when": datetime.date(2026, 12, 1)}

    async with open_core(agents=[Shapes]) as core, core.subscribe("alice") as live:
        run_id = await core.submit("alice", "shapes")
        sent = await read_until_ended(live, [run_id])
        async with core.subscribe("alice", after=0) as replayed:
            again = drain(replayed)

    live_end, replayed_end = sent[-1], again[-1]
    assert isinstance(replayed_end, Event)
    assert live_end.data["output"] == {"pair": (1, 2), "when": datetime.date(2026, 12, 1)}
    # What a resume gets is what went over the wire: JSON's shapes.
    assert replayed_end.data["output"] == {"pair": [1, 2], "when": "datetime.date(2026, 12, 1)"}
    assert replayed_end.to_json() == live_end.to_json()
    assert [e.to_json() for e in again] == [e.to_json() for e in sent]
    assert live_end.to_json() is live_end.to_json()  # one encoding for every subscriber


async def test_a_resume_replays_then_goes_live_without_losing_or_repeating_at_the_seam(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with open_core() as core, core.subscribe("alice") as first:
        run_id = await core.submit("alice", "sleep", sleep(20, steps=20))
        head = []
        async for event in first:
            head.append(event)
            if len(head) == 8:
                break
        await trio.sleep(2.5)  # more events are numbered meanwhile
        async with core.subscribe("alice", after=head[-1].seq) as resumed:
            rest = await read_until_ended(resumed, [run_id])

    combined = head + rest
    assert [e.seq for e in combined] == list(range(1, 23))
    assert types_of(combined) == ["agent_started", *["agent_thinking"] * 20, "agent_completed"]


async def test_resumes_opened_while_a_run_emits_each_get_exactly_the_events_after_their_seq(
    autojump_clock: trio.abc.Clock,
) -> None:
    results: list[tuple[int, list[Event]]] = []
    async with open_core() as core:
        run_id = await core.submit("alice", "sleep", sleep(10, steps=10))

        async def resume(after: int) -> None:
            async with core.subscribe("alice", after=after) as events:
                results.append((after, await read_until_ended(events, [run_id])))

        async with trio.open_nursery() as nursery:
            for moment in range(10):
                await trio.sleep_until(moment + 0.5)
                last = core.last_seq("alice")
                for after in {last, max(0, last - 1), max(0, last - 3)}:
                    nursery.start_soon(resume, after)

    assert {after for after, _ in results} == set(range(11))  # 0 .. the last but one
    for after, seen in results:
        assert [e.seq for e in seen] == list(range(after + 1, 13))


@pytest.mark.parametrize("after", [-1, 3, True, 1.0, "0"])
async def test_a_resume_point_the_stream_has_not_reached_is_refused(after: Any) -> None:
    async with open_core() as core:
        await core.submit("alice", "echo", "x")
        await wait_all_tasks_blocked()
        assert core.last_seq("alice") == 2

        with pytest.raises(InvalidResume, match="after must be a whole number from 0 to 2"):
            async with core.subscribe("alice", after=after):
                raise AssertionError("the subscription should not open")
        with pytest.raises(InvalidResume, match="from 0 to 0"):
            async with core.subscribe("nobody", after=1):
                raise AssertionError("the subscription should not open")
        assert core.stream_books.subscriber_count == 0


async def test_a_slow_subscriber_is_ended_while_the_others_get_everything_and_nobody_waits(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with (
        open_core() as core,
        core.subscribe("alice", queue_size=3) as slow,
        core.subscribe("alice") as fast,
    ):
        run_id = await core.submit("alice", "sleep", sleep(10, steps=10))
        seen = await read_until_ended(fast, [run_id])  # slow reads nothing meanwhile
        ran_for = trio.current_time()

        held = drain(slow)
        assert slow.closed_reason == "overflow"
        assert core.stream_books.dropped_by_reason["subscriber_overflow"] == 1
        assert core.stream_books.subscriber_count == 1

        async with core.subscribe("alice", after=held[-1].seq) as resumed:
            rest = drain(resumed)

    assert ran_for == 10  # the run never waited for the slow reader
    assert [e.seq for e in seen] == list(range(1, 13))
    assert [e.seq for e in held] == [1, 2, 3]
    assert held + rest == seen


async def test_a_subscriber_that_left_is_no_longer_delivered_to() -> None:
    async with open_core() as core:
        async with core.subscribe("alice"):
            assert core.stream_books.subscriber_count == 1
        await wait_all_tasks_blocked()
        assert core.stream_books.subscriber_count == 0

        async with core.subscribe("alice") as events:
            run_id = await core.submit("alice", "echo", "x")
            seen = await read_until_ended(events, [run_id])

    assert [e.seq for e in seen] == [1, 2]


async def test_events_of_a_run_that_is_not_open_are_dropped_and_counted() -> None:
    async with open_core() as core:
        await core._bridge.send(Emit("alice", "ghost", "agent_thinking", {"text": "?"}, 0.0))
        await wait_all_tasks_blocked()

        assert core.last_seq("alice") == 0
        assert core.stream_books.dropped_by_reason["run_not_open"] == 1


def test_an_event_knows_whether_it_ends_its_run() -> None:
    def event(type: str) -> Event:
        return Event(type=type, seq=1, user_id="u", run_id="r", ts=0.0, data={})

    assert event("agent_completed").terminal and event("agent_error").terminal
    assert not event("agent_started").terminal and not event("tool_completed").terminal


async def test_an_event_deliver_now_takes_is_not_queued_and_one_it_refuses_is(
    autojump_clock: trio.abc.Clock,
) -> None:
    """`deliver_now` is offered each live event first; the queue gets only
    what it refuses, so taken and queued together make the whole stream."""
    taken: list[Event] = []

    def deliver_now(event: Event) -> bool:
        if event.seq % 3 == 0:
            return False
        taken.append(event)
        return True

    async with open_core() as core, core.subscribe("alice", deliver_now=deliver_now) as events:
        run_id = await core.submit("alice", "sleep", sleep(1, steps=7))
        await trio.sleep(2)
        queued = [events.receive_nowait() for _ in range(3)]
        with pytest.raises(trio.WouldBlock):
            events.receive_nowait()

    assert [e.seq for e in queued] == [3, 6, 9]
    assert [e.seq for e in taken] == [1, 2, 4, 5, 7, 8]
    assert queued[-1].type == "agent_completed" and queued[-1].run_id == run_id


async def test_deliver_now_is_not_offered_replayed_events(
    autojump_clock: trio.abc.Clock,
) -> None:
    offered: list[int] = []

    def deliver_now(event: Event) -> bool:
        offered.append(event.seq)
        return True

    async with open_core() as core:
        run_id = await core.submit("alice", "echo", "x")
        async with core.subscribe("alice") as events:
            await read_until_ended(events, [run_id])
        async with core.subscribe("alice", after=0, deliver_now=deliver_now) as events:
            replayed = [events.receive_nowait() for _ in range(2)]
            await core.submit("alice", "echo", "y")
            await trio.sleep(1)

    assert [e.seq for e in replayed] == [1, 2]
    assert offered == [3, 4]


@pytest.mark.parametrize(
    ("seconds", "retention", "sweeps"),
    [
        (86_400.0, 600.0, 288),
        (1.0, 600.0, 1),
        (float("inf"), 600.0, 1 << 62),
        (1e308, 1e-10, 1 << 62),
    ],
)
def test_sweeps_in_counts_sweeps_and_is_endless_past_what_an_int_holds(
    seconds: float, retention: float, sweeps: int
) -> None:
    # 1e308 s of retention over sweeps every 5e-11 s is more sweeps than a
    # float holds: it raised OverflowError when the core opened.
    assert sweeps_in(seconds, retention) == sweeps


async def test_a_core_opens_with_the_longest_seq_retention_and_the_shortest_sweeps() -> None:
    async with open_core(CoreConfig(seq_retention=1e308, replay_retention=1e-10)) as core:
        assert core.last_seq("alice") == 0
