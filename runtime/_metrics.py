"""One Prometheus collector that reads actor statistics at scrape time."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ._stats import SystemStatistics


class ActorCollector(Collector):
    """Turns `ActorSystem.statistics()` into metrics, per actor kind.

    `<ns>_actors{kind}`, `<ns>_actor_mailbox_depth{kind}`,
    `<ns>_actor_messages_total{kind}`, `<ns>_actor_busy_seconds_total{kind}`,
    `<ns>_actor_restarts_total{kind}` and `<ns>_dead_letters_total`.
    Nothing is recorded per message: the numbers are read when scraped.
    """

    def __init__(self, statistics: Callable[[], SystemStatistics], *, namespace: str) -> None:
        self._statistics = statistics
        self._ns = namespace

    def describe(self) -> list[Metric]:
        """The families, so a registry refuses a second collector of the same names."""
        return list(self.collect())

    def collect(self) -> Iterator[Metric]:
        ns = self._ns
        stats = self._statistics()
        actors = GaugeMetricFamily(f"{ns}_actors", "Live actors.", labels=["kind"])
        depth = GaugeMetricFamily(
            f"{ns}_actor_mailbox_depth", "Messages waiting in mailboxes.", labels=["kind"]
        )
        messages = CounterMetricFamily(f"{ns}_actor_messages", "Messages handled.", labels=["kind"])
        busy = CounterMetricFamily(
            f"{ns}_actor_busy_seconds", "Time actors spent handling messages.", labels=["kind"]
        )
        restarts = CounterMetricFamily(
            f"{ns}_actor_restarts", "Actor restarts by their supervisors.", labels=["kind"]
        )
        for kind, k in stats.kinds.items():
            actors.add_metric([kind], k.actors)
            depth.add_metric([kind], k.mailbox_depth)
            messages.add_metric([kind], k.messages_handled)
            busy.add_metric([kind], k.busy_seconds)
            restarts.add_metric([kind], k.restarts)
        dead = CounterMetricFamily(
            f"{ns}_dead_letters", "Messages sent to actors that had stopped."
        )
        dead.add_metric([], stats.dead_letters)
        yield from (actors, depth, messages, busy, restarts, dead)
