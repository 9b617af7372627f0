"""CPU per event of greenroom's core pipeline, in one process, with no sockets.

    python -m bench.pipeline [--users N] [--runs-per-user M] [--seconds S]
                             [--steps K] [--quick] [--json] [--repeat R]
                             [--virtual-clock] [--variant core|bare] [--tasks]
                             [--deliver-inline]

`bench.load` prices greenroom end to end over real WebSockets, but most of
the server CPU per event it reports, greenroom's and the bare server's
alike, goes to sockets and the kernel, and that hides what the runtime
itself costs. This benchmark leaves the transport out: both variants encode
every event as the server would (`text_frame` of its JSON) and then only
count it, so what is left is the pipeline from an agent's emit to a frame
ready for the socket.

  core  `actors.open_core(CoreConfig(max_engines=N + 10))` with the demo
        agents. Each of the N users subscribes with a `deliver_now` that
        encodes the event (`text_frame(event.to_json())`), records its
        delivery latency (`core.record_delivery`, called as a connection
        calls it: straight to the histogram), counts it and returns True,
        so nothing is ever queued: as `greenroom serve` delivers when the
        socket takes the frame at once. A run is `core.submit(user, "sleep",
        {"seconds": S, "steps": K})`: the factory, the user's engine, the
        agent, the bridge's numbering and replay window, all of it.
  bare  the same runs as plain trio tasks, one per run, doing what
        bench/_bare_server.py's run does for `sleep` minus the socket:
        `agent_started`, K `agent_thinking` spaced by `runtime.sleep(S / K)`,
        `agent_completed`, each the same dict (type, seq per user, user_id,
        run_id, ts = time.time(), data) encoded with json and `text_frame`.
        The JSON encoder is built once, as `Event.to_json`'s is, so that
        both variants pay the same for JSON (the bare server's
        `json.dumps(..., separators=...)` builds one per call).

In both, all N users are ready (subscribed, for the core) before one start
signal; then each user, after a random offset within one step (the same
offsets for both variants of a round), makes M runs one after another, the
next once the previous run's terminal event (agent_completed / agent_error)
has been delivered. Every event is checked as it is delivered: per user, its
seq must be the next one, and every user must get M * (K + 2) events.

CPU is `time.process_time()` from the start signal to the delivery of the
last terminal event, divided by the events delivered; wall time likewise
with `perf_counter`. Over that window both variants run with the garbage
collector as `greenroom serve` sets it (`actors._serve.tuned_gc(GC_THRESHOLD)`:
everything alive frozen, young collections every 50,000 allocations). No
logging is configured, so the core's audit records are not written (the
logger's level drops them before they are built). Engine creation (on each
user's first run) falls inside the window; the core's start and its
shutdown afterwards do not.

Reported per variant, medians over --repeat rounds, each round a bare run
then a core run, each in a trio run of its own: events, wall time,
events/s, CPU µs per event, and CPU over wall time as a share of one core
(the whole pipeline is one trio thread; above 90 % it is saturated, and the
runs stretch beyond their S seconds). core_vs_bare_cpu_ratio is the core's
CPU per event over the bare one's within each round, the median of those:
what the runtime itself multiplies the cost of an event by. With S = 1 and
K = 20, the N users ask for N * 22 events/s. Lost or misordered events, or
runs that ended in agent_error, are reported and make the exit status 1.

With --virtual-clock each round runs on trio's MockClock with an autojump
threshold of 0: whenever every task waits, time jumps to the next deadline.
No run ever waits for real time, so wall time and events/s say only how
fast the CPU got through the work, and neither variant is ever "saturated";
but the same work is scheduled the same way in every run, so a count of
instructions is repeatable (to about 0.1 % here, where CPU time moves by
half as much again from one second to the next):

    valgrind --tool=callgrind --callgrind-out-file=/dev/null \
        python -m bench.pipeline --virtual-clock --quick --repeat 1

prints the same total, for the same build, run after run; two builds
compared that way differ by what the core's changes cost. `--variant core`
(or `bare`) runs that variant alone, so that a count is the core's own:
the difference between two sizes (say --runs-per-user 1 and 3) leaves out
start-up and warm-up and counts the runs alone.

With --deliver-inline the core is built with that setting (`greenroom serve
--deliver-inline`): while the bridge is idle, an event is numbered and
delivered in the task that emits it, not in the bridge's next turn. The
bare tasks have no bridge, so this changes nothing for them.

With --tasks, one more round of each variant follows the measured ones, and
a trio Instrument books each task step of its window to the step's task
group (`bench/_pipeline_tasks.py`): the core's engines, bridge and factory
each by name, the runs of its engines as `run`, the users and the bare
tasks by their functions, trio's waits for I/O and timers apart, and the
rest (trio's scheduling between steps, with the instrument's own calls)
last; each group's steps and CPU µs per event. The instrument costs a few
microseconds a step (two `process_time` calls and trio's hooks; 3-4 µs
here), so these rounds' totals are above the measured ones, and they are
left out of the medians and the ratio.
"""

