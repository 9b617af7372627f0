"""`bench.load`'s report: per-second series and the plot, medians across
rounds, the table rows, the verdicts against the targets, notes, JSON values."""

from __future__ import annotations

import itertools
import math
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil

from . import _report
from ._load_client import _MAX_EXAMPLES, Load

if TYPE_CHECKING:
    from ._load_phase import Phase

#: name -> (comparison, value). DESIGN.md's numbers (at 1 000 users).
TARGETS: dict[str, tuple[str, float]] = {
    "events_per_s": (">=", 20_000),
    "p99_ms": ("<", 50),
    "violations": ("==", 0),
    "overhead_ratio": ("<=", 1.25),
}


def _timeline(phase: Phase) -> dict[str, list[float]]:
    """Per-second series for the plot: events/s, latency p50/p99, CPU shares."""
    import numpy as np

    books = phase.books
    out: dict[str, list[float]] = {"t": [], "events_per_s": [], "p50_ms": [], "p99_ms": []}
    if books.latency:
        at = np.frombuffer(books.received_at, dtype=np.float64) - phase.began_wall
        latency = np.frombuffer(books.latency, dtype=np.float64) * 1000.0
        width = 0.5 if at.max() < 20 else 1.0
        bins = np.floor(np.clip(at, 0, None) / width).astype(np.int64)
        order = np.argsort(bins, kind="stable")
        bins, latency = bins[order], latency[order]
        edges = np.searchsorted(bins, np.arange(int(bins.max()) + 2))
        for index in range(len(edges) - 1):
            chunk = latency[edges[index] : edges[index + 1]]
            out["t"].append((index + 0.5) * width)
            out["events_per_s"].append(len(chunk) / width)
            p50, p99 = np.percentile(chunk, [50, 99]) if len(chunk) else (math.nan, math.nan)
            out["p50_ms"].append(float(p50))
            out["p99_ms"].append(float(p99))
    samples = phase.timeline
    out["cpu_t"], out["server_cpu"], out["client_cpu"], out["rss_mb"] = [], [], [], []
    for before, after in itertools.pairwise(samples):
        span = after[0] - before[0]
        if span <= 0:
            continue
        out["cpu_t"].append(after[0])
        out["server_cpu"].append((after[1] - before[1]) / span * 100)
        out["client_cpu"].append((after[2] - before[2]) / span * 100)
        out["rss_mb"].append(after[3] / 2**20)
    return out


def plot_problem(path: str) -> str | None:
    """Why `plot` could not write `path` (None if it can): a file type
    matplotlib does not write, or a file that cannot be opened for writing.
    Leaves no file behind that was not there."""
    from matplotlib.backend_bases import FigureCanvasBase

    formats = FigureCanvasBase.get_supported_filetypes()
    file = Path(path)
    if file.suffix.lstrip(".").lower() not in formats:
        kinds = ", ".join(f".{kind}" for kind in sorted(formats))
        return f"the name must end in a type matplotlib writes ({kinds})"
    existed = file.exists()
    try:
        with file.open("ab"):
            pass
    except OSError as error:
        return f"cannot write it ({error.strerror})"
    if not existed:
        file.unlink()
    return None


