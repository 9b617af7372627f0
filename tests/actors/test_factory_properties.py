"""The factory's rules against simple models, and a randomized run of a real core.

`FactoryBooks` and `EngineRules` never await, so a hypothesis state machine
drives them synchronously. The last test drives a real core (small limits,
virtual time) through a seeded random mix of submits, cancels, crashes,
cleanups and clock advances, and checks what a user would see.
"""

from __future__ import annotations

import itertools
import random
from collections import Counter
from contextlib import AsyncExitStack

import attrs
import pytest
import trio
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from trio.testing import wait_all_tasks_blocked

from actors import (
    DEMO_AGENTS,
    CoreConfig,
    DuplicateRun,
    EngineLimitReached,
    EngineRules,
    FactoryBooks,
    Subscription,
    UnknownRun,
    UserContext,
    open_core,
)
from actors._books import EngineEntry
from actors._engine import RunRecord
from runtime import ActorStopped

from .kit import FailingAgent, drain, terminal_counts

USERS = ("ann", "ben", "cy", "dee", "eve")
REASONS = ("cleanup", "crash", "shutdown")


def is_idle(entry: EngineEntry) -> bool:
    """The books' entries here hold each user's EngineRules as their ref."""
    rules: EngineRules = entry.ref
    return rules.idle


def run(user: str, run_id: str) -> RunRecord:
    return RunRecord(UserContext(user_id=user, run_id=run_id), "echo", None)


@attrs.define
class Model:
    last_active: float
    leases: int = 0
    running: list[str] = attrs.Factory(list)
    queued: list[str] = attrs.Factory(list)


