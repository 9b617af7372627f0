"""Engine creation latency, against the least trio does to start a task.

At each size the core is filled to, creations are timed one by one
(factory ask -> engine ready) and interleaved in rounds with a baseline,
`await nursery.start(fn)` where `fn` opens a nursery and reports started, so
machine noise hits both alike. A shared machine shows in p99 and max, so the
accounting goes with the numbers: the process's CPU share while timing, its
involuntary context switches, the samples taken without being switched out,
and the garbage collections that ran. The RSS per engine is read here too,
across the fill to the largest size, so those engines are made only once.
"""

from __future__ import annotations

import gc
import math
import resource
import time
from collections.abc import Iterator
from typing import Any

import trio

from actors import Core, UserContext, open_core

from . import _report
from ._factory_core import (
    WARM_UP,
    GraceCounter,
    Workload,
    core_config,
    engine_states,
    fill,
    rss,
    settle,
    user_ids,
)


def _ms(ns: float) -> float:
    return ns / 1e6


def _latency(samples_ns: list[int]) -> dict[str, float]:
    found = {
        "p50_ms": _ms(_report.percentile(samples_ns, 50)),
        "p90_ms": _ms(_report.percentile(samples_ns, 90)),
        "p99_ms": _ms(_report.percentile(samples_ns, 99)),
        "max_ms": _ms(max(samples_ns)),
        "mean_ms": _ms(sum(samples_ns) / len(samples_ns)),
    }
    return {key: round(value, 4) for key, value in found.items()}


class _GcWatch:
    """Counts garbage collections (per generation) and their time while armed."""

    def __init__(self) -> None:
        self.armed = False
        self.counts = [0, 0, 0]
        self.seconds = 0.0
        self._began = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if not self.armed:
            return
        if phase == "start":
            self.counts[info["generation"]] += 1
            self._began = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._began

    def reset(self) -> None:
        self.counts = [0, 0, 0]
        self.seconds = 0.0


def _task_count() -> int:
    """Live trio tasks in this run (an idle engine should add none)."""
    root = trio.lowlevel.current_root_task()
    assert root is not None
    count = 0
    stack = [root]
    while stack:
        task = stack.pop()
        count += 1
        for nursery in task.child_nurseries:
            stack.extend(nursery.child_tasks)
    return count


async def _baseline_task(*, task_status: trio.TaskStatus[None]) -> None:
    async with trio.open_nursery():
        task_status.started()


