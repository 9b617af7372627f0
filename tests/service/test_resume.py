"""Resume: after a disconnect a client gets every event it missed, once, in
order; past the replay window it is told of the gap first."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import trio

from actors import CoreConfig, RunningServer

from .kit import (
    ServerHandle,
    assert_stream,
    connect,
    ping,
    read_until_ended,
    receive,
    run,
    send,
    types_of,
)


async def test_resume_after_a_mid_run_disconnect_delivers_the_rest_once_in_order(
    server: RunningServer, mint: Callable[[str], str]
) -> None:
    # A second connection of the same user watches the stream live, so the
    # test knows when events have been emitted while the first was away. It
    # reconnects and resumes right after an event, well within the 200 ms
    # before the next: an event numbered between a new connection's start
    # and its resume request would be sent live and then replayed again.
    async with connect(server.url, mint("alice")) as watcher:
        async with connect(server.url, mint("alice")) as ws:
            await run(ws, "sleep", {"seconds": 1.6, "steps": 8}, run_id="nap")
            seen = [await receive(ws) for _ in range(4)]
        last_seen = seen[-1]["seq"]

        # Two events are emitted while alice has no connection but the watcher.
        while (await receive(watcher))["seq"] < last_seen + 2:
            pass

        async with connect(server.url, mint("alice")) as ws:
            await send(ws, {"type": "resume", "after": last_seen})
            rest = await read_until_ended(ws)
            await ping(ws)

    events = assert_stream(seen + rest, "alice")
    assert last_seen == 4
    assert rest[0]["seq"] == last_seen + 1
    assert types_of(events) == ["agent_started"] + ["agent_thinking"] * 8 + ["agent_completed"]
    assert [e["data"]["text"] for e in events[1:9]] == [f"step {n} of 8" for n in range(1, 9)]
    assert {e["run_id"] for e in events} == {"nap"}


async def test_resume_on_an_open_connection_replays_then_continues_live(
    server: RunningServer, mint: Callable[[str], str]
) -> None:
    async with connect(server.url, mint("alice")) as ws:
        await run(ws, "calc", {"expression": "2+3*4"})
        first = await read_until_ended(ws)
        await send(ws, {"type": "resume", "after": 2})
        replayed = [await receive(ws) for _ in range(3)]
        await run(ws, "echo", "after the replay")
        live = await read_until_ended(ws)

    assert_stream(first, "alice")
    assert replayed == first[2:]
    assert_stream(live, "alice", first_seq=6)


async def test_resume_after_zero_on_a_new_connection_replays_the_whole_window(
    server: RunningServer, mint: Callable[[str], str]
) -> None:
    async with connect(server.url, mint("alice")) as ws:
        await run(ws, "echo", 1)
        await run(ws, "echo", 2)
        first = await read_until_ended(ws, runs=2)
    async with connect(server.url, mint("alice")) as ws:
        await send(ws, {"type": "resume", "after": 0})
        replayed = [await receive(ws) for _ in range(4)]
        await ping(ws)

    assert replayed == first


async def test_resume_past_the_replay_window_sends_a_gap_before_what_is_held(
    start_server: Callable[..., Awaitable[ServerHandle]], mint: Callable[[str], str]
) -> None:
    server = (await start_server(core=CoreConfig(replay_window=3))).server

    async with connect(server.url, mint("alice")) as ws:
        await run(ws, "calc", {"expression": "2+3*4"})
        first = assert_stream(await read_until_ended(ws), "alice")
    async with connect(server.url, mint("alice")) as ws:
        await send(ws, {"type": "resume", "after": 0})
        gap = await receive(ws)
        held = [await receive(ws) for _ in range(3)]
        await ping(ws)

    assert len(first) == 5
    assert gap == {"type": "gap", "from": 1, "to": 2}
    assert held == first[2:]


async def test_a_gap_never_covers_events_the_client_already_has(
    start_server: Callable[..., Awaitable[ServerHandle]], mint: Callable[[str], str]
) -> None:
    server = (await start_server(core=CoreConfig(replay_window=3))).server

    async with connect(server.url, mint("alice")) as ws:
        await run(ws, "calc", {"expression": "2+3*4"})
        first = await read_until_ended(ws)
    async with connect(server.url, mint("alice")) as ws:
        await send(ws, {"type": "resume", "after": 1})
        gap = await receive(ws)
        held = [await receive(ws) for _ in range(3)]
        await send(ws, {"type": "resume", "after": 2})
        again = [await receive(ws) for _ in range(3)]
        await ping(ws)

    assert gap == {"type": "gap", "from": 2, "to": 2}
    assert held == first[2:]
    assert again == first[2:]


async def test_reconnecting_with_after_in_the_url_loses_and_repeats_nothing(
    server: RunningServer, mint: Callable[[str], str]
) -> None:
    # Events keep coming every 20 ms while alice is away and as she
    # reconnects: the stream must pick up exactly after what she has seen.
    async with connect(server.url, mint("alice")) as ws:
        await run(ws, "sleep", {"seconds": 1.0, "steps": 50}, run_id="fast")
        seen = [await receive(ws) for _ in range(5)]
    await trio.sleep(0.1)
    async with connect(f"{server.url}?after={seen[-1]['seq']}&token={mint('alice')}") as ws:
        rest = await read_until_ended(ws)

    events = assert_stream(seen + rest, "alice")
    assert types_of(events) == ["agent_started"] + ["agent_thinking"] * 50 + ["agent_completed"]


async def test_a_bad_after_in_the_url_is_an_error_and_the_stream_goes_live(
    server: RunningServer, mint: Callable[[str], str]
) -> None:
    async with connect(f"{server.url}?after=7&token={mint('alice')}") as ws:
        error = await receive(ws)
        await run(ws, "echo", "still here")
        events = assert_stream(await read_until_ended(ws), "alice")

    assert error["type"] == "error" and error["code"] == "invalid_resume"
    assert "from 0 to 0" in error["detail"]
    assert events[-1]["data"]["output"] == "still here"
