"""open_core: configuration, start order, the facade's calls, shutdown, audit log."""

from __future__ import annotations

import json
import logging
import math
from typing import Any

import pytest
import trio
from trio.testing import wait_all_tasks_blocked

from actors import (
    CoreClosed,
    CoreConfig,
    InvalidRequest,
    UnknownAgent,
    UserContext,
    open_core,
)
from runtime import ActorRef, Supervisor

from .kit import Recorder, audit_lines, read_until_ended, terminal_of


def sleep(seconds: float, steps: int = 1) -> dict[str, Any]:
    return {"seconds": seconds, "steps": steps}


# --- configuration ---------------------------------------------------------------


def test_the_default_config_is_valid() -> None:
    config = CoreConfig()

    assert config.max_engines == 10_000
    assert (config.max_runs_per_user, config.max_queued_runs_per_user) == (4, 16)


@pytest.mark.parametrize(
    ("field", "value", "accepted"),
    [
        ("max_engines", 0, "a whole number >= 1"),
        ("max_engines", 1.5, "a whole number >= 1"),
        ("max_engines", True, "a whole number >= 1"),
        ("max_engines", "10", "a whole number >= 1"),
        ("max_runs_per_user", 0, "a whole number >= 1"),
        ("max_queued_runs_per_user", -1, "a whole number >= 0"),
        ("run_timeout", 0, "a number of seconds > 0"),
        ("run_timeout", -5.0, "a number of seconds > 0"),
        ("run_timeout", "300", "a number of seconds > 0"),
        ("idle_timeout", 0, "a number of seconds > 0"),
        ("idle_timeout", False, "a number of seconds > 0"),
        ("engine_linger", -1, "a number of seconds >= 0"),
        ("engine_linger", math.inf, "a number of seconds >= 0"),
        ("engine_linger", "10", "a number of seconds >= 0"),
        ("replay_retention", 0, "a number of seconds > 0"),
        ("replay_window", 0, "a whole number >= 1"),
        ("replay_bytes", 0, "a whole number >= 1"),
        ("replay_bytes", 1.5, "a whole number >= 1"),
        ("subscriber_queue", 0, "a whole number >= 1"),
        ("deliver_inline", 1, "True or False"),
        ("deliver_inline", "yes", "True or False"),
    ],
)
def test_a_bad_config_value_is_refused_naming_the_field_and_what_is_accepted(
    field: str, value: Any, accepted: str
) -> None:
    with pytest.raises(InvalidRequest) as caught:
        CoreConfig(**{field: value})

    assert isinstance(caught.value, ValueError)
    assert str(caught.value) == f"{field} must be {accepted}, got {value!r}"


def test_the_config_takes_keyword_arguments_only_and_is_frozen() -> None:
    with pytest.raises(TypeError):
        CoreConfig(5)  # type: ignore[misc]
    config = CoreConfig(max_queued_runs_per_user=0, run_timeout=0.5)
    with pytest.raises(AttributeError):
        config.max_engines = 1  # type: ignore[misc]


# --- start -----------------------------------------------------------------------


async def test_the_bridge_then_the_engines_then_the_factory_start_in_order() -> None:
    async with open_core() as core:
        children = core.system.root.children

        assert [type(child) for child in children] == [ActorRef, Supervisor, ActorRef]
        assert [child.name for child in children] == ["bridge", "engines", "factory"]
        # Everything is ready when the block begins: no waiting before use.
        engine = await core.factory.create_for_user(UserContext(user_id="alice"))
        assert engine.alive


async def test_cores_are_independent_with_no_state_shared_between_them() -> None:
    async with open_core() as first, open_core() as second, first.subscribe("alice") as events:
        run_id = await first.submit("alice", "echo", 1)
        await read_until_ended(events, [run_id])

        assert first.registry is not second.registry
        assert second.last_seq("alice") == 0
        assert second.factory.metrics().engines_created_total == 0


# --- the facade's calls ----------------------------------------------------------


async def test_submitting_to_an_unknown_agent_is_refused_and_changes_nothing() -> None:
    async with open_core() as core:
        with pytest.raises(UnknownAgent, match="no agent named 'nope'"):
            await core.submit("alice", "nope")

        assert core.factory.metrics().engines_created_total == 0
        assert core.last_seq("alice") == 0


