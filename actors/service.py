"""greenroom over HTTP: `/ws` (WebSocket), `/metrics` and `/healthz`.

`GreenroomService(...).app` is a Starlette app. Serve it with `serve_http`
(what `greenroom serve` does), or mount it in a host Starlette/FastAPI app
and set `service.core` from the host's lifespan.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import attrs
import trio
from prometheus_client.exposition import choose_encoder
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from ._auth import InvalidToken, TokenSigner
from ._connection import (
    CLOSE_FORBIDDEN,
    CLOSE_GOING_AWAY,
    CLOSE_UNAUTHORIZED,
    Connection,
)
from ._errors import InvalidRequest
from ._protocol import ProtocolError

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


def _no_abort() -> None:
    """Embedded in a host server there is no stream to abort: the connection
    is only cancelled."""


@attrs.define(eq=False)
class GreenroomService:
    """The routes, with the core they serve (None until the host sets it)."""

    signer: TokenSigner
    settings: ServiceSettings = attrs.Factory(ServiceSettings)
    core: Core | None = None
    #: Given a client address, a function that closes its TCP stream.
    aborter: Callable[[tuple[str, int] | None], Callable[[], None]] = lambda _: _no_abort
    connections: set[Connection] = attrs.Factory(set)
    accepting: bool = True
    app: Starlette = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.app = Starlette(
            routes=[
                WebSocketRoute("/ws", self._websocket),
                Route("/metrics", self._metrics),
                Route("/healthz", self._healthz),
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

    async def _websocket(self, websocket: WebSocket) -> None:
        offered = list(websocket.scope.get("subprotocols") or ())
        bearer = next((p for p in offered if p.startswith(BEARER_PREFIX)), None)
        token = websocket.query_params.get("token") or (
            bearer[len(BEARER_PREFIX) :] if bearer else None
        )
        chosen = SUBPROTOCOL if SUBPROTOCOL in offered else bearer
        await websocket.accept(subprotocol=chosen)
        if not self._origin_allowed(websocket.headers.get("origin")):
            await websocket.close(CLOSE_FORBIDDEN, "this Origin is not allowed")
            return
        try:
            user_id = self.signer.verify(token)
        except InvalidToken as error:
            await websocket.close(CLOSE_UNAUTHORIZED, str(error))
            return
        core = self.core
        if core is None or core.closing or not self.accepting:
            await websocket.close(CLOSE_GOING_AWAY, "the server is shutting down")
            return
        after = core.last_seq(user_id)
        if "after" in websocket.query_params:
            try:
                after = _resume_point(websocket.query_params["after"], after)
            except ProtocolError as error:
                await websocket.send_text(error.to_json())
        client = websocket.scope.get("client")
        connection = Connection(
            core=core,
            websocket=websocket,
            user_id=user_id,
            start_after=after,
            write_timeout=self.settings.write_timeout,
            abort=self.aborter(tuple(client) if client else None),
        )
        self.connections.add(connection)
        try:
            await connection.run()
        finally:
            self.connections.discard(connection)

    async def _metrics(self, request: Request) -> Response:
        if self.core is None:
            return Response("no core yet\n", status_code=503, media_type="text/plain")
        encoder, content_type = choose_encoder(request.headers.get("accept", ""))
        return Response(encoder(self.core.registry), headers={"Content-Type": content_type})

    async def _healthz(self, request: Request) -> Response:
        core = self.core
        if core is None or core.closing or not self.accepting:
            return JSONResponse({"status": "unavailable"}, status_code=503)
        stats = core.factory.metrics()
        return JSONResponse(
            {
                "status": "ok",
                "engines": stats.engines_active,
                "connections": len(self.connections),
                "agents": core.agents.names,
            }
        )
