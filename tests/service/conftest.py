"""Fixtures for the service tests: a real server on 127.0.0.1, port 0."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import trio

from actors import RunningServer, ServeOptions, TokenSigner, open_server
from actors._auth import DEV_SECRET
from actors.cli import SECRET_ENV

from .kit import SECRET, ServerHandle, hold_server


@pytest.fixture
def signer() -> TokenSigner:
    return TokenSigner(SECRET)


@pytest.fixture
def mint(signer: TokenSigner) -> Callable[[str], str]:
    """A valid token for a user."""
    return signer.mint


@pytest.fixture
async def server(signer: TokenSigner) -> AsyncIterator[RunningServer]:
    """The demo service with default options, until the test ends."""
    async with open_server(ServeOptions(host="127.0.0.1", port=0), signer) as running:
        yield running


@pytest.fixture
def env() -> dict[str, str]:
    """The environment of a subprocess, without a signing secret."""
    env = {key: value for key, value in os.environ.items() if key != SECRET_ENV}
    env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest.fixture
async def dev_server() -> AsyncIterator[RunningServer]:
    """A server that verifies with the development secret, as `chat` mints."""
    async with open_server(ServeOptions(host="127.0.0.1", port=0), TokenSigner(DEV_SECRET)) as s:
        yield s


@pytest.fixture
def start_server(
    nursery: trio.Nursery, signer: TokenSigner
) -> Callable[..., Awaitable[ServerHandle]]:
    """`await start_server(**ServeOptions fields)`: a server that lives until
    the test ends or its handle's `stop()` is awaited."""

    async def start(**options: Any) -> ServerHandle:
        handle: ServerHandle = await nursery.start(
            hold_server, ServeOptions(host="127.0.0.1", port=0, **options), signer
        )
        return handle

    return start
