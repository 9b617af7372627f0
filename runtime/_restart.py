"""The restart policy, without I/O: restart types, intensity, child specs."""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable
from typing import Any

import attrs

from ._actor import Actor


class RestartType(enum.Enum):
    """When a supervisor restarts a child (OTP's restart types).

    `PERMANENT`: after a crash and after a normal exit (`Actor.stop()`).
    `TRANSIENT`: after a crash only. `TEMPORARY`: never.
    A child stopped from outside (`ActorRef.stop()`, shutdown) is never restarted.
    """

    PERMANENT = "permanent"
    TRANSIENT = "transient"
    TEMPORARY = "temporary"


def _non_negative_int(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{attribute.name} must be a whole number >= 0, got {value!r}")


def _positive_number(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not isinstance(value, int | float) or isinstance(value, bool) or not value > 0:
        raise ValueError(f"{attribute.name} must be a number > 0, got {value!r}")


@attrs.frozen(kw_only=True)
class RestartIntensity:
    """At most `max_restarts` restarts within any `window` seconds; one more escalates."""

    max_restarts: int = attrs.field(default=3, validator=_non_negative_int)
    window: float = attrs.field(default=5.0, validator=_positive_number)


@attrs.define(eq=False)
class RestartBook:
    """The restart-intensity rule, without I/O: may one more restart happen now?"""

    intensity: RestartIntensity
    _times: deque[float] = attrs.Factory(deque)

    def allow(self, now: float) -> bool:
        """Record a restart at `now`; False when that exceeds the intensity."""
        times = self._times
        times.append(now)
        while times and times[0] <= now - self.intensity.window:
            times.popleft()
        return len(times) <= self.intensity.max_restarts

    def reset(self) -> None:
        self._times.clear()


def check_restart(value: object) -> None:
    """Raise `TypeError` unless `value` is a `RestartType`."""
    if not isinstance(value, RestartType):
        raise TypeError(f"restart must be a RestartType, got {value!r}")


def _restart_type(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    check_restart(value)


@attrs.frozen(kw_only=True)
class ChildSpec:
    """How a supervisor makes, restarts and stops one child."""

    factory: Callable[[], Actor[Any]] = attrs.field(validator=attrs.validators.is_callable())
    restart: RestartType = attrs.field(default=RestartType.PERMANENT, validator=_restart_type)
    grace: float = attrs.field(default=5.0, validator=_positive_number)


class _Verdict(enum.Enum):
    RESTART = enum.auto()
    STOP = enum.auto()
    ESCALATE = enum.auto()
