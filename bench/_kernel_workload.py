"""What every kernel-benchmark measurement shares: its workload and its units.

A measurement is a function from a `Workload` (how much to do in one
repetition) to a `Result` (metric name -> value). The mailbox capacities are
here because both sides use them: the raw trio baselines size their channels
like the kernel's default mailbox, so the two are compared like for like.
"""

from __future__ import annotations

import attrs

from runtime import Actor

from . import _report

DEFAULT_CAPACITY = Actor.mailbox_capacity
#: Below `runtime.YIELD_EVERY`, so a run of sends fills the mailbox and waits.
SMALL_CAPACITY = 16


@attrs.frozen(kw_only=True)
class Workload:
    """How much each measurement does in one repetition."""

    hops: int  # messages per non-blocking hop and per kernel send run
    awaited_hops: int  # messages per awaited hop (about 20x slower per message)
    round_trips: int  # sequential request/reply round trips (throughput loop)
    latency_samples: int  # round trips timed one by one (latency loop)
    pykka_tells: int
    pykka_round_trips: int
    sleepers: int  # tasks sleeping at once, the busy timer load
    light_sleepers: int  # tasks sleeping at once, the light timer load
    sleeps_per_task: int
    sleep_period_s: float


FULL = Workload(
    hops=500_000,
    awaited_hops=100_000,
    round_trips=50_000,
    latency_samples=20_000,
    pykka_tells=100_000,
    pykka_round_trips=20_000,
    sleepers=1_000,
    light_sleepers=100,
    sleeps_per_task=20,
    sleep_period_s=0.02,
)
QUICK = Workload(
    hops=100_000,
    awaited_hops=25_000,
    round_trips=10_000,
    latency_samples=3_000,
    pykka_tells=25_000,
    pykka_round_trips=5_000,
    sleepers=300,
    light_sleepers=50,
    sleeps_per_task=10,
    sleep_period_s=0.02,
)
WARM_UP = Workload(
    hops=5_000,
    awaited_hops=1_000,
    round_trips=500,
    latency_samples=100,
    pykka_tells=500,
    pykka_round_trips=100,
    sleepers=50,
    light_sleepers=10,
    sleeps_per_task=3,
    sleep_period_s=0.005,
)

Result = dict[str, float]


def latency(samples_ns: list[int], prefix: str) -> Result:
    """p50 and p99 of round trips timed in nanoseconds, as `{prefix}_p50_us` etc."""
    return {
        f"{prefix}_p50_us": _report.percentile(samples_ns, 50) / 1000,
        f"{prefix}_p99_us": _report.percentile(samples_ns, 99) / 1000,
    }
