"""Actors and messages the supervision tests share."""

from __future__ import annotations

from typing import Any

import attrs
import trio
from trio.testing import wait_all_tasks_blocked

from runtime import Actor, ActorRef


@attrs.frozen
class Add:
    n: int


@attrs.frozen
class Get:
    pass


@attrs.frozen
class Crash:
    pass


@attrs.frozen
class Exit:
    """Stop normally (`Actor.stop()`), then wait at `gate` if one is given."""

    gate: trio.Event | None = None


@attrs.frozen
class Hang:
    pass


Message = Add | Get | Crash | Exit | Hang


@attrs.define
class Log:
    """What the actors of one test did, in order."""

    started: list[str] = attrs.Factory(list)
    stopped: list[str] = attrs.Factory(list)


class Worker(Actor[Message]):
    def __init__(self, label: str = "", log: Log | None = None) -> None:
        self.label = label
        self.log = log or Log()
        self.total = 0

    async def on_start(self) -> None:
        self.log.started.append(self.label)

    async def handle(self, message: Message) -> Any:
        match message:
            case Add(n):
                self.total += n
                return self.total
            case Get():
                return self.total
            case Crash():
                raise RuntimeError(f"{self.label} crashed on purpose")
            case Exit(gate):
                self.stop()
                if gate is not None:
                    await gate.wait()
            case Hang():
                await trio.sleep_forever()

    async def on_stop(self) -> None:
        self.log.stopped.append(self.label)


async def crash(ref: ActorRef[Message]) -> None:
    """Crash the actor with a plain send and let its supervisor react."""
    await ref.send(Crash())
    await wait_all_tasks_blocked()
