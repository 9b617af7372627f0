"""The actor system: a root supervisor and the books every actor shares."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import attrs
import trio
from prometheus_client import CollectorRegistry

from ._actor import Actor, ActorRef
from ._exceptions import RestartIntensityExceeded, raise_if_alone
from ._metrics import ActorCollector
from ._restart import RestartIntensity, RestartType
from ._stats import SystemStatistics
from ._supervisor import Supervisor, SystemBooks

A = TypeVar("A", bound=Actor[Any])


@attrs.define(eq=False)
class ActorSystem:
    """The handle `open_actor_system` yields: spawn at the root, read statistics."""

    root: Supervisor
    books: SystemBooks

    async def spawn(
        self,
        factory: Callable[[], A],
        *,
        name: str | None = None,
        restart: RestartType = RestartType.PERMANENT,
        grace: float = 5.0,
        mailbox_capacity: int | None = None,
        monitor: ActorRef[Any] | None = None,
    ) -> ActorRef[Any]:
        """Start an actor under the root supervisor (see `Supervisor.spawn`)."""
        return await self.root.spawn(
            factory,
            name=name,
            restart=restart,
            grace=grace,
            mailbox_capacity=mailbox_capacity,
            monitor=monitor,
        )

    async def start_supervisor(
        self,
        name: str,
        *,
        intensity: RestartIntensity | None = None,
        restart: RestartType = RestartType.PERMANENT,
        concurrent_stop: bool = False,
    ) -> Supervisor:
        """Start a supervisor under the root (see `Supervisor.start_supervisor`)."""
        return await self.root.start_supervisor(
            name, intensity=intensity, restart=restart, concurrent_stop=concurrent_stop
        )

    def statistics(self) -> SystemStatistics:
        kinds = {name: books.statistics() for name, books in sorted(self.books.kinds.items())}
        return SystemStatistics(
            kinds=kinds, dead_letters=sum(k.dead_letters for k in kinds.values())
        )


@asynccontextmanager
async def open_actor_system(
    *,
    name: str = "system",
    intensity: RestartIntensity | None = None,
    registry: CollectorRegistry | None = None,
    namespace: str = "greenroom",
) -> AsyncIterator[ActorSystem]:
    """Run an actor system for the duration of the block.

    Leaving the block stops every actor in reverse start order (each within
    its grace period, then cancelled); no task outlives it. With a `registry`,
    the system's actor metrics are exposed on it under `namespace` until then.
    If the root supervisor escalates, the block is cancelled and
    `RestartIntensityExceeded` is raised from it.
    """
    books = SystemBooks()
    root = Supervisor(name, books, intensity or RestartIntensity())
    system = ActorSystem(root, books)
    collector = ActorCollector(system.statistics, namespace=namespace)
    if registry is not None:
        registry.register(collector)
    escalations: list[RestartIntensityExceeded] = []

    async def run_root(*, task_status: trio.TaskStatus[Supervisor]) -> None:
        try:
            # Shielded so that a cancelled block still stops its actors in order:
            # only `root.stop()` (always called below) or an escalation ends it.
            with trio.CancelScope(shield=True):
                await root.run(task_status=task_status)
        except RestartIntensityExceeded as error:
            # Cancel the body through the system's nursery, and raise the error
            # from the block on its own rather than wrapped in a group.
            escalations.append(error)
            nursery.cancel_scope.cancel()

    raised: BaseException | None = None  # by the caller's block
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(run_root)
            try:
                yield system
            except BaseException as error:
                raised = error
                raise
            finally:
                with trio.CancelScope(shield=True):
                    await root.stop()
        if escalations:
            raise escalations[0]
    except BaseExceptionGroup as group:
        raise_if_alone(group, raised)  # the block's exception, not a group of one
        raise
    finally:
        if registry is not None:
            registry.unregister(collector)