from __future__ import annotations

import json
import math
import sys
import time
from typing import Any

import attrs

from actors.demo import MAX_SLEEP_STEPS

from . import _report
from ._pipeline_runs import Result, Workload, measure
from ._pipeline_tasks import TaskClock

#: (users, runs per user)
DEFAULT_SIZE = (1_000, 3)
QUICK_SIZE = (200, 2)
DEFAULT_SECONDS = 1.0
DEFAULT_STEPS = 20
SATURATED_SHARE = 0.9

#: Run before the measured rounds, untimed: imports, first engines, caches.
WARM_UP = Workload(users=50, runs_per_user=1, seconds=0.1, steps=2)

#: In the order they run within one round: the baseline first.
VARIANTS = ("bare", "core")
LABELS = {"bare": "bare trio tasks, no runtime", "core": "greenroom core"}

#: Counted over all rounds: any of these makes the exit status 1.
FAULTS = ("events_lost", "users_short", "misordered", "runs_failed")


def run(
    work: Workload,
    repeat: int,
    virtual_clock: bool = False,
    variants: tuple[str, ...] = VARIANTS,
    deliver_inline: bool = False,
) -> dict[str, list[Result]]:
    """`repeat` rounds of each of `variants`, interleaved; each one's results."""
    _report.progress("warming up")
    for variant in variants:
        measure(variant, WARM_UP, virtual_clock=virtual_clock, deliver_inline=deliver_inline)
    found: dict[str, list[Result]] = {variant: [] for variant in variants}
    for number in range(1, repeat + 1):
        for variant in variants:
            result = measure(
                variant,
                work.with_seed(number),
                virtual_clock=virtual_clock,
                deliver_inline=deliver_inline,
            )
            found[variant].append(result)
            _report.progress(
                f"[{number}/{repeat}] {variant}: {result['events']:,.0f} events in "
                f"{result['wall_s']:.2f} s, {result['cpu_us_per_event']:.1f} µs CPU/event, "
                f"CPU {result['cpu_share']:.0%} of a core"
                + "".join(f", {key} {result[key]:,.0f}" for key in FAULTS if result[key])
            )
    return found


Tasks = dict[str, dict[str, float]]


def run_tasks(
    work: Workload, virtual_clock: bool, variants: tuple[str, ...], deliver_inline: bool = False
) -> dict[str, tuple[Result, Tasks]]:
    """One more round of each variant, its window booked task by task."""
    found: dict[str, tuple[Result, Tasks]] = {}
    for variant in variants:
        clock = TaskClock()
        result = measure(
            variant,
            work,
            virtual_clock=virtual_clock,
            task_clock=clock,
            deliver_inline=deliver_inline,
        )
        found[variant] = (result, clock.per_event(int(result["events"]), result["cpu_s"]))
        _report.progress(
            f"[tasks] {variant}: {result['cpu_us_per_event']:.1f} µs CPU/event, instrumented"
        )
    return found


def print_tasks(found: dict[str, tuple[Result, Tasks]]) -> None:
    for variant, (result, tasks) in found.items():
        total = result["cpu_us_per_event"]
        print(f"\n{LABELS[variant]}, task by task: {total:.1f} µs CPU/event in all, instrumented")
        _report.print_table(
            ["task group", "steps/event", "CPU µs/event", "share"],
            [
                [group, row["steps_per_event"], row["cpu_us_per_event"],
                 f"{row['cpu_us_per_event'] / total:.0%}"]
                for group, row in tasks.items()
            ],
        )  # fmt: skip


