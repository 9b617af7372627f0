"""One bad request or one bad event stays with its own connection: the
server, the event bridge and every other user carry on."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import trio

from actors import Agent, RunContext, RunningServer, TokenSigner

from .kit import PATIENCE, connect, ping, read_until_ended, run, serve_agents


async def _exchange(address: tuple[str, int], data: bytes) -> bytes:
    received = bytearray()
    async with await trio.open_tcp_stream(*address) as stream:
        await stream.send_all(data)
        with trio.fail_after(PATIENCE):
            while chunk := await stream.receive_some():
                received += chunk
    return bytes(received)


async def test_a_request_target_that_cannot_be_parsed_is_400_and_the_server_carries_on(
    server: RunningServer, mint: Callable[[str], str]
) -> None:
    answer = await _exchange(server.address, b"GET //[/ws HTTP/1.1\r\nHost: g\r\n\r\n")

    assert answer.startswith(b"HTTP/1.1 400 ")
    async with connect(server.url, mint("alice")) as ws:
        await ping(ws)


async def test_an_upgrade_by_any_method_but_get_is_405(server: RunningServer) -> None:
    request = (
        b"POST /ws HTTP/1.1\r\nHost: g\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: a2V5a2V5a2V5a2V5a2V5aw==\r\nSec-WebSocket-Version: 13\r\n"
        b"Content-Length: 0\r\n\r\n"
    )
    answer = await _exchange(
        server.address, request + b"GET /nope HTTP/1.1\r\nHost: g\r\nConnection: close\r\n\r\n"
    )

    assert answer.startswith(b"HTTP/1.1 405 ")
    assert b"HTTP/1.1 101" not in answer


class _Unencodable(Agent):
    """Returns what JSON has no form for: a dict with tuple keys."""

    name = "unencodable"

    async def run(self, ctx: RunContext, input: Any) -> Any:
        return {(1, 2): "x"}


async def test_an_event_json_cannot_encode_reaches_the_client_described_and_nothing_breaks(
    signer: TokenSigner,
) -> None:
    async with (
        serve_agents(signer, [_Unencodable]) as url,
        connect(url, signer.mint("alice")) as alice,
        connect(url, signer.mint("bob")) as bob,
    ):
        await run(alice, "unencodable", run_id="a1")
        await run(alice, "unencodable", run_id="a2")
        alices = await read_until_ended(alice, runs=2)
        await run(bob, "unencodable", run_id="b1")
        bobs = await read_until_ended(bob)

    for events in (alices, bobs):
        completed = [e for e in events if e["type"] == "agent_completed"]
        assert completed, events
        assert all("(1, 2)" in e["data"]["unencodable"] for e in completed)
    assert [e["seq"] for e in alices] == [1, 2, 3, 4]
