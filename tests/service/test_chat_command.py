"""`greenroom chat` as a person uses it: a real subprocess against a real
server, one-shot and with lines on its standard input."""

from __future__ import annotations

import json
import re
import socket
import subprocess
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import attrs
import trio

from actors import RunningServer, TokenSigner
from actors._auth import DEV_SECRET

from .kit import GREENROOM, PATIENCE, ROOT, SECRET, connect, ping, receive, run


async def _chat(
    env: dict[str, str], *args: str, stdin: bytes = b""
) -> subprocess.CompletedProcess[bytes]:
    with trio.fail_after(PATIENCE * 3):
        return await trio.run_process(
            [*GREENROOM, "chat", *args],
            env=env,
            cwd=ROOT,
            stdin=stdin,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )


@attrs.define(eq=False)
class _Chatting:
    """An interactive `greenroom chat`: write lines, read what it prints."""

    process: trio.Process
    _buffer: bytes = b""
    lines: list[str] = attrs.Factory(list)
    errors: str = ""

    async def write(self, text: str) -> None:
        assert self.process.stdin is not None
        await self.process.stdin.send_all(text.encode())

    async def read_until(self, found: Callable[[str], bool]) -> str:
        """Read printed lines until one is `found`; return it."""
        assert self.process.stdout is not None
        with trio.fail_after(PATIENCE):
            while True:
                while b"\n" in self._buffer:
                    raw, self._buffer = self._buffer.split(b"\n", 1)
                    line = raw.decode()
                    self.lines.append(line)
                    if found(line):
                        return line
                chunk = await self.process.stdout.receive_some(4096)
                assert chunk, f"chat exited; it printed {self.lines}"
                self._buffer += chunk

    async def end_input_and_wait(self) -> int:
        """Close chat's standard input; its exit status, once it exits."""
        assert self.process.stdin is not None and self.process.stdout is not None
        await self.process.stdin.aclose()
        assert self.process.stderr is not None
        errors = b""
        with trio.fail_after(PATIENCE):
            while chunk := await self.process.stdout.receive_some(4096):
                self._buffer += chunk
            while chunk := await self.process.stderr.receive_some(4096):
                errors += chunk
            status = await self.process.wait()
        self.lines += self._buffer.decode().splitlines()
        self.errors = errors.decode()
        return status


@asynccontextmanager
async def _chatting(env: dict[str, str], *args: str) -> AsyncIterator[_Chatting]:
    process = await trio.lowlevel.open_process(
        [*GREENROOM, "chat", *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=ROOT,
    )
    try:
        yield _Chatting(process)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


RUN_SENT = re.compile(r"^→ run (\S+)$")


async def test_chat_runs_an_agent_once_and_prints_its_events_readably(
    dev_server: RunningServer, env: dict[str, str]
) -> None:
    result = await trio.run_process(
        [*GREENROOM, "chat", "alice", "--url", dev_server.url, "--agent", "calc", "2+3*4"],
        env=env,
        cwd=ROOT,
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )

    assert result.returncode == 0, result.stderr.decode()
    lines = result.stdout.decode().splitlines()
    assert len(lines) == 5, lines
    assert lines[0].startswith("[1]") and "calc started" in lines[0] and "2+3*4" in lines[0]
    assert lines[1].startswith("[2]") and "evaluating 2+3*4" in lines[1]
    assert lines[2].startswith("[3]") and "calculate" in lines[2]
    assert lines[3].startswith("[4]") and "→ 14" in lines[3]
    assert lines[4].startswith("[5]") and "completed → 14" in lines[4]
    assert dev_server.core.last_seq("alice") == 5


async def test_chat_with_a_token_the_server_refuses_says_so_and_exits_1(
    server: RunningServer, env: dict[str, str]
) -> None:
    result = await trio.run_process(
        [*GREENROOM, "chat", "alice", "--url", server.url, "hello"],
        env=env,
        cwd=ROOT,
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )

    assert result.returncode == 1
    assert result.stderr.decode().splitlines()[-1].startswith("connection closed: 4401 ")
    assert "Traceback" not in result.stderr.decode()
    assert server.core.last_seq("alice") == 0


async def test_a_chat_user_sees_only_their_own_events(
    dev_server: RunningServer, env: dict[str, str]
) -> None:
    async with connect(dev_server.url, TokenSigner(DEV_SECRET).mint("bob")) as bob:
        result = await trio.run_process(
            [*GREENROOM, "chat", "alice", "--url", dev_server.url, "hi"],
            env=env,
            cwd=ROOT,
            capture_stdout=True,
        )
        # Bob's next message is the pong: none of alice's events reached him.
        await ping(bob)

    assert b"completed" in result.stdout
    assert dev_server.core.last_seq("bob") == 0


async def test_a_one_shot_chat_waits_for_its_own_run_not_another_of_the_users(
    dev_server: RunningServer, env: dict[str, str]
) -> None:
    done: list[subprocess.CompletedProcess[bytes]] = []

    async def one_shot() -> None:
        input = json.dumps({"seconds": 1, "steps": 1})
        done.append(await _chat(env, "alice", "--url", dev_server.url, "--agent", "sleep", input))

    token = TokenSigner(DEV_SECRET).mint("alice")
    async with connect(dev_server.url, token) as other, trio.open_nursery() as nursery:
        nursery.start_soon(one_shot)
        started = await receive(other)  # chat's run, seen by alice's other client
        assert started["type"] == "agent_started"
        # Another run of alice's starts and ends while chat's still sleeps.
        await run(other, "echo", "elsewhere", run_id="other")

    result = done[0]
    assert result.returncode == 0, result.stderr.decode()
    lines = result.stdout.decode().splitlines()
    assert len(lines) == 3, lines  # started, thinking, completed: its own run's only
    assert "completed" in lines[-1] and '"slept": 1' in lines[-1]
    assert "elsewhere" not in result.stdout.decode()


async def test_a_refused_run_prints_the_error_and_exits_1(
    dev_server: RunningServer, env: dict[str, str]
) -> None:
    result = await _chat(env, "alice", "--url", dev_server.url, "--agent", "nope", "hi")

    assert result.returncode == 1
    assert result.stdout.decode().startswith("error [unknown_agent]:")
    assert dev_server.core.last_seq("alice") == 0


async def test_a_run_ending_in_agent_error_exits_1(
    dev_server: RunningServer, env: dict[str, str]
) -> None:
    refused = json.dumps({"seconds": -1})
    result = await _chat(env, "alice", "--url", dev_server.url, "--agent", "sleep", refused)

    lines = result.stdout.decode().splitlines()
    assert result.returncode == 1, lines
    assert lines[-1].startswith("[2] ✗ exception: ValueError: sleep expects 0 <= seconds")


async def test_with_no_server_chat_says_it_cannot_connect_in_one_line_and_exits_1(
    env: dict[str, str],
) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]  # nothing listens once it is closed
    url = f"ws://127.0.0.1:{port}/ws"

    result = await _chat(env, "alice", "--url", url, "hello")

    assert result.returncode == 1
    errors = [line for line in result.stderr.decode().splitlines() if not line.startswith("(")]
    assert errors == [
        f"cannot connect to {url}: all attempts to connect to 127.0.0.1:{port} failed"
    ]


