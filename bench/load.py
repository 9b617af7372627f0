"""End-to-end load: many users over real WebSockets against a `greenroom
serve` this benchmark starts itself, every event checked; and the same load
against a bare WebSocket server on the same stack, to price the runtime.

    python -m bench.load [--users N] [--runs-per-user M] [--agent sleep|echo|calc]
                         [--seconds S] [--steps K] [--concurrency C] [--quick]
                         [--json] [--plot FILE.png] [--repeat R] [--no-baseline]
                         [--server-log-level LEVEL] [--py-spy DIR]

A round has two phases, each with its own server as a subprocess: first the
baseline, `python -m bench._bare_server --port 0` (Starlette on Hypercorn's
trio worker like greenroom, no runtime behind it: the run's own task writes
the same event shapes at the same pace straight to the socket), then
`python -m actors.cli serve --dev --port 0` with limits that fit the load
(--max-engines >= N, a subscriber queue of at least 4 runs' events). Each
phase connects N users (tokens signed with the development secret, at most
C handshakes at once), and once all are connected every user runs M runs
one after the other: send `{"type": "run", ...}`, read events up to the
run's terminal event, next. A sleep run emits K `agent_thinking` events over
S seconds, so a user receives about (K + 2) / S events a second; each user's
first run starts after a random delay of up to S / K (the same for both
servers), so the users do not tick in step.

Every event is checked as it arrives: `seq` gapless and increasing per user,
its `user_id` the connection's own, its `run_id` the run in progress (so no
duplicate or late terminal event goes unseen), each run opening with
`agent_started` and ending with exactly one terminal event after the
expected number of events, nothing after the last run. After the last run
the server gets SIGTERM with every socket open: each must be closed with
1001 and the server must exit 0. A violation, or a run ending in
`agent_error`, is reported and makes the exit status 1.

Reported per phase, over the measured phase (start signal to last terminal
event): events/s delivered, runs/s; connect time (p50, p99, all); latency
from the server's `ts` to the client's receipt (one machine clock)
p50/p90/p99/max, and greenroom's own emit -> socket-write histogram from
`/metrics`; close codes; server RSS idle, connected, after the runs, peak
(sampled every 0.25 s) and the kernel's high-water mark; server and client
CPU time (user + system, psutil) as a share of one core and per event, and
the events/s one core would deliver at that cost; how busy the machine was,
and how much of that was other processes. overhead_ratio = greenroom's
server CPU per event / the bare server's. With --repeat R, R rounds and
their medians.

The client is one trio process speaking RFC 6455 on plain non-blocking
sockets, all of them in one epoll set served by one task (about 4x less CPU
per event than `--client trio-websocket`, one task per user). It says so
when it is saturated (above 90 % of one core over the measured phase), and
likewise for the server (one trio thread) and the machine.

Targets (DESIGN.md, at 1 000 users), reported, not asserted: >= 20 000
events/s with p99 < 50 ms, no violation, overhead <= 1.25x the bare
transport. `--py-spy DIR` samples each server over its measured phase
(folded stacks: DIR/greenroom.folded, DIR/bare.folded).
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import math
import os
import random
import re
import resource
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time
from array import array
from collections import Counter
from pathlib import Path
from typing import Any

import attrs
import psutil
import trio

from actors._auth import DEV_SECRET, TokenSigner

from . import _report

ROOT = Path(__file__).resolve().parent.parent

#: (users, runs per user): about a minute for both phases, and a smoke run.
DEFAULT_SIZE = (500, 20)
QUICK_SIZE = (50, 5)
DEFAULT_SECONDS = 1.0
DEFAULT_STEPS = 20
DEFAULT_CONCURRENCY = 100
SATURATED = 0.90
TERMINAL = ("agent_completed", "agent_error")
#: name -> (comparison, value). DESIGN.md's numbers (at 1 000 users).
TARGETS: dict[str, tuple[str, float]] = {
    "events_per_s": (">=", 20_000),
    "p99_ms": ("<", 50),
    "violations": ("==", 0),
    "overhead_ratio": ("<=", 1.25),
}
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_SERVING = re.compile(r"serving on http://(\S+?):(\d+)")
_MAX_EXAMPLES = 20


@attrs.frozen(kw_only=True)
class Load:
    users: int
    runs_per_user: int
    agent: str
    seconds: float
    steps: int
    concurrency: int
    client: str

    @property
    def input(self) -> Any:
        if self.agent == "sleep":
            return {"seconds": self.seconds, "steps": self.steps}
        if self.agent == "calc":
            return {"expression": "2+3*4"}
        return {"text": "hello"}

    @property
    def events_per_run(self) -> int:
        """agent_started + what the agent emits + agent_completed."""
        return {"sleep": self.steps + 2, "calc": 5}.get(self.agent, 2)

    @property
    def runs(self) -> int:
        return self.users * self.runs_per_user

    @property
    def jitter(self) -> float:
        """Upper bound of each user's random delay before its first run."""
        return self.seconds / self.steps if self.agent == "sleep" else 0.0


# the client's WebSocket --------------------------------------------------------


class ConnectFailed(Exception):
    pass


