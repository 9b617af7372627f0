"""End-to-end load: many users over real WebSockets against a `greenroom
serve` this benchmark starts itself, every event checked; and the same load
against a bare WebSocket server on the same stack, to price the runtime.

    python -m bench.load [--users N] [--runs-per-user M] [--agent sleep|echo|calc]
                         [--seconds S] [--steps K] [--concurrency C]
                         [--client raw|trio-websocket] [--quick]
                         [--json] [--plot FILE.png] [--repeat R] [--no-baseline]
                         [--server-log-level LEVEL] [--deliver-inline] [--py-spy DIR]

A round has two phases, each with its own server as a subprocess: the
baseline, `python -m bench._bare_server --port 0` (greenroom's own HTTP and
WebSocket server, `actors._wire`, with the same garbage-collector settings
and `runtime.sleep`, but no runtime behind it: the run's own task writes
the same event shapes at the same pace straight to the socket), and
`python -m actors.cli serve --dev --port 0` with limits that fit the load
(--max-engines >= N, a subscriber queue of at least 4 runs' events; with
--deliver-inline, greenroom's own flag of that name). The bare server goes
first in odd rounds and second in even ones, so that what a round does to
the machine as it goes does not always fall on the same server. Each
phase connects N users (tokens signed with the development secret, at most
C handshakes at once), and once all are connected every user runs M runs
one after the other: send `{"type": "run", ...}`, read events up to the
run's terminal event, next. A sleep run emits K `agent_thinking` events over
S seconds, so a user receives about (K + 2) / S events a second; each user's
first run starts after a random delay of up to S / K (the same for both
servers), so the users do not tick in step.

Every event is checked as it arrives: `seq` gapless and increasing per user,
its `user_id` the connection's own, its `run_id` the run in progress (so no
duplicate or late terminal event goes unseen), each run opening with
`agent_started` and ending with exactly one terminal event after the
expected number of events, nothing after the last run. After the last run
the server gets SIGTERM with every socket open: each must be closed with
1001 and the server must exit 0. A violation, or a run ending in
`agent_error`, is reported and makes the exit status 1.

Reported per phase, over the measured phase (start signal to last terminal
event): events/s delivered, runs/s; connect time (p50, p99, all); latency
from the server's `ts` to the client's receipt (one machine clock)
p50/p90/p99/max, and greenroom's own emit -> socket-write histogram from
`/metrics`; close codes; server RSS idle, connected, after the runs, peak
(sampled every 0.25 s) and the kernel's high-water mark; server and client
CPU time (user + system, psutil) as a share of one core and per event, and
the events/s one core would deliver at that cost; how busy the machine was,
and how much of that was other processes. overhead_ratio = greenroom's
server CPU per event / the bare server's. A run is --repeat R rounds (2 by
default, one with each server first; 1 with --quick), reported as their
medians; overhead_ratio is then the median of the rounds' own ratios (each
round measures both servers), listed in the report and as
overhead_ratio_rounds in the JSON (null for a round where a server used no
measurable CPU), with which server went first in each
as rounds_first. From 6 rounds on, the report adds a 95 % interval for
that median (distribution-free: from the rounds' order statistics;
overhead_ratio_interval in the JSON) and says whether the target lies
inside it: a single round's ratio here moves by a tenth either way with
the machine, so a verdict inside the interval is within the noise.

The client is one trio process speaking RFC 6455 on plain non-blocking
sockets: trio makes the connections, then all of them sit in one epoll set
served by one worker thread (far less CPU per event than `--client
trio-websocket`, one task per user). It says so when it is saturated (above
90 % of one core over the measured phase), and likewise for the server (one
trio thread) and the machine.

Targets (DESIGN.md, at 1 000 users), reported, not asserted: >= 20 000
events/s with p99 < 50 ms, no violation, overhead <= 1.25x the bare
transport. A load decides how many events a second it asks for (users x
events a run / seconds, less a round trip between one run and the next);
one that asks for fewer than 20 000 cannot test that target, and the report
says "not tested". A server that is not saturated delivers what the load
asks, whatever it could do: to find what it holds, ask for more than it
delivers, as

    python -m bench.load --users 1000 --runs-per-user 5 --steps 28

does (30 000 events/s asked). `--py-spy DIR` samples each server over its
measured phase (folded stacks: DIR/greenroom.folded, DIR/bare.folded); py-spy
is not one of the project's dependencies (`.venv/bin/python -m pip install
py-spy`), and without it the option is refused before anything runs.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import attrs
import trio

from actors.demo import MAX_SLEEP_SECONDS, MAX_SLEEP_STEPS

from . import _report
from ._load_client import Load
from ._load_phase import phase_order, run_round
from ._load_report import (
    TARGETS,
    _clean,
    _median_of,
    _notes,
    _rounded,
    _rows,
    _verdict,
    _verdicts,
    overhead_note,
    plot,
    plot_problem,
)
from ._load_servers import _raise_open_files, py_spy_problem

#: (users, runs per user): about a minute for both phases, and a smoke run.
DEFAULT_SIZE = (500, 12)
QUICK_SIZE = (50, 5)
DEFAULT_SECONDS = 1.0
DEFAULT_STEPS = 20
DEFAULT_CONCURRENCY = 100


def _ratio(greenroom: float, bare: float) -> float | None:
    """greenroom's CPU per event over bare's; None unless both were measured."""
    if not (math.isfinite(greenroom) and math.isfinite(bare)) or greenroom <= 0 or bare <= 0:
        return None
    return greenroom / bare


def main(argv: list[str] | None = None) -> int:
    cli = _report.parser(
        "bench.load",
        __doc__ or "",
        default_repeat=2,
        quick_repeat=1,
        repeat_help="rounds, each running both servers (the bare one first in odd rounds); "
        "medians are reported (default 2, one each way, or 1 with --quick)",
    )
    cli.add_argument("--users", type=int, help=f"simulated users (default {DEFAULT_SIZE[0]}, "
                     f"{QUICK_SIZE[0]} with --quick)")  # fmt: skip
    cli.add_argument("--runs-per-user", type=int, help=f"runs each user makes in turn (default "
                     f"{DEFAULT_SIZE[1]}, {QUICK_SIZE[1]} with --quick)")  # fmt: skip
    cli.add_argument("--agent", default="sleep", choices=["sleep", "echo", "calc"],
                     help="the demo agent every run asks for (default %(default)s)")  # fmt: skip
    cli.add_argument("--seconds", type=float,
                     help=f"a sleep run's length (default {DEFAULT_SECONDS:g}; "
                     "sleep runs only)")  # fmt: skip
    cli.add_argument("--steps", type=int,
                     help=f"agent_thinking events per sleep run (default {DEFAULT_STEPS}; "
                     "sleep runs only)")  # fmt: skip
    cli.add_argument("--concurrency", type=int, default=DEFAULT_CONCURRENCY,
                     help="handshakes in flight at once (default %(default)s)")  # fmt: skip
    cli.add_argument("--client", default="raw", choices=["raw", "trio-websocket"],
                     help="the client's WebSocket (default %(default)s: RFC 6455 on plain "
                     "sockets, all served by one task)")  # fmt: skip
    cli.add_argument("--no-baseline", action="store_true",
                     help="skip the bare-server phase (no overhead_ratio)")  # fmt: skip
    cli.add_argument("--server-log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                     help="greenroom's --log-level (default: its own, INFO, which writes "
                     "two audit records per run)")  # fmt: skip
    cli.add_argument("--deliver-inline", action="store_true",
                     help="run greenroom with --deliver-inline: each event delivered in "
                     "the task that emits it while the bridge is idle")  # fmt: skip
    cli.add_argument("--py-spy", metavar="DIR",
                     help="sample each server with py-spy (not installed with the project: "
                     "pip install py-spy) over the measured phase: "
                     "DIR/greenroom.folded and DIR/bare.folded (folded stacks)")  # fmt: skip
    cli.add_argument(
        "--plot", metavar="FILE.png", help="draw throughput, latency and CPU over time"
    )
    args = cli.parse_args(argv)
    if args.agent != "sleep" and (args.seconds is not None or args.steps is not None):
        cli.error(f"--seconds and --steps shape sleep runs; --agent {args.agent} takes neither")
    size = QUICK_SIZE if args.quick else DEFAULT_SIZE
    load = Load(
        users=size[0] if args.users is None else args.users,
        runs_per_user=size[1] if args.runs_per_user is None else args.runs_per_user,
        agent=args.agent,
        seconds=DEFAULT_SECONDS if args.seconds is None else args.seconds,
        steps=DEFAULT_STEPS if args.steps is None else args.steps,
        concurrency=args.concurrency,
        client=args.client,
    )
    if load.users < 1 or load.runs_per_user < 1 or load.steps < 1 or load.concurrency < 1:
        cli.error("--users, --runs-per-user, --steps and --concurrency must be >= 1")
    # Checked before anything runs: a mistake found after the rounds costs them.
    if not 0 < load.seconds <= MAX_SLEEP_SECONDS:
        cli.error(f"--seconds must be within (0, {MAX_SLEEP_SECONDS:g}], got {load.seconds:g}")
    if load.steps > MAX_SLEEP_STEPS:
        cli.error(f"--steps must be at most {MAX_SLEEP_STEPS:,} (the sleep agent's limit)")
    problem = plot_problem(args.plot) if args.plot else None
    if problem:
        cli.error(f"--plot {args.plot}: {problem}")
    problem = py_spy_problem(args.py_spy) if args.py_spy else None
    if problem:
        cli.error(f"--py-spy {args.py_spy}: {problem}")
    repeat = _report.repeat(args)
    baseline = not args.no_baseline
    server_args = ["--log-level", args.server_log_level] if args.server_log_level else []
    if args.deliver_inline:
        server_args.append("--deliver-inline")
    _raise_open_files(load.users)

    started, timestamp = time.perf_counter(), _report.utc_timestamp()
    asked = load.asked_events_per_s
    pace = f"asks for at most {asked:,.0f} events/s" if asked else "each run when the last ends"
    _report.progress(
        f"bench.load: {load.users:,} users x {load.runs_per_user} runs of {load.agent} "
        f"{json.dumps(load.input)}, {load.events_per_run} events a run ({pace}), "
        f"client {load.client}, {repeat} round(s)"
    )
    rounds: list[dict[str, dict[str, Any]]] = []
    for number in range(1, repeat + 1):
        if repeat > 1:
            _report.progress(f"round {number}/{repeat}")
        rounds.append(trio.run(run_round, load, baseline, args.py_spy, server_args, number))
    wall = time.perf_counter() - started

    g = _median_of(rounds, "greenroom")
    b = _median_of(rounds, "bare") if baseline else None
    # Each round's own ratio, in order; None for a round whose server used
    # no measurable CPU (a load too small to price: a note below says so).
    each_round = [
        _ratio(found["greenroom"]["server_cpu_us_per_event"],
               found["bare"]["server_cpu_us_per_event"])
        for found in rounds
        if baseline
    ]  # fmt: skip
    ratios = [r for r in each_round if r is not None]
    ratio = _report.median(ratios) if ratios else None
    interval = _report.median_interval(ratios)
    met = _verdicts(g, ratio, asked)

    print(
        f"greenroom load benchmark, {timestamp}: {load.users:,} users x {load.runs_per_user} "
        f"runs of {load.agent} {json.dumps(load.input)} ({load.events_per_run} events a run), "
        f"connect concurrency {load.concurrency}, client {load.client}"
        + (f", greenroom serve {' '.join(server_args)}" if server_args else "")
        + (f", medians of {repeat} rounds" if repeat > 1 else "")
    )
    print()
    _report.print_table(["", "greenroom", "bare transport"], _rows(g, b, asked))
    print()
    if ratio is not None and len(each_round) > 1:
        # Each round's own ratio: the medians above may come from different rounds.
        each = ", ".join(
            f"{'not measured' if r is None else f'{r:.2f}'} ({phase_order(number, True)[0]} first)"
            for number, r in enumerate(each_round, start=1)
        )
        print(f"overhead_ratio (server CPU per event, greenroom / bare, median of the rounds' "
              f"ratios: {each}) = {ratio:.2f}x")  # fmt: skip
        if interval is not None:
            print(f"95 % interval for the median: {interval[0]:.2f}x to {interval[1]:.2f}x")
        print()
    elif ratio is not None:
        gr, br = g["server_cpu_us_per_event"], b["server_cpu_us_per_event"] if b else math.nan
        print(f"overhead_ratio (server CPU per event, greenroom / bare) = {gr:.1f} / {br:.1f} µs "
              f"= {ratio:.2f}x")  # fmt: skip
        print()
    values = {
        "overhead_ratio": ratio,
        **{k: g[k] for k in ("events_per_s", "p99_ms", "violations")},
    }
    _report.print_table(
        ["target (DESIGN.md, at 1 000 users)", "measured", "target", "met"],
        [
            [name, values[name], f"{op} {target:,g}", _verdict(met[name])]
            for name, (op, target) in TARGETS.items()
        ],
    )
    unpriced = (
        f"overhead_ratio: not measured in {each_round.count(None)} of {len(rounds)} "
        "round(s), where a server used no measurable CPU: ask for more work (--users, "
        "--runs-per-user, --steps)"
        if None in each_round
        else None
    )
    for note in [*_notes(g, b, load), overhead_note(ratios), unpriced]:
        if note is not None:
            print(f"note: {note}")
    bad = {
        name: found
        for name, found in (("greenroom", g), ("bare", b))
        if found and (found["violations"] or found["runs_failed"])
    }
    for name, found in bad.items():
        print(f"\n{name}: {found['violations']:,} violations: {found['violations_by_kind']}")
        for example in found["violation_examples"]:
            print(f"  {example}")
        if found["runs_failed"]:
            print(f"{name}: runs that ended in agent_error, by reason: {found['failed_runs']}")
    if bad:
        for found in rounds:
            for name in bad:
                print(f"{name} server log: {found[name]['server_log']}")
    print(f"\nwall time {wall:.1f} s")

    if args.plot:
        plot(args.plot, rounds, load)
        _report.progress(f"plot written to {args.plot}")
    for found in rounds:
        for name, result in found.items():
            if name not in bad:
                Path(result["server_log"]).unlink(missing_ok=True)

    if args.json:
        result: dict[str, Any] = {
            "benchmark": "load",
            "timestamp_utc": timestamp,
            "wall_seconds": round(wall, 2),
            "quick": bool(args.quick),
            "repeat": repeat,
            **_report.environment("trio", "h11", "wsproto"),
            "load": attrs.asdict(load),
            "server_args": server_args,
            "events_per_run": load.events_per_run,
            "asked_events_per_s": _rounded(asked) if asked else None,
            "events_per_s": _rounded(g["events_per_s"]),
            "runs_per_s": _rounded(g["runs_per_s"]),
            "p50_ms": _rounded(g["p50_ms"]),
            "p90_ms": _rounded(g["p90_ms"]),
            "p99_ms": _rounded(g["p99_ms"]),
            "max_ms": _rounded(g["max_ms"]),
            "violations": g["violations"] + (b["violations"] if b else 0),
            "overhead_ratio": _rounded(ratio) if ratio is not None else None,
            "overhead_ratio_rounds": [None if r is None else _rounded(r) for r in each_round],
            "overhead_ratio_interval": [_rounded(v) for v in interval] if interval else None,
            "rounds_first": [phase_order(number, baseline)[0] for number in range(1, repeat + 1)],
            "client_saturated": g["client_saturated"],
            "server_saturated": g["server_saturated"],
            "server_peak_rss_mb": _rounded(g["rss_peak_mb"]),
            "targets": {name: f"{op} {target:g}" for name, (op, target) in TARGETS.items()},
            "targets_met": met,
            "greenroom": _clean(g),
            "bare": _clean(b) if b else None,
        }
        _report.print_json(result)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