async def test_piped_lines_are_each_a_run_and_chat_waits_for_them_before_exiting(
    dev_server: RunningServer, env: dict[str, str]
) -> None:
    lines_in = b"hello\n/agent calc\n\n2+3*4"  # the last line has no newline

    result = await _chat(env, "alice", "--url", dev_server.url, stdin=lines_in)

    assert result.returncode == 0, result.stderr.decode()
    lines = result.stdout.decode().splitlines()
    run_ids = [found[1] for line in lines if (found := RUN_SENT.match(line))]
    assert len(run_ids) == 2
    completed = [line for line in lines if "■ completed" in line]
    assert len(completed) == 2
    assert f"{run_ids[0]} ■ completed → hello" in completed[0]
    assert f"{run_ids[1]} ■ completed → 14" in completed[1]


async def test_a_run_is_cancelled_by_the_id_chat_printed_for_it(
    dev_server: RunningServer, env: dict[str, str]
) -> None:
    async with _chatting(env, "alice", "--url", dev_server.url, "--agent", "sleep") as chat:
        await chat.write(json.dumps({"seconds": 60, "steps": 1}) + "\n")
        sent = RUN_SENT.match(await chat.read_until(lambda line: bool(RUN_SENT.match(line))))
        assert sent is not None
        run_id = sent[1]
        await chat.read_until(lambda line: "▶ sleep started" in line)
        await chat.write(f"/cancel {run_id}\n")
        ended = await chat.read_until(lambda line: "✗" in line)
        status = await chat.end_input_and_wait()

    assert ended.endswith(f"{run_id} ✗ cancelled: cancelled by the user")
    assert status == 1  # the run did not complete


async def test_a_message_that_starts_with_a_dash_is_sent_after_double_dash_or_alone(
    dev_server: RunningServer, env: dict[str, str]
) -> None:
    url = dev_server.url
    after_dashes = await _chat(env, "alice", "--url", url, "--agent", "calc", "--", "-5+3")
    alone = await _chat(env, "alice", "--url", url, "--agent", "calc", "-5+3")
    an_option = await _chat(env, "alice", "--url", url, "--agent", "calc", "-x")

    assert after_dashes.returncode == 0 and "completed → -2" in after_dashes.stdout.decode()
    assert alone.returncode == 0 and "completed → -2" in alone.stdout.decode()
    assert an_option.returncode == 2
    assert "unrecognized arguments: -x (a message that starts with '-' goes after '--')" in (
        an_option.stderr.decode()
    )


async def test_the_server_going_away_mid_chat_is_one_line_and_exit_1(
    start_server: Callable[..., Any], env: dict[str, str]
) -> None:
    handle = await start_server()
    env = {**env, "GREENROOM_SECRET": SECRET}
    async with _chatting(env, "alice", "--url", handle.server.url, "--agent", "sleep") as chat:
        await chat.write(json.dumps({"seconds": 60, "steps": 1}) + "\n")
        await chat.read_until(lambda line: "▶ sleep started" in line)
        await handle.stop()
        await chat.read_until(lambda line: "✗ shutdown" in line)
        status = await chat.end_input_and_wait()

    assert status == 1
    assert chat.errors.splitlines()[-1] == "connection closed: 1001 the server is shutting down"
    assert "Traceback" not in chat.errors


async def test_a_bad_url_is_refused_before_connecting(env: dict[str, str]) -> None:
    result = await _chat(env, "alice", "--url", "ws://::1:8765/ws", "hello")

    assert result.returncode == 2
    assert "write an IPv6 host in []" in result.stderr.decode()
    assert "Traceback" not in result.stderr.decode()


async def test_a_url_the_server_does_not_serve_websockets_on_is_one_line_and_exit_1(
    dev_server: RunningServer, env: dict[str, str]
) -> None:
    url = dev_server.url.removesuffix("/ws") + "/nope"

    result = await _chat(env, "alice", "--url", url, "hello")

    assert result.returncode == 1
    assert result.stderr.decode().splitlines()[-1] == (
        f"cannot connect to {url}: the server answered HTTP 404"
    )
