"""`actors._json.Encoder` writes exactly what `json.JSONEncoder` writes."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors._json import Encoder

_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text() | st.sets(st.integers()),
    lambda children: (
        st.lists(children, max_size=3)
        | st.tuples(children, children)
        | st.dictionaries(st.text(max_size=5) | st.integers() | st.floats(), children, max_size=3)
    ),
    max_leaves=10,
)


def _reference(value: Any, default: Any, allow_nan: bool) -> str | type[Exception]:
    encoder = json.JSONEncoder(separators=(",", ":"), default=default, allow_nan=allow_nan)
    try:
        return encoder.encode(value)
    except ValueError:
        return ValueError


@given(value=_values, allow_nan=st.booleans())
def test_it_writes_what_the_standard_encoder_writes(value: Any, allow_nan: bool) -> None:
    encoder = Encoder(repr, allow_nan=allow_nan)
    expected = _reference(value, repr, allow_nan)

    if expected is ValueError:
        with pytest.raises(ValueError):
            encoder.encode(value)
    else:
        assert encoder.encode(value) == expected
    assert encoder.encode({"after": [1]}) == '{"after":[1]}'  # whatever came before


def test_after_a_failure_the_same_value_encodes_once_it_can() -> None:
    encoder = Encoder(repr, allow_nan=False)
    value: list[Any] = [1, {"x": math.nan}]

    with pytest.raises(ValueError, match="not JSON compliant"):
        encoder.encode(value)
    value[1] = {"x": 2}

    assert encoder.encode(value) == '[1,{"x":2}]'
    assert not encoder._markers  # the failure left nothing that slows later calls


def test_a_cycle_is_refused_and_leaves_nothing_behind() -> None:
    encoder = Encoder(repr)
    cycle: list[Any] = []
    cycle.append(cycle)

    with pytest.raises(ValueError, match="Circular reference"):
        encoder.encode({"a": cycle})

    assert encoder.encode({"a": [cycle[:0]]}) == '{"a":[[]]}'
    assert not encoder._markers


class Reading:
    def __init__(self, value: float) -> None:
        self.value = value


def test_a_default_that_uses_the_same_encoder_and_fails_spoils_nothing() -> None:
    encoder: Encoder

    def default(reading: Reading) -> str:
        try:
            return encoder.encode({"value": reading.value})
        except ValueError:
            return "unreadable"

    encoder = Encoder(default, allow_nan=False)

    text = encoder.encode({"readings": [Reading(1.5), Reading(math.nan)]})

    assert json.loads(text) == {"readings": ['{"value":1.5}', "unreadable"]}
    assert encoder.encode([1]) == "[1]"


def test_without_the_accelerator_it_writes_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("actors._json._make_c_encoder", None)
    encoder = Encoder(repr, allow_nan=False)
    value = {"a": [1.5, "é", None], "b": {1, 2}}

    assert encoder.encode(value) == _reference(value, repr, False)
    with pytest.raises(ValueError):
        encoder.encode([math.inf])


_real_accelerator = json.encoder.c_make_encoder  # type: ignore[attr-defined]


def _refuses(*args: Any) -> Any:
    raise TypeError("c_make_encoder() takes 10 arguments")


def _writes_otherwise(*args: Any) -> Any:
    return lambda value, level: ["{}"]


def _ignores_allow_nan(*args: Any) -> Any:
    return _real_accelerator(*args[:-1], True)


@pytest.mark.parametrize("accelerator", [_refuses, _writes_otherwise, _ignores_allow_nan])
def test_an_accelerator_that_is_not_what_it_was_is_not_used(
    accelerator: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # `json.encoder.c_make_encoder` is private: a later Python may change it.
    monkeypatch.setattr("actors._json._make_c_encoder", accelerator)
    encoder = Encoder(repr, allow_nan=False)

    assert encoder._c is None  # the standard encoder's way instead
    assert "encoding the slower way" in caplog.text
    assert encoder.encode({"a": [1, 2.5, None]}) == '{"a":[1,2.5,null]}'
    with pytest.raises(ValueError):
        encoder.encode([math.nan])


@pytest.mark.parametrize("allow_nan", [True, False])
def test_this_pythons_accelerator_is_used(allow_nan: bool) -> None:
    encoder = Encoder(repr, allow_nan=allow_nan)
    assert encoder._c is not None
    assert not encoder._markers  # the checks left nothing behind
