"""`bench.load`'s phases: one server, N users, measured (`Phase`); a round
is the bare phase then greenroom's."""

from __future__ import annotations

import json
import math
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any

import attrs
import psutil
import trio

from actors._auth import DEV_SECRET, TokenSigner

from . import _report
from ._load_client import (
    Books,
    ConnectFailed,
    Load,
    RawWebSocket,
    TrioWebSocket,
    User,
    scrape_metrics,
)
from ._load_mux import Mux
from ._load_report import _timeline
from ._load_servers import (
    ROOT,
    _busy_cores,
    _cpu_seconds,
    _latency_stats,
    _phase_timeout,
    _read_address,
    _rss_high_water,
    _start_py_spy,
    _wait_exit,
    bare_command,
    greenroom_command,
)

SATURATED = 0.90


@attrs.define(eq=False)
class Phase:
    """One server, N users, measured."""

    name: str
    command: list[str]
    load: Load
    timeout: float
    #: A directory for py-spy's folded stacks of the measured phase, or None.
    profile: str | None = None
    books: Books = attrs.field(init=False)
    connected: trio.Event = attrs.Factory(trio.Event)
    go: trio.Event = attrs.Factory(trio.Event)
    done: trio.Event = attrs.Factory(trio.Event)
    all_closed: trio.Event = attrs.Factory(trio.Event)
    host: str = "127.0.0.1"
    port: int = 0
    server: psutil.Process | None = None
    rss_peak: int = 0
    began: float = 0.0  # perf_counter at the start signal
    began_wall: float = 0.0
    timeline: list[tuple[float, float, float, int, int, int]] = attrs.Factory(list)
    mux: Mux = attrs.field(init=False)
    _token: trio.lowlevel.TrioToken | None = attrs.field(default=None, init=False)

    def __attrs_post_init__(self) -> None:
        self.books = Books(self.load)
        self.mux = Mux(self.load, self.books, self._settle, self._closed)

    # sessions

    async def session(
        self, index: int, limiter: trio.CapacityLimiter, nursery: trio.Nursery
    ) -> None:
        books, load = self.books, self.load
        user_id = f"load-{index:05d}"
        token = TokenSigner(DEV_SECRET).mint(user_id, ttl=86_400)
        ws: RawWebSocket | TrioWebSocket | None = None
        async with limiter:
            started = time.perf_counter()
            try:
                with trio.fail_after(30):
                    if load.client == "raw":
                        ws = await RawWebSocket.connect(self.host, self.port, f"/ws?token={token}")
                    else:
                        url = f"ws://{self.host}:{self.port}/ws?token={token}"
                        ws = await TrioWebSocket.connect(nursery, url)
            except (OSError, ConnectFailed, trio.TooSlowError) as error:
                books.connect_failures += 1
                books.violate("connect_failed", f"{user_id}: {error!r}")
            else:
                books.connect_seconds.append(time.perf_counter() - started)
                books.connected += 1
        if books.connected + books.connect_failures == load.users:
            self.connected.set()
        if ws is None:
            self._settle()
            self._closed()
            return
        if isinstance(ws, RawWebSocket):
            self.mux.add(ws, User(user_id, books))  # its thread serves it from here
            return
        try:
            await self._runs(ws, User(user_id, books))  # one task per user
            # After the last run nothing may arrive but the close frame.
            while not ws.closed:
                payloads = await ws.receive_batch()
                for payload in payloads:
                    books.violate("after_last_run", f"{user_id} got {payload[:200]!r}")
            books.close_codes[str(ws.close_code or "none")] += 1
        finally:
            if not ws.closed:
                with trio.CancelScope(shield=True):
                    await ws.aclose()
            self._closed()

    async def _runs(self, ws: TrioWebSocket, user: User) -> None:
        books, load = self.books, self.load
        await self.go.wait()
        try:
            await trio.sleep(random.Random(user.user_id).uniform(0, load.jitter))
            for number in range(load.runs_per_user):
                run_id = f"r{number}"
                request = {
                    "type": "run",
                    "agent": load.agent,
                    "input": load.input,
                    "run_id": run_id,
                }
                user.run_id, user.run_events = run_id, 0
                await ws.send_text(json.dumps(request))
                while user.run_id is not None:
                    payloads = await ws.receive_batch()
                    if ws.closed:
                        user.take(payloads, time.time())
                        if user.run_id is not None:
                            books.violate(
                                "closed_mid_run",
                                f"{user.user_id}/{run_id}: close code {ws.close_code}",
                            )
                            user.run_id = None
                        return
                    user.take(payloads, time.time())
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as error:
            books.violate("connection_lost", f"{user.user_id}: {error!r}")
        finally:
            self._settle()

    # Called in trio, and from the start signal on also in the mux's thread
    # (the only one counting raw users then): the events are set in trio.

    def _settle(self) -> None:
        """One more user's runs are over (done, or abandoned)."""
        self.books.settled += 1
        if self.books.settled == self.load.users:
            self._in_trio(self.done.set)

    def _closed(self) -> None:
        self.books.closed += 1
        if self.books.closed == self.load.users:
            self._in_trio(self.all_closed.set)

    def _in_trio(self, fn: Callable[[], object]) -> None:
        assert self._token is not None, "only while `run` runs"
        self._token.run_sync_soon(fn)

    # sampling

    def _cpu(self) -> float:
        assert self.server is not None
        times = self.server.cpu_times()
        return float(times.user + times.system)

    def _rss(self) -> int:
        assert self.server is not None
        rss = int(self.server.memory_info().rss)
        self.rss_peak = max(self.rss_peak, rss)
        return rss

    async def monitor(self) -> None:
        me = psutil.Process()
        tick = 0
        while True:
            try:
                rss = self._rss()
                if self.go.is_set() and not self.done.is_set():
                    client = me.cpu_times()
                    self.timeline.append(
                        (
                            time.perf_counter() - self.began,
                            self._cpu(),
                            client.user + client.system,
                            rss,
                            self.books.events,
                            self.books.runs_done,
                        )
                    )
            except psutil.Error:
                return
            if tick % 2 == 0:
                self._progress()
            tick += 1
            await trio.sleep(0.25)

    def _progress(self, end: str = "") -> None:
        books, load = self.books, self.load
        if not self.go.is_set():
            text = f"{self.name}: connecting {books.connected:,}/{load.users:,}"
        else:
            elapsed = time.perf_counter() - self.began
            rate = 0.0
            if len(self.timeline) >= 3:
                (t0, *_, e0, _), (t1, *_, e1, _) = self.timeline[-3], self.timeline[-1]
                rate = (e1 - e0) / (t1 - t0) if t1 > t0 else 0.0
            share = books.runs_done / load.runs if load.runs else 1.0
            width = 24
            bar = "#" * int(share * width)
            text = (
                f"{self.name}: [{bar:<{width}}] runs {books.runs_done:,}/{load.runs:,} "
                f"{share:4.0%}  {rate:,.0f} events/s  {elapsed:.1f} s"
            )
        print(f"\r{text:<96}", end=end, file=sys.stderr, flush=True)

    # the whole phase

    async def run(self) -> dict[str, Any]:
        load, books = self.load, self.books
        log = tempfile.NamedTemporaryFile(  # noqa: SIM115 (kept for the report)
            prefix=f"bench-load-{self.name}-", suffix=".log", delete=False
        )
        process = subprocess.Popen(
            self.command, cwd=ROOT, stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL
        )
        result: dict[str, Any] = {"server_log": log.name}
        self._token = trio.lowlevel.current_trio_token()
        try:
            self.host, self.port = await _read_address(process)
            self.server = psutil.Process(process.pid)
            await trio.sleep(0.2)
            rss_idle = self._rss()
            me = psutil.Process()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self.monitor)
                limiter = trio.CapacityLimiter(load.concurrency)
                connect_began = time.perf_counter()
                for index in range(load.users):
                    nursery.start_soon(self.session, index, limiter, nursery)
                await self.connected.wait()
                connect_total = time.perf_counter() - connect_began
                await trio.sleep(0.2)
                rss_connected = self._rss()

                server_cpu0, client_cpu0 = self._cpu(), _cpu_seconds(me)
                server_system0 = self.server.cpu_times().system
                machine0 = psutil.cpu_times()
                self.began, self.began_wall = time.perf_counter(), time.time()
                spy = _start_py_spy(self.profile, self.name, process.pid)
                self.go.set()
                if self.mux.conns:
                    nursery.start_soon(self.mux.serve)
                with trio.move_on_after(self.timeout) as waited:
                    await self.done.wait()
                measured = time.perf_counter() - self.began
                if spy is not None:
                    spy.send_signal(signal.SIGINT)
                    await _wait_exit(spy, 30.0)
                server_cpu, client_cpu = self._cpu() - server_cpu0, _cpu_seconds(me) - client_cpu0
                server_system = self.server.cpu_times().system - server_system0
                machine = _busy_cores(machine0, psutil.cpu_times(), measured)
                rss_after = self._rss()
                rss_hwm = _rss_high_water(process.pid)
                if self.name == "greenroom":
                    result.update(await scrape_metrics(self.host, self.port))
                left = load.users - books.settled if waited.cancelled_caught else None
                self._progress(end="\n")

                stopping = time.perf_counter()
                process.send_signal(signal.SIGTERM)
                exit_code = await _wait_exit(process, 30.0)
                shutdown = time.perf_counter() - stopping
                with trio.move_on_after(10):
                    await self.all_closed.wait()
                nursery.cancel_scope.cancel()
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            log.close()
        # Recorded once the mux's thread is over, as it records its own.
        if left is not None:
            books.violate("timeout", f"{left} users still running after {self.timeout:.0f} s")
        if exit_code != 0:
            books.violate("server_exit", f"{self.name} exited with {exit_code}")
        stats = _latency_stats(books.latency)
        connects = sorted(books.connect_seconds)
        result.update(
            users=load.users,
            connected=books.connected,
            runs=books.runs_done,
            runs_failed=sum(books.failed_runs.values()),
            failed_runs=dict(books.failed_runs),
            events=books.events,
            measured_s=measured,
            events_per_s=books.events / measured if measured else math.nan,
            runs_per_s=books.runs_done / measured if measured else math.nan,
            connect_p50_ms=_report.percentile(connects, 50) * 1000,
            connect_p99_ms=_report.percentile(connects, 99) * 1000,
            connect_total_s=connect_total,
            **stats,
            server_cpu_s=server_cpu,
            server_cpu_share=server_cpu / measured if measured else math.nan,
            server_cpu_us_per_event=server_cpu / books.events * 1e6 if books.events else math.nan,
            server_system_share=server_system / server_cpu if server_cpu else math.nan,
            client_cpu_s=client_cpu,
            client_cpu_share=client_cpu / measured if measured else math.nan,
            client_cpu_us_per_event=client_cpu / books.events * 1e6 if books.events else math.nan,
            machine_busy_cores=machine,
            other_busy_cores=max(0.0, machine - (server_cpu + client_cpu) / measured),
            rss_idle_mb=rss_idle / 2**20,
            rss_connected_mb=rss_connected / 2**20,
            rss_after_mb=rss_after / 2**20,
            rss_peak_mb=self.rss_peak / 2**20,
            rss_high_water_mb=rss_hwm / 2**20 if rss_hwm else None,
            rss_per_connection_kb=(rss_connected - rss_idle) / 1024 / max(1, books.connected),
            rss_per_user_after_runs_kb=(rss_after - rss_idle) / 1024 / max(1, books.connected),
            close_codes=dict(sorted(books.close_codes.items())),
            shutdown_s=shutdown,
            exit_code=exit_code,
            violations=sum(books.violations.values()),
            violations_by_kind=dict(books.violations),
            violation_examples=list(books.examples),
        )
        per_event = result["server_cpu_us_per_event"]
        result["capacity_events_per_s"] = 1e6 / per_event if per_event else math.nan
        result["client_saturated"] = result["client_cpu_share"] > SATURATED
        result["server_saturated"] = result["server_cpu_share"] > SATURATED
        return result


def phase_order(number: int, baseline: bool) -> list[str]:
    """The servers of round `number` (from 1), in the order they run: the
    bare one first in odd rounds, greenroom first in even ones. Whatever a
    round does to the machine as it goes (a second phase meets the first's
    closed connections in the kernel's tables, a busier or quieter spell)
    then does not always fall on the same server."""
    if not baseline:
        return ["greenroom"]
    return ["bare", "greenroom"] if number % 2 else ["greenroom", "bare"]


async def run_round(
    load: Load,
    baseline: bool,
    profile: str | None = None,
    server_args: Sequence[str] = (),
    number: int = 1,
) -> dict[str, dict[str, Any]]:
    """Round `number`: each server's phase, in `phase_order`."""
    timeout = _phase_timeout(load)
    commands = {"bare": bare_command(), "greenroom": greenroom_command(load, server_args)}
    found: dict[str, dict[str, Any]] = {}
    for name in phase_order(number, baseline):
        phase = Phase(name, commands[name], load, timeout, profile)
        found[name] = await phase.run()
        found[name]["timeline"] = _timeline(phase)
    return found
