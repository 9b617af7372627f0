"""The agent API: what an agent is, and the one context a run gets."""

from __future__ import annotations

import inspect
import itertools
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, ClassVar

import attrs
import trio

from ._context import UserContext
from ._errors import InvalidRequest, UnknownAgent
from ._events import AGENT_THINKING, TOOL_COMPLETED, TOOL_EXECUTING

_NAME = re.compile(r"^[a-z][a-z0-9_.-]{0,63}$")

Emitter = Callable[[str, dict[str, Any]], Awaitable[None]]


class Agent:
    """Base class of agents. Register the class; every run gets a new instance.

    Set `name` (lower case, digits, `_.-`, at most 64 characters) and
    implement `run`. Whatever `run` returns is the run's output; an exception
    ends the run with `agent_error` (reason "exception"), and so does any
    other error it raises but trio's cancellation and Ctrl-C (`SystemExit`,
    say): it ends that run only.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""

    async def run(self, ctx: RunContext, input: Any) -> Any:
        raise NotImplementedError


@attrs.frozen(eq=False, slots=True)
class RunContext:
    """All an agent sees of the system: its user's context, read-only, and
    two ways to report progress on its own user's stream."""

    user: UserContext
    _emit: Emitter
    _calls: itertools.count[int] = attrs.field(factory=lambda: itertools.count(1), init=False)

    def thinking(self, text: str) -> Awaitable[None]:
        """Emit `agent_thinking` with `text` (await it). The emit itself is
        what it returns: a run's most frequent call makes no coroutine of
        its own."""
        return self._emit(AGENT_THINKING, {"text": str(text)})

    async def tool(
        self,
        name: str,
        args: Mapping[str, Any],
        fn: Callable[..., Any],
    ) -> Any:
        """Run a tool: emit `tool_executing`, call `fn(**args)` (awaited if it
        returns an awaitable), emit `tool_completed` with the result or the
        error and the duration, and return the result or re-raise the error.

        If cancelled (timeout, cancel), no `tool_completed` is emitted: the
        run's own terminal event follows instead.
        """
        call_id = f"call-{next(self._calls)}"
        args = dict(args)
        await self._emit(TOOL_EXECUTING, {"tool": name, "call_id": call_id, "args": args})
        began = trio.current_time()
        try:
            result = fn(**args)
            if inspect.isawaitable(result):
                result = await result
        except Exception as error:
            await self._emit(
                TOOL_COMPLETED,
                {
                    "tool": name,
                    "call_id": call_id,
                    "ok": False,
                    "error": f"{type(error).__name__}: {error}",
                    "duration_ms": _ms_since(began),
                },
            )
            raise
        await self._emit(
            TOOL_COMPLETED,
            {
                "tool": name,
                "call_id": call_id,
                "ok": True,
                "result": result,
                "duration_ms": _ms_since(began),
            },
        )
        return result


def _ms_since(began: float) -> float:
    return round((trio.current_time() - began) * 1000.0, 3)


@attrs.define(eq=False)
class AgentRegistry:
    """Agent classes by name. Built once; names must be valid and unique."""

    _agents: dict[str, type[Agent]] = attrs.field(factory=dict)

    @classmethod
    def of(cls, agents: Iterable[type[Agent]]) -> AgentRegistry:
        registry = cls()
        for agent in agents:
            registry._add(agent)
        return registry

    def _add(self, agent: type[Agent]) -> None:
        if not (isinstance(agent, type) and issubclass(agent, Agent)):
            raise InvalidRequest(f"agents must be Agent subclasses, got {agent!r}")
        name = agent.name
        if not isinstance(name, str) or not _NAME.match(name):
            raise InvalidRequest(
                f"{agent.__name__}.name must be 1-64 characters of a-z, 0-9, '_', '.', '-' "
                f"starting with a letter, got {name!r}"
            )
        if name in self._agents:
            raise InvalidRequest(f"two agents are registered as {name!r}")
        self._agents[name] = agent

    def get(self, name: str) -> type[Agent]:
        try:
            return self._agents[name]
        except (KeyError, TypeError):
            known = ", ".join(sorted(self._agents)) or "none"
            raise UnknownAgent(f"no agent named {name!r} (registered: {known})") from None

    def __contains__(self, name: object) -> bool:
        return name in self._agents

    @property
    def names(self) -> list[str]:
        return sorted(self._agents)
