"""One WebSocket on a plain trio stream: the server's frames built here,
the client's parsed by wsproto, and the handshake's answer.

`WireSocket.send_texts` writes a batch of text frames in one write, with a
non-blocking fast path; `send_texts_nowait` lets the event bridge write an
event at once when nothing else is being sent. `_wire.WireServer` hands
each upgrade request to its handler as a `Handshake`.
"""

from __future__ import annotations

import os
import struct
from collections import deque
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import attrs
import trio
import wsproto
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    TextMessage,
)
from wsproto.utilities import RemoteProtocolError

if TYPE_CHECKING:
    from ._wire import HttpRequest

#: Bytes read from a socket at a time.
READ_SIZE = 65536
CLOSE_TOO_BIG = 1009
#: A close reason is at most 123 bytes of UTF-8 (RFC 6455 §5.5).
_MAX_REASON = 123
_SHORT = struct.Struct("!BB")
_MEDIUM = struct.Struct("!BBH")
_LONG = struct.Struct("!BBQ")


def text_frame(text: str) -> bytes:
    """One final, unmasked text frame (a server's frame, RFC 6455 §5.2)."""
    payload = text.encode()
    n = len(payload)
    if n < 126:
        return _SHORT.pack(0x81, n) + payload
    if n < 65536:
        return _MEDIUM.pack(0x81, 126, n) + payload
    return _LONG.pack(0x81, 127, n) + payload


def _reason(text: str) -> str:
    encoded = text.encode()
    if len(encoded) <= _MAX_REASON:
        return text
    return encoded[: _MAX_REASON - 3].decode(errors="ignore") + "..."


def message_bytes(data: str | bytes | bytearray) -> int:
    """A received message's size as it came on the wire: a text's UTF-8 bytes."""
    if isinstance(data, str) and not data.isascii():
        return len(data.encode())
    return len(data)


@attrs.define(eq=False)
class SendWaits:
    """Wakes whoever waits for a send to begin (a connection's write watch,
    through a transport's `wait_sending`)."""

    _event: trio.Event | None = None

    async def wait(self, sending: bool) -> None:
        """Return once a send begins: at once (a checkpoint) if `sending`."""
        if sending:
            await trio.lowlevel.checkpoint()
            return
        if self._event is None:
            self._event = trio.Event()
        await self._event.wait()

    def begin(self) -> None:
        """A send begins: wake the waiter, if any."""
        event, self._event = self._event, None
        if event is not None:
            event.set()


