"""`greenroom chat`: a terminal client that prints a user's event stream."""

from __future__ import annotations

import json
import os
import secrets
import sys
from collections import deque
from typing import Any, TextIO
from urllib.parse import quote, urlsplit

import attrs
import trio
from trio_websocket import (
    ConnectionClosed,
    ConnectionRejected,
    HandshakeError,
    WebSocketConnection,
    open_websocket_url,
)

TERMINAL = ("agent_completed", "agent_error")

#: The fence sent after every request: the server answers a connection's
#: requests in order, so an error that comes before a request's pong is
#: that request's.
_PING = json.dumps({"type": "ping"})


def check_url(url: str) -> str:
    """`url` if it is a WebSocket URL chat can connect to; else `ValueError`
    saying what is wrong with it."""
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss"):
        raise ValueError(f"{url!r} is not a ws:// or wss:// URL")
    try:
        parts.port  # noqa: B018 (reading it checks it)
    except ValueError as error:
        bare_ipv6 = parts.netloc.count(":") > 1 and "[" not in parts.netloc
        hint = " (write an IPv6 host in [], as ws://[::1]:8765/ws)" if bare_ipv6 else ""
        raise ValueError(f"{url!r} has no valid port: {error}{hint}") from None
    if not parts.hostname:
        raise ValueError(f"{url!r} names no host")
    return url


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


def new_run_id() -> str:
    """A short run id a person can type (`/cancel ID`)."""
    return secrets.token_hex(4)


def _short(value: Any, limit: int = 120) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def render(message: dict[str, Any], *, run_ids: bool = False) -> str:
    """One server message as a line for a person; with `run_ids`, each
    event's line names its run after the seq."""
    kind, data = message.get("type"), message.get("data") or {}
    seq = f"[{message.get('seq')}]"
    if run_ids:
        seq = f"{seq} {message.get('run_id')}"
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


@attrs.define
class ChatBook:
    """What a chat session has asked for and what came of it, without I/O.

    Each request is sent with a ping behind it (`_PING`). A run is
    outstanding until its terminal event, or an error answering its
    request; the session is `settled` when nothing it asked for is
    outstanding. `failed` counts the runs that ended in `agent_error` and
    the requests answered with an error. With `only_own`, `receive` shows
    only this session's runs (the user's other clients' runs go unshown).
    """

    only_own: bool = False
    run_ids: bool = False
    failed: int = 0
    _runs: set[str] = attrs.Factory(set)
    #: The requests whose pong has not come yet, oldest first: a run's id,
    #: or None for another request.
    _unanswered: deque[str | None] = attrs.Factory(deque)

    @property
    def settled(self) -> bool:
        return not self._runs and not self._unanswered

    def asked(self, run_id: str | None = None) -> None:
        """A request was sent (with its ping): a run's, or another (None)."""
        if run_id is not None:
            self._runs.add(run_id)
        self._unanswered.append(run_id)

    def receive(self, message: dict[str, Any]) -> str | None:
        """Book a message from the server; the line to show for it, if any."""
        kind = message.get("type")
        if kind == "pong":
            if self._unanswered:
                self._unanswered.popleft()
                return None  # a fence, not asked for by the person
            return render(message)
        if kind == "error":
            self.failed += 1
            run_id = self._unanswered[0] if self._unanswered else None
            if run_id is not None:
                self._runs.discard(run_id)
            return render(message)
        run_id = message.get("run_id")
        if kind in TERMINAL and run_id in self._runs:
            self._runs.discard(run_id)
            if kind == "agent_error":
                self.failed += 1
        elif self.only_own and kind != "gap" and run_id not in self._runs:
            return None
        return render(message, run_ids=self.run_ids)

    @property
    def exit_status(self) -> int:
        return 1 if self.failed else 0


def _run_request(agent: str, text: str, run_id: str) -> str:
    return json.dumps(
        {"type": "run", "agent": agent, "input": parse_input(agent, text), "run_id": run_id}
    )


async def _ask(ws: WebSocketConnection, book: ChatBook, request: str, run_id: str | None) -> None:
    book.asked(run_id)
    await ws.send_message(request)
    await ws.send_message(_PING)


