"""Shared helpers for the service tests: a real client and what it reads.

A plain module (not a conftest) so tests can import from it.

The client is trio-websocket, never the server's own code; HTTP is httpx.
Every wait is bounded, so a server that stops answering fails a test
instead of hanging the suite.
"""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import httpx
import trio
from prometheus_client.parser import text_string_to_metric_families
from trio_websocket import ConnectionClosed, WebSocketConnection, open_websocket_url

from actors import (
    Agent,
    GreenroomService,
    RunningServer,
    ServeOptions,
    TokenSigner,
    open_core,
    open_server,
)
from actors._wire import WireServer, open_listening_socket

SECRET = "service-tests-secret-0123456789abcdef"
ROOT = Path(__file__).resolve().parents[2]
#: The `greenroom` command, as a subprocess of this interpreter.
GREENROOM = [sys.executable, "-m", "actors.cli"]
TERMINAL = ("agent_completed", "agent_error")
#: Seconds any single wait may take before a test fails.
PATIENCE = 5.0

Message = dict[str, Any]


@attrs.define(eq=False)
class ServerHandle:
    """A server started in a nursery; `stop()` leaves its `open_server` block."""

    server: RunningServer
    _stop: trio.Event
    _stopped: trio.Event

    async def stop(self) -> None:
        self._stop.set()
        with trio.fail_after(PATIENCE * 3):
            await self._stopped.wait()


async def hold_server(
    options: ServeOptions,
    signer: TokenSigner,
    *,
    task_status: trio.TaskStatus[ServerHandle] = trio.TASK_STATUS_IGNORED,
) -> None:
    stop, stopped = trio.Event(), trio.Event()
    try:
        async with open_server(options, signer) as server:
            task_status.started(ServerHandle(server, stop, stopped))
            await stop.wait()
    finally:
        stopped.set()


@asynccontextmanager
async def serve_agents(signer: TokenSigner, agents: list[type[Agent]]) -> AsyncIterator[str]:
    """greenroom's own server for `agents` (instead of the demo ones) on a
    free port, for the block; yields its WebSocket URL."""
    async with open_core(agents=agents) as core, trio.open_nursery() as nursery:
        service = GreenroomService(signer, core=core)
        wire = WireServer(
            open_listening_socket("127.0.0.1", 0), service.wire_http, service.wire_websocket
        )
        await nursery.start(wire.run)
        host, port = wire.address
        try:
            yield f"ws://{host}:{port}/ws"
        finally:
            wire.stop()


@asynccontextmanager
async def connect(
    url: str, token: str | None = None, **kwargs: Any
) -> AsyncIterator[WebSocketConnection]:
    """A trio-websocket client on `url`, with `?token=` when a token is given."""
    target = url if token is None else f"{url}?token={token}"
    async with open_websocket_url(target, **kwargs) as ws:
        yield ws


async def send(ws: WebSocketConnection, message: Message) -> None:
    await ws.send_message(json.dumps(message))


async def receive(ws: WebSocketConnection, *, patience: float = PATIENCE) -> Message:
    with trio.fail_after(patience):
        message: Message = json.loads(await ws.get_message())
    return message


async def ping(ws: WebSocketConnection) -> None:
    """Send a ping; the very next message must be its pong (nothing else was
    pending for this connection)."""
    await send(ws, {"type": "ping"})
    assert await receive(ws) == {"type": "pong"}


async def run(
    ws: WebSocketConnection, agent: str, input: Any = None, run_id: str | None = None
) -> None:
    message: Message = {"type": "run", "agent": agent, "input": input}
    if run_id is not None:
        message["run_id"] = run_id
    await send(ws, message)


async def read_until_ended(
    ws: WebSocketConnection, runs: int = 1, *, patience: float = PATIENCE
) -> list[Message]:
    """Every message until `runs` runs have had their terminal event."""
    messages: list[Message] = []
    ended = 0
    while ended < runs:
        message = await receive(ws, patience=patience)
        messages.append(message)
        if message.get("type") in TERMINAL:
            ended += 1
    return messages


async def read_until_closed(
    ws: WebSocketConnection, *, patience: float = PATIENCE
) -> tuple[list[Message], int | None]:
    """Every message until the server closes the socket, and the close code."""
    messages, code, _ = await read_until_closed_why(ws, patience=patience)
    return messages, code


async def read_until_closed_why(
    ws: WebSocketConnection, *, patience: float = PATIENCE
) -> tuple[list[Message], int | None, str]:
    """Every message until the server closes the socket, the close code and
    the close reason."""
    messages: list[Message] = []
    with trio.fail_after(patience):
        while True:
            try:
                text = await ws.get_message()
            except ConnectionClosed as closed:
                if closed.reason is None:
                    return messages, None, ""
                return messages, closed.reason.code, closed.reason.reason or ""
            messages.append(json.loads(text))


async def closed_with(ws: WebSocketConnection) -> int | None:
    """The close code, asserting that no message came before the close."""
    messages, code = await read_until_closed(ws)
    assert messages == [], f"expected no message before the close, got {messages!r}"
    return code


async def wait_until(condition: Callable[[], bool], *, patience: float = PATIENCE) -> None:
    """Poll `condition` until it holds (for server state a client cannot see)."""
    with trio.fail_after(patience):
        while not condition():
            await trio.sleep(0.01)


def assert_stream(events: Iterable[Message], user_id: str, *, first_seq: int = 1) -> list[Message]:
    """Events of one user's stream: gapless seq from `first_seq`, a float
    UNIX time `ts`, this user only, and every event carrying the full envelope."""
    events = list(events)
    for expected_seq, event in enumerate(events, start=first_seq):
        assert set(event) == {"type", "seq", "user_id", "run_id", "ts", "data"}, event
        assert event["seq"] == expected_seq, [e["seq"] for e in events]
        assert event["user_id"] == user_id, event
        assert isinstance(event["ts"], float) and event["ts"] > 1_600_000_000, event
        assert isinstance(event["data"], dict), event
    return events


def types_of(events: Iterable[Message]) -> list[str]:
    return [e["type"] for e in events]


async def http_get(
    server_address: tuple[str, int], path: str, headers: dict[str, str] | None = None
) -> httpx.Response:
    host, port = server_address
    async with httpx.AsyncClient(timeout=PATIENCE) as client:
        return await client.get(f"http://{host}:{port}{path}", headers=headers)


def metric_samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Prometheus text as {(sample name, labels): value}."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def sample(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return samples[(name, frozenset(labels.items()))]


async def exchange(address: tuple[str, int], data: bytes, *, eof: bool = False) -> bytes:
    """Send `data` on a raw TCP socket (then EOF when told); all the server
    sends until it closes."""
    received = bytearray()
    async with await trio.open_tcp_stream(*address) as stream:
        await stream.send_all(data)
        if eof:
            await stream.send_eof()
        with trio.fail_after(PATIENCE):
            while chunk := await stream.receive_some():
                received += chunk
    return bytes(received)


async def still_serving(server: RunningServer) -> None:
    """The server answers a health check, and no connection is left open."""
    response = await http_get(server.address, "/healthz")
    assert response.status_code == 200
    assert response.json()["connections"] == 0
