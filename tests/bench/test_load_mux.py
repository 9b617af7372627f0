"""bench.load's raw client loop runs every user's runs over its own thread,
checks what arrives, reports connections that end mid-run, and stops when
cancelled."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from functools import partial

import pytest
import trio

from bench._load_client import Books, Load, RawWebSocket, User
from bench._load_mux import Mux

from .kit import client_frames, server_frame

LOAD = Load(
    users=2, runs_per_user=2, agent="sleep", seconds=0.01, steps=2, concurrency=1, client="raw"
)
KINDS = ["agent_started", "agent_thinking", "agent_thinking", "agent_completed"]


class Fixture:
    """A `Mux` over socket pairs; the test plays the server on the far ends."""

    def __init__(self) -> None:
        self.books = Books(LOAD)
        self.settled: list[None] = []
        self.closed: list[None] = []
        self.mux = Mux(
            LOAD, self.books, lambda: self.settled.append(None), lambda: self.closed.append(None)
        )
        self.servers: list[trio.socket.SocketType] = []
        self.clients: list[socket.socket] = []
        self.sockets: list[socket.socket] = []
        for index in range(LOAD.users):
            server, client = socket.socketpair()
            client.setblocking(False)
            self.clients.append(client)
            self.sockets += [server, client]
            self.servers.append(trio.socket.from_stdlib_socket(server))
            self.mux.add(RawWebSocket(client, b""), User(f"user-{index}", self.books))

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()


@pytest.fixture
def fx() -> Iterator[Fixture]:
    fixture = Fixture()
    yield fixture
    fixture.close()


async def receive_exactly(sock: trio.socket.SocketType, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = await sock.recv(n - len(data))
        assert chunk, "the client ended the stream"
        data += chunk
    return data


async def play_server(
    sock: trio.socket.SocketType, user_id: str, *, skip: int = 0, end_after: int | None = None
) -> None:
    """Answer each run request with the run's events, then close with 1001;
    skip `skip` bytes first; end the stream after `end_after` events."""
    await receive_exactly(sock, skip)
    seq = 0
    for _ in range(LOAD.runs_per_user):
        [(opcode, payload)] = client_frames(await sock.recv(65536))
        assert opcode == 0x1
        run_id = json.loads(payload)["run_id"]
        for kind in KINDS:
            seq += 1
            event = {"type": kind, "seq": seq, "user_id": user_id, "run_id": run_id, "ts": 0.0}
            await sock.send(server_frame(0x1, json.dumps({**event, "data": {}}).encode()))
            if seq == end_after:
                sock.close()
                return
    await sock.send(server_frame(0x8, (1001).to_bytes(2, "big")))
    assert client_frames(await sock.recv(65536)) == [(0x8, (1001).to_bytes(2, "big"))]


async def test_every_users_runs_are_run_checked_and_closed(fx: Fixture) -> None:
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            for index, sock in enumerate(fx.servers):
                nursery.start_soon(play_server, sock, f"user-{index}")
            await fx.mux.serve()
    books = fx.books
    assert books.violations == {} and books.runs_done == 4 and books.events == 16
    assert books.close_codes == {"1001": 2}
    assert len(fx.settled) == len(fx.closed) == LOAD.users
    assert all(client.fileno() == -1 for client in fx.clients)


async def test_a_connection_that_ends_mid_run_is_a_violation(fx: Fixture) -> None:
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(play_server, fx.servers[0], "user-0")
            nursery.start_soon(partial(play_server, end_after=6), fx.servers[1], "user-1")
            await fx.mux.serve()
    assert fx.books.violations == {"closed_mid_run": 1}
    assert fx.books.close_codes == {"1001": 1, "none": 1}
    assert len(fx.settled) == len(fx.closed) == LOAD.users


async def test_a_request_the_socket_did_not_take_is_sent_once_it_is_writable(
    fx: Fixture,
) -> None:
    filled = 0
    with pytest.raises(BlockingIOError):
        while True:
            filled += fx.clients[0].send(b"\0" * 65536)

    async def play_server_once_the_request_waits() -> None:
        while not fx.mux.writing:
            await trio.sleep(0.01)
        await play_server(fx.servers[0], "user-0", skip=filled)

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(play_server_once_the_request_waits)
            nursery.start_soon(play_server, fx.servers[1], "user-1")
            await fx.mux.serve()
    assert fx.books.violations == {} and fx.books.runs_done == 4


async def test_cancelling_serve_closes_every_socket_within_a_tick(fx: Fixture) -> None:
    async def hang_up_later() -> None:  # ends a thread that ignored the cancellation
        await trio.sleep(3)
        for sock in fx.servers:
            sock.close()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(hang_up_later)
        began = trio.current_time()
        with trio.move_on_after(0.2):
            await fx.mux.serve()  # nobody answers the first runs
        took = trio.current_time() - began
        nursery.cancel_scope.cancel()
    assert took < 1.0 and fx.closed == []
    assert all(client.fileno() == -1 for client in fx.clients)
