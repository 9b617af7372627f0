"""The `greenroom` command: serve (and SIGTERM), token, chat, --help.

`serve` and `chat` run as real subprocesses (`python -m actors.cli`); the
argument parsing is also exercised in-process, which is quicker.
"""

from __future__ import annotations

import json
import logging
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from actors import CoreConfig, InvalidRequest, ServeOptions, TokenSigner
from actors._auth import DEV_SECRET
from actors.cli import SECRET_ENV, _build_parser, _LogFormatter, _serve_options, main

from .kit import GREENROOM, PATIENCE, ROOT, connect, ping, read_until_closed, receive, run

SERVING = re.compile(r"greenroom serving on http://(?P<host>[\d.]+):(?P<port>\d+)")


async def _first_line(stream: trio.abc.ReceiveStream) -> str:
    data = b""
    with trio.fail_after(PATIENCE * 3):
        while b"\n" not in data:
            chunk = await stream.receive_some(4096)
            assert chunk, f"the server exited before printing its address: {data!r}"
            data += chunk
    return data.split(b"\n", 1)[0].decode()


@asynccontextmanager
async def _serving(
    env: dict[str, str], *flags: str, stderr: Any
) -> AsyncIterator[tuple[trio.Process, str]]:
    """`greenroom serve --dev --port 0 FLAGS` as a subprocess, and the first
    line it printed; killed on the way out if it has not exited."""
    process = await trio.lowlevel.open_process(
        [*GREENROOM, "serve", "--dev", "--port", "0", *flags],
        stdout=subprocess.PIPE,
        stderr=stderr,
        env=env,
        cwd=ROOT,
    )
    try:
        assert process.stdout is not None
        yield process, await _first_line(process.stdout)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_sigterm_ends_live_runs_with_shutdown_closes_1001_and_exits_0(
    env: dict[str, str], tmp_path: Path
) -> None:
    with (tmp_path / "serve.log").open("wb") as log:
        async with _serving(env, stderr=log) as (process, line):
            found = SERVING.search(line)
            assert found, line
            url = f"ws://{found['host']}:{found['port']}/ws"

            async with connect(url, TokenSigner(DEV_SECRET).mint("alice")) as ws:
                await run(ws, "sleep", {"seconds": 60, "steps": 60}, run_id="long")
                assert (await receive(ws))["type"] == "agent_started"

                process.send_signal(signal.SIGTERM)
                messages, code = await read_until_closed(ws)

            with trio.fail_after(PATIENCE):
                status = await process.wait()

    assert [m["type"] for m in messages] == ["agent_error"]
    assert messages[0]["run_id"] == "long"
    assert messages[0]["data"]["reason"] == "shutdown"
    assert code == 1001
    assert status == 0, (tmp_path / "serve.log").read_text()
    text = (tmp_path / "serve.log").read_text()
    assert "DEVELOPMENT MODE" in text
    audited = re.search(
        r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO greenroom\.audit "
        r"(\{.*\"run_id\":\"long\".*\})$",
        text,
        re.MULTILINE,
    )
    assert audited, text
    assert json.loads(audited[1])["event"] == "run_started"


async def test_serve_on_an_ipv6_host_prints_urls_with_the_host_in_brackets(
    env: dict[str, str],
) -> None:
    async with _serving(env, "--host", "::1", stderr=subprocess.DEVNULL) as (process, line):
        found = re.fullmatch(
            r"greenroom serving on http://\[::1\]:(\d+) \(WebSocket: (ws://\[::1\]:\1/ws)\)", line
        )
        assert found, line
        async with connect(found[2], TokenSigner(DEV_SECRET).mint("alice")) as ws:
            await ping(ws)  # the printed URL is one a client can use
        process.send_signal(signal.SIGTERM)
        with trio.fail_after(PATIENCE):
            status = await process.wait()

    assert status == 0


@given(st.lists(st.floats(min_value=0, max_value=4e9), min_size=1, max_size=20))
def test_the_serve_log_formats_time_as_logging_does(moments: list[float]) -> None:
    standard = logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s")
    ours = _LogFormatter()  # keeps one second's text between records
    for created in sorted(moments) + moments:
        record = logging.LogRecord("greenroom.audit", logging.INFO, __file__, 0, "{}", None, None)
        record.created, record.msecs = created, int(created * 1000) % 1000
        assert ours.format(record) == standard.format(record)


async def test_serve_without_a_secret_or_dev_refuses_to_start(env: dict[str, str]) -> None:
    result = await trio.run_process(
        [*GREENROOM, "serve", "--port", "0"],
        env=env,
        cwd=ROOT,
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )

    assert result.returncode != 0
    stderr = result.stderr.decode()
    assert SECRET_ENV in stderr
    assert "--dev" in stderr
    assert b"serving" not in result.stdout


async def test_token_prints_a_token_the_dev_secret_verifies(env: dict[str, str]) -> None:
    result = await trio.run_process(
        [*GREENROOM, "token", "alice"], env=env, cwd=ROOT, capture_stdout=True, capture_stderr=True
    )

    token = result.stdout.decode().strip()
    assert TokenSigner(DEV_SECRET).verify(token) == "alice"
    assert "development secret" in result.stderr.decode()


