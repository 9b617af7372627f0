"""The core's Prometheus collector: reads the books at scrape time."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from ._events import EVENT_TYPES
from ._stats import Histogram
from ._streams import DROP_REASONS

if TYPE_CHECKING:
    from ._core import Core


def _histogram(name: str, doc: str, histogram: Histogram) -> HistogramMetricFamily:
    return HistogramMetricFamily(name, doc, buckets=histogram.cumulative(), sum_value=histogram.sum)


class CoreCollector(Collector):
    """greenroom_engines_*, runs_*, events_* and connections_active."""

    def __init__(self, core: Core, *, namespace: str = "greenroom") -> None:
        self._core = core
        self._ns = namespace

    def describe(self) -> list[Metric]:
        """The families, so a registry refuses a second collector of the same names."""
        return list(self.collect())

    def collect(self) -> Iterator[Metric]:
        ns, core = self._ns, self._core
        factory = core.factory.metrics()
        yield GaugeMetricFamily(f"{ns}_engines_active", "Engines alive.", factory.engines_active)
        yield CounterMetricFamily(
            f"{ns}_engines_created", "Engines created.", factory.engines_created_total
        )
        reaped = CounterMetricFamily(
            f"{ns}_engines_reaped", "Engines stopped, by reason.", labels=["reason"]
        )
        for reason in ("idle", "lru", "cleanup", "crash", "shutdown"):
            reaped.add_metric([reason], factory.engines_reaped_total.get(reason, 0))
        yield reaped
        yield _histogram(
            f"{ns}_engine_create_seconds",
            "From the factory's decision to create to the engine being ready.",
            core.factory.create_seconds,
        )

        runs = core.run_books
        yield GaugeMetricFamily(f"{ns}_runs_active", "Runs running now.", runs.active)
        totals = CounterMetricFamily(
            f"{ns}_runs", "Runs ended, by agent and outcome.", labels=["agent", "outcome"]
        )
        for (agent, outcome), count in sorted(runs.outcomes.items()):
            totals.add_metric([agent, outcome], count)
        yield totals
        yield _histogram(f"{ns}_run_seconds", "Run durations once started.", runs.seconds)

        streams = core.stream_books
        events = CounterMetricFamily(f"{ns}_events", "Events numbered, by type.", labels=["type"])
        for kind in EVENT_TYPES:
            events.add_metric([kind], streams.events_by_type.get(kind, 0))
        yield events
        dropped = CounterMetricFamily(
            f"{ns}_events_dropped",
            "Events not delivered, by reason: run_not_open, an event of a run not open "
            "(never numbered); subscriber_overflow, once for each subscription ended for "
            "falling behind (its events stay in the replay window, for a resume).",
            labels=["reason"],
        )
        for reason in sorted({*DROP_REASONS, *streams.dropped_by_reason}):
            dropped.add_metric([reason], streams.dropped_by_reason.get(reason, 0))
        yield dropped
        yield _histogram(
            f"{ns}_event_delivery_seconds",
            "From an event's emission to its write to a socket.",
            core.delivery_seconds,
        )
        users, held = streams.replay_held
        yield GaugeMetricFamily(f"{ns}_replay_users", "Users whose replay window is held.", users)
        yield GaugeMetricFamily(f"{ns}_replay_events", "Events held in replay windows.", held)
        yield GaugeMetricFamily(
            f"{ns}_retired_streams",
            "Quiet users whose stream is retired but whose last seq is remembered.",
            streams.retired,
        )
        yield GaugeMetricFamily(
            f"{ns}_connections_active",
            "Live subscriptions (one per connection).",
            streams.subscriber_count,
        )