def plot(path: str, rounds: list[dict[str, dict[str, Any]]], load: Load) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    found = rounds[0]
    figure, (top, middle, bottom) = plt.subplots(3, 1, figsize=(10, 9), sharex=True)
    colours = {"greenroom": "tab:green", "bare": "tab:gray"}
    for name, result in found.items():
        series, colour = result["timeline"], colours[name]
        top.plot(series["t"], series["events_per_s"], color=colour, label=name)
        middle.plot(
            series["t"], series["p50_ms"], color=colour, linestyle="--", label=f"{name} p50"
        )
        middle.plot(series["t"], series["p99_ms"], color=colour, label=f"{name} p99")
        bottom.plot(series["cpu_t"], series["server_cpu"], color=colour, label=f"{name} server")
        bottom.plot(
            series["cpu_t"], series["client_cpu"], color=colour, linestyle=":",
            label=f"client (vs {name})",
        )  # fmt: skip
    peak = max((max(r["timeline"]["events_per_s"], default=0) for r in found.values()), default=0)
    if peak > TARGETS["events_per_s"][1] / 4:  # else it would flatten the curves
        top.axhline(TARGETS["events_per_s"][1], color="tab:red", linewidth=0.8, linestyle="--")
    middle.axhline(TARGETS["p99_ms"][1], color="tab:red", linewidth=0.8, linestyle="--")
    bottom.axhline(100, color="tab:red", linewidth=0.8, linestyle="--")
    top.set_ylabel("events/s delivered")
    middle.set_ylabel("latency ts → receipt (ms)")
    middle.set_yscale("log")
    bottom.set_ylabel("CPU (% of one core)")
    bottom.set_xlabel("seconds since the start signal")
    for axes in (top, middle, bottom):
        axes.grid(True, alpha=0.3)
        axes.legend(loc="upper right", fontsize=8)
    top.set_title(
        f"bench.load: {load.users:,} users x {load.runs_per_user} runs of {load.agent} "
        f"({load.steps} steps over {load.seconds:g} s), {_report.utc_timestamp()}"
    )
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def _median_of(rounds: list[dict[str, dict[str, Any]]], name: str) -> dict[str, Any]:
    """One phase's results across rounds: medians of numbers, sums of counts."""
    results = [found[name] for found in rounds]
    merged: dict[str, Any] = {}
    for key, value in results[0].items():
        if key in ("timeline", "server_log"):
            continue
        values = [result.get(key) for result in results]
        if key in ("violations", "runs_failed", "connect_failures"):
            merged[key] = sum(values)
        elif isinstance(value, bool):
            merged[key] = any(values)
        elif isinstance(value, int | float):
            middle = _report.median(v for v in values if v is not None)
            merged[key] = (
                int(middle) if isinstance(value, int) and middle == int(middle) else middle
            )
        elif isinstance(value, dict):
            total: Counter[str] = Counter()
            for item in values:
                total.update(item or {})
            merged[key] = dict(total)
        elif isinstance(value, list):
            merged[key] = [item for items in values for item in items or ()][:_MAX_EXAMPLES]
        else:
            merged[key] = value
    return merged


def _codes(codes: dict[str, int]) -> str:
    return ", ".join(f"{code} x{count:,}" for code, count in codes.items()) or "-"


def _rows(g: dict[str, Any], b: dict[str, Any] | None, asked: float | None) -> list[list[Any]]:
    def row(label: str, key: str, scale: float = 1.0) -> list[Any]:
        def get(found: dict[str, Any] | None) -> Any:
            if found is None or found.get(key) is None:
                return None
            value = found[key]
            return value * scale if isinstance(value, float) else value

        return [label, get(g), get(b)]

    return [
        row("users connected", "connected"),
        row("runs completed", "runs"),
        row("runs ended in agent_error", "runs_failed"),
        row("events delivered", "events"),
        row("measured phase (s)", "measured_s"),
        ["events/s asked for, at most", asked, asked if b else None],
        row("events/s", "events_per_s"),
        row("runs/s", "runs_per_s"),
        row("connect p50 (ms)", "connect_p50_ms"),
        row("connect p99 (ms)", "connect_p99_ms"),
        row("connect all (s)", "connect_total_s"),
        row("latency p50 (ms)", "p50_ms"),
        row("latency p90 (ms)", "p90_ms"),
        row("latency p99 (ms)", "p99_ms"),
        row("latency max (ms)", "max_ms"),
        row("server emit->write p50 (ms, bucket)", "server_emit_to_write_p50_ms"),
        row("server emit->write p99 (ms, bucket)", "server_emit_to_write_p99_ms"),
        row("server events dropped", "server_events_dropped"),
        row("server CPU (s)", "server_cpu_s"),
        row("server CPU (% of a core)", "server_cpu_share", 100),
        row("server CPU per event (µs)", "server_cpu_us_per_event"),
        row("  = events/s at 100% of a core", "capacity_events_per_s"),
        row("server CPU in the kernel (%)", "server_system_share", 100),
        row("client CPU (% of a core)", "client_cpu_share", 100),
        row("client CPU per event (µs)", "client_cpu_us_per_event"),
        row("machine busy (cores of 2)", "machine_busy_cores"),
        row("  of which other processes", "other_busy_cores"),
        row("server RSS idle (MiB)", "rss_idle_mb"),
        row("server RSS connected (MiB)", "rss_connected_mb"),
        row("server RSS after runs (MiB)", "rss_after_mb"),
        row("server RSS peak, sampled (MiB)", "rss_peak_mb"),
        row("server RSS high-water (MiB)", "rss_high_water_mb"),
        row("RSS per connection (KiB)", "rss_per_connection_kb"),
        row("RSS per user after runs (KiB)", "rss_per_user_after_runs_kb"),
        ["close codes seen", _codes(g["close_codes"]), _codes(b["close_codes"]) if b else None],
        row("shutdown after SIGTERM (s)", "shutdown_s"),
        row("server exit status", "exit_code"),
        row("violations", "violations"),
    ]


