"""greenroom over HTTP: `/ws` (WebSocket), `/metrics` and `/healthz`.

`GreenroomService` holds the routes' logic once, for two servers:
greenroom's own (`_wire`, what `greenroom serve` runs, through `wire_http`
and `wire_websocket`) and any ASGI server (`.app`, a Starlette app to mount
in a host Starlette/FastAPI app, with `service.core` set from the host's
lifespan).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, ClassVar

import attrs
import trio
from prometheus_client.exposition import choose_encoder
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from ._auth import InvalidToken, TokenSigner
from ._connection import (
    CLOSE_FORBIDDEN,
    CLOSE_GOING_AWAY,
    CLOSE_TOO_BIG,
    CLOSE_UNAUTHORIZED,
    Connection,
    Transport,
)
from ._errors import InvalidRequest
from ._protocol import ProtocolError
from ._websocket import Handshake, SendWaits, message_bytes
from ._wire import HttpRequest, HttpResponse

if TYPE_CHECKING:
    from ._core import Core

BEARER_PREFIX = "bearer."
SUBPROTOCOL = "greenroom"


def _positive(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise InvalidRequest(f"{attribute.name} must be a number > 0, got {value!r}")


def _origins(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        value = (value,)
    return tuple(str(origin).rstrip("/") for origin in value)  # type: ignore[attr-defined]


@attrs.frozen(kw_only=True)
class ServiceSettings:
    """`allowed_origins`: browser `Origin`s accepted on `/ws` ("*" for any);
    clients that send no Origin (not browsers) are always accepted.
    `max_message_bytes`: larger frames close the socket with 1009.
    `write_timeout`: seconds a socket write may take before the peer is
    taken as stalled and the connection aborted."""

    allowed_origins: tuple[str, ...] = attrs.field(default=(), converter=_origins)
    max_message_bytes: int = attrs.field(default=1 << 20, validator=_positive)  # type: ignore[arg-type]
    write_timeout: float = attrs.field(default=30.0, validator=_positive)


def _resume_point(text: str, last: int) -> int:
    """`?after=SEQ` on the URL: where a reconnecting client's stream resumes."""
    try:
        after = int(text)
    except ValueError:
        after = -1
    if not 0 <= after <= last:
        raise ProtocolError(
            "invalid_resume",
            f"'after' must be a whole number from 0 to {last}, the last seq numbered for you; "
            f"got {text!r}: streaming live events only",
        )
    return after


@attrs.define(eq=False)
class AsgiTransport:
    """A Starlette WebSocket as a connection's `Transport`. There is no TCP
    stream to abort under an ASGI server: a stalled connection is only
    cancelled. A message over `max_message_bytes` (a text as UTF-8) closes
    it with 1009, as on greenroom's own server; the ASGI server's own limit
    may be lower."""

    websocket: WebSocket
    max_message_bytes: int
    writes_now: ClassVar[bool] = False
    #: Start times of the sends in progress, by a token per send.
    _sending: dict[object, float] = attrs.Factory(dict)
    _send_waits: SendWaits = attrs.Factory(SendWaits)

    @property
    def sending_since(self) -> float | None:
        return min(self._sending.values(), default=None)

    async def wait_sending(self) -> None:
        """Return once a send is in progress (every ASGI send may wait for
        the peer): at once if one is."""
        await self._send_waits.wait(bool(self._sending))

    def _begin_send(self) -> object:
        token = object()
        self._sending[token] = trio.current_time()
        self._send_waits.begin()
        return token

    async def send_texts(self, texts: Sequence[str]) -> None:
        token = self._begin_send()
        try:
            for text in texts:
                await self.websocket.send_text(text)
        except (RuntimeError, OSError, WebSocketDisconnect) as error:
            raise trio.BrokenResourceError("the WebSocket is closed") from error
        finally:
            del self._sending[token]

    def send_texts_nowait(self, texts: Sequence[str]) -> None:
        return None  # an ASGI send is always awaited

    async def receive(self) -> str | bytes | None:
        message = await self.websocket.receive()
        if message["type"] == "websocket.disconnect":
            return None
        text: str | None = message.get("text")
        received: str | bytes = text if text is not None else (message.get("bytes") or b"")
        if message_bytes(received) > self.max_message_bytes:
            limit = self.max_message_bytes
            await self.close(CLOSE_TOO_BIG, f"messages are limited to {limit} bytes")
            return None
        return received

    async def close(self, code: int, reason: str = "") -> None:
        token = self._begin_send()
        try:
            await self.websocket.close(code, reason)
        except (RuntimeError, OSError):
            pass  # already closed by the peer
        finally:
            del self._sending[token]

    def abort(self) -> None:
        pass


@attrs.frozen
class _Upgrade:
    """What the WebSocket route needs of an upgrade request, from either server."""

    query: Mapping[str, str]
    origin: str | None
    subprotocols: list[str]
    accept: Callable[[str | None], Awaitable[Transport]]