async def _show(ws: WebSocketConnection, book: ChatBook, out: TextIO) -> None:
    line = book.receive(json.loads(await ws.get_message()))
    if line is not None:
        print(line, file=out, flush=True)


async def chat(url: str, token: str, agent: str, text: str | None, out: TextIO = sys.stdout) -> int:
    """With `text`: one run, its events printed until it ends. Without:
    read lines from standard input, each one a run; `/agent NAME`,
    `/cancel RUN_ID`, `/quit`; at the end of the input, wait for the runs
    it started to end. Exit status: 0 if every run completed, 1 if one
    ended in `agent_error` or a request was refused, or on a connection
    that failed or closed."""
    target = f"{url}{'&' if '?' in url else '?'}token={quote(token)}"
    try:
        async with open_websocket_url(target) as ws:
            if text is not None:
                book = ChatBook(only_own=True)
                run_id = new_run_id()
                await _ask(ws, book, _run_request(agent, text, run_id), run_id)
                while not book.settled:
                    await _show(ws, book, out)
                return book.exit_status
            book = ChatBook(run_ids=True)
            await _interact(ws, book, agent, out)
            return book.exit_status
    except (ConnectionClosed, HandshakeError, OSError, BaseExceptionGroup) as error:
        problem = _connection_problem(error, url)
        if problem is None:
            raise
        print(problem, file=sys.stderr)
        return 1


def _connection_problem(error: BaseException, url: str) -> str | None:
    """What went wrong with the connection, as a line for a person; None if
    `error` (or a group of them) holds no connection failure."""
    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            problem = _connection_problem(inner, url)
            if problem is not None:
                return problem
        return None
    if isinstance(error, ConnectionClosed):
        reason = error.reason
        code, why = (reason.code, reason.reason or "") if reason else ("?", "")
        return f"connection closed: {code} {why}".rstrip()
    if isinstance(error, ConnectionRejected):
        return f"cannot connect to {url}: the server answered HTTP {error.status_code}"
    if isinstance(error, HandshakeError):
        cause = error.__cause__ or error.__context__
        detail = str(cause) if cause is not None else (str(error) or type(error).__name__)
        return f"cannot connect to {url}: {detail}"
    if isinstance(error, OSError):
        return f"cannot connect to {url}: {error}"
    return None


async def _interact(ws: WebSocketConnection, book: ChatBook, agent: str, out: TextIO) -> None:
    print(f"chatting with {agent!r}: type a message; /agent NAME, /cancel RUN_ID, /quit", file=out)
    input_ended = trio.Event()
    async with trio.open_nursery() as nursery:

        async def show() -> None:
            while not (input_ended.is_set() and book.settled):
                await _show(ws, book, out)
            nursery.cancel_scope.cancel()

        nursery.start_soon(show)
        if await _read_lines(ws, book, agent, out) == "quit" or book.settled:
            nursery.cancel_scope.cancel()
        input_ended.set()


async def _read_lines(ws: WebSocketConnection, book: ChatBook, agent: str, out: TextIO) -> str:
    """Send each line of standard input as a run (or a command) until
    `/quit` ("quit") or the end of the input ("ended")."""
    stdin = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
    buffer = b""
    async with stdin:
        while True:
            while b"\n" not in buffer:
                chunk = await stdin.receive_some(65536)
                if not chunk:
                    if not buffer.strip():
                        return "ended"
                    buffer += b"\n"  # a last line without its newline
                    break
                buffer += chunk
            raw, buffer = buffer.split(b"\n", 1)
            line = raw.decode(errors="replace").strip()
            if not line:
                continue
            if line == "/quit":
                return "quit"
            if line.startswith("/agent "):
                agent = line.split(maxsplit=1)[1]
                print(f"now talking to {agent!r}", file=out)
                continue
            if line.startswith("/cancel "):
                request = json.dumps({"type": "cancel", "run_id": line.split()[1]})
                await _ask(ws, book, request, None)
                continue
            run_id = new_run_id()
            print(f"→ run {run_id}", file=out, flush=True)
            await _ask(ws, book, _run_request(agent, line, run_id), run_id)