#: What the report says the 1 000-user throughput target needs.
TARGET_LOAD = "--users 1000 --runs-per-user 5 --steps 28"


def _verdicts(
    g: dict[str, Any], ratio: float | None, asked: float | None
) -> dict[str, bool | None]:
    """Each target: met (True), missed (False), or not tested (None): no
    baseline ran, or the load asked for fewer events a second than the
    throughput target, so no server could have met it."""
    values = {
        "events_per_s": g["events_per_s"],
        "p99_ms": g["p99_ms"],
        "violations": g["violations"],
        "overhead_ratio": ratio,
    }
    met: dict[str, bool | None] = {}
    for name, (op, target) in TARGETS.items():
        value = values[name]
        unreachable = name == "events_per_s" and asked is not None and asked < target
        if value is None or (isinstance(value, float) and math.isnan(value)) or unreachable:
            met[name] = None
        elif op == ">=":
            met[name] = value >= target
        elif op == "<":
            met[name] = value < target
        elif op == "<=":
            met[name] = value <= target
        else:
            met[name] = value == target
    return met


def overhead_note(ratios: list[float]) -> str | None:
    """What the rounds' spread says of the overhead verdict: where the 95 %
    interval for the median ratio (`_report.median_interval`) holds the
    target, the verdict is within this machine's noise, either way."""
    interval = _report.median_interval(ratios)
    if interval is None:
        return None
    low, high = interval
    target = TARGETS["overhead_ratio"][1]
    spread = f"{low:.2f}-{high:.2f} over {len(ratios)} rounds"
    if low <= target < high:
        return (
            f"overhead_ratio: the 95 % interval for its median ({spread}) holds the "
            f"target {target:g}: met or missed, the verdict is within the noise"
        )
    side = "met" if high <= target else "missed"
    return f"overhead_ratio: {side} beyond the noise (95 % interval for its median {spread})"


def _verdict(met: bool | None) -> str:
    return "not tested" if met is None else "yes" if met else "no"


def _notes(g: dict[str, Any], b: dict[str, Any] | None, load: Load) -> list[str]:
    notes = _load_notes(g, load)
    for name, found in (("greenroom", g), ("bare", b)):
        if found is None:
            continue
        if found["client_saturated"]:
            notes.append(
                f"{name}: the CLIENT is saturated ({found['client_cpu_share']:.0%} of a core): "
                "throughput and latency are bounded by the load generator, not the server"
            )
        if found["server_saturated"]:
            notes.append(
                f"{name}: the server is saturated ({found['server_cpu_share']:.0%} of its "
                "one core): the rate is its capacity, latency includes queueing"
            )
        if found["machine_busy_cores"] > 1.8:
            notes.append(
                f"{name}: the machine is saturated ({found['machine_busy_cores']:.2f} of "
                f"{psutil.cpu_count()} cores busy, {found['other_busy_cores']:.2f} by other "
                "processes): server and client compete for CPU"
            )
    return notes


def _load_notes(g: dict[str, Any], load: Load) -> list[str]:
    """What the load itself says about the throughput target."""
    notes = []
    target = TARGETS["events_per_s"][1]
    asked = load.asked_events_per_s
    if load.users != 1000:
        notes.append(f"DESIGN.md's targets are for 1,000 users; this run has {load.users:,}")
    if asked is not None and asked < target:
        notes.append(
            f"this load asks for at most {asked:,.0f} events/s ({load.users:,} users x "
            f"{load.events_per_run} events every {load.seconds:g} s), fewer than the "
            f"{target:,g} target: events_per_s is not tested; to test it, ask for more, "
            f"e.g. {TARGET_LOAD}"
        )
    elif (
        g["events_per_s"] < target
        and not g["server_saturated"]
        and math.isfinite(g["capacity_events_per_s"])
    ):
        notes.append(
            f"greenroom delivered fewer than {target:,g} events/s without being saturated "
            f"({g['server_cpu_share']:.0%} of its core): the load set the rate, not "
            f"greenroom (its CPU per event allows about {g['capacity_events_per_s']:,.0f}/s); "
            "to find what it holds, ask for more (--steps, --users)"
        )
    return notes


def _clean(found: dict[str, Any]) -> dict[str, Any]:
    return {
        key: _rounded(value) if isinstance(value, float) else value for key, value in found.items()
    }


def _rounded(value: float) -> float:
    if math.isnan(value):
        return value
    return round(value, 4) if abs(value) < 100 else round(value, 1)