def _preempted() -> int:
    """Involuntary context switches of this process so far (about 1 µs to read)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_nivcsw


async def _timed_rounds(
    core: Core, ids: Iterator[str], work: Workload, watch: _GcWatch
) -> dict[str, Any]:
    """`work.samples` engine creations and as many baseline starts, interleaved.

    Each sample also records whether the OS preempted the process around it
    (read outside the timed interval), so that percentiles over the samples
    that ran undisturbed can be given next to those over all samples.
    """
    clock = time.perf_counter_ns
    create = core.factory.create_for_user
    histogram = core.factory.create_seconds
    engine_ns: list[int] = []
    engine_quiet: list[bool] = []
    baseline_ns: list[int] = []
    baseline_quiet: list[bool] = []
    block = work.samples // work.rounds
    spawn_sum, spawn_count = histogram.sum, histogram.count
    watch.reset()
    switches = _preempted()
    cpu, wall = time.process_time(), time.perf_counter()
    for r in range(work.rounds):
        n = block if r < work.rounds - 1 else work.samples - block * (work.rounds - 1)
        async with trio.open_nursery() as nursery:
            start = nursery.start
            watch.armed = True
            for _ in range(n):
                before = _preempted()
                began = clock()
                await start(_baseline_task)
                baseline_ns.append(clock() - began)
                baseline_quiet.append(_preempted() == before)
            watch.armed = False
        contexts = [UserContext(user_id=next(ids)) for _ in range(n)]
        watch.armed = True
        for ctx in contexts:
            before = _preempted()
            began = clock()
            await create(ctx)
            engine_ns.append(clock() - began)
            engine_quiet.append(_preempted() == before)
        watch.armed = False
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    switches = _preempted() - switches
    spawned = histogram.count - spawn_count

    def quiet(samples: list[int], flags: list[bool]) -> dict[str, Any]:
        kept = [ns for ns, ok in zip(samples, flags, strict=True) if ok]
        return {"samples": len(kept), **(_latency(kept) if kept else {})}

    return {
        # How much of the wall time this process had the CPU while timing, and
        # how often the OS took it away: a busy machine shows in p99 and max.
        "cpu_share": round(cpu / wall, 3),
        "preemptions": switches,
        "engine": _latency(engine_ns),
        "baseline": _latency(baseline_ns),
        "engine_not_preempted": quiet(engine_ns, engine_quiet),
        "baseline_not_preempted": quiet(baseline_ns, baseline_quiet),
        # The factory's own histogram: supervisor.spawn only, inside the ask.
        "spawn_mean_ms": round((histogram.sum - spawn_sum) / spawned * 1e3, 4)
        if spawned
        else math.nan,
        "gc_collections": list(watch.counts),
        "gc_ms": round(watch.seconds * 1e3, 2),
    }


def run_latency(work: Workload, grace: GraceCounter) -> dict[str, Any]:
    """Fill to each size, time creations there; RSS per engine at the largest."""
    sizes = work.sizes
    watch = _GcWatch()
    gc.callbacks.append(watch)

    async def main() -> dict[str, Any]:
        ids = user_ids("user")
        max_engines = sizes[-1] + work.samples * len(sizes) + WARM_UP + 1
        per_size: dict[str, Any] = {}
        memory: dict[str, Any] = {}
        async with open_core(core_config(max_engines)) as core:
            await fill(core, ids, WARM_UP, "warm-up")
            async with trio.open_nursery() as nursery:
                for _ in range(WARM_UP):
                    await nursery.start(_baseline_task)
            await settle()
            rss_before = rss()
            live_before = core.factory.metrics().engines_active
            for size in sizes:
                fill_seconds = await fill(core, ids, size, f"filling to {size:,}")
                await settle()
                live = core.factory.metrics().engines_active
                if size == sizes[-1]:
                    rss_after = rss()
                    added = live - live_before
                    memory = {
                        "engines": live,
                        "rss_before_bytes": rss_before,
                        "rss_after_bytes": rss_after,
                        "bytes_per_engine": (
                            round((rss_after - rss_before) / added, 1) if added > 0 else math.nan
                        ),
                    }
                states_before = engine_states(core)
                tasks = _task_count()
                _report.progress(f"timing {work.samples:,} creations at {live:,} live engines")
                timed = await _timed_rounds(core, ids, work, watch)
                await settle()
                states_after = engine_states(core)
                live_after = core.factory.metrics().engines_active
                per_size[str(size)] = {
                    "live_engines": live,
                    "live_engines_after": live_after,
                    "fill_seconds": round(fill_seconds, 2),
                    "not_dormant_before": live - states_before.get("dormant", 0),
                    "not_dormant_after": live_after - states_after.get("dormant", 0),
                    "engine_states_after": states_after,
                    "trio_tasks": tasks,
                    **timed,
                }
                engine, base = timed["engine"], timed["baseline"]
                _report.progress(
                    f"  {size:,}: create p50 {engine['p50_ms']:.3f} ms, "
                    f"p99 {engine['p99_ms']:.3f} ms; baseline p50 {base['p50_ms']:.3f} ms; "
                    f"not dormant {per_size[str(size)]['not_dormant_after']}"
                )
            engines_at_close = core.factory.metrics().engines_active
            _report.progress(f"closing the core with {engines_at_close:,} engines")
            grace.count = 0
            closing = time.perf_counter()
        teardown = time.perf_counter() - closing
        _report.progress(f"closed in {teardown:.1f} s")
        return {
            "per_size": per_size,
            "memory": memory,
            "teardown": {
                "engines": engines_at_close,
                "seconds": round(teardown, 2),
                "cancelled_after_grace": grace.count,
            },
        }

    try:
        return trio.run(main)
    finally:
        gc.callbacks.remove(watch)
