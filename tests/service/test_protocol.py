"""parse_request: one text frame to a request, or an error with a stable code."""

from __future__ import annotations

import json

import pytest

from actors._protocol import (
    CancelRequest,
    PingRequest,
    ProtocolError,
    ResumeRequest,
    RunRequest,
    parse_request,
)


def test_a_run_request_carries_agent_input_and_optional_run_id() -> None:
    frame = {"type": "run", "agent": "calc", "input": {"expression": "1+1"}, "run_id": "r1"}

    assert parse_request(json.dumps(frame)) == RunRequest("calc", {"expression": "1+1"}, "r1")
    assert parse_request('{"type": "run", "agent": "echo"}') == RunRequest("echo", None, None)
    assert parse_request('{"type": "run", "agent": "echo", "run_id": null}') == RunRequest(
        "echo", None, None
    )


def test_cancel_resume_and_ping_requests_parse() -> None:
    assert parse_request('{"type": "cancel", "run_id": "r1"}') == CancelRequest("r1")
    assert parse_request('{"type": "resume", "after": 0}') == ResumeRequest(0)
    assert parse_request('{"type": "resume", "after": 42}') == ResumeRequest(42)
    assert parse_request('{"type": "ping"}') == PingRequest()


def test_a_user_id_in_a_request_is_ignored() -> None:
    frame = {"type": "run", "agent": "echo", "input": 1, "user_id": "mallory"}

    request = parse_request(json.dumps(frame))

    assert request == RunRequest("echo", 1, None)
    assert not hasattr(request, "user_id")


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("not json", "invalid_json"),
        ('{"type": "run"', "invalid_json"),
        ("", "invalid_json"),
        ("[1, 2]", "not_an_object"),
        ('"run"', "not_an_object"),
        ("null", "not_an_object"),
        ("{}", "unknown_type"),
        ('{"type": "dance"}', "unknown_type"),
        ('{"type": 3}', "unknown_type"),
        ('{"type": "run"}', "missing_field"),
        ('{"type": "cancel"}', "missing_field"),
        ('{"type": "resume"}', "missing_field"),
        ('{"type": "run", "agent": 5}', "invalid_field"),
        ('{"type": "run", "agent": "echo", "run_id": 5}', "invalid_field"),
        ('{"type": "run", "agent": "echo", "run_id": "has space"}', "invalid_field"),
        ('{"type": "cancel", "run_id": ""}', "invalid_field"),
        ('{"type": "cancel", "run_id": ["r1"]}', "invalid_field"),
        ('{"type": "resume", "after": "3"}', "invalid_field"),
        ('{"type": "resume", "after": 1.5}', "invalid_field"),
        ('{"type": "resume", "after": true}', "invalid_field"),
        ('{"type": "resume", "after": -1}', "invalid_field"),
        ('{"type": "run", "agent": "echo", "input": NaN}', "invalid_json"),
        ('{"type": "run", "agent": "echo", "input": [Infinity]}', "invalid_json"),
        ('{"type": "run", "agent": "echo", "input": {"x": -Infinity}}', "invalid_json"),
        ('{"type": "run", "agent": "echo", "input": 1e999}', "invalid_json"),
        ('{"type": "run", "agent": "echo", "input": 1' + "0" * 400 + "}", "invalid_json"),
        ('{"type": "run", "agent": "sleep", "input": {"seconds": -1e400}}', "invalid_json"),
        ('{"type": "ping", "x": ' + "[" * 100_000 + "]" * 100_000 + "}", "invalid_json"),
    ],
)
def test_a_bad_frame_raises_a_protocol_error_with_its_code(frame: str, code: str) -> None:
    with pytest.raises(ProtocolError) as raised:
        parse_request(frame)

    error = raised.value
    assert error.code == code
    assert error.detail
    assert json.loads(error.to_json()) == {"type": "error", "code": code, "detail": error.detail}


def test_the_detail_names_the_missing_field() -> None:
    with pytest.raises(ProtocolError, match="'agent'"):
        parse_request('{"type": "run"}')


def test_the_detail_of_an_unknown_type_lists_the_accepted_ones() -> None:
    with pytest.raises(ProtocolError) as raised:
        parse_request('{"type": "dance"}')

    for kind in ("run", "cancel", "resume", "ping"):
        assert kind in raised.value.detail


def test_numbers_a_double_holds_are_accepted_however_they_are_written() -> None:
    frame = (
        '{"type": "run", "agent": "echo", "input": [1e308, -2.5E-3, 0.0, 12, '
        + str(2**1024 - 1)
        + "]}"
    )

    request = parse_request(frame)

    assert request == RunRequest("echo", [1e308, -0.0025, 0.0, 12, 2**1024 - 1], None)
