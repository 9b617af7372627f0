"""What every benchmark shares: the command line, statistics, and the report.

A benchmark builds its parser with `parser(...)`, prints its progress with
`progress(...)` (stderr, so stdout stays clean), prints a table with
`print_table(...)`, and with `--json` ends stdout with one JSON object via
`print_json(...)`, so `... --json | tail -n 1` is always parseable, as
strict JSON: a figure that was not measured (NaN) is null.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import statistics
import sys
from collections.abc import Iterable, Mapping, Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Any


def parser(
    prog: str,
    description: str,
    *,
    default_repeat: int,
    quick_repeat: int,
    repeat_help: str | None = None,
) -> argparse.ArgumentParser:
    """The common command line of `python -m bench.NAME`: `--quick`, `--json`, `--repeat N`.

    `prog` is the module's `__spec__.name` (say `bench.kernel`); `description`
    its docstring. `repeat_help` replaces the help of `--repeat`, for a
    benchmark whose repetitions mean something more particular.

    Read the repetition count with `repeat(args)`, which applies the default
    that fits `--quick` when `--repeat` was not given.
    """
    cli = argparse.ArgumentParser(
        prog=f"python -m {prog}",
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    cli.add_argument(
        "--quick",
        action="store_true",
        help=f"smaller workloads and {quick_repeat} repetitions (a smoke run, for CI)",
    )
    cli.add_argument(
        "--json",
        action="store_true",
        help="after the table, print the results as one JSON object on the last stdout line",
    )
    cli.add_argument(
        "--repeat",
        type=positive_int,
        default=None,
        metavar="N",
        help=(
            f"repetitions of every measurement; medians are reported "
            f"(default {default_repeat}, or {quick_repeat} with --quick)"
        )
        if repeat_help is None
        else repeat_help,
    )
    cli.set_defaults(default_repeat=default_repeat, quick_repeat=quick_repeat)
    return cli


def repeat(args: argparse.Namespace) -> int:
    """The repetition count asked for, or the default for this mode."""
    if args.repeat is not None:
        return int(args.repeat)
    return int(args.quick_repeat if args.quick else args.default_repeat)


def positive_int(text: str) -> int:
    """An argparse `type`: a whole number >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return value


def median(values: Iterable[float]) -> float:
    """The median; NaN for no values."""
    data = list(values)
    return statistics.median(data) if data else math.nan


def median_interval(
    values: Iterable[float], confidence: float = 0.95
) -> tuple[float, float] | None:
    """A distribution-free interval that holds the true median with at least
    `confidence`: the k-th smallest and k-th largest of the values, for the
    largest k that the binomial law allows (each value falls below the
    median with probability 1/2). None when there are too few values for
    any such interval (fewer than 6 at 95 %)."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence!r}")
    data = sorted(values)
    n = len(data)
    below, best = 0.0, 0  # P(at most k - 1 values fall below the median)
    for k in range(1, n // 2 + 1):
        below += math.comb(n, k - 1) / 2**n
        if 1 - 2 * below < confidence:
            break
        best = k
    if best == 0:
        return None
    return data[best - 1], data[n - best]


def percentile(values: Iterable[float], q: float) -> float:
    """The `q`-th percentile (0..100), linearly interpolated; NaN for no values."""
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be within 0..100, got {q!r}")
    data = sorted(values)
    if not data:
        return math.nan
    position = (len(data) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(data) - 1)
    return data[low] + (data[high] - data[low]) * (position - low)


def progress(message: str) -> None:
    """One line of progress on stderr (stdout carries only the report)."""
    print(message, file=sys.stderr, flush=True)


def format_table(headers: Sequence[str], rows: Iterable[Sequence[Any]], *, align: str = "") -> str:
    """Rows as aligned text columns under `headers`.

    `align` holds one of `<` or `>` per column (default: the first column to
    the left, the rest to the right). Cells are rendered with `format_cell`.
    """
    body = [[format_cell(cell) for cell in row] for row in rows]
    widths = [len(header) for header in headers]
    for row in body:
        if len(row) != len(headers):
            raise ValueError(f"row has {len(row)} cells, expected {len(headers)}: {row!r}")
        widths = [max(width, len(cell)) for width, cell in zip(widths, row, strict=True)]
    align = align or "<" + ">" * (len(headers) - 1)
    if len(align) != len(headers):
        raise ValueError(f"align has {len(align)} marks for {len(headers)} columns")

    def line(cells: Sequence[str]) -> str:
        parts = [
            cell.ljust(width) if mark == "<" else cell.rjust(width)
            for cell, width, mark in zip(cells, widths, align, strict=True)
        ]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([line(list(headers)), rule, *(line(row) for row in body)])


def print_table(headers: Sequence[str], rows: Iterable[Sequence[Any]], *, align: str = "") -> None:
    print(format_table(headers, rows, align=align), flush=True)


def format_cell(value: Any) -> str:
    """Thousands separators for numbers, 3 significant-ish digits for small floats."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        if abs(value) >= 100:
            return f"{value:,.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.2f}"
    return str(value)


def print_json(result: Mapping[str, Any]) -> None:
    """Print `result` as one compact JSON object: this must be the last stdout
    line. A number that was not measured (NaN, infinite) is written as null:
    strict JSON readers refuse `NaN`."""
    print(json.dumps(_json_safe(result), sort_keys=True, separators=(",", ":"), allow_nan=False),
          flush=True)  # fmt: skip


def _json_safe(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(item) for item in value]
    return value


def utc_timestamp() -> str:
    """Now, as ISO 8601 UTC to the second (`2025-01-31T12:00:00Z`)."""
    now = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    return now.isoformat().replace("+00:00", "Z")


def environment(*packages: str) -> dict[str, Any]:
    """Where a run happened: Python, platform, CPUs, and the versions of `packages`."""
    found: dict[str, Any] = {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(terse=True),
        "cpus": os.cpu_count(),
    }
    for name in packages:
        try:
            found[f"{name}_version"] = version(name)
        except PackageNotFoundError:
            found[f"{name}_version"] = None
    return found
