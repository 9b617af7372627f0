"""`/metrics` (Prometheus, with content negotiation) and `/healthz`."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import trio

from actors import GreenroomService, RunningServer, TokenSigner

from .kit import (
    PATIENCE,
    connect,
    http_get,
    metric_samples,
    ping,
    read_until_ended,
    run,
    sample,
    send,
)

OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"


async def _scrape(server: RunningServer) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    response = await http_get(server.address, "/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return metric_samples(response.text)


async def test_metrics_count_runs_events_engines_connections_and_deliveries(
    server: RunningServer, mint: Callable[[str], str]
) -> None:
    async with connect(server.url, mint("alice")) as alice, connect(server.url, mint("bob")) as bob:
        for n in range(3):
            await run(alice, "echo", n)
        await run(bob, "calc", {"expression": "2+3*4"})
        await run(bob, "calc", {"expression": "1/0"})
        await send(bob, {"type": "run", "agent": "sleep", "input": {"seconds": 30}, "run_id": "x"})
        await read_until_ended(alice, runs=3)
        await read_until_ended(bob, runs=2)
        await send(bob, {"type": "cancel", "run_id": "x"})
        await read_until_ended(bob)
        await ping(alice)

        # Each event is counted as delivered once its socket write returns.
        delivered = 3 * 2 + 5 + 5 + 2
        with trio.fail_after(PATIENCE):
            while True:
                samples = await _scrape(server)
                if sample(samples, "greenroom_event_delivery_seconds_count") >= delivered:
                    break
                await trio.sleep(0.01)

        def runs(agent: str, outcome: str) -> float:
            return sample(samples, "greenroom_runs_total", agent=agent, outcome=outcome)

        def events(kind: str) -> float:
            return sample(samples, "greenroom_events_total", type=kind)

        assert runs("echo", "completed") == 3
        assert runs("calc", "completed") == 1
        assert runs("calc", "exception") == 1
        assert runs("sleep", "cancelled") == 1
        assert events("agent_started") == 6
        assert events("agent_completed") == 4
        assert events("agent_error") == 2
        assert events("agent_thinking") == 2
        assert events("tool_executing") == 2
        assert events("tool_completed") == 2
        assert sample(samples, "greenroom_engines_active") == 2
        assert sample(samples, "greenroom_connections_active") == 2
        assert sample(samples, "greenroom_runs_active") == 0
        assert sample(samples, "greenroom_event_delivery_seconds_count") == delivered
        assert sample(samples, "greenroom_event_delivery_seconds_bucket", le="+Inf") == delivered
        assert sample(samples, "greenroom_actor_messages_total", kind="bridge") >= 18
        assert sample(samples, "greenroom_engines_created_total") == 2
        assert sample(samples, "greenroom_run_seconds_count") == 6

    with trio.fail_after(PATIENCE):
        while sample(await _scrape(server), "greenroom_connections_active") != 0:
            await trio.sleep(0.01)


async def test_metrics_use_openmetrics_when_the_client_asks_for_it(server: RunningServer) -> None:
    response = await http_get(
        server.address, "/metrics", headers={"Accept": "application/openmetrics-text"}
    )

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    assert response.text.rstrip().endswith("# EOF")
    assert "greenroom_runs_active" in response.text


async def test_metrics_default_to_the_prometheus_text_format(server: RunningServer) -> None:
    response = await http_get(server.address, "/metrics")

    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert "# TYPE greenroom_events_total counter" in response.text


async def test_healthz_reports_ok_with_the_agents_served(
    server: RunningServer, mint: Callable[[str], str]
) -> None:
    async with connect(server.url, mint("alice")) as ws:
        await ping(ws)
        response = await http_get(server.address, "/healthz")

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["status"] == "ok"
    assert body["agents"] == ["calc", "echo", "sleep"]
    assert body["connections"] == 1


async def test_a_service_without_a_core_yet_is_unavailable() -> None:
    service = GreenroomService(TokenSigner("unit-test-secret-0123456789abcdef"))
    transport = httpx.ASGITransport(app=service.app)

    async with httpx.AsyncClient(transport=transport, base_url="http://greenroom") as client:
        health = await client.get("/healthz")
        metrics = await client.get("/metrics")

    assert health.status_code == 503
    assert health.json() == {"status": "unavailable"}
    assert metrics.status_code == 503


async def test_an_unknown_path_is_404(server: RunningServer) -> None:
    response = await http_get(server.address, "/nope")

    assert response.status_code == 404