def _client_frame(opcode: int, payload: bytes) -> bytes:
    """One masked client frame (RFC 6455 §5.2)."""
    n = len(payload)
    if n < 126:
        head = bytes((0x80 | opcode, 0x80 | n))
    elif n < 1 << 16:
        head = bytes((0x80 | opcode, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 0x80 | 127)) + n.to_bytes(8, "big")
    mask = os.urandom(4)
    if not n:
        return head + mask
    key = (mask * (n // 4 + 1))[:n]
    masked = int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")
    return head + mask + masked.to_bytes(n, "big")


class RawWebSocket:
    """A lean client connection on a plain non-blocking socket: the
    handshake (awaiting trio's I/O waits), then masked frames out and
    unmasked frames in, parsed in batches (all frames one `recv` completed)
    by `feed`, which `Mux` calls when the socket is readable. None of
    `trio.SocketStream`'s or wsproto's layers: the client's cost per event
    bounds how much load one client process can generate.

    `close_code` is set once the server's close frame arrived (1005 if it
    named none) and `closed` once the connection ended either way.
    """

    __slots__ = ("_fragments", "_pending", "_replies", "close_code", "closed", "sock")

    def __init__(self, sock: socket.socket, pending: bytes) -> None:
        self.sock = sock
        self._pending = pending
        self._fragments: list[bytes] | None = None
        self._replies: list[bytes] = []
        self.close_code: int | None = None
        self.closed = False

    @classmethod
    async def connect(cls, host: str, port: int, path: str) -> RawWebSocket:
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            try:
                sock.connect((host, port))
            except BlockingIOError:
                pass
            await trio.lowlevel.wait_writable(sock)
            error = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if error:
                raise OSError(error, os.strerror(error))
            key = base64.b64encode(os.urandom(16))
            request = (
                f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key.decode()}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            )
            await _send_all(sock, request.encode())
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = await _receive(sock)
                if not chunk or len(data) > 65536:
                    raise ConnectFailed("the server ended the handshake")
                data += chunk
            head, _, rest = data.partition(b"\r\n\r\n")
            lines = head.split(b"\r\n")
            status = lines[0].split(b" ", 2)
            if len(status) < 2 or status[1] != b"101":
                raise ConnectFailed(f"handshake refused: {lines[0].decode(errors='replace')}")
            accept = base64.b64encode(hashlib.sha1(key + _GUID).digest())
            headers = {
                name.strip().lower(): value.strip()
                for name, _, value in (line.partition(b":") for line in lines[1:])
            }
            if headers.get(b"sec-websocket-accept") != accept:
                raise ConnectFailed("handshake: wrong Sec-WebSocket-Accept")
        except BaseException:
            _close_socket(sock)
            raise
        return cls(sock, rest)

    def feed(self) -> list[str]:
        """Without waiting (the socket is readable): one `recv`, and the text
        frames it completed. Sets `closed` at the end of the stream or after
        the server's close frame (answered); the caller closes the socket."""
        texts: list[str] = []
        try:
            chunk = self.sock.recv(65536)
        except BlockingIOError:
            return texts
        except OSError:
            chunk = b""
        if not chunk:
            self.closed = True
            return texts
        data = self._pending
        self._parse(data + chunk if data else chunk, texts)
        if self._replies:
            replies, self._replies = self._replies, []
            try:
                self.sock.send(b"".join(replies))
            except OSError:
                pass
            if self.close_code is not None:
                self.closed = True
        return texts

    def _parse(self, data: bytes, texts: list[str]) -> bool:
        """Take every complete frame of `data`; keep the rest. True if any."""
        pos, end = 0, len(data)
        while end - pos >= 2:
            b0, b1 = data[pos], data[pos + 1]
            length, head = b1 & 0x7F, pos + 2
            if length == 126:
                if end - pos < 4:
                    break
                length, head = int.from_bytes(data[pos + 2 : pos + 4], "big"), pos + 4
            elif length == 127:
                if end - pos < 10:
                    break
                length, head = int.from_bytes(data[pos + 2 : pos + 10], "big"), pos + 10
            stop = head + length
            if stop > end:
                break
            if b0 == 0x81 and not b1 & 0x80:  # a whole, unmasked text frame
                texts.append(data[head:stop].decode())
            else:
                self._other(b0, b1, data[head:stop], texts)
            pos = stop
        self._pending = data[pos:] if pos < end else b""
        return pos > 0

    def _other(self, b0: int, b1: int, payload: bytes, texts: list[str]) -> None:
        opcode = b0 & 0x0F
        if b1 & 0x80:
            self._close_with(1002)
        elif opcode == 0x8:
            code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
            self.close_code = code
            self._replies.append(_client_frame(0x8, payload[:2]))
        elif opcode == 0x9:
            self._replies.append(_client_frame(0xA, payload))
        elif opcode in (0x1, 0x0) and self.close_code is None:
            fragments = self._fragments if opcode == 0x0 and self._fragments else []
            fragments.append(payload)
            if b0 & 0x80:
                texts.append(b"".join(fragments).decode(errors="replace"))
                self._fragments = None
            else:
                self._fragments = fragments
        elif opcode == 0x2:
            texts.append('{"type":"binary frame"}')

    def _close_with(self, code: int) -> None:
        self._replies.append(_client_frame(0x8, code.to_bytes(2, "big")))
        self.close_code = self.close_code or code


async def _send_all(sock: socket.socket, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            view = view[sock.send(view) :]
        except BlockingIOError:
            await trio.lowlevel.wait_writable(sock)


async def _receive(sock: socket.socket) -> bytes:
    """The next bytes (b"" at the end): wait until readable, then one recv."""
    while True:
        await trio.lowlevel.wait_readable(sock)
        try:
            return sock.recv(65536)
        except BlockingIOError:
            continue
        except OSError:
            return b""


def _close_socket(sock: socket.socket) -> None:
    if sock.fileno() >= 0:
        trio.lowlevel.notify_closing(sock)
        sock.close()


async def scrape_metrics(host: str, port: int) -> dict[str, Any]:
    """From greenroom's `/metrics`: the emit -> socket write histogram's
    p50/p99 (as bucket upper bounds, ms) and the events it dropped."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    try:
        with trio.fail_after(10):
            sock.setblocking(False)
            try:
                sock.connect((host, port))
            except BlockingIOError:
                pass
            await trio.lowlevel.wait_writable(sock)
            request = f"GET /metrics HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n"
            await _send_all(sock, request.encode())
            body = b""
            while chunk := await _receive(sock):
                body += chunk
    except (OSError, trio.TooSlowError):
        return {}
    finally:
        _close_socket(sock)
    buckets: list[tuple[float, float]] = []
    dropped = 0.0
    for line in body.decode(errors="replace").splitlines():
        if line.startswith("greenroom_event_delivery_seconds_bucket{"):
            bound = line.split('le="', 1)[1].split('"', 1)[0]
            buckets.append((float(bound), float(line.rsplit(" ", 1)[1])))
        elif line.startswith("greenroom_events_dropped_total"):
            dropped += float(line.rsplit(" ", 1)[1])
    found: dict[str, Any] = {"server_events_dropped": int(dropped)}
    if buckets and buckets[-1][1] > 0:
        total = buckets[-1][1]
        for name, q in (
            ("server_emit_to_write_p50_ms", 0.5),
            ("server_emit_to_write_p99_ms", 0.99),
        ):
            bound = next(b for b, count in buckets if count >= q * total)
            found[name] = bound * 1000 if math.isfinite(bound) else math.inf
    return found


class TrioWebSocket:
    """The same interface over `trio-websocket` (one message per batch)."""

    def __init__(self, connection: Any) -> None:
        self.connection = connection
        self.close_code: int | None = None
        self.closed = False

    @classmethod
    async def connect(cls, nursery: trio.Nursery, url: str) -> TrioWebSocket:
        from trio_websocket import HandshakeError, connect_websocket_url

        try:
            return cls(await connect_websocket_url(nursery, url))
        except HandshakeError as error:
            raise ConnectFailed(f"handshake refused: {error}") from None

    async def send_text(self, text: str) -> None:
        await self.connection.send_message(text)

    async def receive_batch(self) -> list[str]:
        from trio_websocket import ConnectionClosed

        try:
            return [await self.connection.get_message()]
        except ConnectionClosed as closed:
            self.closed = True
            self.close_code = closed.reason.code if closed.reason else None
            return []

    async def aclose(self) -> None:
        self.closed = True
        await self.connection.aclose()


# one phase: a server, N users ------------------------------------------------


@attrs.define(eq=False)
class Books:
    """What every user's session reports to (one per phase)."""

    load: Load
    latency: array[float] = attrs.Factory(lambda: array("d"))
    received_at: array[float] = attrs.Factory(lambda: array("d"))
    events: int = 0
    runs_done: int = 0
    failed_runs: Counter[str] = attrs.Factory(Counter)
    violations: Counter[str] = attrs.Factory(Counter)
    examples: list[str] = attrs.Factory(list)
    close_codes: Counter[str] = attrs.Factory(Counter)
    connect_seconds: list[float] = attrs.Factory(list)
    connect_failures: int = 0
    connected: int = 0
    settled: int = 0  # users whose runs are over (done or abandoned)
    closed: int = 0

    def violate(self, kind: str, detail: str) -> None:
        self.violations[kind] += 1
        if len(self.examples) < _MAX_EXAMPLES:
            self.examples.append(f"{kind}: {detail}")


class User:
    """One simulated user's checks: every event it receives goes through `take`."""

    __slots__ = (
        "books", "expected", "finished", "last_seq", "run_events", "run_id", "runs_started",
        "user_id",
    )  # fmt: skip

    def __init__(self, user_id: str, books: Books) -> None:
        self.user_id = user_id
        self.books = books
        self.expected = books.load.events_per_run
        self.last_seq = 0
        self.run_id: str | None = None
        self.run_events = 0
        self.runs_started = 0
        self.finished = False  # all runs over (done, or abandoned)

    def take(self, payloads: list[Any], now: float) -> None:
        books = self.books
        loads = json.loads
        for payload in payloads:
            try:
                event = loads(payload)
                kind, seq, user_id = event["type"], event["seq"], event["user_id"]
                run_id, ts = event["run_id"], event["ts"]
            except (ValueError, KeyError, TypeError):
                books.violate("not_an_event", f"{self.user_id} got {payload[:200]!r}")
                continue
            books.events += 1
            books.latency.append(now - ts)
            books.received_at.append(now)
            if user_id != self.user_id:
                books.violate("cross_user", f"{self.user_id} got an event of {user_id}")
            last = self.last_seq
            if seq != last + 1:
                if seq <= last:
                    books.violate(
                        "duplicate_or_reordered", f"{self.user_id}: seq {seq} after {last}"
                    )
                else:
                    books.violate("gap", f"{self.user_id}: seq {seq} after {last}")
            if seq > last:
                self.last_seq = seq
            if run_id != self.run_id or run_id is None:
                books.violate(
                    "stray_event",
                    f"{self.user_id}: {kind} of run {run_id} (in progress: {self.run_id})",
                )
                continue
            self.run_events += 1
            if self.run_events == 1 and kind != "agent_started":
                books.violate("misordered", f"{self.user_id}/{run_id} opened with {kind}")
            if kind in TERMINAL:
                self.run_id = None
                books.runs_done += 1
                if kind == "agent_error":
                    books.failed_runs[str(event["data"].get("reason"))] += 1
                elif self.run_events != self.expected:
                    books.violate(
                        "wrong_event_count",
                        f"{self.user_id}/{run_id}: {self.run_events} events, "
                        f"expected {self.expected}",
                    )


class Mux:
    """Every raw connection of a phase in one epoll set, served by one task.

    One trio wake-up serves all the sockets that became readable together,
    one `recv` each: per event the client pays a `recv` share, the frame
    parse, `json.loads` and the checks, rather than a task switch and the
    I/O registration dance of a task per socket.
    """

    def __init__(self, phase: Phase) -> None:
        self.phase = phase
        self.epoll = select.epoll()
        self.conns: dict[int, tuple[RawWebSocket, User]] = {}

    def add(self, ws: RawWebSocket, user: User) -> None:
        fd = ws.sock.fileno()
        self.conns[fd] = (ws, user)
        self.epoll.register(fd, select.EPOLLIN)

    async def start_runs(self, nursery: trio.Nursery) -> None:
        """Each user's first run, after its random delay."""
        jitter = self.phase.load.jitter
        began = trio.current_time()
        rng = random.Random(0)  # the same delays for both servers
        for delay, fd in sorted((rng.uniform(0, jitter), fd) for fd in self.conns):
            await trio.sleep_until(began + delay)
            entry = self.conns.get(fd)
            if entry is not None:
                self._next_run(*entry, nursery)

    def _next_run(self, ws: RawWebSocket, user: User, nursery: trio.Nursery) -> None:
        load = self.phase.load
        if user.runs_started == load.runs_per_user:
            user.finished = True
            self.phase._settle()
            return
        run_id = f"r{user.runs_started}"
        user.runs_started += 1
        user.run_id, user.run_events = run_id, 0
        request = {"type": "run", "agent": load.agent, "input": load.input, "run_id": run_id}
        frame = _client_frame(0x1, json.dumps(request).encode())
        try:
            sent = ws.sock.send(frame)
        except BlockingIOError:
            sent = 0
        except OSError:
            return  # the connection is gone: its end is read next
        if sent < len(frame):
            nursery.start_soon(_send_all, ws.sock, frame[sent:])

    async def serve(self, nursery: trio.Nursery) -> None:
        epoll, conns, phase = self.epoll, self.conns, self.phase
        books = phase.books
        try:
            while conns:
                await trio.lowlevel.wait_readable(epoll)
                now = time.time()
                for fd, _ in epoll.poll(0):
                    entry = conns.get(fd)
                    if entry is None:
                        continue
                    ws, user = entry
                    texts = ws.feed()
                    if texts:
                        running = user.run_id is not None
                        user.take(texts, now)
                        if running and user.run_id is None:
                            self._next_run(ws, user, nursery)
                    if ws.closed:
                        epoll.unregister(fd)
                        del conns[fd]
                        _close_socket(ws.sock)
                        books.close_codes[str(ws.close_code or "none")] += 1
                        if not user.finished:
                            books.violate(
                                "closed_mid_run",
                                f"{user.user_id}/{user.run_id}: close code {ws.close_code}",
                            )
                            user.finished = True
                            phase._settle()
                        phase._closed()
        finally:
            for ws, _ in conns.values():
                _close_socket(ws.sock)
            trio.lowlevel.notify_closing(epoll)
            epoll.close()


@attrs.define(eq=False)
class Phase:
    """One server, N users, measured."""

    name: str
    command: list[str]
    load: Load
    timeout: float
    #: A directory for py-spy's folded stacks of the measured phase, or None.
    profile: str | None = None
    books: Books = attrs.field(init=False)
    connected: trio.Event = attrs.Factory(trio.Event)
    go: trio.Event = attrs.Factory(trio.Event)
    done: trio.Event = attrs.Factory(trio.Event)
    all_closed: trio.Event = attrs.Factory(trio.Event)
    host: str = "127.0.0.1"
    port: int = 0
    server: psutil.Process | None = None
    rss_peak: int = 0
    began: float = 0.0  # perf_counter at the start signal
    began_wall: float = 0.0
    timeline: list[tuple[float, float, float, int, int, int]] = attrs.Factory(list)
    mux: Mux = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.books = Books(self.load)
        self.mux = Mux(self)

    # sessions

    async def session(
        self, index: int, limiter: trio.CapacityLimiter, nursery: trio.Nursery
    ) -> None:
        books, load = self.books, self.load
        user_id = f"load-{index:05d}"
        token = TokenSigner(DEV_SECRET).mint(user_id, ttl=86_400)
        ws: RawWebSocket | TrioWebSocket | None = None
        async with limiter:
            started = time.perf_counter()
            try:
                with trio.fail_after(30):
                    if load.client == "raw":
                        ws = await RawWebSocket.connect(self.host, self.port, f"/ws?token={token}")
                    else:
                        url = f"ws://{self.host}:{self.port}/ws?token={token}"
                        ws = await TrioWebSocket.connect(nursery, url)
            except (OSError, ConnectFailed, trio.TooSlowError) as error:
                books.connect_failures += 1
                books.violate("connect_failed", f"{user_id}: {error!r}")
            else:
                books.connect_seconds.append(time.perf_counter() - started)
                books.connected += 1
        if books.connected + books.connect_failures == load.users:
            self.connected.set()
        if ws is None:
            self._settle()
            self._closed()
            return
        if isinstance(ws, RawWebSocket):
            self.mux.add(ws, User(user_id, books))  # its task serves it from here
            return
        try:
            await self._runs(ws, User(user_id, books))  # one task per user
            # After the last run nothing may arrive but the close frame.
            while not ws.closed:
                payloads = await ws.receive_batch()
                for payload in payloads:
                    books.violate("after_last_run", f"{user_id} got {payload[:200]!r}")
            books.close_codes[str(ws.close_code or "none")] += 1
        finally:
            if not ws.closed:
                with trio.CancelScope(shield=True):
                    await ws.aclose()
            self._closed()

    async def _runs(self, ws: TrioWebSocket, user: User) -> None:
        books, load = self.books, self.load
        await self.go.wait()
        try:
            await trio.sleep(random.Random(user.user_id).uniform(0, load.jitter))
            for number in range(load.runs_per_user):
                run_id = f"r{number}"
                request = {
                    "type": "run",
                    "agent": load.agent,
                    "input": load.input,
                    "run_id": run_id,
                }
                user.run_id, user.run_events = run_id, 0
                await ws.send_text(json.dumps(request))
                while user.run_id is not None:
                    payloads = await ws.receive_batch()
                    if ws.closed:
                        user.take(payloads, time.time())
                        if user.run_id is not None:
                            books.violate(
                                "closed_mid_run",
                                f"{user.user_id}/{run_id}: close code {ws.close_code}",
                            )
                            user.run_id = None
                        return
                    user.take(payloads, time.time())
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as error:
            books.violate("connection_lost", f"{user.user_id}: {error!r}")
        finally:
            self._settle()

    def _settle(self) -> None:
        self.books.settled += 1
        if self.books.settled == self.load.users:
            self.done.set()

    def _closed(self) -> None:
        self.books.closed += 1
        if self.books.closed == self.load.users:
            self.all_closed.set()

    # sampling

    def _cpu(self) -> float:
        assert self.server is not None
        times = self.server.cpu_times()
        return float(times.user + times.system)

    def _rss(self) -> int:
        assert self.server is not None
        rss = int(self.server.memory_info().rss)
        self.rss_peak = max(self.rss_peak, rss)
        return rss

    async def monitor(self) -> None:
        me = psutil.Process()
        tick = 0
        while True:
            try:
                rss = self._rss()
                if self.go.is_set() and not self.done.is_set():
                    client = me.cpu_times()
                    self.timeline.append(
                        (
                            time.perf_counter() - self.began,
                            self._cpu(),
                            client.user + client.system,
                            rss,
                            self.books.events,
                            self.books.runs_done,
                        )
                    )
            except psutil.Error:
                return
            if tick % 2 == 0:
                self._progress()
            tick += 1
            await trio.sleep(0.25)

    def _progress(self, end: str = "") -> None:
        books, load = self.books, self.load
        if not self.go.is_set():
            text = f"{self.name}: connecting {books.connected:,}/{load.users:,}"
        else:
            elapsed = time.perf_counter() - self.began
            rate = 0.0
            if len(self.timeline) >= 3:
                (t0, *_, e0, _), (t1, *_, e1, _) = self.timeline[-3], self.timeline[-1]
                rate = (e1 - e0) / (t1 - t0) if t1 > t0 else 0.0
            share = books.runs_done / load.runs if load.runs else 1.0
            width = 24
            bar = "#" * int(share * width)
            text = (
                f"{self.name}: [{bar:<{width}}] runs {books.runs_done:,}/{load.runs:,} "
                f"{share:4.0%}  {rate:,.0f} events/s  {elapsed:.1f} s"
            )
        print(f"\r{text:<96}", end=end, file=sys.stderr, flush=True)

    # the whole phase

    async def run(self) -> dict[str, Any]:
        load, books = self.load, self.books
        log = tempfile.NamedTemporaryFile(  # noqa: SIM115 (kept for the report)
            prefix=f"bench-load-{self.name}-", suffix=".log", delete=False
        )
        process = subprocess.Popen(
            self.command, cwd=ROOT, stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL
        )
        result: dict[str, Any] = {"server_log": log.name}
        try:
            self.host, self.port = await _read_address(process)
            self.server = psutil.Process(process.pid)
            await trio.sleep(0.2)
            rss_idle = self._rss()
            me = psutil.Process()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self.monitor)
                limiter = trio.CapacityLimiter(load.concurrency)
                connect_began = time.perf_counter()
                for index in range(load.users):
                    nursery.start_soon(self.session, index, limiter, nursery)
                await self.connected.wait()
                connect_total = time.perf_counter() - connect_began
                await trio.sleep(0.2)
                rss_connected = self._rss()

                server_cpu0, client_cpu0 = self._cpu(), _cpu_seconds(me)
                machine0 = psutil.cpu_times()
                self.began, self.began_wall = time.perf_counter(), time.time()
                spy = _start_py_spy(self.profile, self.name, process.pid)
                self.go.set()
                if self.mux.conns:
                    nursery.start_soon(self.mux.serve, nursery)
                    nursery.start_soon(self.mux.start_runs, nursery)
                with trio.move_on_after(self.timeout) as waited:
                    await self.done.wait()
                measured = time.perf_counter() - self.began
                if spy is not None:
                    spy.send_signal(signal.SIGINT)
                    await _wait_exit(spy, 30.0)
                server_cpu, client_cpu = self._cpu() - server_cpu0, _cpu_seconds(me) - client_cpu0
                machine = _busy_cores(machine0, psutil.cpu_times(), measured)
                rss_after = self._rss()
                rss_hwm = _rss_high_water(process.pid)
                if self.name == "greenroom":
                    result.update(await scrape_metrics(self.host, self.port))
                if waited.cancelled_caught:
                    left = load.users - books.settled
                    books.violate(
                        "timeout", f"{left} users still running after {self.timeout:.0f} s"
                    )
                self._progress(end="\n")

                stopping = time.perf_counter()
                process.send_signal(signal.SIGTERM)
                exit_code = await _wait_exit(process, 30.0)
                shutdown = time.perf_counter() - stopping
                with trio.move_on_after(10):
                    await self.all_closed.wait()
                nursery.cancel_scope.cancel()
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            log.close()
        if exit_code != 0:
            books.violate("server_exit", f"{self.name} exited with {exit_code}")
        stats = _latency_stats(books.latency)
        connects = sorted(books.connect_seconds)
        result.update(
            users=load.users,
            connected=books.connected,
            runs=books.runs_done,
            runs_failed=sum(books.failed_runs.values()),
            failed_runs=dict(books.failed_runs),
            events=books.events,
            measured_s=measured,
            events_per_s=books.events / measured if measured else math.nan,
            runs_per_s=books.runs_done / measured if measured else math.nan,
            connect_p50_ms=_report.percentile(connects, 50) * 1000,
            connect_p99_ms=_report.percentile(connects, 99) * 1000,
            connect_total_s=connect_total,
            **stats,
            server_cpu_s=server_cpu,
            server_cpu_share=server_cpu / measured if measured else math.nan,
            server_cpu_us_per_event=server_cpu / books.events * 1e6 if books.events else math.nan,
            client_cpu_s=client_cpu,
            client_cpu_share=client_cpu / measured if measured else math.nan,
            client_cpu_us_per_event=client_cpu / books.events * 1e6 if books.events else math.nan,
            machine_busy_cores=machine,
            other_busy_cores=max(0.0, machine - (server_cpu + client_cpu) / measured),
            rss_idle_mb=rss_idle / 2**20,
            rss_connected_mb=rss_connected / 2**20,
            rss_after_mb=rss_after / 2**20,
            rss_peak_mb=self.rss_peak / 2**20,
            rss_high_water_mb=rss_hwm / 2**20 if rss_hwm else None,
            rss_per_connection_kb=(rss_connected - rss_idle) / 1024 / max(1, books.connected),
            rss_per_user_after_runs_kb=(rss_after - rss_idle) / 1024 / max(1, books.connected),
            close_codes=dict(sorted(books.close_codes.items())),
            shutdown_s=shutdown,
            exit_code=exit_code,
            violations=sum(books.violations.values()),
            violations_by_kind=dict(books.violations),
            violation_examples=list(books.examples),
        )
        per_event = result["server_cpu_us_per_event"]
        result["capacity_events_per_s"] = 1e6 / per_event if per_event else math.nan
        result["client_saturated"] = result["client_cpu_share"] > SATURATED
        result["server_saturated"] = result["server_cpu_share"] > SATURATED
        return result


def _start_py_spy(directory: str | None, name: str, pid: int) -> subprocess.Popen[bytes] | None:
    """Sample the server with py-spy (without pausing it) until SIGINT."""
    if directory is None:
        return None
    Path(directory).mkdir(parents=True, exist_ok=True)
    out = Path(directory) / f"{name}.folded"
    command = ["py-spy", "record", "--pid", str(pid), "--nonblocking", "--rate", "200"]
    command += ["--format", "raw", "--output", str(out)]
    spy_bin = Path(sys.executable).with_name("py-spy")
    if spy_bin.exists():
        command[0] = str(spy_bin)
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def _busy_cores(before: Any, after: Any, seconds: float) -> float:
    """Cores busy on the whole machine (anyone's processes) over `seconds`."""
    idle = (after.idle + getattr(after, "iowait", 0.0)) - (
        before.idle + getattr(before, "iowait", 0.0)
    )
    total = sum(after) - sum(before)
    cpus = psutil.cpu_count() or 1
    return (1 - idle / total) * cpus if total > 0 else math.nan


def _rss_high_water(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


async def _read_address(process: subprocess.Popen[bytes]) -> tuple[str, int]:
    assert process.stdout is not None
    with trio.fail_after(60):
        line = await trio.to_thread.run_sync(process.stdout.readline, abandon_on_cancel=True)
    found = _SERVING.search(line.decode(errors="replace"))
    if not found:
        raise RuntimeError(f"the server did not say where it listens: {line!r}")
    return found.group(1), int(found.group(2))


async def _wait_exit(process: subprocess.Popen[bytes], timeout: float) -> int | None:
    with trio.move_on_after(timeout):
        while process.poll() is None:
            await trio.sleep(0.02)
    return process.poll()


def _latency_stats(latency: array[float]) -> dict[str, float]:
    if not latency:
        return {"p50_ms": math.nan, "p90_ms": math.nan, "p99_ms": math.nan, "max_ms": math.nan}
    import numpy as np

    values = np.frombuffer(latency, dtype=np.float64) * 1000.0
    p50, p90, p99 = np.percentile(values, [50, 90, 99])
    return {
        "p50_ms": float(p50),
        "p90_ms": float(p90),
        "p99_ms": float(p99),
        "max_ms": float(values.max()),
        "mean_ms": float(values.mean()),
    }


# the run -----------------------------------------------------------------------


def greenroom_command(load: Load, log_level: str | None = None) -> list[str]:
    per_run = load.events_per_run
    logging = ["--log-level", log_level] if log_level else []
    return [
        sys.executable, "-m", "actors.cli", "serve", "--dev", "--port", "0",
        "--max-engines", str(max(10_000, load.users)),
        "--max-runs-per-user", "4",
        "--subscriber-queue", str(max(1000, 4 * per_run)),
        "--run-timeout", str(max(300.0, 10 * load.seconds)),
        *logging,
    ]  # fmt: skip


def bare_command() -> list[str]:
    return [sys.executable, "-m", "bench._bare_server", "--port", "0"]


def _phase_timeout(load: Load) -> float:
    """Generous: four times the unloaded duration, plus a minute."""
    per_run = (load.seconds if load.agent == "sleep" else 0.0) + 0.05
    return 60.0 + 4.0 * load.runs_per_user * per_run


def _raise_open_files(users: int) -> None:
    need = 2 * users + 1024  # client and server each hold one per user
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < need:
        target = need if hard == resource.RLIM_INFINITY else min(need, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        if target < need:
            _report.progress(f"open files limited to {target}; {need} would be safer")


async def run_round(
    load: Load, baseline: bool, profile: str | None = None, log_level: str | None = None
) -> dict[str, dict[str, Any]]:
    timeout = _phase_timeout(load)
    phases = [("greenroom", greenroom_command(load, log_level))]
    if baseline:
        phases.insert(0, ("bare", bare_command()))
    found: dict[str, dict[str, Any]] = {}
    for name, command in phases:
        phase = Phase(name, command, load, timeout, profile)
        found[name] = await phase.run()
        found[name]["timeline"] = _timeline(phase)
    return found


def _timeline(phase: Phase) -> dict[str, list[float]]:
    """Per-second series for the plot: events/s, latency p50/p99, CPU shares."""
    import numpy as np

    books = phase.books
    out: dict[str, list[float]] = {"t": [], "events_per_s": [], "p50_ms": [], "p99_ms": []}
    if books.latency:
        at = np.frombuffer(books.received_at, dtype=np.float64) - phase.began_wall
        latency = np.frombuffer(books.latency, dtype=np.float64) * 1000.0
        width = 0.5 if at.max() < 20 else 1.0
        bins = np.floor(np.clip(at, 0, None) / width).astype(np.int64)
        order = np.argsort(bins, kind="stable")
        bins, latency = bins[order], latency[order]
        edges = np.searchsorted(bins, np.arange(int(bins.max()) + 2))
        for index in range(len(edges) - 1):
            chunk = latency[edges[index] : edges[index + 1]]
            out["t"].append((index + 0.5) * width)
            out["events_per_s"].append(len(chunk) / width)
            p50, p99 = np.percentile(chunk, [50, 99]) if len(chunk) else (math.nan, math.nan)
            out["p50_ms"].append(float(p50))
            out["p99_ms"].append(float(p99))
    samples = phase.timeline
    out["cpu_t"], out["server_cpu"], out["client_cpu"], out["rss_mb"] = [], [], [], []
    for before, after in itertools.pairwise(samples):
        span = after[0] - before[0]
        if span <= 0:
            continue
        out["cpu_t"].append(after[0])
        out["server_cpu"].append((after[1] - before[1]) / span * 100)
        out["client_cpu"].append((after[2] - before[2]) / span * 100)
        out["rss_mb"].append(after[3] / 2**20)
    return out


def plot(path: str, rounds: list[dict[str, dict[str, Any]]], load: Load) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    found = rounds[0]
    figure, (top, middle, bottom) = plt.subplots(3, 1, figsize=(10, 9), sharex=True)
    colours = {"greenroom": "tab:green", "bare": "tab:gray"}
    for name, result in found.items():
        series, colour = result["timeline"], colours[name]
        top.plot(series["t"], series["events_per_s"], color=colour, label=name)
        middle.plot(
            series["t"], series["p50_ms"], color=colour, linestyle="--", label=f"{name} p50"
        )
        middle.plot(series["t"], series["p99_ms"], color=colour, label=f"{name} p99")
        bottom.plot(series["cpu_t"], series["server_cpu"], color=colour, label=f"{name} server")
        bottom.plot(
            series["cpu_t"], series["client_cpu"], color=colour, linestyle=":",
            label=f"client (vs {name})",
        )  # fmt: skip
    peak = max((max(r["timeline"]["events_per_s"], default=0) for r in found.values()), default=0)
    if peak > TARGETS["events_per_s"][1] / 4:  # else it would flatten the curves
        top.axhline(TARGETS["events_per_s"][1], color="tab:red", linewidth=0.8, linestyle="--")
    middle.axhline(TARGETS["p99_ms"][1], color="tab:red", linewidth=0.8, linestyle="--")
    bottom.axhline(100, color="tab:red", linewidth=0.8, linestyle="--")
    top.set_ylabel("events/s delivered")
    middle.set_ylabel("latency ts → receipt (ms)")
    middle.set_yscale("log")
    bottom.set_ylabel("CPU (% of one core)")
    bottom.set_xlabel("seconds since the start signal")
    for axes in (top, middle, bottom):
        axes.grid(True, alpha=0.3)
        axes.legend(loc="upper right", fontsize=8)
    top.set_title(
        f"bench.load: {load.users:,} users x {load.runs_per_user} runs of {load.agent} "
        f"({load.steps} steps over {load.seconds:g} s), {_report.utc_timestamp()}"
    )
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


# the report ----------------------------------------------------------------------


def _median_of(rounds: list[dict[str, dict[str, Any]]], name: str) -> dict[str, Any]:
    """One phase's results across rounds: medians of numbers, sums of counts."""
    results = [found[name] for found in rounds]
    merged: dict[str, Any] = {}
    for key, value in results[0].items():
        if key in ("timeline", "server_log"):
            continue
        values = [result.get(key) for result in results]
        if key in ("violations", "runs_failed", "connect_failures"):
            merged[key] = sum(values)
        elif isinstance(value, bool):
            merged[key] = any(values)
        elif isinstance(value, int | float):
            middle = _report.median(v for v in values if v is not None)
            merged[key] = (
                int(middle) if isinstance(value, int) and middle == int(middle) else middle
            )
        elif isinstance(value, dict):
            total: Counter[str] = Counter()
            for item in values:
                total.update(item or {})
            merged[key] = dict(total)
        elif isinstance(value, list):
            merged[key] = [item for items in values for item in items or ()][:_MAX_EXAMPLES]
        else:
            merged[key] = value
    return merged


def _codes(codes: dict[str, int]) -> str:
    return ", ".join(f"{code} x{count:,}" for code, count in codes.items()) or "-"


def _rows(g: dict[str, Any], b: dict[str, Any] | None) -> list[list[Any]]:
    def row(label: str, key: str, scale: float = 1.0) -> list[Any]:
        def get(found: dict[str, Any] | None) -> Any:
            if found is None or found.get(key) is None:
                return None
            value = found[key]
            return value * scale if isinstance(value, float) else value

        return [label, get(g), get(b)]

    return [
        row("users connected", "connected"),
        row("runs completed", "runs"),
        row("runs ended in agent_error", "runs_failed"),
        row("events delivered", "events"),
        row("measured phase (s)", "measured_s"),
        row("events/s", "events_per_s"),
        row("runs/s", "runs_per_s"),
        row("connect p50 (ms)", "connect_p50_ms"),
        row("connect p99 (ms)", "connect_p99_ms"),
        row("connect all (s)", "connect_total_s"),
        row("latency p50 (ms)", "p50_ms"),
        row("latency p90 (ms)", "p90_ms"),
        row("latency p99 (ms)", "p99_ms"),
        row("latency max (ms)", "max_ms"),
        row("server emit->write p50 (ms, bucket)", "server_emit_to_write_p50_ms"),
        row("server emit->write p99 (ms, bucket)", "server_emit_to_write_p99_ms"),
        row("server events dropped", "server_events_dropped"),
        row("server CPU (s)", "server_cpu_s"),
        row("server CPU (% of a core)", "server_cpu_share", 100),
        row("server CPU per event (µs)", "server_cpu_us_per_event"),
        row("  = events/s at 100% of a core", "capacity_events_per_s"),
        row("client CPU (% of a core)", "client_cpu_share", 100),
        row("client CPU per event (µs)", "client_cpu_us_per_event"),
        row("machine busy (cores of 2)", "machine_busy_cores"),
        row("  of which other processes", "other_busy_cores"),
        row("server RSS idle (MiB)", "rss_idle_mb"),
        row("server RSS connected (MiB)", "rss_connected_mb"),
        row("server RSS after runs (MiB)", "rss_after_mb"),
        row("server RSS peak, sampled (MiB)", "rss_peak_mb"),
        row("server RSS high-water (MiB)", "rss_high_water_mb"),
        row("RSS per connection (KiB)", "rss_per_connection_kb"),
        row("RSS per user after runs (KiB)", "rss_per_user_after_runs_kb"),
        ["close codes seen", _codes(g["close_codes"]), _codes(b["close_codes"]) if b else None],
        row("shutdown after SIGTERM (s)", "shutdown_s"),
        row("server exit status", "exit_code"),
        row("violations", "violations"),
    ]


def _verdicts(g: dict[str, Any], ratio: float | None) -> dict[str, bool | None]:
    values = {
        "events_per_s": g["events_per_s"],
        "p99_ms": g["p99_ms"],
        "violations": g["violations"],
        "overhead_ratio": ratio,
    }
    met: dict[str, bool | None] = {}
    for name, (op, target) in TARGETS.items():
        value = values[name]
        if value is None or (isinstance(value, float) and math.isnan(value)):
            met[name] = None
        elif op == ">=":
            met[name] = value >= target
        elif op == "<":
            met[name] = value < target
        elif op == "<=":
            met[name] = value <= target
        else:
            met[name] = value == target
    return met


def _notes(g: dict[str, Any], b: dict[str, Any] | None) -> list[str]:
    notes = []
    for name, found in (("greenroom", g), ("bare", b)):
        if found is None:
            continue
        if found["client_saturated"]:
            notes.append(
                f"{name}: the CLIENT is saturated ({found['client_cpu_share']:.0%} of a core): "
                "throughput and latency are bounded by the load generator, not the server"
            )
        if found["server_saturated"]:
            notes.append(
                f"{name}: the server is saturated ({found['server_cpu_share']:.0%} of its "
                "one core): the rate is its capacity, latency includes queueing"
            )
        if found["machine_busy_cores"] > 1.8:
            notes.append(
                f"{name}: the machine is saturated ({found['machine_busy_cores']:.2f} of "
                f"{psutil.cpu_count()} cores busy, {found['other_busy_cores']:.2f} by other "
                "processes): server and client compete for CPU"
            )
    return notes


def main(argv: list[str] | None = None) -> int:
    cli = _report.parser("bench.load", __doc__ or "", default_repeat=1, quick_repeat=1)
    cli.add_argument("--users", type=int, help=f"simulated users (default {DEFAULT_SIZE[0]}, "
                     f"{QUICK_SIZE[0]} with --quick)")  # fmt: skip
    cli.add_argument("--runs-per-user", type=int, help=f"runs each user makes in turn (default "
                     f"{DEFAULT_SIZE[1]}, {QUICK_SIZE[1]} with --quick)")  # fmt: skip
    cli.add_argument("--agent", default="sleep", choices=["sleep", "echo", "calc"])
    cli.add_argument("--seconds", type=float, default=DEFAULT_SECONDS,
                     help="a sleep run's length (default %(default)s)")  # fmt: skip
    cli.add_argument("--steps", type=int, default=DEFAULT_STEPS,
                     help="agent_thinking events per sleep run (default %(default)s)")  # fmt: skip
    cli.add_argument("--concurrency", type=int, default=DEFAULT_CONCURRENCY,
                     help="handshakes in flight at once (default %(default)s)")  # fmt: skip
    cli.add_argument("--client", default="raw", choices=["raw", "trio-websocket"],
                     help="the client's WebSocket (default %(default)s: RFC 6455 on plain "
                     "sockets, all served by one task)")  # fmt: skip
    cli.add_argument("--no-baseline", action="store_true",
                     help="skip the bare-server phase (no overhead_ratio)")  # fmt: skip
    cli.add_argument("--server-log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                     help="greenroom's --log-level (default: its own, INFO, which writes "
                     "two audit records per run)")  # fmt: skip
    cli.add_argument("--py-spy", metavar="DIR",
                     help="sample each server with py-spy over the measured phase: "
                     "DIR/greenroom.folded and DIR/bare.folded (folded stacks)")  # fmt: skip
    cli.add_argument(
        "--plot", metavar="FILE.png", help="draw throughput, latency and CPU over time"
    )
    args = cli.parse_args(argv)
    size = QUICK_SIZE if args.quick else DEFAULT_SIZE
    load = Load(
        users=args.users or size[0],
        runs_per_user=args.runs_per_user or size[1],
        agent=args.agent,
        seconds=args.seconds,
        steps=args.steps,
        concurrency=args.concurrency,
        client=args.client,
    )
    if load.users < 1 or load.runs_per_user < 1 or load.steps < 1 or load.concurrency < 1:
        cli.error("--users, --runs-per-user, --steps and --concurrency must be >= 1")
    repeat = _report.repeat(args)
    baseline = not args.no_baseline
    _raise_open_files(load.users)

    started, timestamp = time.perf_counter(), _report.utc_timestamp()
    rate = load.users * load.events_per_run / (load.seconds if load.agent == "sleep" else 0.01)
    _report.progress(
        f"bench.load: {load.users:,} users x {load.runs_per_user} runs of {load.agent} "
        f"{json.dumps(load.input)}, {load.events_per_run} events a run "
        f"(asks up to ~{rate:,.0f} events/s), client {load.client}, {repeat} round(s)"
    )
    rounds: list[dict[str, dict[str, Any]]] = []
    for number in range(1, repeat + 1):
        if repeat > 1:
            _report.progress(f"round {number}/{repeat}")
        rounds.append(trio.run(run_round, load, baseline, args.py_spy, args.server_log_level))
    wall = time.perf_counter() - started

    g = _median_of(rounds, "greenroom")
    b = _median_of(rounds, "bare") if baseline else None
    ratios = [
        found["greenroom"]["server_cpu_us_per_event"] / found["bare"]["server_cpu_us_per_event"]
        for found in rounds
        if baseline
    ]
    ratio = _report.median(ratios) if ratios else None
    met = _verdicts(g, ratio)

    print(
        f"greenroom load benchmark, {timestamp}: {load.users:,} users x {load.runs_per_user} "
        f"runs of {load.agent} {json.dumps(load.input)} ({load.events_per_run} events a run), "
        f"connect concurrency {load.concurrency}, client {load.client}"
        + (f", medians of {repeat} rounds" if repeat > 1 else "")
    )
    print()
    _report.print_table(["", "greenroom", "bare transport"], _rows(g, b))
    print()
    if ratio is not None:
        gr, br = g["server_cpu_us_per_event"], b["server_cpu_us_per_event"] if b else math.nan
        print(f"overhead_ratio (server CPU per event, greenroom / bare) = {gr:.1f} / {br:.1f} µs "
              f"= {ratio:.2f}x")  # fmt: skip
        print()
    values = {
        "overhead_ratio": ratio,
        **{k: g[k] for k in ("events_per_s", "p99_ms", "violations")},
    }
    _report.print_table(
        ["target (DESIGN.md, at 1 000 users)", "measured", "target", "met"],
        [
            [name, values[name], f"{op} {target:,g}", met[name]]
            for name, (op, target) in TARGETS.items()
        ],
    )
    for note in _notes(g, b):
        print(f"note: {note}")
    bad = {
        name: found
        for name, found in (("greenroom", g), ("bare", b))
        if found and (found["violations"] or found["runs_failed"])
    }
    for name, found in bad.items():
        print(f"\n{name}: {found['violations']:,} violations: {found['violations_by_kind']}")
        for example in found["violation_examples"]:
            print(f"  {example}")
        if found["runs_failed"]:
            print(f"{name}: runs that ended in agent_error, by reason: {found['failed_runs']}")
    if bad:
        for found in rounds:
            for name in bad:
                print(f"{name} server log: {found[name]['server_log']}")
    print(f"\nwall time {wall:.1f} s")

    if args.plot:
        plot(args.plot, rounds, load)
        _report.progress(f"plot written to {args.plot}")
    for found in rounds:
        for name, result in found.items():
            if name not in bad:
                Path(result["server_log"]).unlink(missing_ok=True)

    if args.json:
        result: dict[str, Any] = {
            "benchmark": "load",
            "timestamp_utc": timestamp,
            "wall_seconds": round(wall, 2),
            "quick": bool(args.quick),
            "repeat": repeat,
            **_report.environment("trio", "hypercorn", "starlette", "wsproto"),
            "load": attrs.asdict(load),
            "events_per_run": load.events_per_run,
            "events_per_s": _rounded(g["events_per_s"]),
            "runs_per_s": _rounded(g["runs_per_s"]),
            "p50_ms": _rounded(g["p50_ms"]),
            "p90_ms": _rounded(g["p90_ms"]),
            "p99_ms": _rounded(g["p99_ms"]),
            "max_ms": _rounded(g["max_ms"]),
            "violations": g["violations"] + (b["violations"] if b else 0),
            "overhead_ratio": _rounded(ratio) if ratio is not None else None,
            "client_saturated": g["client_saturated"],
            "server_saturated": g["server_saturated"],
            "server_peak_rss_mb": _rounded(g["rss_peak_mb"]),
            "targets": {name: f"{op} {target:g}" for name, (op, target) in TARGETS.items()},
            "targets_met": met,
            "greenroom": _clean(g),
            "bare": _clean(b) if b else None,
        }
        _report.print_json(result)
    return 1 if bad else 0


def _clean(found: dict[str, Any]) -> dict[str, Any]:
    return {
        key: _rounded(value) if isinstance(value, float) else value for key, value in found.items()
    }


def _rounded(value: float) -> float:
    if math.isnan(value):
        return value
    return round(value, 4) if abs(value) < 100 else round(value, 1)


if __name__ == "__main__":
    sys.exit(main())
