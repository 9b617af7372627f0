"""Idle engine memory by tracemalloc, and a parked trio task to compare it with.

RSS is what an engine costs the machine but says nothing of where the bytes
go; tracemalloc does, at the price of slowing everything down, so it gets a
smaller fill of its own in a fresh core and the largest allocation sites are
listed. The comparison is a trio task parked on its own memory channel, what
a live task waiting for messages costs at least: measured by tracemalloc in
this process, and by RSS in a fresh child process (`python -m bench.factory
--parked-rss-child N`), where no memory freed by the engine runs can be reused
and hide the cost.
"""

from __future__ import annotations

import json
import linecache
import os
import subprocess
import sys
import tracemalloc
from pathlib import Path
from typing import Any

import trio

from actors import open_core

from . import _report
from ._factory_core import (
    WARM_UP,
    GraceCounter,
    core_config,
    engine_states,
    fill,
    rss,
    settle,
    user_ids,
)

#: How many allocation sites the tracemalloc breakdown lists.
TOP_SITES = 20
#: The repository root: the child process runs there, and sites are shown relative to it.
ROOT = Path(__file__).resolve().parent.parent

_IGNORE = (
    tracemalloc.Filter(False, tracemalloc.__file__),
    tracemalloc.Filter(False, linecache.__file__),
)


def _site(frame: tracemalloc.Frame) -> str:
    path = Path(frame.filename)
    parts = path.parts
    if "site-packages" in parts:
        shown = "/".join(parts[parts.index("site-packages") + 1 :])
    elif path.is_relative_to(ROOT):
        shown = str(path.relative_to(ROOT))
    else:
        shown = frame.filename
    return f"{shown}:{frame.lineno}"


def _breakdown(before: tracemalloc.Snapshot, after: tracemalloc.Snapshot, n: int) -> dict[str, Any]:
    stats = after.filter_traces(_IGNORE).compare_to(before.filter_traces(_IGNORE), "lineno")
    total = sum(stat.size_diff for stat in stats)
    sites = []
    for stat in stats[:TOP_SITES]:
        frame = stat.traceback[0]
        sites.append(
            {
                "site": _site(frame),
                "code": linecache.getline(frame.filename, frame.lineno).strip(),
                "bytes_per_item": round(stat.size_diff / n, 1),
                "objects_per_item": round(stat.count_diff / n, 2),
            }
        )
    rest = total - sum(stat.size_diff for stat in stats[:TOP_SITES])
    return {"bytes_per_item": total / n, "sites": sites, "rest_bytes_per_item": rest / n}


def run_tracemalloc_engines(n: int, grace: GraceCounter) -> dict[str, Any]:
    """Fill a fresh core with `n` engines under tracemalloc."""

    async def main() -> dict[str, Any]:
        ids = user_ids("traced")
        async with open_core(core_config(n + WARM_UP + 1)) as core:
            await fill(core, ids, WARM_UP, "tracemalloc warm-up")
            await settle()
            tracemalloc.start(1)
            try:
                before = tracemalloc.take_snapshot()
                await fill(core, ids, WARM_UP + n, "tracemalloc fill")
                await settle()
                after = tracemalloc.take_snapshot()
            finally:
                tracemalloc.stop()
            states = engine_states(core)
            live = core.factory.metrics().engines_active
            result = _breakdown(before, after, n)
            result["engines"] = n
            result["not_dormant"] = live - states.get("dormant", 0)
            del before, after
            _report.progress(
                f"tracemalloc: {result['bytes_per_item']:.0f} B per idle engine "
                f"({n:,} engines); closing"
            )
        return result

    return trio.run(main)


async def _parked(receive_channel: trio.MemoryReceiveChannel[Any]) -> None:
    await receive_channel.receive()


def _spawn_parked(nursery: trio.Nursery, n: int, senders: list[Any]) -> None:
    for _ in range(n):
        send_channel, receive_channel = trio.open_memory_channel[Any](0)
        senders.append(send_channel)
        nursery.start_soon(_parked, receive_channel)


def run_tracemalloc_parked(n: int) -> dict[str, Any]:
    """`n` trio tasks parked on their own memory channel, under tracemalloc."""

    async def main() -> dict[str, Any]:
        senders: list[Any] = []
        async with trio.open_nursery() as nursery:
            _spawn_parked(nursery, WARM_UP, senders)
            await settle()
            tracemalloc.start(1)
            try:
                before = tracemalloc.take_snapshot()
                _spawn_parked(nursery, n, senders)
                await settle()
                after = tracemalloc.take_snapshot()
            finally:
                tracemalloc.stop()
            result = _breakdown(before, after, n)
            result["tasks"] = n
            del before, after
            nursery.cancel_scope.cancel()
        return result

    return trio.run(main)


def parked_rss(n: int) -> dict[str, Any]:
    """RSS per parked task, in this (fresh) process. Run by `parked_rss_child`."""

    async def main() -> dict[str, Any]:
        senders: list[Any] = []
        async with trio.open_nursery() as nursery:
            _spawn_parked(nursery, WARM_UP, senders)
            await settle()
            before = rss()
            _spawn_parked(nursery, n, senders)
            await settle()
            after = rss()
            nursery.cancel_scope.cancel()
        return {"tasks": n, "bytes_per_task": (after - before) / n}

    return trio.run(main)


def parked_rss_child(n: int) -> dict[str, Any]:
    """Measure `parked_rss(n)` in a fresh interpreter, so no freed memory is reused."""
    command = [sys.executable, "-m", "bench.factory", "--parked-rss-child", str(n)]
    done = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, check=True, env=os.environ.copy()
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result
