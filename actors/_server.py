"""Serving the app with Hypercorn's trio worker, keeping hold of each stream.

Hypercorn shields its socket writes, so a peer that stops reading pins the
writing task beyond any cancel scope. Serving the listeners ourselves (as
`hypercorn.trio.run.worker_serve` does, minus lifespan) keeps each accepted
stream at hand, so a stalled one can be closed under its write, and
`TCP_USER_TIMEOUT` can be set on the listening sockets.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from functools import partial
from typing import Any

import attrs
import trio
from hypercorn.config import Config
from hypercorn.trio.tcp_server import TCPServer
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.utils import wrap_app

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


@attrs.define(eq=False)
class HttpServer:
    """Accepts connections until `stop_accepting`; `abort_all` closes every
    stream still open (under any write in progress)."""

    app: Any
    config: Config
    sock: socket.socket
    _streams: dict[tuple[str, int], trio.SocketStream] = attrs.Factory(dict)
    _accepting: trio.CancelScope | None = None
    _handlers: trio.Nursery | None = None

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.sock.getsockname()[:2]
        return host, port

    @property
    def open_streams(self) -> int:
        return len(self._streams)

    def aborter(self, client: tuple[str, int] | None) -> Callable[[], None]:
        def abort() -> None:
            stream = self._streams.get(client) if client else None
            if stream is not None:
                stream.socket.close()

        return abort

    async def run(
        self, *, task_status: trio.TaskStatus[HttpServer] = trio.TASK_STATUS_IGNORED
    ) -> None:
        app = wrap_app(self.app, self.config.wsgi_max_body_size, "asgi")
        context = WorkerContext(None)
        listener = trio.SocketListener(trio.socket.from_stdlib_socket(self.sock))

        async def handle(stream: trio.SocketStream) -> None:
            host, port = stream.socket.getpeername()[:2]
            key = (host, port)
            self._streams[key] = stream
            try:
                await TCPServer(app, self.config, context, {}, stream)  # type: ignore[arg-type]
            finally:
                self._streams.pop(key, None)

        async with trio.open_nursery() as handlers:
            self._handlers = handlers
            async with trio.open_nursery() as acceptor:
                self._accepting = acceptor.cancel_scope
                await acceptor.start(
                    partial(trio.serve_listeners, handle, [listener], handler_nursery=handlers)
                )
                task_status.started(self)
            await listener.aclose()

    def stop_accepting(self) -> None:
        if self._accepting is not None:
            self._accepting.cancel()

    def abort_all(self) -> None:
        for stream in list(self._streams.values()):
            stream.socket.close()

    def stop(self) -> None:
        """Cancel every connection handler (after `abort_all`, nothing pins them)."""
        self.abort_all()
        if self._handlers is not None:
            self._handlers.cancel_scope.cancel()


def hypercorn_config(*, max_message_bytes: int) -> Config:
    config = Config()
    config.websocket_max_message_size = max_message_bytes
    config.accesslog = None
    config.graceful_timeout = 5.0
    config.keep_alive_timeout = 75.0
    return config
