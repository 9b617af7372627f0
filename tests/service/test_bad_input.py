"""Bad input over a real socket: an error reply and the connection stays
usable; binary and oversized frames close the socket with 1003 / 1009."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

import pytest

from actors import RunningServer

from .kit import (
    ServerHandle,
    closed_with,
    connect,
    ping,
    read_until_ended,
    receive,
    run,
    send,
)


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("{not json", "invalid_json"),
        ("[1, 2, 3]", "not_an_object"),
        (json.dumps({"type": "launch"}), "unknown_type"),
        (json.dumps({"type": "run"}), "missing_field"),
        (json.dumps({"type": "run", "agent": 7}), "invalid_field"),
        (json.dumps({"type": "cancel"}), "missing_field"),
        (json.dumps({"type": "cancel", "run_id": 12}), "invalid_field"),
        (json.dumps({"type": "resume", "after": "1"}), "invalid_field"),
        (json.dumps({"type": "resume", "after": -1}), "invalid_field"),
        (json.dumps({"type": "resume", "after": 1}), "invalid_resume"),
        (json.dumps({"type": "run", "agent": "no-such-agent"}), "unknown_agent"),
        (json.dumps({"type": "cancel", "run_id": "never-started"}), "unknown_run"),
        ('{"type": "run", "agent": "echo", "input": 1e999}', "invalid_json"),
        ('{"type": "ping", "x": ' + "[" * 100_000 + "]" * 100_000 + "}", "invalid_json"),
    ],
    ids=lambda value: value[:40] if isinstance(value, str) else value,
)
async def test_a_bad_request_gets_an_error_and_the_connection_stays_usable(
    server: RunningServer, mint: Callable[[str], str], frame: str, code: str
) -> None:
    async with connect(server.url, mint("alice")) as ws:
        await ws.send_message(frame)
        error = await receive(ws)
        await ping(ws)
        await run(ws, "echo", "still here")
        events = await read_until_ended(ws)

    assert error["type"] == "error"
    assert error["code"] == code
    assert isinstance(error["detail"], str) and error["detail"]
    assert set(error) == {"type", "code", "detail"}
    assert [e["data"] for e in events][-1]["output"] == "still here"


async def test_resume_past_the_last_seq_is_refused_naming_the_last_seq(
    server: RunningServer, mint: Callable[[str], str]
) -> None:
    async with connect(server.url, mint("alice")) as ws:
        await run(ws, "echo", 1)
        await read_until_ended(ws)
        await send(ws, {"type": "resume", "after": 3})
        error = await receive(ws)
        await ping(ws)

    assert error["code"] == "invalid_resume"
    assert "2" in error["detail"]


async def test_cancelling_another_users_run_is_an_unknown_run_and_leaves_it_running(
    server: RunningServer, mint: Callable[[str], str]
) -> None:
    async with connect(server.url, mint("alice")) as alice, connect(server.url, mint("bob")) as bob:
        await run(alice, "sleep", {"seconds": 0.3, "steps": 3}, run_id="alices-run")
        assert (await receive(alice))["type"] == "agent_started"

        await send(bob, {"type": "cancel", "run_id": "alices-run"})
        error = await receive(bob)
        await ping(bob)

        rest = await read_until_ended(alice)

    assert error["type"] == "error" and error["code"] == "unknown_run"
    assert [e["type"] for e in rest] == ["agent_thinking"] * 3 + ["agent_completed"]
    assert {e["run_id"] for e in rest} == {"alices-run"}


async def test_cancelling_another_users_run_id_while_having_an_engine_is_unknown_too(
    server: RunningServer, mint: Callable[[str], str]
) -> None:
    """Bob has runs of his own (an engine): Alice's run id is still not his."""
    async with connect(server.url, mint("alice")) as alice, connect(server.url, mint("bob")) as bob:
        await run(alice, "sleep", {"seconds": 0.3, "steps": 3}, run_id="shared-name")
        await run(bob, "sleep", {"seconds": 0.3, "steps": 3}, run_id="bobs-run")
        assert (await receive(alice))["type"] == "agent_started"
        assert (await receive(bob))["type"] == "agent_started"

        await send(bob, {"type": "cancel", "run_id": "shared-name"})
        bobs = await read_until_ended(bob)
        alices = await read_until_ended(alice)

    errors = [m for m in bobs if m["type"] == "error"]
    assert [e["code"] for e in errors] == ["unknown_run"]
    assert alices[-1]["type"] == "agent_completed"
    assert [m for m in bobs if m["type"] != "error"][-1]["type"] == "agent_completed"


async def test_a_binary_frame_closes_the_connection_with_1003(
    server: RunningServer, mint: Callable[[str], str]
) -> None:
    async with connect(server.url, mint("alice")) as ws:
        await ws.send_message(b'{"type": "ping"}')
        assert await closed_with(ws) == 1003


async def test_a_frame_over_the_size_limit_closes_the_connection_with_1009(
    start_server: Callable[..., Awaitable[ServerHandle]], mint: Callable[[str], str]
) -> None:
    server = (await start_server(max_message_bytes=1024)).server

    async with connect(server.url, mint("alice")) as ws:
        await ping(ws)
        await run(ws, "echo", "x" * 900)
        assert len(await read_until_ended(ws)) == 2
        await run(ws, "echo", "x" * 2000)
        assert await closed_with(ws) == 1009
    assert server.core.last_seq("alice") == 2


async def test_the_size_limit_counts_the_bytes_of_a_text_not_its_characters(
    start_server: Callable[..., Awaitable[ServerHandle]], mint: Callable[[str], str]
) -> None:
    server = (await start_server(max_message_bytes=1024)).server
    fits, too_big = "é" * 450, "🙂" * 300  # 900 + 48 bytes; 300 characters, 1,200 + 48 bytes

    def request(text: str) -> str:  # UTF-8 on the wire, not \u escapes
        return json.dumps({"type": "run", "agent": "echo", "input": text}, ensure_ascii=False)

    async with connect(server.url, mint("alice")) as ws:
        await ws.send_message(request(fits))
        assert [e["data"] for e in await read_until_ended(ws)][-1]["output"] == fits
        await ws.send_message(request(too_big))
        assert await closed_with(ws) == 1009
    assert server.core.last_seq("alice") == 2
