"""`bench.load`'s servers: their command lines, starting (where they listen)
and stopping them, py-spy, CPU and RSS sampling, the latency summary."""

from __future__ import annotations

import math
import re
import resource
import shutil
import subprocess
import sys
import tempfile
from array import array
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psutil
import trio

from . import _report
from ._load_client import Load

ROOT = Path(__file__).resolve().parent.parent
_SERVING = re.compile(r"serving on http://(\S+?):(\d+)")


def py_spy_binary() -> str | None:
    """py-spy beside this interpreter (installed into .venv), else on PATH."""
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy")


def py_spy_problem(directory: str) -> str | None:
    """Why `--py-spy directory` cannot work (None if it can); makes the folder."""
    if py_spy_binary() is None:
        return "py-spy is not installed (.venv/bin/python -m pip install py-spy)"
    try:
        Path(directory).mkdir(parents=True, exist_ok=True)
    except OSError as error:
        return f"cannot make the folder ({error.strerror or error})"
    try:
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as error:  # read-only, say: py-spy would fail unheard
        return f"cannot write into the folder ({error.strerror or error})"
    return None


def _start_py_spy(directory: str | None, name: str, pid: int) -> subprocess.Popen[bytes] | None:
    """Sample the server with py-spy (without pausing it) until SIGINT."""
    spy = py_spy_binary()
    if directory is None or spy is None:
        return None
    out = Path(directory) / f"{name}.folded"
    command = [spy, "record", "--pid", str(pid), "--nonblocking", "--rate", "200"]
    command += ["--format", "raw", "--output", str(out)]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def _busy_cores(before: Any, after: Any, seconds: float) -> float:
    """Cores busy on the whole machine (anyone's processes) over `seconds`."""
    idle = (after.idle + getattr(after, "iowait", 0.0)) - (
        before.idle + getattr(before, "iowait", 0.0)
    )
    total = sum(after) - sum(before)
    cpus = psutil.cpu_count() or 1
    return (1 - idle / total) * cpus if total > 0 else math.nan


def _rss_high_water(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


async def _read_address(process: subprocess.Popen[bytes]) -> tuple[str, int]:
    assert process.stdout is not None
    with trio.fail_after(60):
        line = await trio.to_thread.run_sync(process.stdout.readline, abandon_on_cancel=True)
    found = _SERVING.search(line.decode(errors="replace"))
    if not found:
        raise RuntimeError(f"the server did not say where it listens: {line!r}")
    return found.group(1), int(found.group(2))


async def _wait_exit(process: subprocess.Popen[bytes], timeout: float) -> int | None:
    with trio.move_on_after(timeout):
        while process.poll() is None:
            await trio.sleep(0.02)
    return process.poll()


def _latency_stats(latency: array[float]) -> dict[str, float]:
    if not latency:
        return {"p50_ms": math.nan, "p90_ms": math.nan, "p99_ms": math.nan, "max_ms": math.nan}
    import numpy as np

    values = np.frombuffer(latency, dtype=np.float64) * 1000.0
    p50, p90, p99 = np.percentile(values, [50, 90, 99])
    return {
        "p50_ms": float(p50),
        "p90_ms": float(p90),
        "p99_ms": float(p99),
        "max_ms": float(values.max()),
        "mean_ms": float(values.mean()),
    }


def greenroom_command(load: Load, server_args: Sequence[str] = ()) -> list[str]:
    """`greenroom serve` with limits that fit `load`, then `server_args`."""
    per_run = load.events_per_run
    return [
        sys.executable, "-m", "actors.cli", "serve", "--dev", "--port", "0",
        "--max-engines", str(max(10_000, load.users)),
        "--max-runs-per-user", "4",
        "--subscriber-queue", str(max(1000, 4 * per_run)),
        "--run-timeout", str(max(300.0, 10 * load.seconds)),
        *server_args,
    ]  # fmt: skip


def bare_command() -> list[str]:
    return [sys.executable, "-m", "bench._bare_server", "--port", "0"]


def _phase_timeout(load: Load) -> float:
    """Generous: four times the unloaded duration, plus a minute."""
    per_run = (load.seconds if load.agent == "sleep" else 0.0) + 0.05
    return 60.0 + 4.0 * load.runs_per_user * per_run


def _raise_open_files(users: int) -> None:
    need = 2 * users + 1024  # client and server each hold one per user
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < need:
        target = need if hard == resource.RLIM_INFINITY else min(need, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        if target < need:
            _report.progress(f"open files limited to {target}; {need} would be safer")
