"""greenroom's own HTTP/1.1 and WebSocket server, on plain trio streams.

`greenroom serve` answers through this rather than an ASGI server: h11
parses requests, wsproto the WebSocket handshake (the sockets themselves
are `_websocket.WireSocket`s). A write is an ordinary trio call: a cancel
scope ends it, and nothing pins a task to a stalled peer.

`WireServer` routes one path to a WebSocket handler and every other request
to an HTTP handler; both are plain async functions given an `HttpRequest`.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import socket
from collections.abc import Awaitable, Callable
from functools import partial
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import attrs
import h11
import trio
import wsproto
from wsproto.events import (
    Request,
)

from ._websocket import READ_SIZE, Handshake

log = logging.getLogger("greenroom")

#: Seconds an HTTP connection may sit idle between requests, and that a
#: request's body may take to arrive.
KEEP_ALIVE_TIMEOUT = 75.0
#: Seconds a new connection has to send its first request's head: one that
#: sends nothing is closed long before a kept-alive one would be.
FIRST_REQUEST_TIMEOUT = 10.0
#: Seconds to wait for the peer's close frame (or EOF) after ours, before
#: closing the TCP stream: closing with the peer's data unread would reset it.
CLOSE_LINGER = 5.0
#: Unacknowledged data older than this (ms) drops the connection (dead peers).
TCP_USER_TIMEOUT_MS = 30_000


def open_listening_socket(host: str, port: int, *, backlog: int = 1024) -> socket.socket:
    """A bound, listening TCP socket with `TCP_USER_TIMEOUT` and keep-alive set."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    if hasattr(socket, "TCP_USER_TIMEOUT"):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, TCP_USER_TIMEOUT_MS)
    sock.bind((host, port))
    sock.listen(backlog)
    sock.setblocking(False)
    return sock


