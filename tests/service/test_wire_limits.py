"""What one process's server holds against connections that hold it: a
connection limit (one more is answered 503), a new connection's short
wait for its first request, and the open-file limit raised to its hard
limit when serving."""

from __future__ import annotations

import resource
from collections.abc import Awaitable, Callable

import trio

from actors._serve import FILES_SPARE, connections_the_file_limit_allows, raise_open_file_limit
from actors._wire import FIRST_REQUEST_TIMEOUT, KEEP_ALIVE_TIMEOUT

from .kit import PATIENCE, ServerHandle, exchange, http_get, wait_until

HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: g\r\nConnection: close\r\n\r\n"


async def test_a_connection_past_the_limit_is_answered_503_and_closed(
    start_server: Callable[..., Awaitable[ServerHandle]],
) -> None:
    # Without a limit, idle sockets took every file the process may open:
    # then nobody was served, and trio logged EMFILE ten times a second.
    server = (await start_server(max_connections=2)).server
    holding = [await trio.open_tcp_stream(*server.address) for _ in range(2)]
    await wait_until(lambda: server.http.open_streams == 2)

    refused = await exchange(server.address, HEALTHZ)

    assert refused.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
    assert b"connection limit" in refused
    for stream in holding:
        await stream.aclose()
    await wait_until(lambda: server.http.open_streams == 0)
    assert (await http_get(server.address, "/healthz")).status_code == 200


async def test_a_new_connection_that_sends_nothing_is_closed_after_the_first_request_timeout(
    start_server: Callable[..., Awaitable[ServerHandle]], autojump_clock: trio.abc.Clock
) -> None:
    server = (await start_server()).server
    began = trio.current_time()
    async with await trio.open_tcp_stream(*server.address) as silent:
        with trio.fail_after(KEEP_ALIVE_TIMEOUT):
            assert await silent.receive_some() == b""  # closed by the server
    waited = trio.current_time() - began

    assert FIRST_REQUEST_TIMEOUT <= waited < FIRST_REQUEST_TIMEOUT + PATIENCE


def test_serving_raises_the_open_file_limit_to_its_hard_limit_and_connections_follow_it() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(soft, 1024), hard))

        assert raise_open_file_limit() == hard
        assert resource.getrlimit(resource.RLIMIT_NOFILE) == (hard, hard)
        assert connections_the_file_limit_allows() == hard - FILES_SPARE
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
