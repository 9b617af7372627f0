"""`greenroom chat` without sockets: how typed lines become input, how
server messages are shown to a person, and what a session waits for
(`ChatBook`). The command itself, against a real server: test_chat_command.py."""

from __future__ import annotations

import json
import re

import pytest

from actors._chat import ChatBook, check_url, parse_input, render


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


def _event(kind: str, seq: int, run_id: str = "r", **data: object) -> dict[str, object]:
    return {"type": kind, "seq": seq, "user_id": "u", "run_id": run_id, "ts": 1.0, "data": data}


PONG = {"type": "pong"}


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


def test_with_run_ids_each_event_line_names_its_run_after_the_seq() -> None:
    line = render(_event("agent_thinking", 7, run_id="3f2a9c1b", text="step 1"), run_ids=True)

    assert line == "[7] 3f2a9c1b … step 1"


def test_a_one_shot_session_shows_only_its_own_run_and_settles_at_its_end_and_pong() -> None:
    book = ChatBook(only_own=True)
    book.asked("mine")

    shown = [
        book.receive(_event("agent_started", 1, run_id="other", agent="sleep", input=None)),
        book.receive(_event("agent_started", 2, run_id="mine", agent="echo", input="hi")),
        book.receive(_event("agent_completed", 3, run_id="other", output=1, duration_ms=1)),
    ]
    assert not book.settled  # the other run's end is not this one's
    shown.append(book.receive(_event("agent_completed", 4, run_id="mine", output="hi")))
    assert not book.settled  # its request's pong has not come
    shown.append(book.receive(PONG))

    assert book.settled and book.exit_status == 0
    assert shown[0] is None and shown[2] is None and shown[4] is None
    assert shown[1] is not None and shown[1].startswith("[2]")
    assert shown[3] is not None and shown[3].startswith("[4]")


def test_an_error_before_a_requests_pong_is_that_request_s_and_fails_the_session() -> None:
    book = ChatBook()
    book.asked("first")
    book.asked("second")
    book.receive(PONG)  # the first was taken
    line = book.receive({"type": "error", "code": "unknown_agent", "detail": "no agent 'x'"})
    book.receive(PONG)

    assert line == "error [unknown_agent]: no agent 'x'"
    assert not book.settled  # the first run is still going; the second never started
    book.receive(_event("agent_completed", 2, run_id="first", output=None))
    assert book.settled and book.exit_status == 1


def test_a_run_ending_in_agent_error_fails_the_session_and_a_refused_cancel_too() -> None:
    ended = ChatBook()
    ended.asked("r")
    ended.receive(PONG)
    ended.receive(_event("agent_error", 1, run_id="r", reason="cancelled", detail="by you"))
    refused = ChatBook()
    refused.asked()  # a cancel
    refused.receive({"type": "error", "code": "unknown_run", "detail": "no run"})
    refused.receive(PONG)

    assert ended.settled and ended.exit_status == 1
    assert refused.settled and refused.exit_status == 1


def test_a_pong_nobody_fenced_with_is_shown() -> None:
    assert ChatBook().receive(PONG) == "pong"


@pytest.mark.parametrize(
    "url", ["ws://127.0.0.1:8765/ws", "wss://chat.example/ws?x=1", "ws://[::1]:8765/ws"]
)
def test_a_websocket_url_is_accepted(url: str) -> None:
    assert check_url(url) == url


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("notaurl", "is not a ws:// or wss:// URL"),
        ("http://127.0.0.1:8765/ws", "is not a ws:// or wss:// URL"),
        ("ws://h:99999/ws", "has no valid port"),
        ("ws://::1:8765/ws", "write an IPv6 host in []"),
        ("ws://:8765/ws", "names no host"),
    ],
)
def test_a_url_chat_cannot_use_is_refused_saying_why(url: str, problem: str) -> None:
    with pytest.raises(ValueError, match=re.escape(problem)):
        check_url(url)