@pytest.mark.parametrize("user_id", ["", "has space", "x" * 129])
async def test_a_bad_user_id_is_refused_by_every_call(user_id: str) -> None:
    async with open_core() as core:
        with pytest.raises(InvalidRequest, match="user_id"):
            await core.submit(user_id, "echo")
        with pytest.raises(InvalidRequest, match="user_id"):
            await core.cancel(user_id, "run")
        with pytest.raises(InvalidRequest, match="user_id"):
            core.subscribe(user_id)
        with pytest.raises(InvalidRequest, match="run_id"):
            await core.cancel("alice", user_id)

        assert core.factory.metrics().engines_created_total == 0


async def test_submit_accepts_a_context_and_returns_its_run_id() -> None:
    async with open_core() as core, core.subscribe("alice") as events:
        ctx = UserContext(user_id="alice", run_id="given", metadata={"k": "v"})
        run_id = await core.submit(ctx, "echo", "hi")
        generated = await core.submit("alice", "echo", "hi")
        seen = await read_until_ended(events, [run_id, generated])

    assert run_id == "given"
    assert len(generated) == 32
    assert {e.run_id for e in seen} == {"given", generated}


# --- shutdown ----------------------------------------------------------------------


async def test_leaving_the_block_ends_live_runs_with_shutdown_and_ends_subscriptions(
    autojump_clock: trio.abc.Clock,
) -> None:
    config = CoreConfig(max_runs_per_user=1, max_queued_runs_per_user=1)
    alice, bob = Recorder("alice"), Recorder("bob")
    async with trio.open_nursery() as nursery, open_core(config) as core:
        await nursery.start(alice.run, core)
        await nursery.start(bob.run, core)
        running = await core.submit("alice", "sleep", sleep(60))
        queued = await core.submit("alice", "sleep", sleep(60))
        done = await core.submit("bob", "echo", "done")
        await trio.sleep(1)

    for run_id in (running, queued):
        error = terminal_of(alice.events, run_id)
        assert error.type == "agent_error"
        assert error.data["reason"] == "shutdown"
        assert error.data["detail"] == "the server is shutting down"
    assert terminal_of(bob.events, done).type == "agent_completed"
    assert (alice.closed_reason, bob.closed_reason) == ("shutdown", "shutdown")
    assert core.run_books.outcomes[("sleep", "shutdown")] == 2
    assert core.run_books.active == 0
    assert core.factory.metrics().engines_reaped_total == {"shutdown": 2}


async def test_after_shutdown_the_core_refuses_new_work(autojump_clock: trio.abc.Clock) -> None:
    async with open_core() as core, core.subscribe("alice") as events:
        run_id = await core.submit("alice", "sleep", sleep(60))
        await wait_all_tasks_blocked()
        await core.shutdown()
        seen = await read_until_ended(events, [run_id])

        with pytest.raises(CoreClosed):
            await core.submit("alice", "echo")
        with pytest.raises(CoreClosed):
            await core.submit("bob", "echo")
        with pytest.raises(CoreClosed):
            async with core.subscribe("bob"):
                raise AssertionError("no new subscription while shutting down")

    assert terminal_of(seen, run_id).data["reason"] == "shutdown"
    with pytest.raises(CoreClosed):
        await core.submit("alice", "echo")
    with pytest.raises(CoreClosed):
        async with core.subscribe("alice"):
            raise AssertionError("no subscription after the core has stopped")


async def test_an_error_in_the_block_still_ends_runs_and_propagates(
    autojump_clock: trio.abc.Clock,
) -> None:
    recorder = Recorder("alice")
    with pytest.RaisesGroup(pytest.RaisesExc(KeyError, match="host failed")):
        async with trio.open_nursery() as nursery, open_core() as core:
            await nursery.start(recorder.run, core)
            run_id = await core.submit("alice", "sleep", sleep(60))
            await trio.sleep(1)
            raise KeyError("host failed")

    assert terminal_of(recorder.events, run_id).data["reason"] == "shutdown"
    assert recorder.closed_reason == "shutdown"


# --- audit log -----------------------------------------------------------------------