class FactoryBooksMachine(RuleBasedStateMachine):
    """FactoryBooks and each engine's EngineRules against dictionaries and lists."""

    @initialize(
        max_engines=st.integers(min_value=1, max_value=4),
        idle_timeout=st.sampled_from([0.5, 1.0, 5.0]),
        max_running=st.integers(min_value=1, max_value=2),
        max_queued=st.integers(min_value=0, max_value=3),
    )
    def start(
        self, max_engines: int, idle_timeout: float, max_running: int, max_queued: int
    ) -> None:
        self.books = FactoryBooks(max_engines, idle_timeout)
        self.max_engines, self.idle_timeout = max_engines, idle_timeout
        self.max_running, self.max_queued = max_running, max_queued
        self.now = 0.0
        self.model: dict[str, Model] = {}  # in least recently active order
        self.created = 0
        self.reaped: Counter[str] = Counter()
        self.serial = itertools.count()

    def touch(self, user: str) -> Model:
        entry = self.model.pop(user)
        entry.last_active = self.now
        self.model[user] = entry
        return entry

    def idle(self, user: str) -> bool:
        entry = self.model[user]
        return entry.leases == 0 and not entry.running and not entry.queued

    # --- the factory's moves ------------------------------------------------

    @rule(user=st.sampled_from(USERS), lease=st.booleans())
    def acquire(self, user: str, lease: bool) -> None:
        """What the factory does for create_for_user / user_execution_scope."""
        if user not in self.books:
            full = len(self.model) >= self.max_engines
            candidates = [u for u in self.model if self.idle(u)]
            try:
                victim = self.books.room_for_one(is_idle)
            except EngineLimitReached:
                assert full and not candidates
                return
            if not full:
                assert victim is None
            else:
                assert victim == candidates[0]  # the least recently active idle one
                entry = self.books.get(victim)
                assert entry is not None and entry.leases == 0 and is_idle(entry)
                self.books.remove(victim, "lru")
                del self.model[victim]
                self.reaped["lru"] += 1
            self.books.add(user, EngineRules(self.max_running, self.max_queued), self.now)
            self.model[user] = Model(self.now)
            self.created += 1
        if lease:
            self.books.lease(user, self.now)
            self.touch(user).leases += 1
        else:
            self.books.touch(user, self.now)
            self.touch(user)

    @rule(user=st.sampled_from(USERS), stale=st.booleans())
    def release(self, user: str, stale: bool) -> None:
        """A lease given back on the user's engine, or on one that has since
        been replaced (`stale`): that one changes nothing."""
        entry = self.books.get(user)
        ref = object() if stale or entry is None else entry.ref
        self.books.release(user, ref, self.now)
        if user in self.model and not stale:
            model = self.touch(user)
            model.leases = max(0, model.leases - 1)

    @rule(user=st.sampled_from(USERS))
    def add_refuses_a_second_engine_or_one_past_the_limit(self, user: str) -> None:
        if user in self.model:
            with pytest.raises(ValueError, match="already has an engine"):
                self.books.add(user, EngineRules(1, 0), self.now)
        elif len(self.model) >= self.max_engines:
            with pytest.raises(EngineLimitReached):
                self.books.add(user, EngineRules(1, 0), self.now)

    @rule(seconds=st.sampled_from([0.0, 0.1, 0.5, 1.0, 2.5, 6.0]))
    def advance_the_clock(self, seconds: float) -> None:
        self.now += seconds

    @rule()
    def sweep(self) -> None:
        expired = self.books.expired(self.now, is_idle)

        assert expired == [
            user
            for user, entry in self.model.items()
            if self.now - entry.last_active >= self.idle_timeout and self.idle(user)
        ]
        assert expired == [
            user for user in self.model if self.books.is_expired(user, self.now, is_idle)
        ]
        for user in expired:
            self.books.remove(user, "idle")
            del self.model[user]
            self.reaped["idle"] += 1

    @precondition(lambda self: self.model)
    @rule(data=st.data(), reason=st.sampled_from(REASONS))
    def remove(self, data: st.DataObject, reason: str) -> None:
        user = data.draw(st.sampled_from(sorted(self.model)))
        self.books.remove(user, reason)
        del self.model[user]
        self.reaped[reason] += 1

    # --- an engine's runs -------------------------------------------------------

    def rules_of(self, user: str) -> EngineRules:
        entry = self.books.get(user)
        assert entry is not None
        rules: EngineRules = entry.ref
        return rules

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def submit(self, data: st.DataObject) -> None:
        user = data.draw(st.sampled_from(sorted(self.model)))
        run_id = f"run-{next(self.serial)}"
        entry = self.model[user]

        admission = self.rules_of(user).admit(
            RunRecord(UserContext(user_id=user, run_id=run_id), "echo", None)
        )

        if len(entry.running) < self.max_running:
            assert admission == "started"
            entry.running.append(run_id)
        elif len(entry.queued) < self.max_queued:
            assert admission == "queued"
            entry.queued.append(run_id)
        else:
            assert admission == "rejected"

    @precondition(lambda self: any(m.running or m.queued for m in self.model.values()))
    @rule(data=st.data())
    def submit_a_live_run_id_again(self, data: st.DataObject) -> None:
        user = data.draw(
            st.sampled_from([u for u, m in self.model.items() if m.running or m.queued])
        )
        run_id = data.draw(st.sampled_from(self.model[user].running + self.model[user].queued))

        with pytest.raises(DuplicateRun):
            self.rules_of(user).admit(
                RunRecord(UserContext(user_id=user, run_id=run_id), "echo", None)
            )

    @precondition(lambda self: any(m.running for m in self.model.values()))
    @rule(data=st.data())
    def finish(self, data: st.DataObject) -> None:
        user = data.draw(st.sampled_from([u for u, m in self.model.items() if m.running]))
        entry = self.model[user]
        run_id = data.draw(st.sampled_from(entry.running))

        following = self.rules_of(user).finished(run_id)

        entry.running.remove(run_id)
        if entry.queued:
            assert following is not None and following.run_id == entry.queued[0]
            entry.running.append(entry.queued.pop(0))
        else:
            assert following is None

    @precondition(lambda self: any(m.queued for m in self.model.values()))
    @rule(data=st.data())
    def cancel_a_queued_run(self, data: st.DataObject) -> None:
        user = data.draw(st.sampled_from([u for u, m in self.model.items() if m.queued]))
        run_id = data.draw(st.sampled_from(self.model[user].queued))

        where, record = self.rules_of(user).withdraw(run_id)

        assert (where, record.run_id) == ("queued", run_id)
        self.model[user].queued.remove(run_id)

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def cancel_an_unknown_run(self, data: st.DataObject) -> None:
        user = data.draw(st.sampled_from(sorted(self.model)))
        with pytest.raises(UnknownRun):
            self.rules_of(user).withdraw("no-such-run")

    # --- what must always hold -----------------------------------------------------

    @invariant()
    def one_entry_per_user_within_the_limit_in_activity_order(self) -> None:
        users = self.books.users()
        assert len(users) == len(set(users)) == len(self.books)
        assert len(self.books) <= self.max_engines
        assert users == list(self.model)
        for user, model in self.model.items():
            entry = self.books.get(user)
            assert entry is not None
            assert (entry.last_active, entry.leases) == (model.last_active, model.leases)

    @invariant()
    def each_engine_stays_within_its_run_limits(self) -> None:
        for user, model in self.model.items():
            rules = self.rules_of(user)
            assert rules.running == len(model.running) <= self.max_running
            assert rules.queued == len(model.queued) <= self.max_queued
            assert rules.idle == (not model.running and not model.queued)

    @invariant()
    def statistics_match_the_models_counts(self) -> None:
        stats = self.books.statistics()
        assert stats.engines_active == len(self.model)
        assert stats.engines_created_total == self.created
        assert stats.engines_reaped_total == dict(self.reaped)
        assert stats.leases == sum(m.leases for m in self.model.values())
        assert stats.max_engines == self.max_engines


