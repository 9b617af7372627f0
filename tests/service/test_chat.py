"""`greenroom chat` without sockets: how typed lines become input, and how
server messages are shown to a person."""

from __future__ import annotations

import json

import pytest

from actors._chat import parse_input, render


@pytest.mark.parametrize(
    ("agent", "text", "expected"),
    [
        ("echo", "hello", "hello"),
        ("echo", '{"a": 1}', {"a": 1}),
        ("echo", "[1, 2]", [1, 2]),
        ("echo", "42", 42),
        ("sleep", '{"seconds": 1, "steps": 2}', {"seconds": 1, "steps": 2}),
        ("calc", "2+3*4", {"expression": "2+3*4"}),
        ("calc", "7", {"expression": "7"}),
        ("calc", '{"expression": "1+1"}', {"expression": "1+1"}),
    ],
)
def test_a_typed_line_becomes_json_if_it_parses_and_calc_input_an_expression(
    agent: str, text: str, expected: object
) -> None:
    assert parse_input(agent, text) == expected


def _event(kind: str, seq: int, **data: object) -> dict[str, object]:
    return {"type": kind, "seq": seq, "user_id": "u", "run_id": "r", "ts": 1.0, "data": data}


def test_each_event_type_renders_as_one_readable_line_with_its_seq() -> None:
    lines = [
        render(_event("agent_started", 1, agent="calc", input={"expression": "2+3*4"})),
        render(_event("agent_thinking", 2, text="evaluating 2+3*4")),
        render(_event("tool_executing", 3, tool="calculate", call_id="c1", args={"x": 1})),
        render(_event("tool_completed", 4, tool="calculate", ok=True, result=14, duration_ms=0.1)),
        render(_event("agent_completed", 5, output=14, duration_ms=0.2)),
    ]

    assert all("\n" not in line for line in lines)
    assert lines[0].startswith("[1]") and "calc" in lines[0] and "2+3*4" in lines[0]
    assert lines[1].startswith("[2]") and "evaluating 2+3*4" in lines[1]
    assert lines[2].startswith("[3]") and "calculate" in lines[2] and '{"x": 1}' in lines[2]
    assert lines[3].startswith("[4]") and "14" in lines[3] and "0.1 ms" in lines[3]
    assert lines[4].startswith("[5]") and "completed" in lines[4] and "14" in lines[4]


def test_a_failed_tool_and_an_agent_error_show_what_went_wrong() -> None:
    tool = render(
        _event("tool_completed", 4, tool="calculate", ok=False, error="ZeroDivisionError: x")
    )
    error = render(_event("agent_error", 5, reason="cancelled", detail="cancelled by the user"))

    assert "ZeroDivisionError: x" in tool
    assert error.startswith("[5]") and "cancelled: cancelled by the user" in error


def test_errors_gaps_and_pongs_render_readably() -> None:
    assert render({"type": "error", "code": "unknown_agent", "detail": "no agent"}) == (
        "error [unknown_agent]: no agent"
    )
    assert "3..7" in render({"type": "gap", "from": 3, "to": 7})
    assert render({"type": "pong"}) == "pong"


def test_long_values_are_shortened_and_unknown_messages_shown_as_json() -> None:
    line = render(_event("agent_completed", 9, output="x" * 1000, duration_ms=1))
    unknown = {"type": "something_new", "value": 1}

    assert len(line) < 200 and "…" in line
    assert json.loads(render(unknown)) == unknown
