"""Runs over a real socket: each demo agent's events, per-user isolation,
cancellation. Server on 127.0.0.1:0, client trio-websocket."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import trio

from actors import CoreConfig, RunningServer

from .kit import (
    ServerHandle,
    assert_stream,
    connect,
    http_get,
    metric_samples,
    ping,
    read_until_ended,
    receive,
    run,
    sample,
    send,
    types_of,
)


async def test_an_echo_run_streams_started_then_completed_with_the_input_as_output(
    server: RunningServer, mint: Callable[[str], str]
) -> None:
    async with connect(server.url, mint("alice")) as ws:
        await run(ws, "echo", {"hello": ["world", 1]}, run_id="e1")
        events = assert_stream(await read_until_ended(ws), "alice")

    assert types_of(events) == ["agent_started", "agent_completed"]
    assert {e["run_id"] for e in events} == {"e1"}
    assert events[0]["data"] == {"agent": "echo", "input": {"hello": ["world", 1]}}
    assert events[1]["data"]["output"] == {"hello": ["world", 1]}
    assert events[1]["data"]["duration_ms"] >= 0


async def test_a_calc_run_evaluates_through_the_calculate_tool(
    server: RunningServer, mint: Callable[[str], str]
) -> None:
    async with connect(server.url, mint("alice")) as ws:
        await run(ws, "calc", {"expression": "2+3*4"})
        events = assert_stream(await read_until_ended(ws), "alice")

    assert types_of(events) == [
        "agent_started",
        "agent_thinking",
        "tool_executing",
        "tool_completed",
        "agent_completed",
    ]
    assert len({e["run_id"] for e in events}) == 1
    executing, completed = events[2]["data"], events[3]["data"]
    assert executing["tool"] == "calculate"
    assert executing["args"] == {"expression": "2+3*4"}
    assert completed["tool"] == "calculate"
    assert completed["call_id"] == executing["call_id"]
    assert completed["ok"] is True
    assert completed["result"] == 14
    assert events[-1]["data"]["output"] == 14


async def test_a_calc_run_with_a_bad_expression_reports_the_tool_error_then_agent_error(
    server: RunningServer, mint: Callable[[str], str]
) -> None:
    async with connect(server.url, mint("alice")) as ws:
        await run(ws, "calc", {"expression": "1/0"})
        events = assert_stream(await read_until_ended(ws), "alice")

    assert types_of(events)[-2:] == ["tool_completed", "agent_error"]
    assert events[-2]["data"]["ok"] is False
    assert "ZeroDivisionError" in events[-2]["data"]["error"]
    assert events[-1]["data"]["reason"] == "exception"


async def test_a_sleep_run_thinks_once_per_step_in_order(
    server: RunningServer, mint: Callable[[str], str]
) -> None:
    async with connect(server.url, mint("alice")) as ws:
        await run(ws, "sleep", {"seconds": 0.1, "steps": 4})
        events = assert_stream(await read_until_ended(ws), "alice")

    assert types_of(events) == ["agent_started"] + ["agent_thinking"] * 4 + ["agent_completed"]
    assert [e["data"]["text"] for e in events[1:5]] == [f"step {n} of 4" for n in range(1, 5)]
    assert events[-1]["data"]["output"] == {"slept": 0.1, "steps": 4}


async def test_seq_continues_across_a_users_runs_and_connections(
    server: RunningServer, mint: Callable[[str], str]
) -> None:
    async with connect(server.url, mint("alice")) as ws:
        await run(ws, "echo", 1)
        await run(ws, "calc", {"expression": "1+1"})
        first = await read_until_ended(ws, runs=2)
    async with connect(server.url, mint("alice")) as ws:
        await run(ws, "echo", 2)
        second = await read_until_ended(ws)

    assert_stream(first + second, "alice")
    assert len(first) == 7 and len(second) == 2


async def test_two_users_at_once_each_receive_only_their_own_events(
    server: RunningServer, mint: Callable[[str], str]
) -> None:
    streams: dict[str, list[dict[str, object]]] = {}

    async def user(name: str) -> None:
        async with connect(server.url, mint(name)) as ws:
            await run(ws, "sleep", {"seconds": 0.2, "steps": 5}, run_id=f"{name}-sleep")
            await run(ws, "calc", {"expression": "6*7"}, run_id=f"{name}-calc")
            streams[name] = await read_until_ended(ws, runs=2)
            # Nothing else is pending for this user: the next message is the pong.
            await ping(ws)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(user, "alice")
        nursery.start_soon(user, "bob")

    for name in ("alice", "bob"):
        events = assert_stream(streams[name], name)
        assert {e["run_id"] for e in events} == {f"{name}-sleep", f"{name}-calc"}
        # The two runs interleave; each one's own events are in causal order.
        sleep = [e for e in events if e["run_id"] == f"{name}-sleep"]
        calc = [e for e in events if e["run_id"] == f"{name}-calc"]
        assert types_of(sleep) == ["agent_started"] + ["agent_thinking"] * 5 + ["agent_completed"]
        assert types_of(calc) == [
            "agent_started",
            "agent_thinking",
            "tool_executing",
            "tool_completed",
            "agent_completed",
        ]


async def test_with_deliver_inline_each_user_gets_their_whole_stream_in_order_over_a_socket(
    start_server: Callable[..., Awaitable[ServerHandle]], mint: Callable[[str], str]
) -> None:
    server = (await start_server(core=CoreConfig(deliver_inline=True))).server
    streams: dict[str, list[dict[str, object]]] = {}

    async def user(name: str) -> None:
        async with connect(server.url, mint(name)) as ws:
            for n in range(3):
                await run(ws, "sleep", {"seconds": 0.2, "steps": 5}, run_id=f"{name}-{n}")
            await run(ws, "calc", {"expression": "6*7"}, run_id=f"{name}-calc")
            streams[name] = await read_until_ended(ws, runs=4)
            await ping(ws)

    async with trio.open_nursery() as nursery:
        for name in ("alice", "bob", "carol"):
            nursery.start_soon(user, name)

    for name, messages in streams.items():
        events = assert_stream(messages, name)
        assert len(events) == 3 * 7 + 5
        for n in range(3):
            run_events = [e for e in events if e["run_id"] == f"{name}-{n}"]
            assert types_of(run_events) == [
                "agent_started",
                *["agent_thinking"] * 5,
                "agent_completed",
            ]
    metrics = metric_samples((await http_get(server.address, "/metrics")).text)
    assert sample(metrics, "greenroom_event_delivery_seconds_count") == 3 * (3 * 7 + 5)


async def test_a_user_id_in_a_request_never_chooses_the_user(
    server: RunningServer, mint: Callable[[str], str]
) -> None:
    async with connect(server.url, mint("alice")) as alice, connect(server.url, mint("bob")) as bob:
        await send(
            alice,
            {"type": "run", "agent": "echo", "input": "hi", "user_id": "bob", "run_id": "r1"},
        )
        events = assert_stream(await read_until_ended(alice), "alice")
        await ping(bob)

    assert {e["run_id"] for e in events} == {"r1"}
    assert server.core.last_seq("bob") == 0


async def test_cancelling_a_run_ends_it_with_agent_error_cancelled(
    server: RunningServer, mint: Callable[[str], str]
) -> None:
    async with connect(server.url, mint("alice")) as ws:
        await run(ws, "sleep", {"seconds": 30, "steps": 30}, run_id="long")
        started = await receive(ws)
        assert started["type"] == "agent_started"
        await send(ws, {"type": "cancel", "run_id": "long"})
        events = assert_stream([started, *await read_until_ended(ws)], "alice")

    assert types_of(events) == ["agent_started", "agent_error"]
    assert events[-1]["run_id"] == "long"
    assert events[-1]["data"]["reason"] == "cancelled"


async def test_a_run_id_still_live_cannot_be_reused(
    server: RunningServer, mint: Callable[[str], str]
) -> None:
    async with connect(server.url, mint("alice")) as ws:
        await run(ws, "sleep", {"seconds": 30, "steps": 30}, run_id="long")
        assert (await receive(ws))["type"] == "agent_started"
        await run(ws, "echo", 1, run_id="long")
        error = await receive(ws)
        await send(ws, {"type": "cancel", "run_id": "long"})
        ended = await read_until_ended(ws)

    assert error["type"] == "error" and error["code"] == "duplicate_run"
    assert types_of(ended) == ["agent_error"]
