"""Graceful shutdown: live runs end with `agent_error` "shutdown", those
events are delivered, then every socket is closed with 1001."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import httpx
import pytest
import trio

from actors import RunningServer, ServeOptions, TokenSigner, open_server

from .kit import (
    PATIENCE,
    ServerHandle,
    assert_stream,
    connect,
    http_get,
    ping,
    read_until_closed,
    receive,
    run,
    types_of,
)


async def test_leaving_open_server_ends_live_runs_with_shutdown_then_closes_1001(
    start_server: Callable[..., Awaitable[ServerHandle]], mint: Callable[[str], str]
) -> None:
    handle = await start_server()
    server = handle.server

    async with connect(server.url, mint("alice")) as alice, connect(server.url, mint("bob")) as bob:
        await run(alice, "sleep", {"seconds": 30, "steps": 30}, run_id="long")
        await run(alice, "sleep", {"seconds": 30, "steps": 30}, run_id="longer")
        started = [await receive(alice), await receive(alice)]
        await ping(bob)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(handle.stop)
            rest, alice_code = await read_until_closed(alice)
            bob_messages, bob_code = await read_until_closed(bob)

    events = assert_stream(started + rest, "alice")
    assert types_of(events) == ["agent_started"] * 2 + ["agent_error"] * 2
    assert {e["run_id"] for e in rest} == {"long", "longer"}
    assert {e["data"]["reason"] for e in rest} == {"shutdown"}
    assert alice_code == 1001
    assert bob_messages == []
    assert bob_code == 1001


async def test_shutdown_with_no_run_in_flight_closes_idle_sockets_1001(
    start_server: Callable[..., Awaitable[ServerHandle]], mint: Callable[[str], str]
) -> None:
    handle = await start_server()

    async with connect(handle.server.url, mint("alice")) as ws:
        await ping(ws)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(handle.stop)
            messages, code = await read_until_closed(ws)

    assert messages == []
    assert code == 1001


async def test_after_shutdown_the_port_accepts_no_connections(signer: TokenSigner) -> None:
    async with open_server(ServeOptions(host="127.0.0.1", port=0), signer) as server:
        host, port = server.address

    with trio.fail_after(PATIENCE), pytest.raises(OSError):
        await trio.open_tcp_stream(host, port)


async def test_an_error_in_the_block_shuts_the_server_down_and_comes_out_as_raised(
    signer: TokenSigner,
) -> None:
    with pytest.raises(KeyError, match="the host failed"):  # not in a group
        async with open_server(ServeOptions(host="127.0.0.1", port=0), signer) as server:
            host, port = server.address
            raise KeyError("the host failed")

    with trio.fail_after(PATIENCE), pytest.raises(OSError):
        await trio.open_tcp_stream(host, port)


async def test_a_client_that_stopped_reading_cannot_hold_up_shutdown(
    start_server: Callable[..., Awaitable[ServerHandle]], mint: Callable[[str], str]
) -> None:
    handle = await start_server(shutdown_timeout=0.5)
    server = handle.server

    async with (
        connect(server.url, mint("slow"), message_queue_size=1) as slow,
        connect(server.url, mint("fast")) as fast,
    ):
        await ping(slow)
        # Fill the slow client's socket: its writer is now stuck mid-write.
        for n in range(40):
            await run(slow, "echo", "x" * 50_000, run_id=f"big-{n}")
            await trio.sleep(0.01)
        await run(fast, "sleep", {"seconds": 30, "steps": 30})
        assert (await receive(fast))["type"] == "agent_started"

        async with trio.open_nursery() as nursery:
            nursery.start_soon(handle.stop)  # fails the test if it takes over 15 s
            messages, code = await read_until_closed(fast)
        # The stuck socket was closed under its write: no close frame for it.
        _, slow_code = await read_until_closed(slow)

    assert [m["data"]["reason"] for m in messages] == ["shutdown"]
    assert code == 1001
    assert slow_code == 1006
    assert server.http.open_streams == 0


async def test_a_connection_arriving_during_shutdown_is_closed_1001(
    server: RunningServer, mint: Callable[[str], str]
) -> None:
    await server.core.shutdown()

    async with connect(server.url, mint("alice")) as ws:
        messages, code = await read_until_closed(ws)
    health = await http_get(server.address, "/healthz")

    assert messages == []
    assert code == 1001
    assert health.status_code == 503
    assert health.json() == {"status": "unavailable"}


async def test_idle_http_connections_do_not_hold_up_shutdown(
    start_server: Callable[..., Awaitable[ServerHandle]],
) -> None:
    # A scraper's kept-alive connection, and one that never sent a request,
    # each used to hold the server until --shutdown-timeout ran out.
    handle = await start_server(shutdown_timeout=60)
    host, port = handle.server.address
    async with httpx.AsyncClient(timeout=PATIENCE) as scraper:
        assert (await scraper.get(f"http://{host}:{port}/metrics")).status_code == 200
        silent = await trio.open_tcp_stream(host, port)

        await handle.stop()  # fails the test if it takes over 15 s

        assert await silent.receive_some() == b""  # closed by the server
        assert handle.server.http.open_streams == 0
