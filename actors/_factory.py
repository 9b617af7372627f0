"""The engine factory: the one actor that creates, hands out and reaps engines."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from time import perf_counter
from typing import Any

import attrs
import trio

from runtime import (
    Actor,
    ActorRef,
    ActorStatistics,
    ActorStopped,
    ChildExited,
    MailboxFull,
    RestartType,
    Supervisor,
)

from ._books import EngineEntry, FactoryBooks, FactoryStatistics
from ._bridge import EndOpenRuns
from ._context import UserContext
from ._engine import Cancel, EndAll, EngineActor, EngineEnv, Submit
from ._errors import CoreClosed, EngineGone
from ._stats import Histogram, audit


@attrs.frozen
class Acquire:
    user_id: str
    create: bool
    lease: bool


@attrs.frozen
class Release:
    """Give back a lease on the user's engine `ref` (not on whatever engine
    the user has by then)."""

    user_id: str
    ref: ActorRef[Any]


@attrs.frozen
class Cleanup:
    user_id: str


@attrs.frozen
class Sweep:
    pass


@attrs.frozen
class Shutdown:
    pass


#: Engines with runs stopped at once on shutdown (those without are all
#: stopped together).
STOP_CONCURRENCY = 256


class _MakeEngine:
    """An engine's ChildSpec factory: 48 bytes, where a lambda and its closure
    cost 288."""

    __slots__ = ("env", "user_id")

    def __init__(self, user_id: str, env: EngineEnv) -> None:
        self.user_id = user_id
        self.env = env

    def __call__(self) -> EngineActor:
        return EngineActor(self.user_id, self.env)


def _is_idle(entry: EngineEntry) -> bool:
    """Dormant, or awake with nothing to do ("lingering"), and nothing
    queued: a run handed on to it is not idle."""
    ref: ActorRef[Any] = entry.ref
    stats = ref.statistics()
    return stats.state in ("dormant", "lingering") and stats.mailbox_depth == 0


class FactoryActor(Actor[Any]):
    """Handles one message at a time, so two requests for one user can never
    create two engines. Engines run under `engines` (a supervisor of its
    own); this actor monitors them so its books stay right when one crashes."""

    kind = "factory"
    mailbox_capacity = 65536

    def __init__(
        self,
        books: FactoryBooks,
        engines: Supervisor,
        env: EngineEnv,
        create_seconds: Histogram,
    ) -> None:
        self.books = books
        self.engines = engines
        self.env = env
        self.create_seconds = create_seconds
        self.closed = False

    async def on_start(self) -> None:
        self._own_ref = self.ref  # one ref for every engine's monitor, not one each
        self.start_task(self._sweeper, name="idle sweeper")

    async def _sweeper(self) -> None:
        interval = max(self.books.idle_timeout / 4, 0.01)
        ref = self.ref
        while True:
            await trio.sleep(interval)
            await ref.send(Sweep())

    async def handle(self, message: Any) -> Any:
        books = self.books
        now = trio.current_time()
        match message:
            case Submit(ctx, agent):
                self.env.agents.get(agent)  # UnknownAgent, before any engine is made for it
                engine = await self._acquire(ctx.user_id, True, False, now)
                try:
                    # The engine answers the asker itself: one round trip, no lease.
                    self.forward(engine._ref, message)
                except MailboxFull:
                    return engine  # the asker submits itself, waiting for room
                return None
            case Acquire(user_id, create, lease):
                return await self._acquire(user_id, create, lease, now)
            case Release(user_id, ref):
                books.release(user_id, ref, now)
            case Sweep():
                for user_id in books.expired(now, _is_idle):
                    # Reaping one waits for its stop, and meanwhile the next
                    # may have been given a run (`EngineFactory.submit`
                    # reaches an engine directly): it is looked at again.
                    if books.is_expired(user_id, trio.current_time(), _is_idle):
                        await self._reap(user_id, "idle")
            case Cleanup(user_id):
                if user_id not in books:
                    return False
                entry = await self._live_entry(user_id)
                if entry is None:
                    return True  # it had crashed, and is dealt with as such
                # Out of the books first, so that a run submitted meanwhile
                # waits here for a fresh engine instead of reaching this one.
                books.remove(user_id, "cleanup")
                try:
                    await entry.ref.ask(EndAll("cancelled", "the user's engine was cleaned up"))
                except ActorStopped:
                    # It crashed meanwhile: what it left open ends as after any crash.
                    await self._end_open_runs(user_id, "exception", "the user's engine failed")
                await entry.ref.stop()
                audit("engine_reaped", user_id=user_id, reason="cleanup")
                return True
            case ChildExited(ref, error):
                await self._exited(ref, error)
            case Shutdown():
                self.closed = True
                # Engines with runs: bounded, so that each one's grace period
                # starts when its own stop does, not all at once.
                limiter = trio.CapacityLimiter(STOP_CONCURRENCY)

                async def reap(user_id: str, ref: ActorRef[Any]) -> None:
                    async with limiter:
                        await ref.stop()
                    audit("engine_reaped", user_id=user_id, reason="shutdown")
                    # Nothing is left open by a stop, but by a crash meanwhile.
                    try:
                        await self._end_open_runs(user_id, "shutdown", "the server is stopping")
                    except ActorStopped:
                        pass  # the bridge is gone: nobody is left to tell

                for user_id in books.users():
                    await self._live_entry(user_id)  # one that crashed: its crash first
                idle = books.without_work(_is_idle)
                refs = [books.remove(user_id, "shutdown").ref for user_id in idle]
                # Every engine leaves the books now, so that no run reaches
                # one directly (`EngineFactory.submit`) while it waits its turn.
                busy = [(user, books.remove(user, "shutdown").ref) for user in books.users()]
                async with trio.open_nursery() as nursery:
                    for user_id, ref in busy:
                        nursery.start_soon(reap, user_id, ref)
                    # Meanwhile, those with nothing to do stop together, every
                    # stop asked for before any is waited for: a lingering
                    # engine still has a task to end.
                    await self.engines.stop_actors(refs)
                    for user_id in idle:
                        audit("engine_reaped", user_id=user_id, reason="shutdown")
            case _:
                raise TypeError(f"the engine factory does not handle {message!r}")
        return None

    async def _acquire(self, user_id: str, create: bool, lease: bool, now: float) -> Any:
        books = self.books
        entry = await self._live_entry(user_id)
        if entry is None:
            if not create:
                return None
            if self.closed:
                raise CoreClosed("the engine factory is shut down")
            victim = books.room_for_one(_is_idle)
            if victim is not None:
                await self._reap(victim, "lru")
            began = perf_counter()
            ref = self.engines.spawn_dormant(  # nothing to wait for: it has no task yet
                _MakeEngine(user_id, self.env),
                name=f"engine:{user_id}",
                restart=RestartType.TEMPORARY,
                monitor=self._own_ref,
            )
            self.create_seconds.observe(perf_counter() - began)
            # The clock as of now: a run submitted directly (`EngineFactory.submit`)
            # may have touched another entry during the awaits above.
            now = trio.current_time()
            entry = books.add(user_id, ref, now)
            audit("engine_created", user_id=user_id, engines=len(books))
        if lease and not self.ask_abandoned:  # nobody would ever release it
            books.lease(user_id, now)
        else:
            books.touch(user_id, now)
        return UserEngine(user_id, entry.ref)

    async def _reap(self, user_id: str, reason: str) -> None:
        entry = self.books.get(user_id)
        if entry is None:
            return
        self.books.remove(user_id, reason)
        await entry.ref.stop()
        audit("engine_reaped", user_id=user_id, reason=reason)

    async def _live_entry(self, user_id: str) -> EngineEntry | None:
        """The user's entry, if their engine is alive. One that has crashed,
        its `ChildExited` still behind the message being handled, is dealt
        with as that notice would be, and is gone from the books."""
        entry = self.books.get(user_id)
        if entry is not None and entry.ref.stopped:
            await self._exited(entry.ref, RuntimeError("the engine stopped unexpectedly"))
            return None
        return entry

    async def _exited(self, ref: ActorRef[Any], error: BaseException | None) -> None:
        """An engine stopped; if the books still hold it, it crashed."""
        user_id = ref.name.removeprefix("engine:")
        entry = self.books.get(user_id)
        if entry is None or entry.ref != ref:
            return
        self.books.remove(user_id, "crash")
        detail = f"the user's engine failed: {type(error).__name__}: {error}"
        audit("engine_reaped", user_id=user_id, reason="crash", detail=detail)
        await self._end_open_runs(user_id, "exception", detail)

    async def _end_open_runs(self, user_id: str, reason: str, detail: str) -> None:
        """After a crash: the runs it was running ended in their own tasks;
        what is still open was queued, so it never started and ends here."""
        ended = await self.env.bridge.ask(EndOpenRuns(user_id, reason, detail))
        for run_id, agent in ended:
            self.env.runs.ended(agent, reason, None)
            audit("run_ended", user_id=user_id, run_id=run_id, outcome=reason)


@attrs.define(eq=False)
class UserEngine:
    """One user's engine, as handed out by the factory."""

    user_id: str
    _ref: ActorRef[Any]

    async def submit(self, ctx: UserContext, agent: str, input: Any) -> str:
        """Start or queue a run; returns "started", "queued" or "rejected"
        (a rejected run has already ended with `agent_error`). Raises
        `DuplicateRun` for a run id that is live for this user and
        `UnknownAgent`, both having changed nothing, and `EngineGone` if this
        engine has stopped."""
        if ctx.user_id != self.user_id:
            raise ValueError(f"this engine is for {self.user_id!r}, not for {ctx.user_id!r}")
        try:
            result: str = await self._ref.ask(Submit(ctx, agent, input))
        except ActorStopped:
            raise EngineGone(f"the engine of {self.user_id!r} has stopped") from None
        return result

    async def cancel(self, run_id: str) -> None:
        """Cancel a live run; raises `UnknownRun` if there is none by that id,
        and `EngineGone` if this engine has stopped (its runs have ended)."""
        try:
            await self._ref.ask(Cancel(run_id))
        except ActorStopped:
            raise EngineGone(f"the engine of {self.user_id!r} has stopped") from None

    @property
    def alive(self) -> bool:
        return not self._ref.stopped

    def statistics(self) -> ActorStatistics:
        return self._ref.statistics()


