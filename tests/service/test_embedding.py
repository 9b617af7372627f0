"""Embedding: a host Starlette app mounts the service and owns the core,
served by Hypercorn's trio worker, as an embedder would write it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import hypercorn.trio
import trio
from hypercorn.config import Config
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

from actors import GreenroomService, ServiceSettings, TokenSigner, open_core

from .kit import (
    assert_stream,
    closed_with,
    connect,
    http_get,
    metric_samples,
    ping,
    read_until_closed,
    read_until_ended,
    receive,
    run,
    sample,
    types_of,
)


def host_app(service: GreenroomService) -> Starlette:
    """The host application: its own routes, greenroom under /agents, and
    the core started and stopped by the host's lifespan."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with open_core() as core:
            service.core = core
            try:
                yield
            finally:
                service.accepting = False

    async def home(request: Request) -> PlainTextResponse:
        return PlainTextResponse("the host app")

    return Starlette(
        routes=[Route("/", home), Mount("/agents", app=service.app)],
        lifespan=lifespan,
    )


@asynccontextmanager
async def serve_host(
    app: Starlette, before_stopping: Callable[[], Awaitable[None]] | None = None
) -> AsyncIterator[tuple[str, int]]:
    """Serve `app` with Hypercorn's trio worker on a free port; yield its
    address. Leaving the block awaits `before_stopping()`, then stops Hypercorn."""
    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    stop = trio.Event()

    async def shutdown_trigger() -> None:
        await stop.wait()
        if before_stopping is not None:
            await before_stopping()

    async with trio.open_nursery() as nursery:
        asgi: Any = app  # Hypercorn's app type is narrower than Starlette's signature
        binds = await nursery.start(
            partial(hypercorn.trio.serve, asgi, config, shutdown_trigger=shutdown_trigger)
        )
        host, port = binds[0].removeprefix("http://").rsplit(":", 1)
        try:
            yield host, int(port)
        finally:
            stop.set()


async def test_a_host_starlette_app_mounts_the_service_under_a_prefix(
    signer: TokenSigner, mint: Callable[[str], str]
) -> None:
    service = GreenroomService(signer)

    async with serve_host(host_app(service)) as (host, port):
        async with connect(f"ws://{host}:{port}/agents/ws", mint("alice")) as ws:
            await run(ws, "echo", {"embedded": True})
            events = assert_stream(await read_until_ended(ws), "alice")
            await run(ws, "calc", {"expression": "2+3*4"})
            calc = assert_stream(await read_until_ended(ws), "alice", first_seq=3)
            await ping(ws)

        home = await http_get((host, port), "/")
        health = await http_get((host, port), "/agents/healthz")
        metrics = await http_get((host, port), "/agents/metrics")

    assert types_of(events) == ["agent_started", "agent_completed"]
    assert events[-1]["data"]["output"] == {"embedded": True}
    assert calc[-1]["data"]["output"] == 14
    assert home.text == "the host app"
    assert health.status_code == 200 and health.json()["status"] == "ok"
    samples = metric_samples(metrics.text)
    assert sample(samples, "greenroom_runs_total", agent="echo", outcome="completed") == 1
    # The host's lifespan ended the core when the server stopped.
    assert service.core is not None and service.core.closing


async def test_a_mounted_service_closes_a_message_over_its_size_limit_with_1009(
    signer: TokenSigner, mint: Callable[[str], str]
) -> None:
    service = GreenroomService(signer, ServiceSettings(max_message_bytes=1024))

    def request(text: str) -> str:  # UTF-8 on the wire, not \u escapes
        return json.dumps({"type": "run", "agent": "echo", "input": text}, ensure_ascii=False)

    async with (
        serve_host(host_app(service)) as (host, port),
        connect(f"ws://{host}:{port}/agents/ws", mint("alice")) as ws,
    ):
        await ws.send_message(request("é" * 450))  # 900 bytes and the envelope
        assert types_of(await read_until_ended(ws)) == ["agent_started", "agent_completed"]
        await ws.send_message(request("🙂" * 300))  # 300 characters, 1,200 bytes
        assert await closed_with(ws) == 1009


async def test_a_mounted_service_still_refuses_a_bad_token(signer: TokenSigner) -> None:
    service = GreenroomService(signer)

    async with (
        serve_host(host_app(service)) as (host, port),
        connect(f"ws://{host}:{port}/agents/ws", "garbage") as ws,
    ):
        assert await closed_with(ws) == 4401


async def test_a_host_that_shuts_the_core_down_first_gets_shutdown_events_and_1001(
    signer: TokenSigner, mint: Callable[[str], str]
) -> None:
    """Hypercorn sends no close frames and runs the lifespan's shutdown only
    after its connections have ended: the host ends greenroom first, from its
    shutdown trigger, so clients hear "shutdown" and 1001."""
    service = GreenroomService(signer)

    stop = trio.Event()

    async def host(*, task_status: trio.TaskStatus[tuple[str, int]]) -> None:
        async with serve_host(host_app(service), service.shutdown) as address:
            task_status.started(address)
            await stop.wait()

    async with trio.open_nursery() as nursery:
        host_name, port = await nursery.start(host)
        async with connect(f"ws://{host_name}:{port}/agents/ws", mint("alice")) as ws:
            await run(ws, "sleep", {"seconds": 30, "steps": 30}, run_id="long")
            assert (await receive(ws))["type"] == "agent_started"
            stop.set()
            # Well within Hypercorn's graceful timeout, after which it would
            # drop the socket without a close frame (1006).
            messages, code = await read_until_closed(ws, patience=2.0)

    assert [(m["type"], m["data"]["reason"]) for m in messages] == [("agent_error", "shutdown")]
    assert code == 1001
