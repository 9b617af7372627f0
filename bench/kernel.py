"""Micro-benchmark of the actor kernel against raw trio and against Pykka.

Measures, in one run and interleaved across repetitions (raw trio, kernel,
Pykka, raw trio, kernel, ...) so that machine noise hits all of them alike:

  raw trio, awaited hop       `await send_channel.send(x)` to an `async for` consumer
  raw trio, non-blocking hop  `send_nowait` / `receive_nowait`, awaiting only on
                              WouldBlock (full or empty)
  raw trio, request/reply     (request, slot) over a memory channel, the client
                              awaiting a `trio.Event` in the one-shot slot
  kernel send                 `await ref.send(x)` N times, then one `ask` to be sure
                              all were handled; with a mailbox big enough for all
                              N, with the default capacity (1024), and with a
                              capacity of 16, below the pacing interval, so the
                              producer really waits for room (backpressure)
  kernel ask                  sequential `await ref.ask(x)`
  Pykka tell / ask            `pykka.ThreadingActor`: N `tell`s then one
                              `ask().get()`; sequential `ask(...).get()`
  trio.sleep / runtime.sleep  N tasks each sleeping a fixed period (20 ms) K
                              times, their first sleeps spread over one period:
                              process CPU time per sleep and wake-up lateness
                              (actual minus requested); busy (1,000 tasks) and
                              light (100 tasks)

Rates are medians over repetitions. Ratios are taken within each repetition
(kernel against the baseline measured moments before it) and the median of
those is reported. Latency percentiles come from a separate loop timing each
round trip with `perf_counter_ns`; throughput loops carry no timing code.
An untimed probe then replays each send variant, reading the mailbox depth
before every send, to show how deep the queue got and how many sends had to
wait for room. The sleep ratios are trio.sleep's CPU per sleep over
runtime.sleep's in the same repetition (bench/_kernel_timers.py says how
they are measured). Targets (DESIGN.md): send >= 0.4x the non-blocking hop,
ask >= 0.9x the raw request/reply, and ask faster than Pykka's.
"""

from __future__ import annotations

import gc
import math
import time
from collections.abc import Callable
from typing import Any

import attrs

from . import _report
from ._kernel_baselines import raw_awaited_hop, raw_nowait_hop, raw_request_reply
from ._kernel_peers import pykka_ask, pykka_tell
from ._kernel_runtime import (
    kernel_ask,
    kernel_send,
    kernel_send_default_capacity,
    kernel_send_small_capacity,
    probe_send,
)
from ._kernel_timers import (
    runtime_sleep_busy,
    runtime_sleep_light,
    trio_sleep_busy,
    trio_sleep_light,
)
from ._kernel_workload import (
    DEFAULT_CAPACITY,
    FULL,
    QUICK,
    SMALL_CAPACITY,
    WARM_UP,
    Result,
    Workload,
)

#: ratio name -> the value it must reach (>=), from DESIGN.md.
TARGETS = {
    "send_vs_nowait_ratio": 0.4,
    "ask_vs_raw_ratio": 0.9,
}
#: ratio name -> the value it must exceed (>).
TARGETS_ABOVE = {
    "ask_vs_pykka_ratio": 1.0,
}


# the run ----------------------------------------------------------------------

Measurement = tuple[str, Callable[[Workload], Result]]

#: In the order they run within one repetition: each kernel measurement right
#: after the baseline it is compared with.
MEASUREMENTS: list[Measurement] = [
    ("raw trio, awaited hop", raw_awaited_hop),
    ("raw trio, non-blocking hop", raw_nowait_hop),
    ("kernel send", kernel_send),
    ("kernel send, capacity 1024", kernel_send_default_capacity),
    ("kernel send, capacity 16", kernel_send_small_capacity),
    ("raw trio, request/reply", raw_request_reply),
    ("kernel ask", kernel_ask),
    ("Pykka tell", pykka_tell),
    ("Pykka ask", pykka_ask),
    ("trio.sleep, busy", trio_sleep_busy),
    ("runtime.sleep, busy", runtime_sleep_busy),
    ("trio.sleep, light", trio_sleep_light),
    ("runtime.sleep, light", runtime_sleep_light),
]

