"""The agent API: registration by name, a fresh instance per run, RunContext."""

from __future__ import annotations

from typing import Any

import attrs
import pytest
import trio

from actors import (
    Agent,
    AgentRegistry,
    EchoAgent,
    InvalidRequest,
    RunContext,
    UnknownAgent,
    UserContext,
    open_core,
)

from .kit import read_until_ended, terminal_of, types_of


def named(name: Any) -> type[Agent]:
    return type("Named", (Agent,), {"name": name})


# --- registration ------------------------------------------------------------


def test_agents_are_found_by_the_name_they_are_registered_under() -> None:
    registry = AgentRegistry.of([EchoAgent, named("b.2-x_y")])

    assert registry.get("echo") is EchoAgent
    assert registry.names == ["b.2-x_y", "echo"]
    assert "echo" in registry and "nope" not in registry


@pytest.mark.parametrize(
    "name", ["", "Echo", "9lives", "has space", "x" * 65, "ünï", None, 3, "-dash"]
)
def test_an_agent_with_a_bad_name_is_refused(name: Any) -> None:
    with pytest.raises(InvalidRequest, match=r"\.name must be 1-64 characters"):
        AgentRegistry.of([named(name)])


def test_a_name_of_sixty_four_characters_is_accepted() -> None:
    assert AgentRegistry.of([named("a" * 64)]).names == ["a" * 64]


def test_two_agents_under_one_name_are_refused() -> None:
    with pytest.raises(InvalidRequest, match="two agents are registered as 'echo'"):
        AgentRegistry.of([EchoAgent, named("echo")])


@pytest.mark.parametrize("thing", [object, "echo", EchoAgent()])
def test_only_agent_classes_can_be_registered(thing: Any) -> None:
    with pytest.raises(InvalidRequest, match="agents must be Agent subclasses"):
        AgentRegistry.of([thing])


def test_asking_for_an_unknown_agent_names_the_registered_ones() -> None:
    registry = AgentRegistry.of([EchoAgent, named("calc")])

    with pytest.raises(UnknownAgent, match=r"no agent named 'nope' \(registered: calc, echo\)"):
        registry.get("nope")
    with pytest.raises(UnknownAgent):
        registry.get(["unhashable"])  # type: ignore[arg-type]


async def test_open_core_refuses_a_badly_named_agent_before_starting_anything() -> None:
    with pytest.raises(InvalidRequest):
        async with open_core(agents=[named("Bad Name")]):
            raise AssertionError("the core should not have started")


# --- RunContext ----------------------------------------------------------------


@attrs.define
class Emitted:
    events: list[tuple[str, dict[str, Any]]] = attrs.Factory(list)

    async def __call__(self, type: str, data: dict[str, Any]) -> None:
        self.events.append((type, data))


def run_context(emitted: Emitted) -> RunContext:
    return RunContext(UserContext(user_id="alice", run_id="r1"), emitted)


async def test_thinking_emits_agent_thinking_with_the_text() -> None:
    emitted = Emitted()

    await run_context(emitted).thinking("pondering")

    assert emitted.events == [("agent_thinking", {"text": "pondering"})]


async def test_a_tool_call_emits_executing_then_completed_with_its_result_and_duration(
    autojump_clock: trio.abc.Clock,
) -> None:
    emitted = Emitted()

    async def lookup(city: str) -> str:
        await trio.sleep(1.5)
        return f"sunny in {city}"

    result = await run_context(emitted).tool("weather", {"city": "Oslo"}, lookup)

    assert result == "sunny in Oslo"
    assert emitted.events == [
        ("tool_executing", {"tool": "weather", "call_id": "call-1", "args": {"city": "Oslo"}}),
        (
            "tool_completed",
            {
                "tool": "weather",
                "call_id": "call-1",
                "ok": True,
                "result": "sunny in Oslo",
                "duration_ms": 1500.0,
            },
        ),
    ]


async def test_a_failing_tool_reports_the_error_and_raises_it_to_the_agent(
    autojump_clock: trio.abc.Clock,
) -> None:
    emitted = Emitted()

    async def broken() -> None:
        await trio.sleep(0.25)
        raise KeyError("no such city")

    with pytest.raises(KeyError, match="no such city"):
        await run_context(emitted).tool("weather", {}, broken)

    assert emitted.events[1] == (
        "tool_completed",
        {
            "tool": "weather",
            "call_id": "call-1",
            "ok": False,
            "error": "KeyError: 'no such city'",
            "duration_ms": 250.0,
        },
    )


