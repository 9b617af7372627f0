"""Hibernating actors and messages that the hibernation, answer_now,
handle_now and linger tests share: `Sleeper`s, which hibernate, and
`Oracle`s, which answer asks in the asker's task."""

from __future__ import annotations

from typing import Any

import attrs
import trio
from trio.lowlevel import Task, current_task

from runtime import LATER, Actor


@attrs.frozen
class Add:
    n: int


@attrs.frozen
class StartWork:
    done: trio.Event


@attrs.frozen
class Crash:
    pass


Message = Add | StartWork | Crash


class Sleeper(Actor[Message]):
    hibernate = True

    def __init__(self, log: list[str] | None = None) -> None:
        self.total = 0
        self.log = log if log is not None else []

    async def handle(self, message: Message) -> Any:
        match message:
            case Add(n):
                self.total += n
                return self.total
            case StartWork(done):
                self.start_task(done.wait)
                return "working"
            case Crash():
                raise RuntimeError("crashed on purpose")

    async def on_stop(self) -> None:
        self.log.append("on_stop")


class SlowSleeper(Sleeper):
    hibernate_after = 5.0


@attrs.frozen
class Question:
    n: int


@attrs.frozen
class Later:
    """A message `answer_now` or `handle_now` declines: it goes to the queue
    and `handle`."""

    n: int


@attrs.frozen
class Hold:
    """Handled by waiting on `event`: the actor is busy until it is set."""

    event: trio.Event


@attrs.frozen
class Work:
    """Handled at once, having started a task of the actor's that waits on `done`."""

    done: trio.Event


@attrs.frozen
class Boom:
    pass


@attrs.define
class Handled:
    where: str  # "now" (answer_now, handle_now) or "queued" (handle)
    message: Any
    task: Task


class Oracle(Actor[Any]):
    def __init__(self, log: list[Handled]) -> None:
        self.log = log

    def answer_now(self, message: Any) -> Any:
        match message:
            case Boom():
                raise ValueError("no answer to that")
            case Question(n):
                self.log.append(Handled("now", message, current_task()))
                return n * 10
            case Work(done):
                self.log.append(Handled("now", message, current_task()))
                self.start_task(done.wait)
                return "working"
        return LATER

    async def handle(self, message: Any) -> Any:
        if isinstance(message, Hold):
            await message.event.wait()
        self.log.append(Handled("queued", message, current_task()))
        return "handled"


class SleepyOracle(Oracle):
    hibernate = True
    hibernate_after = 10.0