@attrs.define(eq=False)
class WireSocket:
    """One accepted WebSocket. `send_texts` writes a batch of text frames in
    one write; `receive` returns the next whole message (str or bytes), or
    None once the peer has closed or gone. Pings are answered here.

    Sends from several tasks take turns (a FIFO lock). A send on a socket
    whose peer is gone raises `trio.BrokenResourceError`; after this side's
    close frame or `abort`, `trio.ClosedResourceError`. A send cancelled
    part-way keeps the rest of its bytes and the next send writes them
    first, so frames are never cut. `sending_since` is when the send now
    waiting for the peer to make room began (None if none is waiting);
    `wait_sending` waits for there to be one.
    """

    stream: trio.SocketStream
    _ws: wsproto.WSConnection
    max_message_bytes: int
    #: `send_texts_nowait` can write (the bridge's direct path).
    writes_now: ClassVar[bool] = True
    sending_since: float | None = None
    _lock: trio.StrictFIFOLock = attrs.Factory(trio.StrictFIFOLock)
    _send_waits: SendWaits = attrs.Factory(SendWaits)
    #: Bytes of frames already begun: they go out before anything else.
    _unsent: bytes = b""
    _events: deque[Any] = attrs.Factory(deque)
    #: The message being received in fragments (None between messages).
    _parts: bytearray | None = None
    _size: int = 0

    @property
    def close_sent(self) -> bool:
        return self._ws.state in (ConnectionState.LOCAL_CLOSING, ConnectionState.CLOSED)

    async def send_texts(self, texts: Sequence[str]) -> None:
        """Write each text as one frame, all in one write.

        Fast path: when no other send is in progress and the socket's buffer
        takes every byte at once, one non-blocking `send` writes them and
        this returns without yielding (and without checking for
        cancellation); otherwise it waits for room, as trio's `send_all`
        does. Cancelled while waiting, it keeps the rest for the next send.
        """
        if self.close_sent:
            raise trio.ClosedResourceError("this side has closed the WebSocket")
        await self._write(b"".join([text_frame(text) for text in texts]))

    def send_texts_nowait(self, texts: Sequence[str]) -> int | None:
        """Write the frames now if no send is in progress: None if nothing
        could be written, else how many bytes are left for the next
        `send_texts` to send first (0: all written)."""
        if self.close_sent or self._unsent or self._lock.locked():
            return None
        data = b"".join([text_frame(text) for text in texts])
        try:
            sent = self._send_now(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return None  # the next awaited send finds out and ends the connection
        if not sent:
            return None
        self._unsent = data[sent:]
        return len(self._unsent)

    async def _write(self, data: bytes) -> None:
        """Write `_unsent`, then `data`, holding the lock; see `send_texts`."""
        lock = self._lock
        try:
            lock.acquire_nowait()
        except trio.WouldBlock:
            await lock.acquire()
        try:
            data, self._unsent = self._unsent + data, b""
            sent = self._send_now(data)
            if sent < len(data):
                await self._write_rest(memoryview(data), sent)
        finally:
            lock.release()

    async def wait_sending(self) -> None:
        """Return once a write is waiting for the peer: at once if one is."""
        await self._send_waits.wait(self.sending_since is not None)

    async def _write_rest(self, data: memoryview, sent: int) -> None:
        self.sending_since = trio.current_time()
        self._send_waits.begin()
        try:
            while sent < len(data):
                await trio.lowlevel.wait_writable(self.stream.socket)
                written = self._send_now(data[sent:])
                if written:  # a peer still reading: the stall starts afresh
                    sent += written
                    self.sending_since = trio.current_time()
        finally:
            self.sending_since = None
            if sent < len(data):
                self._unsent = bytes(data[sent:])

    def _send_now(self, data: bytes | memoryview) -> int:
        """As much of `data` as the socket takes without blocking."""
        # fileno() is -1 once the socket is closed (never a reused number).
        fd = self.stream.socket.fileno()
        try:
            return os.write(fd, data)
        except BlockingIOError:
            return 0
        except OSError as error:
            if fd < 0:
                raise trio.ClosedResourceError("the socket was closed") from error
            raise trio.BrokenResourceError(f"the peer is gone: {error}") from error

    async def _send_raw(self, data: bytes) -> None:
        try:
            await self._write(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the peer is gone: nothing left to tell it

    async def close(self, code: int, reason: str = "") -> None:
        """Send a close frame (once; later calls do nothing)."""
        if self._ws.state in (ConnectionState.OPEN, ConnectionState.REMOTE_CLOSING):
            await self._send_raw(self._ws.send(CloseConnection(code, _reason(reason))))

    def abort(self) -> None:
        """Close the TCP stream at once, under any send or receive in progress."""
        self.stream.socket.close()

    async def receive(self) -> str | bytes | None:
        while True:
            while self._events:
                message = await self._take(self._events.popleft())
                if message is not None:
                    return message
                if self._ws.state is ConnectionState.CLOSED or self.close_sent:
                    return None
            try:
                data = await self.stream.receive_some(READ_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return None
            if not data:
                return None
            self._ws.receive_data(data)
            self._events.extend(_newest_ping_only(self._ws.events()))

    async def _take(self, event: Any) -> str | bytes | None:
        """A whole message from `event`, or None (a part, or a control frame)."""
        match event:
            case TextMessage() | BytesMessage():
                data = event.data
                self._size += message_bytes(data)
                if self._size > self.max_message_bytes:
                    self._events.clear()
                    await self.close(
                        CLOSE_TOO_BIG,
                        f"messages are limited to {self.max_message_bytes} bytes",
                    )
                    return None
                if event.message_finished and self._parts is None:
                    self._size = 0
                    return data if isinstance(data, str) else bytes(data)  # one frame
                # Fragments go into one buffer, as UTF-8 for a text: kept as
                # objects of their own, a message sent two bytes a frame took
                # 34 times --max-message-bytes.
                if self._parts is None:
                    self._parts = bytearray()
                self._parts += data.encode() if isinstance(data, str) else data
                if not event.message_finished:
                    return None
                whole, self._parts, self._size = bytes(self._parts), None, 0
                return whole.decode() if isinstance(data, str) else whole  # as each part was
            case Ping() if self._ws.state is ConnectionState.OPEN:
                await self._send_raw(self._ws.send(event.response()))
            case CloseConnection():
                self._events.clear()
                if self._ws.state is ConnectionState.REMOTE_CLOSING:
                    await self._send_raw(self._ws.send(event.response()))
                elif self._ws.state is ConnectionState.OPEN:  # a frame wsproto refused
                    await self.close(event.code, event.reason or "")
        return None

    async def linger(self) -> None:
        """After this side's close frame: wait for the peer's, or its EOF."""
        try:
            while self._ws.state is not ConnectionState.CLOSED:
                data = await self.stream.receive_some(READ_SIZE)
                if not data:
                    return
                self._ws.receive_data(data)
                for _ in self._ws.events():
                    pass
        except (trio.BrokenResourceError, trio.ClosedResourceError, RemoteProtocolError):
            pass


def _newest_ping_only(events: Iterable[Any]) -> list[Any]:
    """`events` with every ping but the newest left out: a pong each for a
    flood of them, written before anything else is served, stalled the
    whole server; RFC 6455 §5.5.3 lets only the newest be answered."""
    events = list(events)
    newest = max((i for i, event in enumerate(events) if isinstance(event, Ping)), default=-1)
    return [event for i, event in enumerate(events) if i == newest or not isinstance(event, Ping)]


@attrs.define(eq=False)
class Handshake:
    """A WebSocket upgrade request, not yet answered."""

    request: HttpRequest
    subprotocols: list[str]
    max_message_bytes: int
    _stream: trio.SocketStream
    _ws: wsproto.WSConnection
    _trailing: bytes
    socket: WireSocket | None = None

    async def accept(self, subprotocol: str | None = None) -> WireSocket:
        """Complete the handshake; the socket is open once this returns."""
        data = self._ws.send(AcceptConnection(subprotocol=subprotocol))
        await self._stream.send_all(data)
        socket = WireSocket(self._stream, self._ws, self.max_message_bytes)
        if self._trailing:
            self._ws.receive_data(self._trailing)
            socket._events.extend(self._ws.events())
        self.socket = socket
        return socket
