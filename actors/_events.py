"""The events a user's stream carries, and the notices beside them."""

from __future__ import annotations

import json
import math
from json.encoder import encode_basestring_ascii
from typing import Any, Final

import attrs

from ._json import Encoder

AGENT_STARTED: Final = "agent_started"
AGENT_THINKING: Final = "agent_thinking"
TOOL_EXECUTING: Final = "tool_executing"
TOOL_COMPLETED: Final = "tool_completed"
AGENT_COMPLETED: Final = "agent_completed"
AGENT_ERROR: Final = "agent_error"

EVENT_TYPES: Final = (
    AGENT_STARTED,
    AGENT_THINKING,
    TOOL_EXECUTING,
    TOOL_COMPLETED,
    AGENT_COMPLETED,
    AGENT_ERROR,
)
TERMINAL_TYPES: Final = frozenset({AGENT_COMPLETED, AGENT_ERROR})

#: Why a run ended with `agent_error`.
ERROR_REASONS: Final = ("exception", "timeout", "cancelled", "rejected", "shutdown")


#: Strict: it raises rather than write `NaN` or `Infinity`, which are not JSON.
_ENCODER: Final = Encoder(repr, allow_nan=False)
_dumps: Final = _ENCODER.encode


#: How the encoder writes a str (ASCII, escaped).
_string: Final = encode_basestring_ascii
_FINITE: Final = float("inf")


@attrs.frozen(kw_only=True)
class Event:
    """One numbered event of a user's stream. `seq` is per user, from 1, gapless."""

    type: str
    seq: int
    user_id: str
    run_id: str
    ts: float
    data: dict[str, Any]
    #: The wire form, once made: every subscriber's write, and the replay
    #: window, share one encoding.
    _wire: str | None = attrs.field(default=None, init=False, eq=False, repr=False)

    @classmethod
    def from_json(cls, wire: str) -> Event:
        """The event `wire` (from `to_json`) stands for; its `data` is what
        the JSON says (JSON's types, `repr`s where the original had none)."""
        fields = json.loads(wire)
        event = cls(
            type=fields["type"],
            seq=fields["seq"],
            user_id=fields["user_id"],
            run_id=fields["run_id"],
            ts=fields["ts"],
            data=fields["data"],
        )
        object.__setattr__(event, "_wire", wire)
        return event

    @property
    def terminal(self) -> bool:
        return self.type in TERMINAL_TYPES

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "seq": self.seq,
            "user_id": self.user_id,
            "run_id": self.run_id,
            "ts": self.ts,
            "data": self.data,
        }

    def to_json(self) -> str:
        """The wire form: a JSON object. A value JSON has no form for is
        repr'd, a float that is not finite too (`"inf"`, `"nan"`); `data`
        that cannot be encoded at all (keys that are not strings, a cycle)
        becomes `{"unencodable": repr(data)}`. Never raises, and never
        writes what is not JSON. Made once: later calls return the same
        string."""
        wire = self._wire
        if wire is None:
            wire = self._encode()
            object.__setattr__(self, "_wire", wire)
        return wire

    def _encode(self) -> str:
        try:
            return self._encode_with(self.data)
        except ValueError:
            # A float JSON has no form for somewhere (or a cycle, which the
            # second try does not survive either).
            try:
                return self._encode_with(_finite(self.data))
            except Exception:
                pass
        except Exception:
            pass
        wire = self.to_dict()
        wire["data"] = {"unencodable": _safe_repr(self.data)}
        return _dumps(_finite(wire))

    def _encode_with(self, data: Any) -> str:
        ts = self.ts
        if (
            type(self.type) is str
            and type(self.seq) is int
            and type(self.user_id) is str
            and type(self.run_id) is str
            and type(ts) is float
            and -_FINITE < ts < _FINITE
        ):
            # The envelope by hand, exactly as the encoder would write it.
            return (
                f'{{"type":{_string(self.type)},"seq":{self.seq!r},'
                f'"user_id":{_string(self.user_id)},"run_id":{_string(self.run_id)},'
                f'"ts":{ts!r},"data":{_dumps(data)}}}'
            )
        wire = _finite(self.to_dict() | {"data": None})  # the envelope: ts may be inf
        wire["data"] = data
        return _dumps(wire)


_new = object.__new__
_set_type, _set_seq, _set_user_id, _set_run_id, _set_ts, _set_data, _set_wire = (
    Event.__dict__[name].__set__
    for name in ("type", "seq", "user_id", "run_id", "ts", "data", "_wire")
)


def numbered_event(
    type: str, seq: int, user_id: str, run_id: str, ts: float, data: dict[str, Any]
) -> Event:
    """`Event(type=type, ...)` with its wire form made at once: how the
    bridge makes one for every event. It fills the slots as the frozen
    class's `__init__` does, but without a call through `object.__setattr__`
    for each field, which made building the event cost twice as much."""
    event = _new(Event)
    _set_type(event, type)
    _set_seq(event, seq)
    _set_user_id(event, user_id)
    _set_run_id(event, run_id)
    _set_ts(event, ts)
    _set_data(event, data)
    _set_wire(event, event._encode())  # which reads every field but this one
    return event


def _finite(value: Any) -> Any:
    """`value` with every float that is not finite (a float subclass's too,
    and as a dict key) replaced by its repr as a float ("inf", "nan"),
    through dicts, lists and tuples (a cycle raises `RecursionError`)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(float(value))
    if isinstance(value, dict):
        return {_finite(key): _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


def _safe_repr(value: object) -> str:
    try:
        return repr(value)[:10_000]
    except Exception:
        return f"<{type(value).__name__}>"


@attrs.frozen
class Gap:
    """Events `start`..`end` (inclusive) are no longer held: a resume cannot
    replay them. Sent before the replay, never silently skipped."""

    start: int
    end: int

    def to_dict(self) -> dict[str, Any]:
        return {"type": "gap", "from": self.start, "to": self.end}

    def to_json(self) -> str:
        return _dumps(self.to_dict())
