"""What the factory benchmark's measurements share: a core kept full of idle engines.

Both the latency run and the tracemalloc run fill an `open_core(...)` with
engines for new users, wait until every engine has gone dormant, and then
check that they did; the configuration keeps them from being reaped
meanwhile. The kernel's "did not stop within grace" warnings, up to one per
engine when a full core shuts down, are counted by `GraceCounter` and kept
off stderr.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Iterator

import attrs
import psutil  # type: ignore[import-untyped]
import trio.testing

from actors import Core, CoreConfig, UserContext

from . import _report

#: Engines (and baseline starts) made before measuring anything, not timed.
WARM_UP = 200


@attrs.frozen(kw_only=True)
class Workload:
    """What one run does: the sizes timed at, and how the samples are taken."""

    sizes: tuple[int, ...]
    samples: int  # timed creations (and as many baseline starts) per size
    rounds: int  # interleaved baseline/engine blocks the samples are split into
    tracemalloc_engines: int


def rss() -> int:
    """This process's resident set size, in bytes."""
    return int(psutil.Process().memory_info().rss)


class GraceCounter(logging.Filter):
    """Counts (and hides) the kernel's "did not stop within grace" warnings:
    at 100 000 engines there is one per engine cancelled on shutdown."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if "did not stop within" in str(record.msg):
            self.count += 1
            return False
        return True


def user_ids(prefix: str) -> Iterator[str]:
    n = 0
    while True:
        n += 1
        yield f"{prefix}-{n:07d}"


def engine_states(core: Core) -> dict[str, int]:
    """State -> count over every live engine actor, from its statistics."""
    states: dict[str, int] = {}
    books = core.system.books.kinds.get("engine")
    for cell in list(books.live) if books is not None else ():
        state = cell.statistics().state
        states[state] = states.get(state, 0) + 1
    return states


async def settle() -> None:
    await trio.testing.wait_all_tasks_blocked()
    gc.collect()
    await trio.testing.wait_all_tasks_blocked()


def core_config(max_engines: int) -> CoreConfig:
    return CoreConfig(max_engines=max_engines, idle_timeout=1e9)


async def fill(core: Core, ids: Iterator[str], target: int, label: str) -> float:
    """Create engines for new users until `target` are live; returns seconds taken."""
    create = core.factory.create_for_user
    have = core.factory.metrics().engines_active
    began = last = time.perf_counter()
    start = have
    while have < target:
        await create(UserContext(user_id=next(ids)))
        have += 1
        now = time.perf_counter()
        if now - last >= 2.0:
            last = now
            each = (now - began) / (have - start) * 1e6
            _report.progress(f"{label}: {have:,} / {target:,} engines ({each:.0f} µs each)")
    elapsed = time.perf_counter() - began
    if have > start:
        each = elapsed / (have - start) * 1e6
        _report.progress(f"{label}: {have:,} engines live ({elapsed:.1f} s, {each:.0f} µs each)")
    return elapsed
