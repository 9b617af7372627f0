"""One client's WebSocket: a reader, a writer fed by the user's subscription,
and a watchdog. No actor ever awaits this socket.

The socket itself is a `Transport`: greenroom's own (`_websocket.WireSocket`,
what `greenroom serve` uses) or an ASGI WebSocket (`service`'s adapter, for
host apps)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

import attrs
import trio

import runtime

from ._errors import CoreClosed, DuplicateRun, InvalidRequest, UnknownAgent, UnknownRun
from ._events import Event, Gap
from ._protocol import (
    PONG,
    CancelRequest,
    PingRequest,
    ProtocolError,
    ResumeRequest,
    RunRequest,
    error_json,
    parse_request,
)

if TYPE_CHECKING:
    from ._core import Core

CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_UNSUPPORTED = 1003
CLOSE_TOO_BIG = 1009
CLOSE_OVERLOADED = 1013
CLOSE_UNAUTHORIZED = 4401
CLOSE_FORBIDDEN = 4403

_ERROR_CODES: list[tuple[type[Exception], str]] = [
    (UnknownAgent, "unknown_agent"),
    (DuplicateRun, "duplicate_run"),
    (UnknownRun, "unknown_run"),
    (CoreClosed, "shutting_down"),
    (InvalidRequest, "invalid_field"),
]


#: The most queued events one socket write takes.
WRITE_BATCH = 256


class Transport(Protocol):
    """An accepted WebSocket, as a connection uses it."""

    @property
    def writes_now(self) -> bool:
        """Whether `send_texts_nowait` can ever write."""

    @property
    def sending_since(self) -> float | None:
        """When the write now waiting for the peer began (None: none waits)."""

    async def wait_sending(self) -> None:
        """Return once a write is waiting for the peer (`sending_since` set):
        at once if one is, else when one begins. Cancellable."""

    async def send_texts(self, texts: Sequence[str]) -> None:
        """Send each text as one frame, in order, after anything an earlier
        `send_texts_nowait` left unsent. Raises `trio.BrokenResourceError`
        or `trio.ClosedResourceError` if the socket can no longer be written
        to."""

    def send_texts_nowait(self, texts: Sequence[str]) -> int | None:
        """Write the frames now, without blocking, if no send is in progress
        and the socket takes at least some of them. None: nothing was written
        (busy, full, closed, or not supported). Otherwise the number of bytes
        the socket did not take yet: they are kept and go out first with the
        next `send_texts`, which must then be called soon."""

    async def receive(self) -> str | bytes | None:
        """The next whole message, or None once the peer has gone."""

    async def close(self, code: int, reason: str = "") -> None:
        """Send a close frame; nothing if one was sent or the peer is gone."""

    def abort(self) -> None:
        """Drop the connection at once, under any write in progress."""


def error_code(error: Exception) -> str:
    for kind, code in _ERROR_CODES:
        if isinstance(error, kind):
            return code
    raise error


@attrs.define(eq=False)
class _Writer:
    scope: trio.CancelScope
    done: trio.Event = attrs.Factory(trio.Event)
    #: Parked on an empty queue: the bridge may write an event at once.
    idle: bool = False


@attrs.define(eq=False)
class Connection:
    """Serves one authenticated user's socket until either side closes it.

    Events reach the socket through this connection's own writer task, fed
    by a bounded subscription, or, while that writer is idle, straight from
    the bridge with one non-blocking write (`_deliver_now`): the bridge
    never waits for a socket. A consumer that falls behind is closed with
    1013 (it may resume); one whose write has waited for the peer longer
    than `write_timeout` is aborted (`Transport.abort`).
    """

    core: Core
    transport: Transport
    user_id: str
    #: The stream starts after this seq: the last one numbered when the
    #: client connected, or the `?after=` it reconnected with.
    start_after: int
    write_timeout: float
    _nursery: trio.Nursery | None = None
    _writer: _Writer | None = None
    _closed: bool = False
    last_seq_sent: int = 0
    #: `core.record_delivery`, straight to the histogram: called per event.
    _record_delivery: Callable[[float], None] = attrs.field(
        init=False,
        default=attrs.Factory(
            lambda self: self.core.delivery_seconds.observe_since, takes_self=True
        ),
    )

    async def run(self) -> None:
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                await self._start_writer(self.start_after)
                nursery.start_soon(self._read)
                nursery.start_soon(self._watch)
        except* CoreClosed:
            await self.close(CLOSE_GOING_AWAY, "the server is shutting down")
        except* (trio.BrokenResourceError, trio.ClosedResourceError):
            self._closed = True  # the peer is gone

    async def close(self, code: int, reason: str = "") -> None:
        """Send a close frame once, then end the connection's tasks."""
        if not self._closed:
            self._closed = True
            await self.transport.close(code, reason)
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()

    async def _start_writer(self, after: int) -> None:
        assert self._nursery is not None
        writer = _Writer(trio.CancelScope())
        await self._nursery.start(self._write, after, writer)
        self._writer = writer

    async def _write(self, after: int, writer: _Writer, *, task_status: Any) -> None:
        """Write the subscription's events in batches, each batch what was
        queued when the last write ended. While this task is parked on an
        empty queue (`writer.idle`), the bridge writes a live event itself
        if the socket takes it at once (`_deliver_now`), saving two task
        switches; the first event it cannot write is queued here, and every
        later one behind it, so the order holds."""
        deliver_now = partial(self._deliver_now, writer)
        try:
            with writer.scope:
                subscribing = self.core.subscribe(
                    self.user_id, after=after, deliver_now=deliver_now
                )
                async with subscribing as subscription:
                    task_status.started()
                    while True:
                        try:
                            item = subscription.receive_nowait()
                        except trio.WouldBlock:
                            item = None
                        except trio.EndOfChannel:
                            break
                        if item is None:  # parked outside the `except`: keeps no traceback
                            writer.idle = True
                            try:
                                item = await subscription.__anext__()
                            except StopAsyncIteration:
                                break
                            finally:
                                writer.idle = False
                        await self._send(subscription.take_ready(item, WRITE_BATCH))
                    if writer.scope.cancel_called:
                        return
                    match subscription.closed_reason:
                        case "overflow":
                            await self.close(
                                CLOSE_OVERLOADED,
                                f"too slow: resume after seq {self.last_seq_sent}",
                            )
                        case _:
                            await self.close(CLOSE_GOING_AWAY, "the server is shutting down")
        finally:
            writer.done.set()

    async def _send(self, batch: list[Event | Gap]) -> None:
        await self.transport.send_texts([each.to_json() for each in batch])
        for each in batch:
            if type(each) is Event:
                self.last_seq_sent = each.seq
                self._record_delivery(each.ts)

    def _deliver_now(self, writer: _Writer, event: Event) -> bool:
        """Called by the bridge (in its own task, or under `deliver_inline`
        in the emitter's): write `event` now if the writer is idle and the
        socket takes it; never blocks."""
        if not writer.idle or not self.transport.writes_now:
            return False
        unsent = self.transport.send_texts_nowait((event.to_json(),))
        if unsent is None:
            writer.idle = False  # queued: every later event goes behind it
            return False
        self.last_seq_sent = event.seq
        self._record_delivery(event.ts)
        if unsent:
            writer.idle = False
            assert self._nursery is not None
            self._nursery.start_soon(self._flush)
        return True

    async def _flush(self) -> None:
        """Send what a write from the bridge left in the transport."""
        await self.transport.send_texts(())

    async def _read(self) -> None:
        while True:
            message = await self.transport.receive()
            if message is None:
                self._closed = True
                assert self._nursery is not None
                self._nursery.cancel_scope.cancel()
                return
            if not isinstance(message, str):
                await self.close(
                    CLOSE_UNSUPPORTED, "binary frames are not accepted; send JSON text"
                )
                return
            reply = await self._answer(message)
            if reply is not None and not self._closed:
                await self.transport.send_texts((reply,))

    async def _answer(self, text: str) -> str | None:
        try:
            request = parse_request(text)
            match request:
                case RunRequest(agent, input, run_id):
                    await self.core.submit(self.user_id, agent, input, run_id=run_id)
                case CancelRequest(run_id):
                    await self.core.cancel(self.user_id, run_id)
                case ResumeRequest(after):
                    await self._resume(after)
                case PingRequest():
                    return PONG
        except ProtocolError as error:
            return error.to_json()
        except (InvalidRequest, UnknownRun, CoreClosed) as error:
            return error_json(error_code(error), str(error))
        return None

    async def _resume(self, after: int) -> None:
        last = self.core.last_seq(self.user_id)
        if after > last:
            raise ProtocolError(
                "invalid_resume", f"'after' must be at most {last}, the last seq numbered for you"
            )
        old = self._writer
        if old is not None:
            old.scope.cancel()
            await old.done.wait()
        await self._start_writer(after)

    async def _watch(self) -> None:
        """Abort a connection whose socket write has not completed in time
        (a peer that stopped reading; an ASGI server may shield the write
        from cancellation, so the transport is aborted under it). Parked
        while no write waits for the peer: an idle connection costs no
        wake-ups."""
        transport = self.transport
        interval = max(self.write_timeout / 4, 0.01)
        while True:
            await transport.wait_sending()
            await runtime.sleep(interval)
            since = transport.sending_since
            if since is not None and trio.current_time() - since > self.write_timeout:
                self._closed = True
                transport.abort()
                assert self._nursery is not None
                self._nursery.cancel_scope.cancel()
                return
