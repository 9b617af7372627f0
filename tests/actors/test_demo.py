"""The demo agents: echo, calc (and its `calculate` tool), sleep in virtual time."""

from __future__ import annotations

from typing import Any

import pytest
import trio

from actors import DEMO_AGENTS, CalcAgent, EchoAgent, SleepAgent, calculate, open_core

from .kit import read_until_ended, terminal_of, types_of

# --- calculate -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "value"),
    [
        ("2+3*4", 14),
        ("(2+3)*4", 20),
        ("7 // 2", 3),
        ("7 % 4", 3),
        ("7 / 2", 3.5),
        ("-3 + +5", 2),
        ("2 ** 10", 1024),
        ("2 ** -1", 0.5),
        ("1.5 * 2", 3.0),
        ("  10 - 4 - 3  ", 3),
        ("10 ** 100", 10**100),
    ],
)
def test_calculate_evaluates_arithmetic(expression: str, value: float) -> None:
    assert calculate(expression) == value


@pytest.mark.parametrize(
    ("expression", "problem"),
    [
        ("__import__('os').system('true')", "only numbers and"),
        ("x + 1", "only numbers and"),
        ("abs(-1)", "only numbers and"),
        ("(1).real", "only numbers and"),
        ("'a' * 3", "only numbers and"),
        ("True + 1", "only numbers and"),
        ("[1, 2]", "only numbers and"),
        ("1 < 2", "only numbers and"),
        ("1 & 2", "only numbers and"),
        ("2 ** 101", "exponents must be at most 100"),
        ("9 ** 9 ** 9", "exponents must be at most 100"),
        ("10 ** 100 * 10", "too large"),
        ("(-1) ** 0.5", "not a real number"),
        ("1 +", "not an arithmetic expression"),
        ("1; 2", "not an arithmetic expression"),
        ("1" + "+1" * 100, "at most 200 characters"),
    ],
)
def test_calculate_refuses_anything_but_bounded_arithmetic(expression: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        calculate(expression)


def test_calculate_refuses_a_non_string() -> None:
    with pytest.raises(ValueError, match="expression must be a string, got int"):
        calculate(12)  # type: ignore[arg-type]


def test_calculate_lets_division_by_zero_raise() -> None:
    with pytest.raises(ZeroDivisionError):
        calculate("1 / (2 - 2)")


# --- the agents in a core ---------------------------------------------------------


def test_the_demo_agents_are_echo_calc_and_sleep() -> None:
    assert (EchoAgent, CalcAgent, SleepAgent) == DEMO_AGENTS
    assert [agent.name for agent in DEMO_AGENTS] == ["echo", "calc", "sleep"]


async def run_one(agent: str, input: Any) -> list[Any]:
    async with open_core() as core, core.subscribe("alice") as events:
        run_id = await core.submit("alice", agent, input)
        return await read_until_ended(events, [run_id])


async def test_echo_returns_its_input() -> None:
    seen = await run_one("echo", {"hello": ["world", 1]})

    assert types_of(seen) == ["agent_started", "agent_completed"]
    assert seen[0].data == {"agent": "echo", "input": {"hello": ["world", 1]}}
    assert seen[1].data["output"] == {"hello": ["world", 1]}


async def test_calc_evaluates_through_the_calculate_tool() -> None:
    seen = await run_one("calc", {"expression": "2+3*4"})

    assert types_of(seen) == [
        "agent_started",
        "agent_thinking",
        "tool_executing",
        "tool_completed",
        "agent_completed",
    ]
    assert seen[1].data == {"text": "evaluating 2+3*4"}
    assert seen[2].data == {
        "tool": "calculate",
        "call_id": "call-1",
        "args": {"expression": "2+3*4"},
    }
    assert seen[3].data["ok"] is True and seen[3].data["result"] == 14
    assert seen[4].data["output"] == 14


async def test_calc_division_by_zero_ends_with_an_error_event() -> None:
    seen = await run_one("calc", {"expression": "1/0"})

    assert types_of(seen)[-2:] == ["tool_completed", "agent_error"]
    assert seen[-2].data["ok"] is False
    assert seen[-2].data["error"] == "ZeroDivisionError: division by zero"
    assert seen[-1].data["reason"] == "exception"
    assert seen[-1].data["detail"] == "ZeroDivisionError: division by zero"


async def test_calc_refuses_a_forbidden_expression_with_an_error_event() -> None:
    seen = await run_one("calc", {"expression": "__import__('os')"})

    assert seen[-2].data["ok"] is False
    assert seen[-2].data["error"].startswith("ValueError: only numbers and")
    assert seen[-1].type == "agent_error" and seen[-1].data["reason"] == "exception"


@pytest.mark.parametrize("input", [None, "2+2", {"expression": 4}, {}])
async def test_calc_refuses_input_that_is_not_an_expression(input: Any) -> None:
    seen = await run_one("calc", input)

    assert types_of(seen) == ["agent_started", "agent_error"]
    assert "calc expects input" in seen[-1].data["detail"]


async def test_sleep_spreads_its_thinking_steps_over_virtual_seconds(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with open_core() as core, core.subscribe("alice") as events:
        began = trio.current_time()
        await core.submit("alice", "sleep", {"seconds": 30, "steps": 3})
        arrivals = []
        async for event in events:
            arrivals.append((event.type, trio.current_time() - began))
            if event.terminal:
                break

    assert arrivals == [
        ("agent_started", 0),
        ("agent_thinking", 10),
        ("agent_thinking", 20),
        ("agent_thinking", 30),
        ("agent_completed", 30),
    ]


async def test_sleep_reports_its_steps_and_duration(autojump_clock: trio.abc.Clock) -> None:
    seen = await run_one("sleep", {"seconds": 2, "steps": 4})

    assert [e.data["text"] for e in seen if e.type == "agent_thinking"] == [
        "step 1 of 4",
        "step 2 of 4",
        "step 3 of 4",
        "step 4 of 4",
    ]
    assert seen[-1].data == {"output": {"slept": 2, "steps": 4}, "duration_ms": 2000.0}


@pytest.mark.parametrize(
    ("input", "problem"),
    [
        ({"seconds": "1"}, "seconds to be a number"),
        ({"seconds": True}, "seconds to be a number"),
        ({"steps": 1.5}, "steps to be a whole number"),
        ({"seconds": -1}, "0 <= seconds <= 3600"),
        ({"seconds": 3601}, "0 <= seconds <= 3600"),
        ({"steps": 0}, "1 <= steps <= 10000"),
        ({"steps": 10_001}, "1 <= steps <= 10000"),
    ],
)
async def test_sleep_refuses_bad_input(input: Any, problem: str) -> None:
    seen = await run_one("sleep", input)

    error = terminal_of(seen, seen[0].run_id)
    assert error.type == "agent_error"
    assert problem in error.data["detail"]
