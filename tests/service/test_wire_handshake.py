"""What RFC 6455's handshake and the HTTP RFCs ask of greenroom's own server
(`actors._wire`), on a raw socket: refused upgrades, and the headers that
go with a 405 and a 426."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from actors import RunningServer

from .kit import exchange, still_serving

KEY = "Sec-WebSocket-Key: a2V5a2V5a2V5a2V5a2V5aw==\r\n"
VERSION = "Sec-WebSocket-Version: 13\r\n"
POST = b"POST /metrics HTTP/1.1\r\nHost: g\r\nContent-Length: 0\r\n\r\n"


def upgrade(token: str, headers: str, *, version: str = "1.1", host: str = "g") -> bytes:
    return (
        f"GET /ws?token={token} HTTP/{version}\r\nHost: {host}\r\n"
        f"Upgrade: websocket\r\nConnection: Upgrade\r\n{headers}\r\n"
    ).encode()


@pytest.mark.parametrize(
    ("request_headers", "version", "host", "problem"),
    [
        (VERSION + KEY, "1.0", "g", "takes HTTP/1.1"),
        (VERSION + "Sec-WebSocket-Key: notbase64!!\r\n", "1.1", "g", "16 bytes in base64"),
        (VERSION + "Sec-WebSocket-Key: c2hvcnQ=\r\n", "1.1", "g", "16 bytes in base64"),
        (VERSION + KEY, "1.1", "xn--zz", "bad WebSocket handshake"),
    ],
    ids=["HTTP/1.0", "key not base64", "key not 16 bytes", "Host wsproto cannot decode"],
)
async def test_an_upgrade_the_rfc_refuses_is_400_and_the_server_keeps_serving(
    server: RunningServer,
    mint: Callable[[str], str],
    request_headers: str,
    version: str,
    host: str,
    problem: str,
) -> None:
    # Each was accepted (101), or for the Host, answered with nothing at all
    # and a traceback in the log.
    response = await exchange(
        server.address, upgrade(mint("alice"), request_headers, version=version, host=host)
    )

    assert response.startswith(b"HTTP/1.1 400 Bad Request\r\n"), response
    assert problem.encode() in response
    await still_serving(server)


async def test_another_websocket_version_is_426_naming_13(
    server: RunningServer, mint: Callable[[str], str]
) -> None:
    response = await exchange(
        server.address, upgrade(mint("alice"), "Sec-WebSocket-Version: 8\r\n" + KEY)
    )

    head = response.split(b"\r\n\r\n", 1)[0].lower()
    assert head.startswith(b"http/1.1 426 upgrade required\r\n"), response
    assert b"\r\nsec-websocket-version: 13" in head
    await still_serving(server)


@pytest.mark.parametrize(
    ("request_", "status", "header"),
    [
        (POST, b"405", b"allow: get, head"),
        (b"GET /ws HTTP/1.1\r\nHost: g\r\n\r\n", b"426", b"upgrade: websocket"),
    ],
    ids=["405", "426"],
)
async def test_a_405_says_what_is_allowed_and_a_426_what_to_upgrade_to(
    server: RunningServer, request_: bytes, status: bytes, header: bytes
) -> None:
    closing = b"GET /healthz HTTP/1.1\r\nHost: g\r\nConnection: close\r\n\r\n"

    response = await exchange(server.address, request_ + closing)

    first = response.split(b"\r\n\r\n", 1)[0]
    assert first.startswith(b"HTTP/1.1 " + status)
    assert b"\r\n" + header in first.lower()


async def test_a_request_with_both_content_length_and_transfer_encoding_is_answered_then_closed(
    server: RunningServer,
) -> None:
    # Kept alive, the connection would read what follows as a new request:
    # behind a proxy that reads the Content-Length, a smuggled one.
    smuggled = b"GET /healthz HTTP/1.1\r\nHost: g\r\n\r\n"
    request_ = (
        b"POST /metrics HTTP/1.1\r\nHost: g\r\nContent-Length: 5\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled
    )

    response = await exchange(server.address, request_)

    assert response.startswith(b"HTTP/1.1 405 ")
    assert response.count(b"HTTP/1.1 ") == 1  # the second request was never read
