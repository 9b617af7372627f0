"""The exceptions the agent core raises.

    GreenroomError                 base of everything below
    ├── InvalidRequest (ValueError)  bad input from outside; nothing changed
    │   ├── UnknownAgent             no agent is registered under that name
    │   ├── DuplicateRun             the user already has a live run with that id
    │   └── InvalidResume            a resume point the stream cannot have reached
    ├── UnknownRun (LookupError)     the user has no live run with that id
    ├── EngineLimitReached           every engine slot is taken and none is idle
    └── CoreClosed                   the core, or its factory, is shutting down

Errors from agents never escape as these: they end the run with `agent_error`.
"""

from __future__ import annotations


class GreenroomError(Exception):
    """Base class of the agent core's own exceptions."""


class InvalidRequest(GreenroomError, ValueError):
    """A value from outside (a context, a config, a request) is not acceptable.

    The message names the field and what is accepted. Nothing was changed.
    """


class UnknownAgent(InvalidRequest):
    """No agent is registered under the requested name."""


class DuplicateRun(InvalidRequest):
    """The user already has a live (queued or running) run with this run id."""


class InvalidResume(InvalidRequest):
    """`after` is past the last event the user's stream has numbered."""


class UnknownRun(GreenroomError, LookupError):
    """The user has no live run with that id: it ended, or was never theirs."""


class EngineLimitReached(GreenroomError):
    """The factory holds `max_engines` engines and none of them is idle.

    Unlike `CoreClosed`, trying again later can succeed.
    """


class EngineGone(GreenroomError):
    """The user's engine has stopped since it was handed out: reaped while
    idle, cleaned up, or failed. Its runs have ended. Get the user's engine
    from the factory again; `core.submit` does that by itself."""


class CoreClosed(GreenroomError):
    """The core is shutting down: no new engines, runs or subscriptions."""
