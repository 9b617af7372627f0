"""greenroom's own HTTP/1.1 and WebSocket server (`actors._wire`) as a client
sees it on a real socket: status codes, keep-alive, broken requests, fragments,
pings, the frames it builds, and the closing handshake. Frames are written and
read by hand (`_RawWebSocket`) to send what trio-websocket never would."""

from __future__ import annotations

import base64
import json
import os
import socket
import struct
import tracemalloc
from collections.abc import Awaitable, Callable
from typing import Any

import h11
import httpx
import pytest
import trio
import trio.testing
from wsproto.frame_protocol import FrameProtocol, Opcode

from actors import RunningServer
from actors._websocket import Handshake, text_frame
from actors._wire import HttpRequest, HttpResponse, WireServer, open_listening_socket

from .kit import (
    PATIENCE,
    ServerHandle,
    connect,
    exchange,
    http_get,
    ping,
    still_serving,
    wait_until,
)

TEXT, BINARY, CONTINUATION, CLOSE, PING, PONG = 0x1, 0x2, 0x0, 0x8, 0x9, 0xA
Address = tuple[str, int]


def _frame(opcode: int, payload: bytes = b"", *, fin: bool = True, masked: bool = True) -> bytes:
    """One client frame (RFC 6455 §5.2), masked unless told otherwise."""
    n = len(payload)
    first, mask_bit = (0x80 if fin else 0) | opcode, 0x80 if masked else 0
    if n < 126:
        head = bytes((first, mask_bit | n))
    elif n < 1 << 16:
        head = bytes((first, mask_bit | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((first, mask_bit | 127)) + n.to_bytes(8, "big")
    if not masked:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(byte ^ key[i % 4] for i, byte in enumerate(payload))


def _close_frame(code: int, reason: bytes = b"") -> bytes:
    return _frame(CLOSE, struct.pack("!H", code) + reason)


class _RawWebSocket:
    """A hand-written client: the handshake, then whole frames in and out."""

    def __init__(self, stream: trio.SocketStream, pending: bytes) -> None:
        self.stream = stream
        self.buffer = bytearray(pending)

    @classmethod
    async def connect(cls, address: Address, target: str, first: bytes = b"") -> _RawWebSocket:
        """Upgrade on `target`, sending `first` in the same write as the request."""
        stream = await trio.open_tcp_stream(*address)
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET {target} HTTP/1.1\r\nHost: greenroom\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        await stream.send_all(request.encode() + first)
        raw = cls(stream, b"")
        with trio.fail_after(PATIENCE):
            while b"\r\n\r\n" not in raw.buffer:
                await raw._fill(len(raw.buffer) + 1)
        head, _, rest = bytes(raw.buffer).partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101 "), head
        raw.buffer = bytearray(rest)
        return raw

    async def send(self, *frames: bytes) -> None:
        await self.stream.send_all(b"".join(frames))

    async def frame(self) -> tuple[bool, int, bytes]:
        """The server's next frame: (FIN, opcode, payload)."""
        with trio.fail_after(PATIENCE):
            await self._fill(2)
            first, second = self.buffer[0], self.buffer[1]
            assert not second & 0x80, "a server's frames are never masked"
            n, start = second & 0x7F, 2
            if n >= 126:
                start = 4 if n == 126 else 10
                await self._fill(start)
                n = int.from_bytes(self.buffer[2:start], "big")
            await self._fill(start + n)
        payload = bytes(self.buffer[start : start + n])
        del self.buffer[: start + n]
        return bool(first & 0x80), first & 0x0F, payload

    async def message(self) -> dict[str, Any]:
        """The next frame, which must be one final text frame of one JSON object."""
        fin, opcode, payload = await self.frame()
        assert (fin, opcode) == (True, TEXT), (fin, opcode, payload)
        message: dict[str, Any] = json.loads(payload)
        return message

    async def close_code(self) -> int:
        fin, opcode, payload = await self.frame()
        assert (fin, opcode) == (True, CLOSE), (fin, opcode, payload)
        return int.from_bytes(payload[:2], "big")

    async def eof(self) -> None:
        """The server closes the TCP stream with a FIN (a reset raises here)."""
        assert not self.buffer
        with trio.fail_after(PATIENCE):
            assert await self.stream.receive_some() == b""

    async def _fill(self, n: int) -> None:
        while len(self.buffer) < n:
            chunk = await self.stream.receive_some()
            assert chunk, f"the server closed the TCP stream; unparsed {bytes(self.buffer)!r}"
            self.buffer += chunk


async def test_a_plain_get_on_the_websocket_path_is_426(server: RunningServer) -> None:
    response = await http_get(server.address, "/ws")

    assert response.status_code == 426
    assert "WebSocket" in response.text


async def test_a_post_to_metrics_is_405_and_its_body_is_skipped(server: RunningServer) -> None:
    host, port = server.address
    async with httpx.AsyncClient(base_url=f"http://{host}:{port}", timeout=PATIENCE) as client:
        posted = await client.post("/metrics", content=b"x" * 100_000)
        after = await client.get("/healthz")

    assert posted.status_code == 405
    assert posted.text == "POST is not allowed here\n"
    assert after.status_code == 200


async def test_head_on_healthz_sends_the_headers_without_the_body(server: RunningServer) -> None:
    request = b"HEAD /healthz HTTP/1.1\r\nHost: greenroom\r\nConnection: close\r\n\r\n"
    head, _, body = (await exchange(server.address, request)).partition(b"\r\n\r\n")

    lines = head.decode().lower().split("\r\n")
    assert lines[0].startswith("http/1.1 200")
    assert "content-type: application/json" in lines
    assert any(
        line.startswith("content-length: ") and line != "content-length: 0" for line in lines
    )
    assert body == b""


async def test_requests_on_one_kept_alive_connection_are_all_answered(
    server: RunningServer,
) -> None:
    client = h11.Connection(h11.CLIENT)
    answers: list[tuple[int, bytes]] = []
    async with await trio.open_tcp_stream(*server.address) as stream:
        for method, target in [("HEAD", "/healthz"), ("GET", "/healthz"), ("GET", "/nope")]:
            request = h11.Request(method=method, target=target, headers=[("host", "greenroom")])
            await stream.send_all(client.send(request) + (client.send(h11.EndOfMessage()) or b""))
            status, body = 0, b""
            with trio.fail_after(PATIENCE):
                while not isinstance(event := client.next_event(), h11.EndOfMessage):
                    if event is h11.NEED_DATA:
                        client.receive_data(await stream.receive_some())
                    elif isinstance(event, h11.Response):
                        status = event.status_code
                    elif isinstance(event, h11.Data):
                        body += event.data
                    else:
                        raise AssertionError(f"unexpected {event!r}")
            answers.append((status, body))
            assert server.http.open_streams == 1
            client.start_next_cycle()

    assert [status for status, _ in answers] == [200, 200, 404]
    assert answers[0][1] == b""
    assert json.loads(answers[1][1])["status"] == "ok"


@pytest.mark.parametrize(
    "headers",
    [
        "Sec-WebSocket-Version: 13\r\n",
        "Sec-WebSocket-Key: a2V5a2V5a2V5a2V5a2V5aw==\r\n",
    ],
    ids=["no key", "no version"],
)
async def test_a_malformed_upgrade_is_400_and_the_server_keeps_serving(
    server: RunningServer, mint: Callable[[str], str], headers: str
) -> None:
    request = (
        f"GET /ws?token={mint('alice')} HTTP/1.1\r\nHost: greenroom\r\n"
        f"Upgrade: websocket\r\nConnection: Upgrade\r\n{headers}\r\n"
    )
    response = await exchange(server.address, request.encode())

    assert response.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert b"bad WebSocket handshake" in response
    await still_serving(server)


async def test_a_malformed_request_line_is_400(server: RunningServer) -> None:
    response = await exchange(server.address, b"NOT HTTP AT ALL\r\n\r\n")

    assert response.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    await still_serving(server)


@pytest.mark.parametrize(
    ("request_", "eof"),
    [
        (b"POST /metrics HTTP/1.1\r\nHost: g\r\nContent-Length: 10\r\n\r\nabc", True),
        (b"POST /metrics HTTP/1.1\r\nHost: g\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", False),
        (
            b"GET /ws HTTP/1.1\r\nHost: g\r\nUpgrade: websocket\r\nContent-Length: 10\r\n\r\nab",
            True,
        ),
    ],
    ids=["body cut short", "bad chunk", "upgrade body cut short"],
)
async def test_a_broken_request_body_is_400_and_the_server_keeps_serving(
    server: RunningServer, request_: bytes, eof: bool
) -> None:
    response = await exchange(server.address, request_, eof=eof)

    assert response.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    await still_serving(server)


# WebSocket frames


async def test_a_websocket_ping_gets_a_pong(
    server: RunningServer, mint: Callable[[str], str]
) -> None:
    async with connect(server.url, mint("alice")) as ws:
        with trio.fail_after(PATIENCE):
            await ws.ping(b"are you there")
        await ping(ws)


async def test_a_message_sent_in_fragments_is_assembled_with_a_ping_between_them(
    server: RunningServer, mint: Callable[[str], str]
) -> None:
    text = "héllo wörld ✓"
    data = json.dumps({"type": "run", "agent": "echo", "input": text}, ensure_ascii=False).encode()
    cut = data.index("é".encode()) + 1  # in the middle of a character
    raw = await _RawWebSocket.connect(server.address, f"/ws?token={mint('alice')}")
    await raw.send(
        _frame(TEXT, data[:cut], fin=False),
        _frame(PING, b"between"),
        _frame(CONTINUATION, data[cut:-5], fin=False),
        _frame(CONTINUATION, data[-5:]),
    )

    assert await raw.frame() == (True, PONG, b"between")
    started, completed = await raw.message(), await raw.message()
    assert (started["type"], completed["type"]) == ("agent_started", "agent_completed")
    assert completed["data"]["output"] == text


async def test_frames_sent_right_behind_the_handshake_are_read(
    server: RunningServer, mint: Callable[[str], str]
) -> None:
    first = _frame(TEXT, b'{"type": "ping"}')
    raw = await _RawWebSocket.connect(server.address, f"/ws?token={mint('alice')}", first)

    assert await raw.message() == {"type": "pong"}


async def test_a_fragmented_message_over_the_limit_closes_with_1009(
    start_server: Callable[..., Awaitable[ServerHandle]], mint: Callable[[str], str]
) -> None:
    server = (await start_server(max_message_bytes=1024)).server
    raw = await _RawWebSocket.connect(server.address, f"/ws?token={mint('alice')}")
    await raw.send(
        _frame(TEXT, b"x" * 400, fin=False),
        *[_frame(CONTINUATION, b"x" * 400, fin=False) for _ in range(3)],
        _frame(CONTINUATION, b"x"),
    )

    assert await raw.close_code() == 1009
    await raw.send(_close_frame(1009))
    await raw.eof()
    assert server.core.last_seq("alice") == 0


async def test_an_unmasked_client_frame_closes_with_1002(
    server: RunningServer, mint: Callable[[str], str]
) -> None:
    raw = await _RawWebSocket.connect(server.address, f"/ws?token={mint('alice')}")
    await raw.send(_frame(TEXT, b'{"type": "ping"}', masked=False))

    assert await raw.close_code() == 1002


@pytest.mark.parametrize(
    ("size", "header"),
    [
        (125, b"\x81\x7d"),
        (126, b"\x81\x7e\x00\x7e"),
        (65535, b"\x81\x7e\xff\xff"),
        (65536, b"\x81\x7f" + (65536).to_bytes(8, "big")),
    ],
)
def test_text_frame_uses_the_shortest_length_header_for_the_payload(
    size: int, header: bytes
) -> None:
    text = "a" * size
    frame = text_frame(text)

    assert frame == header + text.encode()
    assert _as_a_client_reads(frame) == (Opcode.TEXT, text)


def test_text_frame_counts_non_ascii_text_in_utf8_bytes() -> None:
    text = "é" * 62 + "✓"  # 62 characters + 1, but 127 bytes: a 16-bit length
    frame = text_frame(text)

    assert frame[:4] == b"\x81\x7e\x00\x7f"
    assert _as_a_client_reads(frame) == (Opcode.TEXT, text)
    assert _as_a_client_reads(text_frame("🎭 ü")) == (Opcode.TEXT, "🎭 ü")


def _as_a_client_reads(frame: bytes) -> tuple[Opcode, object]:
    protocol = FrameProtocol(client=True, extensions=[])
    protocol.receive_bytes(frame)
    (received,) = list(protocol.received_frames())
    assert received.frame_finished and received.message_finished
    return received.opcode, received.payload


async def test_events_queued_for_one_connection_arrive_in_order_one_per_frame(
    server: RunningServer, mint: Callable[[str], str]
) -> None:
    raw = await _RawWebSocket.connect(server.address, f"/ws?token={mint('alice')}")
    run = {"type": "run", "agent": "sleep", "input": {"seconds": 0, "steps": 300}}
    await raw.send(_frame(TEXT, json.dumps(run).encode()))

    events = [await raw.message()]
    while events[-1]["type"] != "agent_completed":
        events.append(await raw.message())

    assert [e["seq"] for e in events] == list(range(1, 303))
    assert [e["type"] for e in events[1:-1]] == ["agent_thinking"] * 300


# closing


async def test_after_its_close_frame_the_server_waits_for_the_clients_reply(
    server: RunningServer, mint: Callable[[str], str]
) -> None:
    raw = await _RawWebSocket.connect(server.address, f"/ws?token={mint('alice')}")
    # Far more than one read behind the binary frame: still unread when the
    # server closes, which a TCP close would answer with a reset.
    unread = [_frame(TEXT, b"x" * 1000) for _ in range(200)]
    await raw.send(_frame(BINARY, b"{}"), *unread)

    assert await raw.close_code() == 1003
    await trio.testing.wait_all_tasks_blocked()
    assert server.http.open_streams == 1
    await raw.send(_close_frame(1003))
    await raw.eof()
    await wait_until(lambda: server.http.open_streams == 0)


async def test_a_client_that_closes_first_gets_a_close_reply(
    server: RunningServer, mint: Callable[[str], str]
) -> None:
    raw = await _RawWebSocket.connect(server.address, f"/ws?token={mint('alice')}")
    await raw.send(_frame(TEXT, b'{"type": "ping"}'))
    assert await raw.message() == {"type": "pong"}
    await raw.send(_close_frame(1000, b"bye"))

    assert await raw.close_code() == 1000
    await raw.eof()
    await wait_until(lambda: not server.service.connections and server.http.open_streams == 0)


@pytest.mark.parametrize("reset", [False, True], ids=["fin", "reset"])
async def test_a_client_that_vanishes_leaves_no_connection_behind(
    server: RunningServer, mint: Callable[[str], str], reset: bool
) -> None:
    raw = await _RawWebSocket.connect(server.address, f"/ws?token={mint('alice')}")
    run = {"type": "run", "agent": "sleep", "input": {"seconds": 60, "steps": 1}}
    await raw.send(_frame(TEXT, json.dumps(run).encode()))
    assert (await raw.message())["type"] == "agent_started"
    assert len(server.service.connections) == 1

    if reset:
        raw.stream.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    await raw.stream.aclose()

    await wait_until(lambda: not server.service.connections and server.http.open_streams == 0)
    await still_serving(server)


async def test_a_ping_queued_behind_the_servers_close_gets_no_pong_and_breaks_nothing(
    nursery: trio.Nursery,
) -> None:
    after_close: list[str | bytes | None] = []

    async def websocket(handshake: Handshake) -> None:
        socket = await handshake.accept()
        assert await socket.receive() == "first"
        await socket.close(1000, "done")
        after_close.append(await socket.receive())

    async def http(request: HttpRequest) -> HttpResponse:
        return HttpResponse(200, b"ok\n")

    wire = WireServer(open_listening_socket("127.0.0.1", 0), http, websocket)
    await nursery.start(wire.run)
    raw = await _RawWebSocket.connect(wire.address, "/ws")
    await raw.send(_frame(TEXT, b"first"), _frame(PING, b"late"))  # one read: both queued

    assert await raw.close_code() == 1000
    await raw.send(_close_frame(1000))
    await raw.eof()
    assert after_close == [None]
    await wait_until(lambda: wire.open_streams == 0)


async def test_a_ping_flood_is_answered_with_one_pong_a_read(
    server: RunningServer, mint: Callable[[str], str]
) -> None:
    # A pong each, written before anything else was served, let one client
    # stall the whole server; RFC 6455 §5.5.3 allows answering the newest only.
    raw = await _RawWebSocket.connect(server.address, f"/ws?token={mint('alice')}")
    await raw.send(*[_frame(PING, b"%d" % n) for n in range(500)], _frame(TEXT, b'{"type":"ping"}'))

    pongs = []
    while (frame := await raw.frame())[1] == PONG:
        pongs.append(frame[2])

    assert json.loads(frame[2]) == {"type": "pong"}
    assert 1 <= len(pongs) < 50 and pongs[-1] == b"499"


async def test_a_message_in_many_small_fragments_holds_about_its_own_size(
    server: RunningServer, mint: Callable[[str], str]
) -> None:
    # Each fragment was kept as an object of its own: 100 KB sent two bytes a
    # frame held about 34 times that.
    raw = await _RawWebSocket.connect(server.address, f"/ws?token={mint('alice')}")
    fragment = "Ā".encode()  # two bytes, one character
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        await raw.send(_frame(TEXT, fragment, fin=False))
        await raw.send(*[_frame(CONTINUATION, fragment, fin=False) for _ in range(50_000)])
        await raw.send(_frame(PING, b"after"))  # answered once all before it is read
        assert await raw.frame() == (True, PONG, b"after")
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()

    assert held < 1_000_000, f"{held:,} bytes held for 100 KB of fragments"
