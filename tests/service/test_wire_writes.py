"""How `actors._wire` writes: a batch bigger than the socket's buffer still
arrives whole and in order, a closed socket is never written to, responses
carry their reason phrase, and a body sent too slowly does not hold a
connection forever."""

from __future__ import annotations

import gc
import json
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import trio
import trio.testing
import wsproto
from wsproto.events import AcceptConnection, CloseConnection, Request, TextMessage

from actors import Agent, CoreConfig, Event, RunContext, RunningServer, TokenSigner
from actors._websocket import Handshake
from actors._wire import (
    KEEP_ALIVE_TIMEOUT,
    HttpRequest,
    HttpResponse,
    WireServer,
    open_listening_socket,
)

from .kit import PATIENCE, ServerHandle, connect, receive, run, serve_agents, wait_until
from .test_wire import _RawWebSocket


async def _ok(request: HttpRequest) -> HttpResponse:
    return HttpResponse(200, b"ok\n")


async def _serve(nursery: trio.Nursery, websocket: object) -> WireServer:
    wire = WireServer(open_listening_socket("127.0.0.1", 0), _ok, websocket)  # type: ignore[arg-type]
    await nursery.start(wire.run)
    return wire


async def test_a_batch_larger_than_the_socket_buffer_arrives_whole_and_in_order(
    nursery: trio.Nursery,
) -> None:
    texts = [json.dumps({"n": n, "pad": "x" * 1000}) for n in range(4000)]  # about 4 MB
    sent = trio.Event()

    async def websocket(handshake: Handshake) -> None:
        socket = await handshake.accept()
        await socket.send_texts(texts[:2000])
        await socket.send_texts(texts[2000:])
        sent.set()
        await socket.receive()

    wire = await _serve(nursery, websocket)
    raw = await _RawWebSocket.connect(wire.address, "/ws")
    await trio.testing.wait_all_tasks_blocked()  # the server is stuck on a full buffer
    assert not sent.is_set()

    received = [(await raw.message())["n"] for _ in texts]

    assert received == list(range(4000))
    with trio.fail_after(PATIENCE):
        await sent.wait()


async def test_a_send_on_an_aborted_socket_raises_closed_and_writes_nowhere(
    nursery: trio.Nursery,
) -> None:
    """The aborted socket's file descriptor number is free for the next
    connection to take: a late send must not land there."""
    outcome: list[BaseException] = []
    second_accepted = trio.Event()
    accepted = 0

    async def websocket(handshake: Handshake) -> None:
        nonlocal accepted
        socket = await handshake.accept()
        accepted += 1
        if accepted == 2:
            second_accepted.set()
            await socket.receive()
            return
        socket.abort()
        await second_accepted.wait()
        try:
            await socket.send_texts(["after the abort"])
        except trio.ClosedResourceError as error:
            outcome.append(error)

    wire = await _serve(nursery, websocket)
    first = await _RawWebSocket.connect(wire.address, "/ws")
    with trio.fail_after(PATIENCE):
        assert await first.stream.receive_some() == b""
    second = await _RawWebSocket.connect(wire.address, "/ws")
    await wait_until(lambda: bool(outcome))
    await trio.testing.wait_all_tasks_blocked()

    assert isinstance(outcome[0], trio.ClosedResourceError)
    with trio.move_on_after(0.2):
        assert await second.stream.receive_some() == b"never"
    assert second.buffer == bytearray()


async def test_a_response_carries_its_reason_phrase(nursery: trio.Nursery) -> None:
    wire = await _serve(nursery, None)
    async with await trio.open_tcp_stream(*wire.address) as stream:
        await stream.send_all(b"GET /nope HTTP/1.1\r\nHost: g\r\n\r\n")
        with trio.fail_after(PATIENCE):
            head = await stream.receive_some()

    assert head.startswith(b"HTTP/1.1 200 OK\r\n")


