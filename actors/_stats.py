"""Plain counters the core keeps, and the snapshots read from them."""

from __future__ import annotations

import logging
from bisect import bisect_left
from collections import Counter
from time import time
from typing import Any

import attrs

from ._json import Encoder

#: Latency buckets in seconds, from 100 µs to 30 s.
LATENCY_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip
#: Run duration buckets in seconds, from 10 ms to 30 min.
RUN_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 1800.0)

_AUDIT_NAME = "greenroom.audit"
_audit = logging.getLogger(_AUDIT_NAME)


#: Built once (`json.dumps` with options builds an encoder per call).
_AUDIT_ENCODER = Encoder(str)


def audit(what: str, **fields: Any) -> None:
    """Write one audit record: a JSON object on one line, through logging.

    The record is handed to the logger directly: `Logger.info` would first
    walk the stack for the caller's file and line, which an audit record
    does not report and which cost a third of writing one.
    """
    if _audit.isEnabledFor(logging.INFO):
        fields = {"event": what, **fields}
        record = _audit.makeRecord(
            _AUDIT_NAME, logging.INFO, __file__, 0, _AUDIT_ENCODER.encode(fields), (), None
        )
        _audit.handle(record)


@attrs.define(eq=False, slots=True)
class Histogram:
    """A fixed-bucket histogram: `observe` is a bisect and two additions."""

    buckets: tuple[float, ...]
    counts: list[int] = attrs.field(init=False)
    sum: float = 0.0
    count: int = 0

    def __attrs_post_init__(self) -> None:
        self.counts = [0] * (len(self.buckets) + 1)

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.buckets, value)] += 1
        self.sum += value
        self.count += 1

    def observe_since(self, began: float) -> None:
        """Observe the seconds from `began` (a `time.time()`) to now, or 0
        if the clock went back. `observe`'s body again rather than a call
        to it: this runs once an event, and the call was a third of it."""
        value = time() - began
        if value < 0.0:
            value = 0.0
        self.counts[bisect_left(self.buckets, value)] += 1
        self.sum += value
        self.count += 1

    def cumulative(self) -> list[tuple[str, int]]:
        """(upper bound, observations at or below it), ending with "+Inf"."""
        running, out = 0, []
        for bound, n in zip((*map(str, self.buckets), "+Inf"), self.counts, strict=True):
            running += n
            out.append((bound, running))
        return out


@attrs.define(eq=False, slots=True)
class RunBooks:
    """Counts of runs across all engines; each engine reports ends here."""

    active: int = 0
    outcomes: Counter[tuple[str, str]] = attrs.Factory(Counter)
    seconds: Histogram = attrs.Factory(lambda: Histogram(RUN_BUCKETS))

    def started(self) -> None:
        self.active += 1

    def ended(self, agent: str, outcome: str, seconds: float | None) -> None:
        """A run ended; `seconds` is None for one that never started."""
        self.outcomes[agent, outcome] += 1
        if seconds is not None:
            self.active -= 1
            self.seconds.observe(seconds)