async def test_the_audit_log_writes_one_json_object_a_line_for_what_happened_to_whom(
    caplog: pytest.LogCaptureFixture, autojump_clock: trio.abc.Clock
) -> None:
    caplog.set_level(logging.INFO, logger="greenroom.audit")
    config = CoreConfig(max_runs_per_user=1, max_queued_runs_per_user=0)
    async with open_core(config) as core, core.subscribe("alice") as events:
        await core.submit("alice", "sleep", sleep(5), run_id="slow")
        await core.submit("alice", "echo", "x", run_id="extra")  # rejected: one at a time
        await read_until_ended(events, ["slow", "extra"])
        await core.submit("alice", "echo", "x", run_id="fine")
        await read_until_ended(events, ["fine"])
        await core.factory.cleanup_engine("alice")

    records = [r for r in caplog.records if r.name == "greenroom.audit"]
    assert all("\n" not in r.getMessage() for r in records)
    lines = [json.loads(r.getMessage()) for r in records]
    assert all(r.levelno == logging.INFO for r in records)
    assert lines == [
        {"event": "engine_created", "user_id": "alice", "engines": 1},
        {"event": "run_started", "user_id": "alice", "run_id": "slow", "agent": "sleep"},
        {
            "event": "run_rejected",
            "user_id": "alice",
            "run_id": "extra",
            "detail": "the user already has 1 runs running and 0 queued",
        },
        {"event": "run_ended", "user_id": "alice", "run_id": "slow", "outcome": "completed"},
        {"event": "run_started", "user_id": "alice", "run_id": "fine", "agent": "echo"},
        {"event": "run_ended", "user_id": "alice", "run_id": "fine", "outcome": "completed"},
        {"event": "engine_reaped", "user_id": "alice", "reason": "cleanup"},
    ]


async def test_the_audit_log_records_why_runs_ended_and_engines_went(
    caplog: pytest.LogCaptureFixture, autojump_clock: trio.abc.Clock
) -> None:
    caplog.set_level(logging.INFO, logger="greenroom.audit")
    config = CoreConfig(run_timeout=5, max_engines=1, idle_timeout=100)
    async with open_core(config) as core, core.subscribe("alice") as events:
        timed_out = await core.submit("alice", "sleep", sleep(10))
        await read_until_ended(events, [timed_out])
        await core.submit("bob", "echo")  # reaps alice's idle engine for room

    ended = audit_lines(caplog, "run_ended")
    reaped = audit_lines(caplog, "engine_reaped")
    assert ended[0] == {
        "event": "run_ended",
        "user_id": "alice",
        "run_id": timed_out,
        "outcome": "timeout",
    }
    assert [(line["user_id"], line["reason"]) for line in reaped] == [
        ("alice", "lru"),
        ("bob", "shutdown"),
    ]


async def test_a_subscribe_cancelled_on_its_way_in_leaves_no_subscriber_behind() -> None:
    # The bridge takes the abandoned Subscribe all the same: each one used to
    # stay attached, queueing the user's events, and kept the stream alive.
    async with open_core() as core:
        for _ in range(20):
            with trio.move_on_after(0):
                async with core.subscribe("erin"):
                    pass  # never reached
        await wait_all_tasks_blocked()  # the bridge has taken every Subscribe

        # Before any event: a closed channel is found (and detached) only
        # by a delivery, which a quiet user may never get.
        assert core.stream_books.subscriber_count == 0


@pytest.mark.parametrize("queue_size", [0, -1, 1.5, True, "8"])
async def test_subscribe_refuses_a_queue_size_that_is_not_a_positive_whole_number(
    queue_size: Any,
) -> None:
    async with open_core() as core:
        with pytest.raises(InvalidRequest, match="queue_size must be a whole number >= 1"):
            core.subscribe("erin", queue_size=queue_size)
        assert core.stream_books.subscriber_count == 0


async def test_open_core_refuses_a_config_that_is_not_a_core_config() -> None:
    with pytest.raises(TypeError, match="config must be a CoreConfig, got dict"):
        async with open_core({"max_engines": 5}):  # type: ignore[arg-type]
            pass


@pytest.mark.parametrize("user_id", [5, "", "a b", None])
async def test_last_seq_refuses_what_is_not_a_user_id(user_id: Any) -> None:
    async with open_core() as core:
        with pytest.raises(InvalidRequest, match="user_id"):
            core.last_seq(user_id)


async def test_a_run_of_an_unknown_agent_is_refused_by_the_factory_and_an_engine() -> None:
    # core.submit checks the name before asking; the factory and a user's
    # engine used to start the run, which then ended with agent_error, and
    # the factory made the engine first.
    async with open_core() as core:
        with pytest.raises(UnknownAgent, match="no agent named 'nope'"):
            await core.factory.submit(UserContext(user_id="alice"), "nope", None)
        assert core.factory.metrics().engines_created_total == 0
        engine = await core.factory.create_for_user(UserContext(user_id="alice"))
        with pytest.raises(UnknownAgent):
            await engine.submit(UserContext(user_id="alice"), "nope", None)
        await wait_all_tasks_blocked()

        assert core.last_seq("alice") == 0  # nothing numbered: no run opened
        assert not core.run_books.outcomes and core.run_books.active == 0