def summarize(found: dict[str, list[Result]], virtual_clock: bool = False) -> dict[str, Any]:
    """Medians per variant, fault counts summed over rounds, and the ratio
    (None unless both variants ran). On a virtual clock nothing waits for
    time, so nothing is saturated."""
    summary: dict[str, Any] = {}
    for variant, results in found.items():
        medians = {key: _report.median(r[key] for r in results) for key in results[0]}
        medians.update({key: sum(r[key] for r in results) for key in FAULTS})
        medians["saturated"] = not virtual_clock and medians["cpu_share"] > SATURATED_SHARE
        summary[variant] = medians
    ratios: list[float] = []
    if "core" in found and "bare" in found:
        ratios = [
            core["cpu_us_per_event"] / bare["cpu_us_per_event"]
            for core, bare in zip(found["core"], found["bare"], strict=True)
        ]
    summary["ratios"] = ratios
    summary["core_vs_bare_cpu_ratio"] = _report.median(ratios) if ratios else None
    return summary


def _rows(summary: dict[str, Any], variants: tuple[str, ...]) -> list[list[Any]]:
    rows: list[list[Any]] = []
    for variant in variants:
        m = summary[variant]
        rows.append([
            LABELS[variant], int(m["events"]), m["wall_s"], m["events_per_s"],
            m["cpu_us_per_event"], f"{m['cpu_share']:.0%}", m["saturated"],
            int(m["events_lost"] + m["misordered"]), int(m["runs_failed"]),
        ])  # fmt: skip
    return rows


def _rounded(value: float) -> float:
    if math.isnan(value):
        return value
    return round(value, 4) if abs(value) < 100 else round(value, 1)


def _clean(medians: dict[str, Any]) -> dict[str, Any]:
    return {
        key: value if isinstance(value, bool) else _rounded(value) for key, value in medians.items()
    }