@attrs.frozen
class HttpRequest:
    """What a handler sees of a request. `headers` has lower-case names
    (repeats joined with ", "); `query` holds each parameter's first value."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    client: tuple[str, int] | None


@attrs.frozen
class HttpResponse:
    status: int
    body: bytes
    content_type: str = "text/plain; charset=utf-8"
    #: More headers, lower-case names (`allow` for a 405, say).
    headers: tuple[tuple[str, str], ...] = ()


def _request(event: h11.Request, client: tuple[str, int] | None) -> HttpRequest:
    target = urlsplit(event.target.decode("latin-1"))
    query: dict[str, str] = {}
    for name, value in parse_qsl(target.query, keep_blank_values=True):
        query.setdefault(name, value)
    headers: dict[str, str] = {}
    for raw_name, raw_value in event.headers:
        name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return HttpRequest(event.method.decode("latin-1"), target.path, query, headers, client)


def _is_upgrade(request: HttpRequest) -> bool:
    return request.headers.get("upgrade", "").lower() == "websocket"


HttpHandler = Callable[[HttpRequest], Awaitable[HttpResponse]]
WebSocketHandler = Callable[[Handshake], Awaitable[None]]


@attrs.define(eq=False)
class WireServer:
    """Serves `sock` until `stop`: upgrade requests on `websocket_path` go
    to `websocket`, other GET and HEAD requests to `http`. `stop_accepting`
    closes the listener and the HTTP connections with no request in hand;
    `abort_all` closes every open TCP stream."""

    sock: socket.socket
    http: HttpHandler
    websocket: WebSocketHandler
    websocket_path: str = "/ws"
    max_message_bytes: int = 1 << 20
    #: Connections open at once; one more is answered 503 and closed.
    max_connections: int = 1 << 30
    _streams: set[trio.SocketStream] = attrs.Factory(set)
    _accepting: trio.CancelScope | None = None
    _handlers: trio.Nursery | None = None
    #: The waits of HTTP connections for their next request.
    _idle: set[trio.CancelScope] = attrs.Factory(set)
    _stopping: bool = False

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.sock.getsockname()[:2]
        return host, port

    @property
    def open_streams(self) -> int:
        return len(self._streams)

    async def run(
        self, *, task_status: trio.TaskStatus[WireServer] = trio.TASK_STATUS_IGNORED
    ) -> None:
        listener = trio.SocketListener(trio.socket.from_stdlib_socket(self.sock))
        try:
            async with trio.open_nursery() as handlers:
                self._handlers = handlers
                async with trio.open_nursery() as acceptor:
                    self._accepting = acceptor.cancel_scope
                    await acceptor.start(
                        partial(
                            trio.serve_listeners, self._serve, [listener], handler_nursery=handlers
                        )
                    )
                    task_status.started(self)
                await listener.aclose()
        finally:
            self.sock.close()

    def stop_accepting(self) -> None:
        """Take no new connection or request: close the listener, and every
        HTTP connection waiting for its next request (kept alive, or new),
        which would otherwise hold `wait_closed` up for its keep-alive. A
        request already in hand is answered, then its connection closed."""
        self._stopping = True
        if self._accepting is not None:
            self._accepting.cancel()
        for waiting in self._idle:
            waiting.cancel()

    def abort_all(self) -> None:
        for stream in list(self._streams):
            stream.socket.close()

    async def wait_closed(self) -> None:
        """Wait until every TCP stream has been closed."""
        while self._streams:
            await trio.sleep(0.01)

    def stop(self) -> None:
        """Close every stream and cancel every connection's task."""
        self.abort_all()
        if self._handlers is not None:
            self._handlers.cancel_scope.cancel()

    async def _serve(self, stream: trio.SocketStream) -> None:
        if len(self._streams) >= self.max_connections:
            full = HttpResponse(503, b"the server is at its connection limit\n")
            # Within a second: the answer, then what the client sent read
            # away (closed with it unread, the answer would be reset away).
            with trio.move_on_after(1), contextlib.suppress(trio.BrokenResourceError, OSError):
                await stream.send_all(_plain_response(full))
                await stream.send_eof()
                while await stream.receive_some(READ_SIZE):
                    pass
            await stream.aclose()
            return
        self._streams.add(stream)
        try:
            peer = stream.socket.getpeername()
            await self._serve_requests(stream, (peer[0], peer[1]))
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass  # the peer went away
        except Exception:
            # A failure serving one connection ends that connection only.
            log.exception("serving a connection failed; closing it")
        finally:
            self._streams.discard(stream)
            await stream.aclose()

    async def _serve_requests(self, stream: trio.SocketStream, client: tuple[str, int]) -> None:
        connection = h11.Connection(h11.SERVER)
        patience = FIRST_REQUEST_TIMEOUT
        while not self._stopping:
            event: Any = None
            with trio.move_on_after(patience) as waiting:
                self._idle.add(waiting)
                try:
                    event = await _next_event(connection, stream)
                except h11.RemoteProtocolError as error:
                    await _respond_error(connection, stream, error.error_status_hint, str(error))
                    return
                finally:
                    self._idle.discard(waiting)
            if not isinstance(event, h11.Request):
                return  # idle too long, or the peer closed
            patience = KEEP_ALIVE_TIMEOUT
            try:
                request = _request(event, client)
            except ValueError as error:  # h11 takes targets urlsplit refuses
                await _respond_error(connection, stream, 400, f"bad request target: {error}")
                return
            if request.method not in ("GET", "HEAD"):
                response = HttpResponse(
                    405, f"{request.method} is not allowed here\n".encode(), headers=_ALLOW
                )
            elif request.path == self.websocket_path and _is_upgrade(request):
                if request.method == "GET":
                    await self._upgrade(connection, stream, event, request)
                    return
                response = HttpResponse(405, b"a WebSocket upgrade takes GET\n", headers=_ALLOW)
            elif request.path == self.websocket_path:
                response = HttpResponse(
                    426, b"this path takes WebSocket connections only\n", headers=_UPGRADE
                )
            else:
                response = await self.http(request)
            complete = False
            with trio.move_on_after(KEEP_ALIVE_TIMEOUT):  # a body sent too slowly
                try:
                    complete = await _skip_body(connection, stream)
                except h11.RemoteProtocolError as error:  # a body cut short, a bad chunk
                    await _respond_error(connection, stream, error.error_status_hint, str(error))
                    return
            if not complete:
                return
            with trio.move_on_after(KEEP_ALIVE_TIMEOUT) as sending:  # a peer not reading
                await _send_response(connection, stream, response, head=request.method == "HEAD")
            if sending.cancelled_caught:
                return
            if connection.our_state is not h11.DONE or connection.their_state is not h11.DONE:
                return
            if "transfer-encoding" in request.headers and "content-length" in request.headers:
                return  # RFC 9112 §6.3: answered, then closed (no request smuggling)
            connection.start_next_cycle()

    async def _upgrade(
        self,
        connection: h11.Connection,
        stream: trio.SocketStream,
        event: h11.Request,
        request: HttpRequest,
    ) -> None:
        with trio.move_on_after(KEEP_ALIVE_TIMEOUT) as reading:  # a body sent too slowly
            try:
                while (await _next_event(connection, stream)) is not h11.PAUSED:
                    pass
            except h11.RemoteProtocolError as error:  # a body cut short, a bad chunk
                await _respond_error(connection, stream, error.error_status_hint, str(error))
                return
        if reading.cancelled_caught:
            return
        trailing, _ = connection.trailing_data
        refusal = _handshake_refusal(event, request)
        ws = wsproto.WSConnection(wsproto.ConnectionType.SERVER)
        if refusal is None:
            try:
                ws.initiate_upgrade_connection(list(event.headers), event.target)
                upgrade = next(e for e in ws.events() if isinstance(e, Request))
            except Exception as error:  # RemoteProtocolError; a Host wsproto cannot decode
                refusal = HttpResponse(400, f"bad WebSocket handshake: {error}\n".encode())
        if refusal is not None:
            await stream.send_all(_plain_response(refusal))
            return
        handshake = Handshake(
            request, list(upgrade.subprotocols), self.max_message_bytes, stream, ws, trailing
        )
        await self.websocket(handshake)
        socket = handshake.socket
        if socket is not None and socket.close_sent:
            with trio.move_on_after(CLOSE_LINGER):
                await socket.linger()