FactoryBooksMachine.TestCase.settings = settings(
    max_examples=80, stateful_step_count=60, deadline=None
)
test_factory_books_and_engine_rules_keep_their_promises = FactoryBooksMachine.TestCase


# --- a randomized run of a real core ---------------------------------------------------


@attrs.frozen
class Unhandled:
    """A message no engine handles: sending one makes the engine crash."""


@pytest.mark.parametrize("seed", range(10))
async def test_a_random_mix_of_work_and_faults_ends_every_run_exactly_once(
    seed: int, autojump_clock: trio.abc.Clock
) -> None:
    rng = random.Random(seed)
    config = CoreConfig(
        max_engines=3,
        max_runs_per_user=1,
        max_queued_runs_per_user=1,
        run_timeout=4,
        idle_timeout=6,
    )
    submitted: dict[str, list[str]] = {user: [] for user in USERS}
    async with (
        open_core(config, agents=[*DEMO_AGENTS, FailingAgent]) as core,
        AsyncExitStack() as stack,
    ):
        streams: dict[str, Subscription] = {
            user: await stack.enter_async_context(core.subscribe(user, queue_size=10_000))
            for user in USERS
        }

        async def settled_checks() -> None:
            await wait_all_tasks_blocked()
            active = core.registry.get_sample_value("greenroom_engines_active")
            live = core.system.statistics().kinds.get("engine")
            assert active == (live.actors if live else 0)
            assert active <= config.max_engines
            for user in USERS:
                entry = core.factory._books.get(user)
                assert entry is None or not entry.ref.stopped

        for step in range(80):
            user = rng.choice(USERS)
            move = rng.choice(["submit"] * 4 + ["cancel", "crash", "cleanup", "wait", "wait"])
            if move == "submit":
                run_id = f"{user}-{step}"
                agent, input = rng.choice(
                    [
                        ("echo", step),
                        ("fail", step),
                        ("sleep", {"seconds": rng.choice([0.5, 2, 6]), "steps": 2}),
                    ]
                )
                assert await core.submit(user, agent, input, run_id=run_id) == run_id
                submitted[user].append(run_id)
            elif move == "cancel" and submitted[user]:
                try:
                    await core.cancel(user, rng.choice(submitted[user]))
                except UnknownRun:
                    pass
            elif move == "crash":
                engine = await core.factory.lookup(user)
                if engine is not None:
                    try:
                        await engine._ref.send(Unhandled())
                    except ActorStopped:
                        pass
            elif move == "cleanup":
                await core.factory.cleanup_engine(user)
            elif move == "wait":
                await trio.sleep(rng.choice([0.25, 1, 3, 7]))
            if rng.random() < 0.5:
                await settled_checks()

        await trio.sleep(30)  # every run has ended by now (run_timeout is 4 s)
        await settled_checks()
        seen = {user: drain(streams[user]) for user in USERS}
        assert core.registry.get_sample_value("greenroom_runs_active") == 0

    assert sum(map(len, submitted.values())) > 10
    for user in USERS:
        events = seen[user]
        assert {e.user_id for e in events} == ({user} if events else set())
        assert [e.seq for e in events] == list(range(1, len(events) + 1))
        assert terminal_counts(events) == dict.fromkeys(submitted[user], 1)