def test_token_uses_the_secret_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = "a-real-secret-from-the-environment"
    monkeypatch.setenv(SECRET_ENV, secret)

    assert main(["token", "bob", "--ttl", "60"]) == 0

    token = capsys.readouterr().out.strip()
    assert TokenSigner(secret).verify(token) == "bob"
    with pytest.raises(ValueError, match="forged"):
        TokenSigner(DEV_SECRET).verify(token)


def test_serve_in_process_refuses_without_a_secret_naming_both_ways_out(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv(SECRET_ENV, raising=False)

    assert main(["serve", "--port", "0"]) != 0

    stderr = capsys.readouterr().err
    assert SECRET_ENV in stderr and "--dev" in stderr


@pytest.mark.parametrize(
    ("argv", "mentions"),
    [
        ([], ["serve", "token", "chat"]),
        (["serve"], ["--host", "--port", "--dev", "--deliver-inline", SECRET_ENV]),
        (["token"], ["user", "--ttl"]),
        (["chat"], ["user", "--agent", "--url"]),
    ],
)
def test_help_describes_each_command(
    argv: list[str], mentions: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main([*argv, "--help"])

    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: greenroom")
    for word in mentions:
        assert word in out


async def test_the_installed_greenroom_script_runs(env: dict[str, str]) -> None:
    script = Path(sys.executable).parent / "greenroom"

    result = await trio.run_process([str(script), "--help"], env=env, capture_stdout=True)

    assert b"serve" in result.stdout and b"token" in result.stdout and b"chat" in result.stdout


def test_every_serve_flag_reaches_the_options_it_names() -> None:
    args = _build_parser().parse_args(
        [
            "serve", "--host", "0.0.0.0", "--port", "9000",
            "--max-engines", "7", "--max-runs-per-user", "2", "--max-queued-runs-per-user", "3",
            "--run-timeout", "9.5", "--idle-timeout", "11", "--engine-linger", "0",
            "--replay-window", "50", "--replay-bytes", "65536", "--replay-retention", "60",
            "--seq-retention", "3600",
            "--subscriber-queue", "70",
            "--deliver-inline", "--allow-origin", "https://a.example",
            "--allow-origin", "https://b.example", "--max-message-bytes", "4096",
            "--write-timeout", "5", "--shutdown-timeout", "6", "--gc-threshold", "0",
            "--max-connections", "500",
        ]
    )  # fmt: skip

    assert _serve_options(args) == ServeOptions(
        host="0.0.0.0",
        port=9000,
        core=CoreConfig(
            max_engines=7,
            max_runs_per_user=2,
            max_queued_runs_per_user=3,
            run_timeout=9.5,
            idle_timeout=11.0,
            engine_linger=0.0,
            replay_window=50,
            replay_bytes=65536,
            replay_retention=60.0,
            seq_retention=3600.0,
            subscriber_queue=70,
            deliver_inline=True,
        ),
        allowed_origins=("https://a.example", "https://b.example"),
        max_message_bytes=4096,
        write_timeout=5.0,
        shutdown_timeout=6.0,
        gc_threshold=0,
        max_connections=500,
    )
    defaults = _serve_options(_build_parser().parse_args(["serve"]))
    assert defaults == ServeOptions()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--port", "70000"], "port must be a whole number from 0 to 65535, got 70000"),
        (["--port", "-1"], "port must be a whole number from 0 to 65535, got -1"),
        (["--shutdown-timeout", "-1"], "shutdown_timeout must be a number of seconds >= 0"),
        (["--shutdown-timeout", "nan"], "shutdown_timeout must be a number of seconds >= 0"),
        (["--shutdown-timeout", "inf"], "shutdown_timeout must be a number of seconds >= 0"),
        (["--write-timeout", "0"], "write_timeout must be a number of seconds > 0"),
        (["--write-timeout", "nan"], "write_timeout must be a number of seconds > 0"),
        (["--max-message-bytes", "0"], "max_message_bytes must be a whole number >= 1"),
        (["--gc-threshold", "-1"], "gc_threshold must be a whole number >= 0"),
        (["--max-connections", "-1"], "max_connections must be a whole number >= 0"),
        (["--gc-threshold", "2147483648"], "gc_threshold must be at most 2,147,483,647"),
    ],
)
def test_a_bad_serve_flag_is_refused_before_anything_listens(
    flags: list[str], message: str
) -> None:
    # A negative or NaN --shutdown-timeout used to be taken, and to crash
    # the server on SIGTERM; --port 70000 failed with OverflowError.
    args = _build_parser().parse_args(["serve", *flags])

    with pytest.raises(InvalidRequest, match=re.escape(message)):
        _serve_options(args)


def test_serve_exits_2_naming_a_bad_flag(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--dev", "--port", "70000"]) == 2
    assert "port must be a whole number from 0 to 65535" in capsys.readouterr().err


@pytest.mark.parametrize("ttl", ["inf", "nan", "0", "-5"])
def test_token_refuses_a_ttl_that_is_not_a_finite_positive_number(
    ttl: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["token", "alice", "--ttl", ttl]) == 2
    assert "ttl must be a finite number of seconds > 0" in capsys.readouterr().err


def test_words_after_double_dash_are_refused_for_a_command_that_takes_no_message(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # With a user named "chat", they were split off as chat's message and dropped.
    with pytest.raises(SystemExit) as exit:
        main(["token", "chat", "--", "extra"])
    assert exit.value.code == 2
    assert "unrecognized arguments: extra" in capsys.readouterr().err