@attrs.define(eq=False)
class GreenroomService:
    """The routes, with the core they serve (None until the host sets it)."""

    signer: TokenSigner
    settings: ServiceSettings = attrs.Factory(ServiceSettings)
    core: Core | None = None
    connections: set[Connection] = attrs.Factory(set)
    accepting: bool = True
    app: Starlette = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.app = Starlette(
            routes=[
                WebSocketRoute("/ws", self._asgi_websocket),
                Route("/metrics", self._asgi_metrics),
                Route("/healthz", self._asgi_healthz),
            ]
        )
        self.app.state.greenroom = self

    async def shutdown(self) -> None:
        """Refuse new connections, end live runs with `agent_error`
        "shutdown", deliver those events and close every socket with 1001.

        A host app serving this app should await it before its server stops
        (for Hypercorn, in its `shutdown_trigger`): the server's own shutdown
        would drop the sockets without a close frame. Bound it with a cancel
        scope; what is left open when cancelled is the server's to drop.
        """
        self.accepting = False
        if self.core is not None:
            await self.core.shutdown()
        while self.connections:
            await trio.sleep(0.01)

    def _origin_allowed(self, origin: str | None) -> bool:
        allowed = self.settings.allowed_origins
        return origin is None or "*" in allowed or origin.rstrip("/") in allowed

    async def _websocket(self, upgrade: _Upgrade) -> None:
        offered = upgrade.subprotocols
        bearer = next((p for p in offered if p.startswith(BEARER_PREFIX)), None)
        token = upgrade.query.get("token") or (bearer[len(BEARER_PREFIX) :] if bearer else None)
        chosen = SUBPROTOCOL if SUBPROTOCOL in offered else bearer
        transport = await upgrade.accept(chosen)
        if not self._origin_allowed(upgrade.origin):
            await transport.close(CLOSE_FORBIDDEN, "this Origin is not allowed")
            return
        try:
            user_id = self.signer.verify(token)
        except InvalidToken as error:
            await transport.close(CLOSE_UNAUTHORIZED, str(error))
            return
        core = self.core
        if core is None or core.closing or not self.accepting:
            await transport.close(CLOSE_GOING_AWAY, "the server is shutting down")
            return
        after = core.last_seq(user_id)
        if "after" in upgrade.query:
            try:
                after = _resume_point(upgrade.query["after"], after)
            except ProtocolError as error:
                await transport.send_texts((error.to_json(),))
        connection = Connection(
            core=core,
            transport=transport,
            user_id=user_id,
            start_after=after,
            write_timeout=self.settings.write_timeout,
        )
        self.connections.add(connection)
        try:
            await connection.run()
        finally:
            self.connections.discard(connection)

    def _metrics(self, accept: str) -> tuple[int, bytes, str]:
        if self.core is None:
            return 503, b"no core yet\n", "text/plain; charset=utf-8"
        encoder, content_type = choose_encoder(accept)
        return 200, encoder(self.core.registry), content_type

    def _health(self) -> tuple[int, dict[str, object]]:
        core = self.core
        if core is None or core.closing or not self.accepting:
            return 503, {"status": "unavailable"}
        stats = core.factory.metrics()
        return 200, {
            "status": "ok",
            "engines": stats.engines_active,
            "connections": len(self.connections),
            "agents": core.agents.names,
        }

    # greenroom's own server (`_wire`)

    async def wire_websocket(self, handshake: Handshake) -> None:
        request = handshake.request
        await self._websocket(
            _Upgrade(
                request.query,
                request.headers.get("origin"),
                handshake.subprotocols,
                handshake.accept,
            )
        )

    async def wire_http(self, request: HttpRequest) -> HttpResponse:
        if request.path == "/metrics":
            status, body, content_type = self._metrics(request.headers.get("accept", ""))
            return HttpResponse(status, body, content_type)
        if request.path == "/healthz":
            status, health = self._health()
            return HttpResponse(status, json.dumps(health).encode(), "application/json")
        return HttpResponse(404, b"Not Found\n")

    # any ASGI server (`app`)

    async def _asgi_websocket(self, websocket: WebSocket) -> None:
        async def accept(subprotocol: str | None) -> Transport:
            await websocket.accept(subprotocol=subprotocol)
            return AsgiTransport(websocket, self.settings.max_message_bytes)

        await self._websocket(
            _Upgrade(
                websocket.query_params,
                websocket.headers.get("origin"),
                list(websocket.scope.get("subprotocols") or ()),
                accept,
            )
        )

    async def _asgi_metrics(self, request: Request) -> Response:
        status, body, content_type = self._metrics(request.headers.get("accept", ""))
        return Response(body, status_code=status, headers={"Content-Type": content_type})

    async def _asgi_healthz(self, request: Request) -> Response:
        status, health = self._health()
        return JSONResponse(health, status_code=status)