@attrs.define(eq=False)
class EngineFactory:
    """The only way to get a user's engine. One message at a time, so
    concurrent requests for one user always share one engine."""

    _ref: ActorRef[Any]
    _books: FactoryBooks
    _create_seconds: Histogram

    async def create_for_user(self, ctx: UserContext) -> UserEngine:
        """The user's engine, created if they have none.

        At `max_engines` the least recently active idle engine is reaped to
        make room; if none is idle, `EngineLimitReached` is raised.
        """
        return await self._acquire(ctx.user_id, create=True, lease=False)

    @asynccontextmanager
    async def user_execution_scope(self, ctx: UserContext) -> AsyncIterator[UserEngine]:
        """The user's engine, held so that it is not reaped until the block ends."""
        engine = await self._acquire(ctx.user_id, create=True, lease=True)
        try:
            yield engine
        finally:
            release = Release(ctx.user_id, engine._ref)
            try:
                try:
                    self._ref.send_nowait(release)
                except MailboxFull:
                    with trio.CancelScope(shield=True):
                        await self._ref.send(release)
            except ActorStopped:
                pass

    async def submit(self, ctx: UserContext, agent: str, input: Any) -> str:
        """Start or queue a run on the user's engine, created if they have
        none, in one round trip (see `UserEngine.submit`). A user who has an
        engine asks it directly: an idle one starts the run in the caller's
        task. Otherwise the factory creates the engine and hands the request
        on, and the engine replies. Raises what `UserEngine.submit` raises,
        `EngineGone` if the engine stopped before taking it (a retry gets a
        fresh one), `EngineLimitReached`, and `CoreClosed` once the factory
        is shut down.
        """
        user_id = ctx.user_id
        entry = self._books.get(user_id)
        if entry is not None and not entry.ref.stopped:
            # In one step with the ask's own (it answers at once, or queues):
            # the factory, which reaps only what is idle and unasked for
            # `idle_timeout`, sees this engine as busy or just asked.
            self._books.touch(user_id, trio.current_time())
            try:
                direct: str = await entry.ref.ask(Submit(ctx, agent, input))
            except ActorStopped:
                pass  # it stopped before taking the run: the factory's way
            else:
                return direct
        try:
            reply = await self._ref.ask(Submit(ctx, agent, input))
        except ActorStopped:
            if self._ref.stopped:
                raise CoreClosed("the engine factory is shut down") from None
            raise EngineGone(
                f"the engine of {ctx.user_id!r} stopped before taking the run"
            ) from None
        if isinstance(reply, UserEngine):  # its mailbox was full
            return await reply.submit(ctx, agent, input)
        result: str = reply
        return result

    async def cleanup_engine(self, user_id: str) -> bool:
        """End the user's live runs (`agent_error` "cancelled") and stop their
        engine. False if they had none."""
        try:
            done: bool = await self._ref.ask(Cleanup(user_id))
        except ActorStopped:
            return False
        return done

    async def shutdown(self) -> None:
        """Stop every engine (live runs end with `agent_error` "shutdown") and
        create no more. Idempotent."""
        try:
            await self._ref.ask(Shutdown())
        except ActorStopped:
            pass

    def metrics(self) -> FactoryStatistics:
        """A snapshot of the factory's books."""
        return self._books.statistics()

    @property
    def create_seconds(self) -> Histogram:
        return self._create_seconds

    async def _acquire(self, user_id: str, *, create: bool, lease: bool) -> UserEngine:
        try:
            engine: UserEngine = await self._ref.ask(Acquire(user_id, create, lease))
        except ActorStopped:
            raise CoreClosed("the engine factory is shut down") from None
        return engine

    async def lookup(self, user_id: str) -> UserEngine | None:
        """The user's engine if they have one; never creates."""
        try:
            engine: UserEngine | None = await self._ref.ask(Acquire(user_id, False, False))
        except ActorStopped:
            return None
        return engine
