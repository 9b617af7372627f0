"""Who may open `/ws`: a valid token (query or `bearer.` subprotocol) and an
allowed Origin. Refusals close 4401 / 4403 before any event."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import pytest

from actors import RunningServer, TokenSigner

from .kit import (
    ServerHandle,
    closed_with,
    connect,
    ping,
    read_until_closed_why,
    read_until_ended,
    receive,
    run,
)

UNAUTHORIZED = 4401
FORBIDDEN = 4403


async def _assert_refused_while_alice_has_events(
    server: RunningServer, mint: Callable[[str], str], token: str | None
) -> None:
    """Alice has a run emitting events while `token` (often one claiming to
    be alice) connects: it is closed 4401 and never sees one of them."""
    async with connect(server.url, mint("alice")) as alice:
        await run(alice, "sleep", {"seconds": 0.3, "steps": 6})
        assert (await receive(alice))["type"] == "agent_started"
        async with connect(server.url, token) as ws:
            assert await closed_with(ws) == UNAUTHORIZED
        events = await read_until_ended(alice)
    assert events[-1]["type"] == "agent_completed"


async def test_a_connection_without_a_token_is_closed_4401(
    server: RunningServer, mint: Callable[[str], str]
) -> None:
    await _assert_refused_while_alice_has_events(server, mint, None)


@pytest.mark.parametrize("token", ["garbage", "v1.abc.def", "v1." + "a" * 3000 + ".x"])
async def test_a_connection_with_a_malformed_token_is_closed_4401(
    server: RunningServer, mint: Callable[[str], str], token: str
) -> None:
    await _assert_refused_while_alice_has_events(server, mint, token)


async def test_a_token_for_alice_signed_by_another_secret_is_closed_4401(
    server: RunningServer, mint: Callable[[str], str]
) -> None:
    forged = TokenSigner("somebody-elses-secret-0123456789").mint("alice")

    await _assert_refused_while_alice_has_events(server, mint, forged)


async def test_an_expired_token_for_alice_is_closed_4401(
    server: RunningServer, signer: TokenSigner, mint: Callable[[str], str]
) -> None:
    expired = signer.mint("alice", ttl=60, now=time.time() - 3600)

    await _assert_refused_while_alice_has_events(server, mint, expired)


async def test_the_close_reason_says_why_the_token_was_refused(server: RunningServer) -> None:
    async with connect(server.url, "garbage") as ws:
        messages, code, why = await read_until_closed_why(ws)

    assert (messages, code) == ([], UNAUTHORIZED)
    assert why.startswith("malformed token")


async def test_a_token_in_the_bearer_subprotocol_is_accepted(
    server: RunningServer, mint: Callable[[str], str]
) -> None:
    async with connect(server.url, subprotocols=[f"bearer.{mint('alice')}"]) as ws:
        await run(ws, "echo", 1)
        events = await read_until_ended(ws)

    assert [e["user_id"] for e in events] == ["alice", "alice"]


async def test_the_greenroom_subprotocol_is_chosen_when_offered_beside_the_bearer(
    server: RunningServer, mint: Callable[[str], str]
) -> None:
    async with connect(server.url, subprotocols=["greenroom", f"bearer.{mint('alice')}"]) as ws:
        await ping(ws)
        assert ws.subprotocol == "greenroom"


async def test_a_forged_token_in_the_bearer_subprotocol_is_closed_4401(
    server: RunningServer,
) -> None:
    forged = TokenSigner("somebody-elses-secret-0123456789").mint("alice")

    async with connect(server.url, subprotocols=[f"bearer.{forged}"]) as ws:
        assert await closed_with(ws) == UNAUTHORIZED


async def test_an_origin_not_allowed_is_closed_4403_even_with_a_valid_token(
    start_server: Callable[..., Awaitable[ServerHandle]], mint: Callable[[str], str]
) -> None:
    server = (await start_server(allowed_origins=("http://ok.example",))).server
    headers = [(b"Origin", b"http://evil.example")]

    async with connect(server.url, mint("alice"), extra_headers=headers) as ws:
        assert await closed_with(ws) == FORBIDDEN
    assert server.core.last_seq("alice") == 0


async def test_an_allowed_origin_is_accepted(
    start_server: Callable[..., Awaitable[ServerHandle]], mint: Callable[[str], str]
) -> None:
    server = (await start_server(allowed_origins=("http://ok.example",))).server
    headers = [(b"Origin", b"http://ok.example")]

    async with connect(server.url, mint("alice"), extra_headers=headers) as ws:
        await run(ws, "echo", "hi")
        events = await read_until_ended(ws)

    assert [e["type"] for e in events] == ["agent_started", "agent_completed"]


async def test_a_client_without_an_origin_is_accepted_when_origins_are_restricted(
    start_server: Callable[..., Awaitable[ServerHandle]], mint: Callable[[str], str]
) -> None:
    server = (await start_server(allowed_origins=("http://ok.example",))).server

    async with connect(server.url, mint("alice")) as ws:
        await ping(ws)