async def test_tool_calls_are_numbered_per_run_and_plain_functions_work() -> None:
    emitted = Emitted()
    ctx = run_context(emitted)

    assert await ctx.tool("add", {"a": 1, "b": 2}, lambda a, b: a + b) == 3
    assert await ctx.tool("add", {"a": 3, "b": 4}, lambda a, b: a + b) == 7

    call_ids = [data["call_id"] for type, data in emitted.events if type == "tool_executing"]
    assert call_ids == ["call-1", "call-2"]
    fresh = Emitted()
    await run_context(fresh).tool("add", {"a": 0, "b": 0}, lambda a, b: a + b)
    assert fresh.events[0][1]["call_id"] == "call-1"


async def test_a_cancelled_tool_emits_no_tool_completed(autojump_clock: trio.abc.Clock) -> None:
    emitted = Emitted()

    with trio.move_on_after(1):
        await run_context(emitted).tool("slow", {}, trio.sleep_forever)

    assert [type for type, _ in emitted.events] == ["tool_executing"]


def test_the_run_context_shows_only_the_users_context_and_it_is_read_only() -> None:
    ctx = run_context(Emitted())

    assert [name for name in dir(ctx) if not name.startswith("_")] == [
        "thinking",
        "tool",
        "user",
    ]
    with pytest.raises(AttributeError):
        ctx.user = UserContext(user_id="mallory")  # type: ignore[misc]
    with pytest.raises(AttributeError):
        ctx.bridge = object()  # type: ignore[attr-defined]
    assert ctx.user.user_id == "alice"


# --- agents inside a core --------------------------------------------------------


class CountingAgent(Agent):
    """Counts its runs on the instance: 1 every time if instances are fresh."""

    name = "counting"

    def __init__(self) -> None:
        self.runs = 0

    async def run(self, ctx: RunContext, input: Any) -> Any:
        self.runs += 1
        return self.runs


class WhoAmIAgent(Agent):
    """Reports the context it was given."""

    name = "whoami"

    async def run(self, ctx: RunContext, input: Any) -> Any:
        user = ctx.user
        return {"user_id": user.user_id, "run_id": user.run_id, "metadata": dict(user.metadata)}


class CarefulAgent(Agent):
    """Calls a failing tool and recovers from its error."""

    name = "careful"

    async def run(self, ctx: RunContext, input: Any) -> Any:
        def divide(a: int, b: int) -> float:
            return a / b

        try:
            return await ctx.tool("divide", {"a": 1, "b": 0}, divide)
        except ZeroDivisionError as error:
            return f"recovered from {type(error).__name__}"


async def test_each_run_gets_a_fresh_agent_instance() -> None:
    async with open_core(agents=[CountingAgent]) as core, core.subscribe("alice") as events:
        run_ids = [await core.submit("alice", "counting") for _ in range(3)]
        seen = await read_until_ended(events, run_ids)

    assert [terminal_of(seen, run_id).data["output"] for run_id in run_ids] == [1, 1, 1]


async def test_an_agent_sees_its_own_users_context_and_events_go_to_that_user_only() -> None:
    async with (
        open_core(agents=[WhoAmIAgent]) as core,
        core.subscribe("alice") as alice_events,
        core.subscribe("bob") as bob_events,
    ):
        mine = await core.submit("alice", "whoami", run_id="mine", metadata={"plan": "pro"})
        theirs = await core.submit("bob", "whoami", metadata={"plan": "free"})
        alice_seen = await read_until_ended(alice_events, [mine])
        bob_seen = await read_until_ended(bob_events, [theirs])

    assert terminal_of(alice_seen, mine).data["output"] == {
        "user_id": "alice",
        "run_id": "mine",
        "metadata": {"plan": "pro"},
    }
    assert terminal_of(bob_seen, theirs).data["output"]["metadata"] == {"plan": "free"}
    assert {e.user_id for e in alice_seen} == {"alice"}
    assert {e.run_id for e in alice_seen} == {"mine"}
    assert {e.user_id for e in bob_seen} == {"bob"}


async def test_a_tool_error_reaches_the_agent_which_may_recover() -> None:
    async with open_core(agents=[CarefulAgent]) as core, core.subscribe("alice") as events:
        run_id = await core.submit("alice", "careful")
        seen = await read_until_ended(events, [run_id])

    assert types_of(seen) == [
        "agent_started",
        "tool_executing",
        "tool_completed",
        "agent_completed",
    ]
    completed = seen[2].data
    assert completed["ok"] is False
    assert completed["error"] == "ZeroDivisionError: division by zero"
    assert "result" not in completed
    assert seen[3].data["output"] == "recovered from ZeroDivisionError"
