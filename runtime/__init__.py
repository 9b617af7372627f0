"""greenroom's actor kernel on trio: actors, mailboxes, supervision, metrics.

Knows nothing of users, agents or sockets; `actors` is built on it.
"""

from ._actor import LATER, YIELD_EVERY, Actor, ActorRef, ChildExited
from ._exceptions import (
    ActorError,
    ActorStopped,
    MailboxFull,
    RestartIntensityExceeded,
    raise_if_alone,
)
from ._mailbox import Mailbox
from ._metrics import ActorCollector
from ._restart import ChildSpec, RestartBook, RestartIntensity, RestartType
from ._stats import ActorStatistics, KindStatistics, SystemStatistics
from ._supervisor import Supervisor
from ._system import ActorSystem, open_actor_system
from ._timers import sleep, sleep_until

__all__ = [
    "Actor",
    "ActorCollector",
    "ActorError",
    "ActorRef",
    "ActorStatistics",
    "ActorStopped",
    "ActorSystem",
    "ChildExited",
    "ChildSpec",
    "KindStatistics",
    "LATER",
    "Mailbox",
    "MailboxFull",
    "RestartBook",
    "RestartIntensity",
    "RestartIntensityExceeded",
    "RestartType",
    "Supervisor",
    "SystemStatistics",
    "YIELD_EVERY",
    "open_actor_system",
    "raise_if_alone",
    "sleep",
    "sleep_until",
]
