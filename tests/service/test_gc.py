"""`greenroom serve`'s garbage-collector settings: applied while serving,
given back afterwards, and a bad value refused before anything starts."""

from __future__ import annotations

import gc
import os
import re
import signal

import pytest
import trio

from actors import CoreConfig, ServeOptions, TokenSigner
from actors._errors import InvalidRequest
from actors._serve import GC_OLDER, GC_THRESHOLD, serve, tuned_gc
from actors.cli import main

from .kit import PATIENCE, SECRET, connect, receive, run


def test_while_serving_startup_objects_are_frozen_and_collections_are_rarer() -> None:
    before = gc.get_threshold()
    with tuned_gc(GC_THRESHOLD):
        assert gc.get_threshold() == (GC_THRESHOLD, *GC_OLDER)
        assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_a_threshold_of_zero_leaves_the_collector_alone() -> None:
    before = gc.get_threshold()
    with tuned_gc(0):
        assert gc.get_threshold() == before
        assert gc.get_freeze_count() == 0


def test_cycles_are_still_collected_under_the_raised_threshold() -> None:
    class Node:
        other: object = None

    with tuned_gc(GC_THRESHOLD):
        gc.collect()
        counts_before = gc.get_count()[0]
        for _ in range(3 * GC_THRESHOLD):
            a, b = Node(), Node()
            a.other, b.other = b, a
        assert gc.get_count()[0] < counts_before + GC_THRESHOLD + 10


@pytest.mark.parametrize("value", [-1, True, 1.5])
def test_a_bad_threshold_is_refused_naming_the_field(value: object) -> None:
    with pytest.raises(InvalidRequest, match="gc_threshold must be a whole number >= 0"):
        ServeOptions(gc_threshold=value)  # type: ignore[arg-type]


def test_serve_refuses_a_negative_gc_threshold_before_listening(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["serve", "--dev", "--port", "0", "--gc-threshold", "-5"]) == 2
    assert "gc_threshold must be a whole number >= 0, got -5" in capsys.readouterr().err


async def test_serve_keeps_the_collector_tuned_until_its_shutdown_is_over(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The shutdown allocates as much as a busy minute: it runs tuned too,
    and the defaults come back only once `serve` returns."""
    before = gc.get_threshold()
    options = ServeOptions(host="127.0.0.1", port=0, core=CoreConfig())
    seen_during_shutdown: list[tuple[int, int, int]] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve, options, TokenSigner(SECRET), (signal.SIGUSR1,))
        with trio.fail_after(PATIENCE):
            while not (found := re.search(r"ws://[^ )]+/ws", capsys.readouterr().out)):
                await trio.sleep(0.01)
        async with connect(found[0], TokenSigner(SECRET).mint("alice")) as ws:
            await run(ws, "sleep", {"seconds": 60, "steps": 60}, run_id="long")
            assert (await receive(ws))["type"] == "agent_started"
            os.kill(os.getpid(), signal.SIGUSR1)
            ended = await receive(ws)
            seen_during_shutdown.append(gc.get_threshold())

    assert ended["data"]["reason"] == "shutdown"
    assert seen_during_shutdown == [(GC_THRESHOLD, *GC_OLDER)]
    assert gc.get_threshold() == before
