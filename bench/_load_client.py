"""`bench.load`'s client side: the load's shape (`Load`), the lean RFC 6455
client (`RawWebSocket`) and its `trio-websocket` alternative, greenroom's
`/metrics` scrape, and the per-event checker (`Books`, `User`)."""

from __future__ import annotations

import base64
import hashlib
import json
import math
import os
import socket
import struct
from array import array
from collections import Counter
from collections.abc import Callable
from typing import Any

import attrs
import trio

TERMINAL = ("agent_completed", "agent_error")
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_MAX_EXAMPLES = 20
_U16, _U64 = struct.Struct(">H").unpack_from, struct.Struct(">Q").unpack_from


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
    def asked_events_per_s(self) -> float | None:
        """The most events a second this load can ask for: every user's sleep
        runs back to back, with no time between one run's end and the next
        one's start (which in truth costs a round trip each). None for echo
        and calc, which ask again as soon as the server has answered."""
        if self.agent != "sleep":
            return None
        return self.users * self.events_per_run / self.seconds

    @property
    def jitter(self) -> float:
        """Upper bound of each user's random delay before its first run."""
        return self.seconds / self.steps if self.agent == "sleep" else 0.0


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
    named none) and `closed` once the connection ended either way. `unsent`
    holds what `send` could not write yet (`flush` it once writable).
    """

    __slots__ = ("_fragments", "_pending", "close_code", "closed", "sock", "unsent")

    def __init__(self, sock: socket.socket, pending: bytes) -> None:
        self.sock = sock
        self._pending = pending
        self._fragments: list[bytes] | None = None
        self.unsent = b""
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
        try:
            data = self.sock.recv(65536)
        except BlockingIOError:
            return []
        except OSError:
            data = b""
        if not data:
            self.closed = True
            return []
        if self._pending:
            data = self._pending + data
        n = len(data)
        if n >= 4 and data[0] == 0x81:  # the usual case: one whole text frame
            length = data[1]
            if length < 126 and n == 2 + length:
                self._pending = b""
                return [data[2:].decode()]
            if length == 126 and n == 4 + _U16(data, 2)[0]:
                self._pending = b""
                return [data[4:].decode()]
        texts: list[str] = []
        replies: list[bytes] = []
        self._pending = self._parse(data, texts, replies)
        if replies:
            self.send(b"".join(replies))
            if self.close_code is not None:
                self.closed = True
        return texts

    def _parse(self, data: bytes, texts: list[str], replies: list[bytes]) -> bytes:
        """Take every complete frame of `data`; return the rest."""
        pos, end = 0, len(data)
        while end - pos >= 2:
            b0, b1 = data[pos], data[pos + 1]
            length, head = b1 & 0x7F, pos + 2
            if length == 126:
                if end - pos < 4:
                    break
                length, head = _U16(data, pos + 2)[0], pos + 4
            elif length == 127:
                if end - pos < 10:
                    break
                length, head = _U64(data, pos + 2)[0], pos + 10
            stop = head + length
            if stop > end:
                break
            if b0 == 0x81 and not b1 & 0x80:  # a whole, unmasked text frame
                texts.append(data[head:stop].decode())
            else:
                self._other(b0, b1, data[head:stop], texts, replies)
            pos = stop
        return data[pos:] if pos < end else b""

    def _other(
        self, b0: int, b1: int, payload: bytes, texts: list[str], replies: list[bytes]
    ) -> None:
        opcode = b0 & 0x0F
        if b1 & 0x80:
            replies.append(_client_frame(0x8, (1002).to_bytes(2, "big")))
            self.close_code = self.close_code or 1002
        elif opcode == 0x8:
            code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
            self.close_code = code
            replies.append(_client_frame(0x8, payload[:2]))
        elif opcode == 0x9:
            replies.append(_client_frame(0xA, payload))
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

    def send(self, data: bytes) -> None:
        """Without waiting: write what the socket takes now, after anything
        `unsent`, and keep the rest in `unsent`. A connection that is gone
        takes nothing: its end is read next."""
        if self.unsent:
            self.unsent += data
            return
        try:
            sent = self.sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError:
            return
        self.unsent = data[sent:]

    def flush(self) -> None:
        """Without waiting (the socket is writable): `send` what was left."""
        data, self.unsent = self.unsent, b""
        self.send(data)


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
        for payload in payloads:
            try:
                event = _decode(payload)
                kind, seq, user_id = event["type"], event["seq"], event["user_id"]
                run_id, ts, data = event["run_id"], event["ts"], event["data"]
                if type(seq) is not int or type(ts) is not float or type(data) is not dict:
                    raise TypeError("seq, ts or data of the wrong type")
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
                    books.failed_runs[str(data.get("reason"))] += 1
                elif self.run_events != self.expected:
                    books.violate(
                        "wrong_event_count",
                        f"{self.user_id}/{run_id}: {self.run_events} events, "
                        f"expected {self.expected}",
                    )


#: What `json.loads` runs on a text once past its leading whitespace.
_scan: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


def _decode(payload: Any) -> Any:
    """`json.loads(payload)`, a microsecond sooner: its scanner straight
    away, and `json.loads` itself unless that read the whole text (to skip
    whitespace around it, to take bytes, or to raise its error)."""
    try:
        value, end = _scan(payload, 0)
    except (StopIteration, TypeError):
        return json.loads(payload)
    return value if end == len(payload) else json.loads(payload)