#: ratio name -> (numerator, denominator), taken within each repetition.
RATIOS = {
    "send_vs_nowait_ratio": ("send_msgs_per_s", "raw_nowait_msgs_per_s"),
    "send_vs_awaited_ratio": ("send_msgs_per_s", "raw_awaited_msgs_per_s"),
    "send_default_capacity_vs_nowait_ratio": (
        "send_default_capacity_msgs_per_s",
        "raw_nowait_msgs_per_s",
    ),
    "send_small_capacity_vs_nowait_ratio": (
        "send_small_capacity_msgs_per_s",
        "raw_nowait_msgs_per_s",
    ),
    "ask_vs_raw_ratio": ("ask_per_s", "raw_rr_per_s"),
    "ask_vs_pykka_ratio": ("ask_per_s", "pykka_ask_per_s"),
    "busy_sleep_cpu_trio_vs_runtime_ratio": ("trio_sleep_busy_cpu_us", "runtime_sleep_busy_cpu_us"),
    "light_sleep_cpu_trio_vs_runtime_ratio": (
        "trio_sleep_light_cpu_us",
        "runtime_sleep_light_cpu_us",
    ),
}


def _measure(fn: Callable[[Workload], Result], work: Workload) -> Result:
    gc.collect()
    return fn(work)


def run(work: Workload, repeat: int) -> dict[str, list[float]]:
    """Every measurement `repeat` times, interleaved; returns each metric's samples."""
    _report.progress("warming up")
    for _, fn in MEASUREMENTS:
        _measure(fn, WARM_UP)
    samples: dict[str, list[float]] = {}
    for rep in range(1, repeat + 1):
        for label, fn in MEASUREMENTS:
            result = _measure(fn, work)
            for key, value in result.items():
                samples.setdefault(key, []).append(value)
            shown = ", ".join(f"{key} {_report.format_cell(v)}" for key, v in result.items())
            _report.progress(f"[{rep}/{repeat}] {label}: {shown}")
    for name, (top, bottom) in RATIOS.items():
        samples[name] = [a / b for a, b in zip(samples[top], samples[bottom], strict=True)]
    return samples


def probe(work: Workload) -> dict[str, dict[str, int]]:
    """How deep each send variant's mailbox got, and how many sends waited."""
    n = min(work.hops, 100_000)
    probes = {
        "send": probe_send(n, work.hops),
        "send_default_capacity": probe_send(n, DEFAULT_CAPACITY),
        "send_small_capacity": probe_send(n, SMALL_CAPACITY),
    }
    for name, found in probes.items():
        _report.progress(
            f"probe {name}: max depth {found['max_depth']} of {found['capacity']}, "
            f"{found['sends_waited']} of {found['sends']} sends waited"
        )
    return probes


def _note(found: dict[str, int]) -> str:
    share = found["sends_waited"] / found["sends"]
    return f"depth <= {found['max_depth']}, {share:.1%} of sends waited"


def _table_rows(
    m: dict[str, float], work: Workload, probes: dict[str, dict[str, int]]
) -> list[list[Any]]:
    return [
        ["raw trio, awaited hop", work.awaited_hops, m["raw_awaited_msgs_per_s"], None, None, None],
        ["raw trio, non-blocking hop", work.hops, m["raw_nowait_msgs_per_s"], None, None, None],
        [f"kernel send, capacity {work.hops}", work.hops, m["send_msgs_per_s"], None, None,
         _note(probes["send"])],
        [f"kernel send, capacity {DEFAULT_CAPACITY}", work.hops,
         m["send_default_capacity_msgs_per_s"], None, None,
         _note(probes["send_default_capacity"])],
        [f"kernel send, capacity {SMALL_CAPACITY}", work.hops,
         m["send_small_capacity_msgs_per_s"], None, None, _note(probes["send_small_capacity"])],
        ["Pykka tell", work.pykka_tells, m["pykka_tell_msgs_per_s"], None, None, None],
        ["raw trio, request/reply", work.round_trips, m["raw_rr_per_s"], m["raw_rr_p50_us"],
         m["raw_rr_p99_us"], None],
        ["kernel ask", work.round_trips, m["ask_per_s"], m["ask_p50_us"], m["ask_p99_us"], None],
        ["Pykka ask", work.pykka_round_trips, m["pykka_ask_per_s"], m["pykka_ask_p50_us"],
         m["pykka_ask_p99_us"], None],
    ]  # fmt: skip


