"""The core: bridge, factory and engines under one actor system."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import attrs
import trio
from prometheus_client import CollectorRegistry

from runtime import ActorRef, ActorStopped, ActorSystem, open_actor_system

from ._agents import Agent, AgentRegistry
from ._books import FactoryBooks
from ._bridge import (
    BridgeActor,
    Emit,
    EndSubscriptions,
    InlineBridgeActor,
    OpenRun,
    Subscription,
    open_subscription,
    sweeps_in,
)
from ._config import CoreConfig
from ._context import UserContext, check_id
from ._engine import EngineEnv
from ._errors import CoreClosed, EngineGone, EngineLimitReached, InvalidRequest, UnknownRun
from ._events import AGENT_ERROR, Event
from ._factory import EngineFactory, FactoryActor
from ._metrics import CoreCollector
from ._stats import LATENCY_BUCKETS, Histogram, RunBooks, audit
from ._streams import StreamBooks
from .demo import DEMO_AGENTS


@attrs.define(eq=False)
class Core:
    """What `open_core` yields. Keep it on your app's state; there is no global."""

    config: CoreConfig
    agents: AgentRegistry
    factory: EngineFactory
    registry: CollectorRegistry
    system: ActorSystem
    run_books: RunBooks
    stream_books: StreamBooks
    _bridge: ActorRef[Any]
    delivery_seconds: Histogram = attrs.Factory(lambda: Histogram(LATENCY_BUCKETS))
    closing: bool = False

    async def submit(
        self,
        user: UserContext | str,
        agent: str,
        input: Any = None,
        *,
        run_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> str:
        """Start a run of `agent` for a user and return its run id.

        `user` is a `UserContext` or a user id (then `run_id` and `metadata`
        build the context). Its events go to the user's stream; the run ends
        with exactly one `agent_completed` or `agent_error`, including when
        it is rejected for limits. Raises `InvalidRequest` subclasses
        (`UnknownAgent`, `DuplicateRun`, bad ids) having changed nothing, and
        `CoreClosed` once shutting down. Cancelled while it waits, it may
        have started the run all the same: pass a `run_id` to be able to
        `cancel` it then.
        """
        ctx = (
            user
            if isinstance(user, UserContext)
            else UserContext(user_id=user, run_id=run_id, metadata=metadata)
        )
        self.agents.get(agent)
        if self.closing:
            raise CoreClosed("the core is shutting down")
        for attempt in (1, 2):
            try:
                await self.factory.submit(ctx, agent, input)
                break
            except EngineGone:
                # The engine stopped (it crashed, or was cleaned up) before it
                # took the run; the factory has a fresh one for the user.
                if attempt == 2:
                    raise CoreClosed("the user's engine keeps stopping") from None
            except EngineLimitReached as error:
                await self._reject(ctx, agent, str(error))
                break
        return ctx.run_id

    async def _reject(self, ctx: UserContext, agent: str, detail: str) -> None:
        await self._bridge.send(OpenRun(ctx.user_id, ctx.run_id, agent))
        data = {"reason": "rejected", "detail": detail}
        await self._bridge.send(Emit(ctx.user_id, ctx.run_id, AGENT_ERROR, data, time.time()))
        self.run_books.ended(agent, "rejected", None)
        audit("run_rejected", user_id=ctx.user_id, run_id=ctx.run_id, detail=detail)

    async def cancel(self, user_id: str, run_id: str) -> None:
        """Cancel one of the user's live runs: it ends with `agent_error`
        "cancelled". Raises `UnknownRun` if that user has no such live run
        (another user's run id is unknown here too)."""
        check_id("user_id", user_id)
        check_id("run_id", run_id)
        engine = await self.factory.lookup(user_id)
        if engine is None:
            raise UnknownRun(f"no live run {run_id!r} for this user")
        try:
            await engine.cancel(run_id)
        except EngineGone:
            # The engine stopped (it crashed, or was cleaned up): its runs ended.
            raise UnknownRun(f"no live run {run_id!r} for this user") from None

    def subscribe(
        self,
        user_id: str,
        *,
        after: int = 0,
        queue_size: int | None = None,
        deliver_now: Callable[[Event], bool] | None = None,
    ) -> AbstractAsyncContextManager[Subscription]:
        """`async with core.subscribe(user_id, after=seq) as events:` — the
        user's events after `seq` (a `Gap` first for any no longer held),
        then live ones. Raises `InvalidResume` for an `after` past the last
        seq. The subscription ends ("overflow") if its consumer falls more
        than `queue_size` (default `subscriber_queue`) events behind.

        `deliver_now(event)`, if given, is offered each live event before it
        is queued, in the bridge's own task (with `deliver_inline`, in the
        task that emitted the event when the bridge was idle): it must never
        block or await,
        and returns True if it delivered the event (which is then not
        queued). Once it returns False it must keep returning False until
        the queue has been drained, or the order is lost."""
        check_id("user_id", user_id)
        if queue_size is None:
            queue_size = self.config.subscriber_queue
        elif isinstance(queue_size, bool) or not isinstance(queue_size, int) or queue_size < 1:
            raise InvalidRequest(f"queue_size must be a whole number >= 1, got {queue_size!r}")
        return open_subscription(self._bridge, user_id, after, queue_size, deliver_now)

    def last_seq(self, user_id: str) -> int:
        """The last seq numbered on the user's stream (0 if none yet)."""
        return self.stream_books.last_seq(check_id("user_id", user_id))

    def record_delivery(self, emitted_at: float) -> None:
        """Count an event written to a socket, `emitted_at` being its `ts`."""
        self.delivery_seconds.observe_since(emitted_at)

    async def shutdown(self) -> None:
        """Refuse new runs and subscriptions, end live runs with `agent_error`
        "shutdown", then end every subscription ("shutdown") once those
        events are in it. Idempotent."""
        self.closing = True
        await self.factory.shutdown()
        try:
            await self._bridge.ask(EndSubscriptions("shutdown"))
        except ActorStopped:
            pass


@asynccontextmanager
async def open_core(
    config: CoreConfig | None = None,
    *,
    agents: Iterable[type[Agent]] = DEMO_AGENTS,
    registry: CollectorRegistry | None = None,
) -> AsyncIterator[Core]:
    """Start the event bridge, then the engine supervisor, then the factory,
    each ready before the next starts; yield the `Core`.

    Leaving the block ends live runs with `agent_error` "shutdown", delivers
    those events, ends every subscription ("shutdown") and stops everything.
    Metrics go to `registry` (a fresh one if not given: `core.registry`).
    """
    config = CoreConfig() if config is None else config
    if not isinstance(config, CoreConfig):
        raise TypeError(f"config must be a CoreConfig, got {type(config).__name__}")
    registry = registry if registry is not None else CollectorRegistry()
    agent_registry = AgentRegistry.of(agents)
    async with open_actor_system(name="greenroom", registry=registry) as system:
        stream_books = StreamBooks(
            config.replay_window,
            replay_bytes=config.replay_bytes,
            forget_after_sweeps=sweeps_in(config.seq_retention, config.replay_retention),
        )
        bridge_class = InlineBridgeActor if config.deliver_inline else BridgeActor
        bridge = await system.spawn(
            lambda: bridge_class(stream_books, config.replay_retention), name="bridge"
        )
        engines = await system.start_supervisor("engines", concurrent_stop=True)
        run_books = RunBooks()
        env = EngineEnv(
            bridge=bridge,
            agents=agent_registry,
            runs=run_books,
            max_running=config.max_runs_per_user,
            max_queued=config.max_queued_runs_per_user,
            run_timeout=config.run_timeout,
            linger=config.engine_linger,
        )
        books = FactoryBooks(config.max_engines, config.idle_timeout)
        create_seconds = Histogram(LATENCY_BUCKETS)
        factory_ref = await system.spawn(
            lambda: FactoryActor(books, engines, env, create_seconds), name="factory"
        )
        core = Core(
            config=config,
            agents=agent_registry,
            factory=EngineFactory(factory_ref, books, create_seconds),
            registry=registry,
            system=system,
            run_books=run_books,
            stream_books=stream_books,
            bridge=bridge,
        )
        collector = CoreCollector(core)
        registry.register(collector)
        try:
            yield core
        finally:
            registry.unregister(collector)
            with trio.CancelScope(shield=True):
                await core.shutdown()