def main(argv: list[str] | None = None) -> int:
    cli = _report.parser("bench.pipeline", __doc__ or "", default_repeat=3, quick_repeat=3)
    cli.add_argument("--users", type=_report.positive_int, metavar="N",
                     help=f"simulated users (default {DEFAULT_SIZE[0]:,}, "
                     f"{QUICK_SIZE[0]} with --quick)")  # fmt: skip
    cli.add_argument("--runs-per-user", type=_report.positive_int, metavar="M",
                     help=f"runs each user makes in turn (default {DEFAULT_SIZE[1]}, "
                     f"{QUICK_SIZE[1]} with --quick)")  # fmt: skip
    cli.add_argument("--seconds", type=float, default=DEFAULT_SECONDS, metavar="S",
                     help="a sleep run's length (default %(default)s)")  # fmt: skip
    cli.add_argument("--steps", type=_report.positive_int, default=DEFAULT_STEPS, metavar="K",
                     help="agent_thinking events per run (default %(default)s)")  # fmt: skip
    cli.add_argument("--virtual-clock", action="store_true",
                     help="run on a clock that jumps whenever every task waits: the same "
                     "scheduling every run, for counting instructions")  # fmt: skip
    cli.add_argument("--deliver-inline", action="store_true",
                     help="a core with deliver_inline: each event numbered and delivered in "
                     "the task that emits it while the bridge is idle")  # fmt: skip
    cli.add_argument("--tasks", action="store_true",
                     help="then one more round of each variant, its CPU booked to each task "
                     "group (engine, bridge, factory, run, ...) by a trio Instrument")  # fmt: skip
    cli.add_argument("--variant", choices=VARIANTS,
                     help="run this variant alone (default: both, and their ratio)")  # fmt: skip
    args = cli.parse_args(argv)
    if not 0 < args.seconds <= 60:
        cli.error(f"--seconds must be within (0, 60], got {args.seconds}")
    if args.steps > MAX_SLEEP_STEPS:
        cli.error(f"--steps must be at most {MAX_SLEEP_STEPS:,} (the sleep agent's limit)")
    size = QUICK_SIZE if args.quick else DEFAULT_SIZE
    work = Workload(
        users=args.users or size[0],
        runs_per_user=args.runs_per_user or size[1],
        seconds=args.seconds,
        steps=args.steps,
    )
    repeat = _report.repeat(args)

    started, timestamp = time.perf_counter(), _report.utc_timestamp()
    asked = work.users * work.events_per_run / work.seconds
    _report.progress(
        f"bench.pipeline: {work.users:,} users x {work.runs_per_user} runs of sleep "
        f"{json.dumps(work.input)}, {work.events_per_run} events a run (asks ~{asked:,.0f} "
        f"events/s), {repeat} round(s)"
    )
    variants = (args.variant,) if args.variant else VARIANTS
    inline = args.deliver_inline
    found = run(work, repeat, args.virtual_clock, variants, inline)
    tasks = run_tasks(work, args.virtual_clock, variants, inline) if args.tasks else {}
    summary = summarize(found, args.virtual_clock)
    wall = time.perf_counter() - started
    core, bare, ratio = summary.get("core"), summary.get("bare"), summary["core_vs_bare_cpu_ratio"]
    for variant, (result, _) in tasks.items():  # the instrumented rounds count too
        for key in FAULTS:
            summary[variant][key] += result[key]
    faults = {
        variant: {key: int(summary[variant][key]) for key in FAULTS if summary[variant][key]}
        for variant in variants
    }

    print(
        f"greenroom pipeline benchmark, {timestamp}: {work.users:,} users x "
        f"{work.runs_per_user} runs of sleep {json.dumps(work.input)} "
        f"({work.events_per_run} events a run), in process, no sockets, "
        f"medians of {repeat} round(s)"
        + (", virtual clock" if args.virtual_clock else "")
        + (", core with --deliver-inline" if inline else "")
    )
    print()
    _report.print_table(
        ["variant", "events", "wall s", "events/s", "CPU µs/event", "CPU/core", "saturated",
         "lost", "failed runs"],
        _rows(summary, variants),
    )  # fmt: skip
    if core is not None and bare is not None:
        spread = f"{min(summary['ratios']):.2f} .. {max(summary['ratios']):.2f}"
        print(
            f"\ncore_vs_bare_cpu_ratio (CPU per event, core / bare) = "
            f"{core['cpu_us_per_event']:.1f} / {bare['cpu_us_per_event']:.1f} µs = {ratio:.2f}x "
            f"(per round {spread})"
        )
    for variant in variants:
        if summary[variant]["saturated"]:
            print(
                f"note: {variant} was saturated (CPU above {SATURATED_SHARE:.0%} of a core): "
                f"its runs took longer than their {work.seconds:g} s"
            )
        if faults[variant]:
            print(f"{variant}: FAULTS over all rounds: {faults[variant]}")
    print_tasks(tasks)
    print(f"\nwall time {wall:.1f} s")

    if args.json:
        result: dict[str, Any] = {
            "benchmark": "pipeline",
            "timestamp_utc": timestamp,
            "wall_seconds": round(wall, 2),
            "quick": bool(args.quick),
            "repeat": repeat,
            "virtual_clock": bool(args.virtual_clock),
            "deliver_inline": bool(inline),
            **_report.environment("trio", "attrs"),
            "workload": attrs.asdict(work, filter=lambda a, _: a.name != "seed"),
            "events_per_run": work.events_per_run,
            "variants": list(variants),
            "core_cpu_us_per_event": _rounded(core["cpu_us_per_event"]) if core else None,
            "bare_cpu_us_per_event": _rounded(bare["cpu_us_per_event"]) if bare else None,
            "core_vs_bare_cpu_ratio": _rounded(ratio) if ratio is not None else None,
            "faults": faults,
            "core": _clean(core) if core else None,
            "bare": _clean(bare) if bare else None,
            "samples": {
                variant: {key: [_rounded(r[key]) for r in results] for key in results[0]}
                for variant, results in found.items()
            },
            "ratio_samples": [_rounded(r) for r in summary["ratios"]],
            "tasks": {
                variant: {
                    group: {key: _rounded(value) for key, value in row.items()}
                    for group, row in rows.items()
                }
                for variant, (_, rows) in tasks.items()
            },
            "tasks_cpu_us_per_event": {
                variant: _rounded(found_round["cpu_us_per_event"])
                for variant, (found_round, _) in tasks.items()
            },
        }
        _report.print_json(result)
    return 1 if any(faults.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