async def test_a_body_sent_too_slowly_is_dropped_after_the_timeout(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    wire = await _serve(nursery, None)
    async with await trio.open_tcp_stream(*wire.address) as stream:
        await stream.send_all(b"POST /x HTTP/1.1\r\nHost: g\r\nContent-Length: 100\r\n\r\nabc")
        started = trio.current_time()
        with trio.fail_after(KEEP_ALIVE_TIMEOUT * 2):
            assert await stream.receive_some() == b""

    assert trio.current_time() - started >= KEEP_ALIVE_TIMEOUT
    await wait_until(lambda: wire.open_streams == 0)


class _LastWordIsLong(Agent):
    """Thinks once, at length, and then says nothing more for a while."""

    name = "long_last_word"

    async def run(self, ctx: RunContext, input: Any) -> Any:
        await ctx.thinking("x" * 3_000_000)
        await trio.sleep_forever()


async def test_an_event_the_socket_took_only_part_of_arrives_whole_with_nothing_after_it(
    signer: TokenSigner,
) -> None:
    """The bridge's direct write leaves the rest of a big event unsent; with
    no later event to push it out, the connection flushes it itself."""
    async with (
        serve_agents(signer, [_LastWordIsLong]) as url,
        connect(url, signer.mint("alice"), max_message_size=1 << 23) as ws,
    ):
        await run(ws, "long_last_word", run_id="r")
        started = await receive(ws)
        thinking = await receive(ws)

    assert started["type"] == "agent_started"
    assert thinking["type"] == "agent_thinking" and len(thinking["data"]["text"]) == 3_000_000


async def test_a_resume_while_a_frame_is_half_written_finishes_that_frame_first(
    start_server: Callable[..., Awaitable[ServerHandle]], mint: Callable[[str], str]
) -> None:
    """The old writer is cancelled in the middle of a big frame; the new one
    must send the rest of it before its replay, or the client reads garbage."""
    # Room in the replay window for both 800 kB events.
    server = (await start_server(core=CoreConfig(replay_bytes=4 << 20))).server
    host, port = server.address
    raw = socket.socket()
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    raw.connect((host, port))
    raw.setblocking(False)
    stream = trio.SocketStream(trio.socket.from_stdlib_socket(raw))
    client = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
    await stream.send_all(client.send(Request(host="g", target=f"/ws?token={mint('alice')}")))
    with trio.fail_after(PATIENCE):
        while not any(isinstance(e, AcceptConnection) for e in client.events()):
            client.receive_data(await stream.receive_some(65536))
    run = {"type": "run", "agent": "echo", "input": "x" * 800_000, "run_id": "big"}
    await stream.send_all(client.send(TextMessage(json.dumps(run))))
    await wait_until(
        lambda: any(c.transport.sending_since is not None for c in server.service.connections)
    )

    await stream.send_all(client.send(TextMessage(json.dumps({"type": "resume", "after": 0}))))
    messages: list[dict[str, Any]] = []
    parts: list[str] = []
    with trio.fail_after(PATIENCE):
        while [m["seq"] for m in messages][-2:] != [1, 2] or len(messages) < 3:
            client.receive_data(await stream.receive_some(65536))
            for event in client.events():
                assert not isinstance(event, CloseConnection), event
                if isinstance(event, TextMessage):
                    parts.append(event.data)
                    if event.message_finished:
                        messages.append(json.loads("".join(parts)))
                        parts.clear()
    await stream.aclose()

    # What the old writer had begun, whole; then the replay, whole.
    assert [m["seq"] for m in messages] in ([1, 1, 2], [1, 2, 1, 2])
    assert [m["type"] for m in messages][-2:] == ["agent_started", "agent_completed"]


async def test_an_idle_connection_keeps_no_exception_or_event_alive(
    server: RunningServer, mint: Callable[[str], str]
) -> None:
    """Its writer, parked on an empty subscription, holds neither the
    exception an empty queue is found by nor the last events it wrote."""
    async with connect(server.url, mint("alice"), message_queue_size=1) as ws:
        runs = 6  # 6 MB: some events queue for the writer
        for n in range(runs):
            await run(ws, "echo", "x" * 500_000, run_id=f"big-{n}")
        await wait_until(lambda: server.core.last_seq("alice") == 2 * runs)
        for _ in range(2 * runs):
            await receive(ws)
        await trio.testing.wait_all_tasks_blocked()
        gc.collect()

        alive = gc.get_objects()
        assert not [o for o in alive if isinstance(o, trio.WouldBlock)]
        assert not [o for o in alive if isinstance(o, Event) and o.user_id == "alice"]