def _sleep_rows(m: dict[str, float], work: Workload) -> list[list[Any]]:
    ms = f"{work.sleep_period_s * 1e3:g} ms"
    rows: list[list[Any]] = []
    for load, tasks in (("busy", work.sleepers), ("light", work.light_sleepers)):
        for name in ("trio", "runtime"):
            key = f"{name}_sleep_{load}"
            rows.append([
                f"{name}.sleep, {tasks:,} tasks every {ms}", tasks * work.sleeps_per_task,
                m[f"{key}_cpu_us"], m[f"{key}_late_p50_ms"], m[f"{key}_late_p99_ms"],
                m[f"{key}_cpu_share"],
            ])  # fmt: skip
    return rows


def _verdicts(medians: dict[str, float]) -> dict[str, bool]:
    met = {name: medians[name] >= target for name, target in TARGETS.items()}
    met.update({name: medians[name] > target for name, target in TARGETS_ABOVE.items()})
    return met


def _ratio_rows(
    samples: dict[str, list[float]], medians: dict[str, float], met: dict[str, bool]
) -> list[list[Any]]:
    rows: list[list[Any]] = []
    for name in RATIOS:
        values = samples[name]
        if name in TARGETS:
            target: str | None = f">= {TARGETS[name]}"
        elif name in TARGETS_ABOVE:
            target = f"> {TARGETS_ABOVE[name]}"
        else:
            target = None
        spread = f"{min(values):.2f} .. {max(values):.2f}"
        rows.append([name, medians[name], spread, target, met.get(name)])
    return rows


def main(argv: list[str] | None = None) -> None:
    cli = _report.parser("bench.kernel", __doc__ or "", default_repeat=9, quick_repeat=3)
    args = cli.parse_args(argv)
    repeat = _report.repeat(args)
    work = QUICK if args.quick else FULL
    started = time.perf_counter()
    samples = run(work, repeat)
    probes = probe(work)
    medians = {key: _report.median(values) for key, values in samples.items()}
    met = _verdicts(medians)
    wall = time.perf_counter() - started

    print(f"greenroom kernel benchmark: medians of {repeat} repetitions")
    print()
    _report.print_table(
        ["measurement", "N", "per second", "p50 µs", "p99 µs", "backpressure (probe)"],
        _table_rows(medians, work, probes),
        align="<>>>><",
    )
    print()
    _report.print_table(
        ["sleepers", "sleeps", "CPU µs/sleep", "late p50 ms", "late p99 ms", "CPU/wall"],
        _sleep_rows(medians, work),
    )
    print()
    _report.print_table(
        ["ratio (per repetition)", "median", "range", "target", "met"],
        _ratio_rows(samples, medians, met),
    )
    print()
    print(f"wall time {wall:.1f} s")

    if args.json:
        result: dict[str, Any] = {
            "benchmark": "kernel",
            "timestamp_utc": _report.utc_timestamp(),
            "repeat": repeat,
            "quick": bool(args.quick),
            "wall_seconds": round(wall, 2),
            **_report.environment("trio", "pykka"),
            "workload": attrs.asdict(work),
            **{key: _rounded(value) for key, value in medians.items()},
            "targets": {**TARGETS, **TARGETS_ABOVE},
            "targets_met": met,
            "all_targets_met": all(met.values()),
            "backpressure_probe": probes,
            "samples": {key: [_rounded(v) for v in values] for key, values in samples.items()},
        }
        _report.print_json(result)


def _rounded(value: float) -> float:
    if math.isnan(value):
        return value
    return round(value, 4) if abs(value) < 100 else round(value, 1)


if __name__ == "__main__":
    main()
