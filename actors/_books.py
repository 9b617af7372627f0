"""The factory's books, without I/O: which engine is whose, limits, reaping."""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Callable
from typing import Any

import attrs

from ._errors import EngineLimitReached


@attrs.define(eq=False, slots=True)
class EngineEntry:
    ref: Any
    last_active: float
    leases: int = 0


@attrs.frozen(kw_only=True)
class FactoryStatistics:
    engines_active: int
    engines_created_total: int
    engines_reaped_total: dict[str, int]
    leases: int
    max_engines: int


def _reapable(entry: EngineEntry, is_idle: Callable[[EngineEntry], bool]) -> bool:
    """Nobody holds a lease on it and `is_idle` says it has no work."""
    return entry.leases == 0 and is_idle(entry)


@attrs.define(eq=False)
class FactoryBooks:
    """One engine per user, at most `max_engines`, least recently active first.

    An engine is *idle* when nobody holds a lease on it and `is_idle` says it
    has no work (the factory asks whether the engine's actor is dormant).
    Activity is inbound work only: creating, leasing and releasing.
    """

    max_engines: int
    idle_timeout: float
    _entries: OrderedDict[str, EngineEntry] = attrs.Factory(OrderedDict)
    created_total: int = 0
    reaped: Counter[str] = attrs.Factory(Counter)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, user_id: object) -> bool:
        return user_id in self._entries

    def get(self, user_id: str) -> EngineEntry | None:
        return self._entries.get(user_id)

    def users(self) -> list[str]:
        return list(self._entries)

    def _touch(self, user_id: str, now: float) -> EngineEntry:
        entry = self._entries[user_id]
        entry.last_active = now
        self._entries.move_to_end(user_id)
        return entry

    def room_for_one(self, is_idle: Callable[[EngineEntry], bool]) -> str | None:
        """Before creating an engine: None if there is room, else the least
        recently active idle user to reap. Raises `EngineLimitReached`."""
        if len(self._entries) < self.max_engines:
            return None
        for user_id, entry in self._entries.items():
            if _reapable(entry, is_idle):
                return user_id
        raise EngineLimitReached(
            f"all {self.max_engines} engines are busy; try again when a run ends"
        )

    def add(self, user_id: str, ref: Any, now: float) -> EngineEntry:
        if user_id in self._entries:
            raise ValueError(f"{user_id!r} already has an engine")
        if len(self._entries) >= self.max_engines:
            raise EngineLimitReached(f"the engine limit ({self.max_engines}) is reached")
        entry = self._entries[user_id] = EngineEntry(ref, now)
        self.created_total += 1
        return entry

    def remove(self, user_id: str, reason: str) -> EngineEntry:
        entry = self._entries.pop(user_id)
        self.reaped[reason] += 1
        return entry

    def lease(self, user_id: str, now: float) -> EngineEntry:
        entry = self._touch(user_id, now)
        entry.leases += 1
        return entry

    def release(self, user_id: str, ref: Any, now: float) -> None:
        """Give back a lease taken on the engine `ref`. Nothing changes if
        the user's engine is no longer that one: its leases went with it,
        and the engine that replaced it holds only its own."""
        entry = self._entries.get(user_id)
        if entry is not None and entry.ref == ref:
            self._touch(user_id, now)
            entry.leases = max(0, entry.leases - 1)

    def touch(self, user_id: str, now: float) -> EngineEntry:
        return self._touch(user_id, now)

    def expired(self, now: float, is_idle: Callable[[EngineEntry], bool]) -> list[str]:
        """Users whose engine has been idle for `idle_timeout` or longer."""
        found = []
        for user_id, entry in self._entries.items():
            if now - entry.last_active < self.idle_timeout:
                break
            if _reapable(entry, is_idle):
                found.append(user_id)
        return found

    def is_expired(self, user_id: str, now: float, is_idle: Callable[[EngineEntry], bool]) -> bool:
        """Whether `expired` would still name `user_id` now."""
        entry = self._entries.get(user_id)
        return (
            entry is not None
            and now - entry.last_active >= self.idle_timeout
            and _reapable(entry, is_idle)
        )

    def without_work(self, is_idle: Callable[[EngineEntry], bool]) -> list[str]:
        """Users whose engine `is_idle` says has no work now, leased or not
        (so not necessarily idle: for a shutdown, where leases do not count)."""
        return [user_id for user_id, entry in self._entries.items() if is_idle(entry)]

    def statistics(self) -> FactoryStatistics:
        return FactoryStatistics(
            engines_active=len(self._entries),
            engines_created_total=self.created_total,
            engines_reaped_total=dict(self.reaped),
            leases=sum(entry.leases for entry in self._entries.values()),
            max_engines=self.max_engines,
        )