_ALLOW = (("allow", "GET, HEAD"),)
_UPGRADE = (("upgrade", "websocket"), ("connection", "Upgrade"))


def _handshake_refusal(event: h11.Request, request: HttpRequest) -> HttpResponse | None:
    """The answer to an upgrade request RFC 6455 §4.2.1 refuses (None if
    none): 400 over HTTP/1.0, without a version, or with a Sec-WebSocket-Key
    that is not 16 bytes in base64; 426 naming 13 for another version."""
    version = request.headers.get("sec-websocket-version")
    if version is not None and version != "13":
        return HttpResponse(
            426,
            f"bad WebSocket handshake: the version must be 13, got {version!r}\n".encode(),
            headers=(("sec-websocket-version", "13"),),
        )
    if event.http_version != b"1.1":
        problem = "an upgrade takes HTTP/1.1"
    elif version is None:
        problem = "no Sec-WebSocket-Version"
    elif not _is_key(request.headers.get("sec-websocket-key", "")):
        problem = "Sec-WebSocket-Key must be 16 bytes in base64"
    else:
        return None
    return HttpResponse(400, f"bad WebSocket handshake: {problem}\n".encode())


def _is_key(text: str) -> bool:
    try:
        return len(base64.b64decode(text, validate=True)) == 16
    except ValueError:
        return False


async def _next_event(connection: h11.Connection, stream: trio.SocketStream) -> Any:
    while True:
        event = connection.next_event()
        if event is not h11.NEED_DATA:
            return event
        connection.receive_data(await stream.receive_some(READ_SIZE))


async def _skip_body(connection: h11.Connection, stream: trio.SocketStream) -> bool:
    """Read the request's body, if any, to its end; False if the peer left."""
    while True:
        event = await _next_event(connection, stream)
        if isinstance(event, h11.EndOfMessage):
            return True
        if not isinstance(event, h11.Data):
            return False


async def _send_response(
    connection: h11.Connection, stream: trio.SocketStream, response: HttpResponse, *, head: bool
) -> None:
    headers = [
        ("content-type", response.content_type),
        ("content-length", str(len(response.body))),
        *response.headers,
    ]
    status_line = h11.Response(
        status_code=response.status,
        headers=headers,
        reason=HTTPStatus(response.status).phrase.encode("latin-1"),
    )
    data = connection.send(status_line) or b""
    if not head:
        data += connection.send(h11.Data(data=response.body)) or b""
    data += connection.send(h11.EndOfMessage()) or b""
    await stream.send_all(data)


def _plain_response(response: HttpResponse) -> bytes:
    """A whole response that ends the connection, outside h11's state."""
    extra = "".join(f"{name}: {value}\r\n" for name, value in response.headers)
    head = (
        f"HTTP/1.1 {response.status} {HTTPStatus(response.status).phrase}\r\n"
        f"content-type: {response.content_type}\r\n"
        f"content-length: {len(response.body)}\r\n{extra}connection: close\r\n\r\n"
    )
    return head.encode("latin-1") + response.body


async def _respond_error(
    connection: h11.Connection, stream: trio.SocketStream, status: int, detail: str
) -> None:
    if connection.our_state is h11.IDLE or connection.our_state is h11.SEND_RESPONSE:
        await stream.send_all(_plain_response(HttpResponse(status, f"{detail}\n".encode())))
