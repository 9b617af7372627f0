"""The event bridge's work for one event, alone: no tasks, no scheduler.

    python -m bench.bridge [--users N] [--events-per-user K] [--quick]
                           [--json] [--repeat R]

`bench.pipeline --tasks` books what the bridge's task costs an event in a
running core, among thousands of other tasks. This prices the same work with
nothing else running: a `BridgeActor` of its own (never started: its
`handle_now` needs no task) numbers, keeps for replay and delivers
N users x K `agent_thinking` events, one `handle_now` call an event, in a
loop. Each user has one open run and one subscriber whose `deliver_now` does
what `bench.pipeline`'s does: builds the frame (`text_frame` of the event's
JSON), records its delivery latency in a histogram, and checks its seq.
The events are made before the clock starts.

Two orders, each timed in every round: every user's event in turn, the
same order every step (`in turn`), and the users shuffled at every step, as
timers wake them in a server (`random`). With the garbage collector off
while timed. Reported: µs per event, the median over --repeat rounds.
"""

from __future__ import annotations

import gc
import random
import sys
import time
from typing import Any

from actors._bridge import BridgeActor, OpenRun, new_emit
from actors._stats import LATENCY_BUCKETS, Histogram
from actors._streams import StreamBooks, Subscriber
from actors._websocket import text_frame

from . import _report

DEFAULT_SIZE = (5_000, 14)
QUICK_SIZE = (500, 14)
ORDERS = ("in turn", "random")


def time_events(users: int, events_per_user: int, order: str, seed: int) -> float:
    """µs per event of `BridgeActor.handle_now` over the users' events in `order`;
    raises `AssertionError` if any event is lost or out of order."""
    books = StreamBooks(64, replay_bytes=1 << 20)
    bridge = BridgeActor(books, retention=600.0)
    delivery = Histogram(LATENCY_BUCKETS)
    received = dict.fromkeys(range(users), 0)
    ids = [f"user-{i:05d}" for i in range(users)]
    runs = [f"{i:032x}" for i in range(users)]

    def subscriber(index: int) -> Subscriber:
        def deliver_now(event: Any) -> bool:
            text_frame(event.to_json())
            delivery.observe_since(event.ts)
            received[index] += 1
            assert event.seq == received[index]
            return True

        return Subscriber(ids[index], None, deliver_now)

    for index in range(users):
        books.attach(subscriber(index))
        bridge.handle_now(OpenRun(ids[index], runs[index], "sleep"))
    shuffle = random.Random(seed).shuffle
    emits = []
    for step in range(events_per_user):
        turn = list(range(users))
        if order == "random":
            shuffle(turn)
        data = f"step {step} of {events_per_user}"
        for index in turn:
            emit = (ids[index], runs[index], "agent_thinking", {"text": data}, time.time())
            emits.append(new_emit(emit))
    handle_now = bridge.handle_now
    gc.collect()
    gc.disable()
    try:
        began = time.perf_counter()
        for emit in emits:
            handle_now(emit)
        seconds = time.perf_counter() - began
    finally:
        gc.enable()
    assert all(count == events_per_user for count in received.values()), "events lost"
    return seconds / len(emits) * 1e6


def main(argv: list[str] | None = None) -> int:
    cli = _report.parser("bench.bridge", __doc__ or "", default_repeat=5, quick_repeat=2)
    cli.add_argument("--users", type=_report.positive_int, metavar="N",
                     help=f"users, each with one run and one subscriber (default "
                     f"{DEFAULT_SIZE[0]:,}, {QUICK_SIZE[0]} with --quick)")  # fmt: skip
    cli.add_argument("--events-per-user", type=_report.positive_int, metavar="K",
                     help=f"events each user's run emits (default {DEFAULT_SIZE[1]})")  # fmt: skip
    args = cli.parse_args(argv)
    size = QUICK_SIZE if args.quick else DEFAULT_SIZE
    users, per_user = args.users or size[0], args.events_per_user or size[1]
    repeat = _report.repeat(args)
    timestamp = _report.utc_timestamp()
    _report.progress(f"bench.bridge: {users:,} users x {per_user} events, {repeat} round(s)")
    found: dict[str, list[float]] = {order: [] for order in ORDERS}
    for number in range(1, repeat + 1):
        for order in ORDERS:
            found[order].append(time_events(users, per_user, order, seed=number))
        _report.progress(
            f"[{number}/{repeat}] "
            + ", ".join(f"{order} {found[order][-1]:.2f} µs/event" for order in ORDERS)
        )
    medians = {order: _report.median(found[order]) for order in ORDERS}
    print(
        f"greenroom bridge benchmark, {timestamp}: BridgeActor.handle_now for {users:,} "
        f"users x {per_user} events, alone, medians of {repeat} round(s)\n"
    )
    _report.print_table(
        ["users' order", "µs/event", "rounds"],
        [[order, medians[order], " ".join(f"{x:.2f}" for x in found[order])] for order in ORDERS],
    )
    if args.json:
        _report.print_json({
            "benchmark": "bridge",
            "timestamp_utc": timestamp,
            "quick": bool(args.quick),
            "repeat": repeat,
            "users": users,
            "events_per_user": per_user,
            **_report.environment("trio", "attrs"),
            "us_per_event": {order: round(medians[order], 4) for order in ORDERS},
            "samples": {order: [round(x, 4) for x in found[order]] for order in ORDERS},
        })  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
