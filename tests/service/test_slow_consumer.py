"""A client that really stops reading: it falls behind and is closed 1013
(then resumes without loss), or, if its socket writes stall past
`write_timeout`, its connection is aborted. Other users never wait for it.

"Really stops reading": trio-websocket reads the socket in a background
task into a queue; with `message_queue_size=1` that task stops reading
once one message is waiting, so the server's writes fill the kernel's
socket buffers and then block. Events are large (two 50 KB events per echo
run), submitted one run every 10 ms: a few hundred KB fill the socket, after
which the server's writer waits for room.

While a connection's writer is idle the bridge writes events itself; once
the socket is full they queue. Whichever path an event took, the client
must read the stream gapless and in order.
"""

from __future__ import annotations

import json
import socket
import struct
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trio
import trio.testing
from starlette.websockets import WebSocket
from trio_websocket import ConnectionClosed, WebSocketConnection

from actors import CoreConfig, RunningServer
from actors.service import AsgiTransport

from .kit import (
    PATIENCE,
    ServerHandle,
    assert_stream,
    connect,
    ping,
    read_until_closed_why,
    read_until_ended,
    run,
    send,
    types_of,
    wait_until,
)

BIG = "x" * 50_000
#: Submitting this many big runs overfills any loopback socket buffers.
MAX_RUNS = 400


async def _flood_until(
    ws: WebSocketConnection, done: Callable[[], bool], *, pace: float = 0.01
) -> int:
    """Submit big echo runs on `ws`, one every `pace` seconds, until `done()`
    (or the connection is gone); return how many were submitted."""
    with trio.fail_after(MAX_RUNS * pace * 3 + PATIENCE):
        for submitted in range(MAX_RUNS):
            if done():
                return submitted
            try:
                await run(ws, "echo", BIG, run_id=f"big-{submitted}")
            except ConnectionClosed:
                return submitted
            await trio.sleep(pace)
    raise AssertionError(f"{MAX_RUNS} runs were submitted and the server never fell behind")


async def _fast_user_runs(server: RunningServer, token: str) -> list[dict[str, object]]:
    async with connect(server.url, token) as ws:
        await run(ws, "sleep", {"seconds": 0.1, "steps": 4})
        await run(ws, "calc", {"expression": "2+3*4"})
        events = await read_until_ended(ws, runs=2, patience=3.0)
        await ping(ws)
    return events


async def test_a_consumer_that_stops_reading_is_closed_1013_and_resumes_without_loss(
    start_server: Callable[..., Awaitable[ServerHandle]], mint: Callable[[str], str]
) -> None:
    server = (await start_server(core=CoreConfig(subscriber_queue=8))).server
    books = server.core.stream_books

    async with connect(server.url, mint("slow"), message_queue_size=1) as slow:
        await ping(slow)
        runs = await _flood_until(slow, lambda: books.dropped_by_reason["subscriber_overflow"] > 0)

        # The slow user's writer is stuck on a full socket: the fast user's
        # runs go through with normal latency all the same.
        with trio.fail_after(PATIENCE):
            fast = await _fast_user_runs(server, mint("fast"))

        # Reading again: what was written and queued before the overflow,
        # then the close that tells the client to resume, and from where.
        received, code, why = await read_until_closed_why(slow)

    assert code == 1013
    assert f"resume after seq {received[-1]['seq']}" in why
    assert_stream(fast, "fast")
    assert types_of(fast).count("agent_completed") == 2
    assert 0 < len(received) < 2 * runs
    assert_stream(received, "slow")
    last = received[-1]["seq"]

    async with connect(server.url, mint("slow")) as slow:
        await send(slow, {"type": "resume", "after": last})
        ended = types_of(received).count("agent_completed")
        rest = await read_until_ended(slow, runs=runs - ended)
        await ping(slow)

    events = assert_stream(received + rest, "slow")
    assert len(events) == 2 * runs == server.core.last_seq("slow")
    assert {e["run_id"] for e in events} == {f"big-{n}" for n in range(runs)}
    assert types_of(events).count("agent_completed") == runs


async def test_a_connection_whose_writes_stall_past_write_timeout_is_aborted(
    start_server: Callable[..., Awaitable[ServerHandle]], mint: Callable[[str], str]
) -> None:
    server = (await start_server(write_timeout=0.5)).server

    def users_connected() -> set[str]:
        return {connection.user_id for connection in server.service.connections}

    async with (
        connect(server.url, mint("fast")) as fast,
        connect(server.url, mint("slow"), message_queue_size=1) as slow,
    ):
        await ping(fast)
        await ping(slow)
        assert users_connected() == {"fast", "slow"}

        async with trio.open_nursery() as nursery:
            nursery.start_soon(_flood_until, slow, lambda: "slow" not in users_connected())
            # While the slow socket is stuck and then aborted, fast is served.
            for _ in range(3):
                await run(fast, "sleep", {"seconds": 0.1, "steps": 2})
                assert types_of(await read_until_ended(fast))[-1] == "agent_completed"

        assert users_connected() == {"fast"}
        await wait_until(lambda: server.http.open_streams == 1)
        await run(fast, "calc", {"expression": "2+3*4"})
        assert (await read_until_ended(fast))[-1]["data"]["output"] == 14

        # The aborted client finds its connection gone (no close frame: 1006).
        with trio.fail_after(PATIENCE), pytest.raises(ConnectionClosed):
            while True:
                await slow.get_message()


def _is_watch(task: trio.lowlevel.Task) -> bool:
    return task.name.endswith("Connection._watch")


