"""The core's configuration: keyword-only, validated where it is built."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import attrs

from ._errors import InvalidRequest


def _whole(minimum: int) -> Callable[[Any, attrs.Attribute[int], int], None]:
    def check(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise InvalidRequest(
                f"{attribute.name} must be a whole number >= {minimum}, got {value!r}"
            )

    return check


def _seconds(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise InvalidRequest(f"{attribute.name} must be a number of seconds > 0, got {value!r}")


def _seconds_or_zero(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < math.inf:
        raise InvalidRequest(f"{attribute.name} must be a number of seconds >= 0, got {value!r}")


def _flag(instance: object, attribute: attrs.Attribute[bool], value: bool) -> None:
    if not isinstance(value, bool):
        raise InvalidRequest(f"{attribute.name} must be True or False, got {value!r}")


@attrs.frozen(kw_only=True)
class CoreConfig:
    """Limits and timeouts of a core.

    `max_engines`: engines alive at once (at the limit the least recently
    active idle one is reaped, else new users are rejected).
    `max_runs_per_user` run at once per user; `max_queued_runs_per_user`
    more wait; beyond both a run is rejected. `run_timeout`: seconds a run
    may take once started. `idle_timeout`: seconds without inbound work after
    which an idle engine is reaped. `engine_linger`: seconds an engine with
    no run stays awake before it hibernates (0: at once), so that a user's
    next run soon after finds it awake. `replay_window`: events kept per user
    for resume; `replay_bytes`: at most that much of their wire form (fewer
    events if they are large, but always the newest), so that no user can
    hold more memory than that. `replay_retention`: seconds a user's replay window is kept
    once they have no connection, no open run and no new event (it is
    dropped between that and twice that; their seq carries on).
    `seq_retention`: seconds the last seq of such a retired stream is
    remembered, so that the user's seq carries on when they come back; it
    is forgotten between that and twice that (plus `replay_retention`), and
    a user back after that starts again at seq 1, as after a restart.
    `subscriber_queue`: events buffered per subscriber before it is dropped
    as too slow. `deliver_inline`: number and deliver an event in the task
    that emits it whenever the event bridge is idle, instead of in the
    bridge's next turn: under load, much lower latency (p99 about 1 ms
    against tens of ms in `bench.load`) for about a tenth more CPU per
    event.
    """

    max_engines: int = attrs.field(default=10_000, validator=_whole(1))
    max_runs_per_user: int = attrs.field(default=4, validator=_whole(1))
    max_queued_runs_per_user: int = attrs.field(default=16, validator=_whole(0))
    run_timeout: float = attrs.field(default=300.0, validator=_seconds)
    idle_timeout: float = attrs.field(default=300.0, validator=_seconds)
    engine_linger: float = attrs.field(default=10.0, validator=_seconds_or_zero)
    replay_window: int = attrs.field(default=1000, validator=_whole(1))
    replay_bytes: int = attrs.field(default=1 << 20, validator=_whole(1))
    replay_retention: float = attrs.field(default=600.0, validator=_seconds)
    seq_retention: float = attrs.field(default=86_400.0, validator=_seconds)
    subscriber_queue: int = attrs.field(default=1000, validator=_whole(1))
    deliver_inline: bool = attrs.field(default=False, validator=_flag)
