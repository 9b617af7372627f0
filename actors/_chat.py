"""`greenroom chat`: a terminal client that prints a user's event stream."""

from __future__ import annotations

import json
import os
import sys
from typing import Any, TextIO
from urllib.parse import quote

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, open_websocket_url

TERMINAL = ("agent_completed", "agent_error")


def parse_input(agent: str, text: str) -> Any:
    """A line typed by a person, as an agent's input: JSON if it parses;
    for `calc`, anything else is the expression."""
    try:
        value = json.loads(text)
    except ValueError:
        value = text
    if agent == "calc" and not isinstance(value, dict):
        return {"expression": text}
    return value


def _short(value: Any, limit: int = 120) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def render(message: dict[str, Any]) -> str:
    """One server message as a line for a person."""
    kind, data = message.get("type"), message.get("data") or {}
    seq = f"[{message.get('seq')}]"
    match kind:
        case "agent_started":
            return f"{seq} ▶ {data.get('agent')} started  input={_short(data.get('input'))}"
        case "agent_thinking":
            return f"{seq} … {data.get('text')}"
        case "tool_executing":
            return f"{seq} ⚙ {data.get('tool')}({_short(data.get('args'))})"
        case "tool_completed":
            outcome = (
                f"→ {_short(data.get('result'))}" if data.get("ok") else f"✗ {data.get('error')}"
            )
            return f"{seq} ✓ {data.get('tool')} {outcome}  ({data.get('duration_ms')} ms)"
        case "agent_completed":
            return (
                f"{seq} ■ completed → {_short(data.get('output'))}  ({data.get('duration_ms')} ms)"
            )
        case "agent_error":
            return f"{seq} ✗ {data.get('reason')}: {data.get('detail')}"
        case "error":
            return f"error [{message.get('code')}]: {message.get('detail')}"
        case "gap":
            return f"(events {message.get('from')}..{message.get('to')} are no longer held)"
        case "pong":
            return "pong"
    return json.dumps(message)


async def _print_events(ws: WebSocketConnection, out: TextIO, finished: trio.Event | None) -> None:
    while True:
        message = json.loads(await ws.get_message())
        print(render(message), file=out, flush=True)
        if finished is not None and message.get("type") in TERMINAL:
            finished.set()
        if finished is not None and message.get("type") == "error":
            finished.set()


async def chat(url: str, token: str, agent: str, text: str | None, out: TextIO = sys.stdout) -> int:
    """With `text`: one run, printed until it ends. Without: read lines from
    standard input, each one a run; `/agent NAME`, `/cancel RUN_ID`, `/quit`."""
    target = f"{url}{'&' if '?' in url else '?'}token={quote(token)}"
    try:
        async with open_websocket_url(target) as ws, trio.open_nursery() as nursery:
            if text is not None:
                finished = trio.Event()
                nursery.start_soon(_print_events, ws, out, finished)
                await ws.send_message(
                    json.dumps({"type": "run", "agent": agent, "input": parse_input(agent, text)})
                )
                await finished.wait()
                nursery.cancel_scope.cancel()
                return 0
            nursery.start_soon(_print_events, ws, out, None)
            await _repl(ws, agent, out)
            nursery.cancel_scope.cancel()
            return 0
    except ConnectionClosed as closed:
        reason = closed.reason
        code, why = (reason.code, reason.reason or "") if reason else ("?", "")
        print(f"connection closed: {code} {why}".rstrip(), file=sys.stderr)
        return 1
    except OSError as error:
        print(f"cannot connect to {url}: {error}", file=sys.stderr)
        return 1


async def _repl(ws: WebSocketConnection, agent: str, out: TextIO) -> None:
    print(f"chatting with {agent!r}: type a message; /agent NAME, /cancel RUN_ID, /quit", file=out)
    stdin = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
    buffer = b""
    async with stdin:
        while True:
            while b"\n" not in buffer:
                chunk = await stdin.receive_some(65536)
                if not chunk:
                    return
                buffer += chunk
            raw, buffer = buffer.split(b"\n", 1)
            line = raw.decode(errors="replace").strip()
            if not line:
                continue
            if line == "/quit":
                return
            if line.startswith("/agent "):
                agent = line.split(maxsplit=1)[1]
                print(f"now talking to {agent!r}", file=out)
                continue
            if line.startswith("/cancel "):
                await ws.send_message(json.dumps({"type": "cancel", "run_id": line.split()[1]}))
                continue
            message = {"type": "run", "agent": agent, "input": parse_input(agent, line)}
            await ws.send_message(json.dumps(message))
