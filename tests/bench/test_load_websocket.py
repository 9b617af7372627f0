"""bench.load's lean WebSocket client reads every frame shape the server may
send, answers pings and close frames, and decodes JSON as `json.loads` does."""

from __future__ import annotations

import json
import select
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from bench._load_client import RawWebSocket, _decode

from .kit import client_frames, server_frame


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, RawWebSocket]]:
    server, client = socket.socketpair()
    client.setblocking(False)
    server.settimeout(5)
    yield server, RawWebSocket(client, b"")
    server.close()
    client.close()


def text(payload: str) -> bytes:
    return server_frame(0x1, payload.encode())


def test_a_whole_frame_per_recv_is_one_text(pair: tuple[socket.socket, RawWebSocket]) -> None:
    server, ws = pair
    for payload in ("short", "x" * 200):
        server.send(text(payload))
        assert ws.feed() == [payload]


def test_frames_split_across_recvs_or_sharing_one_are_all_read(
    pair: tuple[socket.socket, RawWebSocket],
) -> None:
    server, ws = pair
    payloads = ["a", "b" * 130, "c" * 70_000, "d"]
    data = b"".join(text(payload) for payload in payloads)
    got: list[str] = []
    for cut in (1, 3, 50, 200, 140, len(data)):
        server.sendall(data[:cut])
        data = data[cut:]
        while select.select([ws.sock], [], [], 0)[0]:  # 70 000 bytes take more than one recv
            got += ws.feed()
    assert got == payloads and not ws.closed


def test_a_fragmented_message_is_joined(pair: tuple[socket.socket, RawWebSocket]) -> None:
    server, ws = pair
    server.send(server_frame(0x1, b"hel", fin=False) + server_frame(0x0, b"lo"))
    assert ws.feed() == ["hello"]


def test_a_ping_is_answered_with_a_pong(pair: tuple[socket.socket, RawWebSocket]) -> None:
    server, ws = pair
    server.send(server_frame(0x9, b"are you there") + text("after"))
    assert ws.feed() == ["after"]
    assert client_frames(server.recv(1024)) == [(0xA, b"are you there")]


def test_the_servers_close_frame_is_answered_and_ends_the_connection(
    pair: tuple[socket.socket, RawWebSocket],
) -> None:
    server, ws = pair
    server.send(text("last") + server_frame(0x8, (1001).to_bytes(2, "big") + b"bye"))
    assert ws.feed() == ["last"]
    assert ws.closed and ws.close_code == 1001
    assert client_frames(server.recv(1024)) == [(0x8, (1001).to_bytes(2, "big"))]


def test_a_masked_server_frame_is_a_protocol_error(
    pair: tuple[socket.socket, RawWebSocket],
) -> None:
    server, ws = pair
    server.send(server_frame(0x1, b"hidden", mask=True))
    assert ws.feed() == []
    assert ws.closed and ws.close_code == 1002
    assert client_frames(server.recv(1024)) == [(0x8, (1002).to_bytes(2, "big"))]


def test_the_end_of_the_stream_ends_the_connection(
    pair: tuple[socket.socket, RawWebSocket],
) -> None:
    server, ws = pair
    server.shutdown(socket.SHUT_WR)
    assert ws.feed() == [] and ws.closed and ws.close_code is None


def test_what_the_socket_does_not_take_is_kept_and_flushed(
    pair: tuple[socket.socket, RawWebSocket],
) -> None:
    server, ws = pair
    filler = b"\0" * 4096
    while not ws.unsent:
        ws.send(filler)
    ws.send(b"the end")
    received = b""
    while not received.endswith(b"the end"):
        received += server.recv(1 << 20)
        ws.flush()
    assert not ws.unsent and received.lstrip(b"\0") == b"the end"


@pytest.mark.parametrize(
    "payload",
    [
        '{"type":"agent_started","seq":1,"ts":1.5,"data":{}}',
        ' \n{"seq": 2}\t',
        "[1, 2]",
        "1",
        '"text"',
        b'{"seq":3}',
        '{"seq":1} {"seq":2}',
        '{"seq":1',
        "\ufeff{}",
        "",
        "not json",
        '{"seq":NaN}',
        None,
    ],
)
def test_decoding_matches_json_loads(payload: Any) -> None:
    def outcome(decode: Any) -> Any:
        try:
            return decode(payload)
        except Exception as error:  # the same kind of error, not the same message
            return type(error)

    expected = outcome(json.loads)
    assert repr(outcome(_decode)) == repr(expected)
