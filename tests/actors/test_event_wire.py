"""`Event.to_json`: the wire form is exactly what a JSON encoder writes, and
always JSON: a float that is not finite is written as its repr."""

from __future__ import annotations

import json
import math
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors import Event
from actors._events import numbered_event

#: How the wire form was defined before it was written out by hand.
_REFERENCE = json.JSONEncoder(separators=(",", ":"), default=repr, allow_nan=False)


def _as_json_has_it(value: Any) -> Any:
    """`value` with each float JSON has no form for (inf, -inf, nan) as its repr."""
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, dict):
        return {key: _as_json_has_it(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_as_json_has_it(item) for item in value]
    return value


def _strict_loads(text: str) -> Any:
    def refuse(name: str) -> None:
        raise ValueError(f"{name} is not JSON")

    return json.loads(text, parse_constant=refuse)


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=8,
)


@given(
    type=st.text(),
    seq=st.integers(min_value=0),
    user_id=st.text(),
    run_id=st.text(),
    ts=st.floats(),
    data=st.dictionaries(st.text(), _json_values, max_size=4),
)
def test_the_wire_form_is_what_the_json_encoder_writes(
    type: str, seq: int, user_id: str, run_id: str, ts: float, data: dict[str, Any]
) -> None:
    event = Event(type=type, seq=seq, user_id=user_id, run_id=run_id, ts=ts, data=data)

    assert event.to_json() == _REFERENCE.encode(_as_json_has_it(event.to_dict()))
    _strict_loads(event.to_json())


@given(
    type=st.text(),
    seq=st.integers(min_value=0),
    user_id=st.text(),
    run_id=st.text(),
    ts=st.floats(allow_nan=False),  # NaN is unequal to itself, so to its event too
    data=st.dictionaries(st.text(), _json_values | st.sets(st.integers()), max_size=4),
)
def test_the_bridges_events_are_the_events_the_class_builds(
    type: str, seq: int, user_id: str, run_id: str, ts: float, data: dict[str, Any]
) -> None:
    built = Event(type=type, seq=seq, user_id=user_id, run_id=run_id, ts=ts, data=data)

    numbered = numbered_event(type, seq, user_id, run_id, ts, data)

    assert numbered == built
    assert repr(numbered) == repr(built)
    assert numbered.to_json() == built.to_json()
    assert numbered.to_json() is numbered.to_json()  # made once


def test_the_bridges_event_with_a_ts_that_is_not_a_number_has_the_same_wire_form() -> None:
    data = {"x": math.nan}
    built = Event(type="t", seq=1, user_id="u", run_id="r", ts=math.nan, data=data)

    numbered = numbered_event("t", 1, "u", "r", math.nan, data)

    assert numbered.to_json() == built.to_json()
    assert repr(numbered) == repr(built)


def test_an_event_the_bridge_builds_is_as_frozen_as_any() -> None:
    event = numbered_event("agent_thinking", 1, "u", "r", 1.0, {})

    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        event.seq = 2  # type: ignore[misc]


@given(ts=st.one_of(st.integers(), st.booleans(), st.none()), seq=st.booleans())
def test_fields_of_unexpected_types_are_still_encoded_as_json_would(ts: Any, seq: Any) -> None:
    event = Event(type="agent_thinking", seq=seq, user_id="u", run_id="r", ts=ts, data={})

    assert event.to_json() == _REFERENCE.encode(event.to_dict())


def test_floats_json_has_no_form_for_are_written_as_their_repr_wherever_they_are() -> None:
    data = {"output": math.inf, "steps": [1.5, -math.inf, (math.nan, 2)], "deep": {"x": math.nan}}
    event = Event(type="agent_completed", seq=1, user_id="u", run_id="r", ts=1.0, data=data)

    wire = _strict_loads(event.to_json())

    assert wire["data"] == {
        "output": "inf",
        "steps": [1.5, "-inf", ["nan", 2]],
        "deep": {"x": "nan"},
    }


class Float(float):
    """A float of another type, as numpy's float64 is."""


def test_a_float_subclass_or_a_dict_key_that_is_not_finite_is_written_as_its_repr_too() -> None:
    data = {"output": Float("inf"), "keys": {math.nan: 1}}
    event = Event(
        type="agent_completed", seq=1, user_id="u", run_id="r", ts=Float("nan"), data=data
    )

    wire = _strict_loads(event.to_json())

    assert wire["ts"] == "nan"
    assert wire["data"] == {"output": "inf", "keys": {"nan": 1}}