class _WatchSteps(trio.abc.Instrument):
    """Counts the steps taken by connections' write watches."""

    def __init__(self) -> None:
        self.steps = 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        if _is_watch(task):
            self.steps += 1


def _watches() -> int:
    """How many connections' write watches are alive."""
    root = trio.lowlevel.current_root_task()
    tasks = [root] if root is not None else []
    found = 0
    while tasks:
        task = tasks.pop()
        found += _is_watch(task)
        tasks += [child for nursery in task.child_nurseries for child in nursery.child_tasks]
    return found


async def test_an_idle_connection_costs_no_wake_ups_of_its_write_watch(
    start_server: Callable[..., Awaitable[ServerHandle]], mint: Callable[[str], str]
) -> None:
    server = (await start_server(write_timeout=0.04)).server
    watch = _WatchSteps()
    async with connect(server.url, mint("idle")) as ws:
        await ping(ws)
        assert _watches() == 1
        trio.lowlevel.add_instrument(watch)
        try:
            await trio.sleep(0.4)  # ten write timeouts
            # Writes the socket takes at once do not wake it either.
            await run(ws, "echo", "hello")
            assert types_of(await read_until_ended(ws))[-1] == "agent_completed"
            await ping(ws)
            await trio.sleep(0.1)
        finally:
            trio.lowlevel.remove_instrument(watch)
    assert watch.steps == 0


async def test_the_asgi_transport_wakes_its_write_watch_only_once_a_send_begins(
    autojump_clock: trio.testing.MockClock,
) -> None:
    peer_reads = trio.Event()
    peer_reads.set()

    async def receive() -> dict[str, Any]:
        return {"type": "websocket.connect"}

    async def send(message: dict[str, Any]) -> None:
        await peer_reads.wait()

    websocket = WebSocket({"type": "websocket", "path": "/ws", "headers": []}, receive, send)
    await websocket.accept()
    transport = AsgiTransport(websocket, max_message_bytes=1 << 20)
    woke_at: list[float] = []

    async def watch() -> None:
        await transport.wait_sending()
        woke_at.append(trio.current_time())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch)
        await trio.sleep(3600)
        assert woke_at == [] and transport.sending_since is None

        peer_reads = trio.Event()  # the peer stops reading
        began = trio.current_time()
        nursery.start_soon(transport.send_texts, ["stuck"])
        await trio.testing.wait_all_tasks_blocked()
        assert woke_at == [began] and transport.sending_since == began

        peer_reads.set()
    assert transport.sending_since is None


async def test_events_written_at_once_then_queued_behind_a_full_socket_arrive_in_order(
    start_server: Callable[..., Awaitable[ServerHandle]], mint: Callable[[str], str]
) -> None:
    server = (await start_server(core=CoreConfig(subscriber_queue=10_000))).server
    runs = 40  # 4 MB: more than the socket buffers hold
    async with connect(server.url, mint("alice"), message_queue_size=1) as ws:
        for n in range(runs):
            await run(ws, "echo", BIG, run_id=f"big-{n}")
        await wait_until(lambda: server.core.last_seq("alice") == 2 * runs)
        events = await read_until_ended(ws, runs=runs)
        await ping(ws)

    assert_stream(events, "alice")  # in seq order, none missing
    # Up to four runs run at once, so two runs' events may interleave; each
    # run's own come in order.
    by_run: dict[str, list[str]] = {}
    for event in events:
        by_run.setdefault(event["run_id"], []).append(event["type"])
    assert by_run == {f"big-{n}": ["agent_started", "agent_completed"] for n in range(runs)}


async def _raw_upgrade(address: tuple[str, int], token: str) -> tuple[trio.SocketStream, bytes]:
    """A WebSocket opened by hand on a socket with a small receive buffer, so
    that the server's writes wait on this reader; and what came after the
    101's headers."""
    sock = trio.socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    await sock.connect(address)
    stream = trio.SocketStream(sock)
    await stream.send_all(
        f"GET /ws?token={token} HTTP/1.1\r\nHost: g\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
        "Sec-WebSocket-Key: a2V5a2V5a2V5a2V5a2V5aw==\r\n\r\n".encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += await stream.receive_some(4096)
    status, rest = head.split(b"\r\n\r\n", 1)
    assert status.startswith(b"HTTP/1.1 101 ")
    return stream, rest


def _masked_text(text: str) -> bytes:
    payload = text.encode()
    mask = b"\x01\x02\x03\x04"
    masked = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
    assert len(payload) < 65536
    return struct.pack("!BBH", 0x81, 0x80 | 126, len(payload)) + mask + masked


async def test_a_write_the_client_is_still_reading_is_not_a_stall(
    start_server: Callable[..., Awaitable[ServerHandle]], mint: Callable[[str], str]
) -> None:
    # The write timeout counted from when a write began, not from its last
    # progress: a client reading a long answer steadily was cut off.
    server = (await start_server(write_timeout=0.3)).server
    big = "x" * 40_000
    stream, received = await _raw_upgrade(server.address, mint("reader"))
    async with stream:
        request = {"type": "run", "agent": "echo", "input": big, "run_id": "long"}
        await stream.send_all(_masked_text(json.dumps(request)))
        with trio.fail_after(PATIENCE * 2):
            while received.count(big.encode()) < 2:  # the input, then the output
                chunk = await stream.receive_some(2048)
                assert chunk, f"cut off after {len(received):,} bytes"
                received += chunk
                await trio.sleep(0.01)  # about 200 KB a second: slow, never stalled

    assert b'"type":"agent_completed"' in received
