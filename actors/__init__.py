"""greenroom's agent execution core, built on the `runtime` actor kernel."""

from ._agents import Agent, AgentRegistry, RunContext
from ._auth import InvalidToken, TokenSigner
from ._books import FactoryBooks, FactoryStatistics
from ._bridge import Subscription
from ._config import CoreConfig
from ._context import UserContext
from ._core import Core, open_core
from ._engine import EngineRules
from ._errors import (
    CoreClosed,
    DuplicateRun,
    EngineGone,
    EngineLimitReached,
    GreenroomError,
    InvalidRequest,
    InvalidResume,
    UnknownAgent,
    UnknownRun,
)
from ._events import ERROR_REASONS, EVENT_TYPES, Event, Gap
from ._factory import EngineFactory, UserEngine
from ._serve import RunningServer, ServeOptions, open_server
from ._streams import StreamBooks
from .demo import DEMO_AGENTS, CalcAgent, EchoAgent, SleepAgent, calculate
from .service import GreenroomService, ServiceSettings

__all__ = [
    "Agent",
    "AgentRegistry",
    "CalcAgent",
    "Core",
    "CoreClosed",
    "CoreConfig",
    "DEMO_AGENTS",
    "DuplicateRun",
    "ERROR_REASONS",
    "EVENT_TYPES",
    "EchoAgent",
    "EngineFactory",
    "EngineGone",
    "EngineLimitReached",
    "EngineRules",
    "Event",
    "FactoryBooks",
    "FactoryStatistics",
    "Gap",
    "GreenroomError",
    "GreenroomService",
    "InvalidRequest",
    "InvalidResume",
    "InvalidToken",
    "RunContext",
    "RunningServer",
    "ServeOptions",
    "ServiceSettings",
    "SleepAgent",
    "StreamBooks",
    "Subscription",
    "TokenSigner",
    "UnknownAgent",
    "UnknownRun",
    "UserContext",
    "UserEngine",
    "calculate",
    "open_core",
    "open_server",
]
