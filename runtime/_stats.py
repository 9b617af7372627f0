"""Statistics snapshots, and the per-kind books they are read from.

Counters are plain attributes bumped by the one place that owns them; these
snapshots are assembled only when somebody asks (a scrape, a test).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

if TYPE_CHECKING:
    from ._cell import _Cell


@attrs.frozen(kw_only=True)
class ActorStatistics:
    """One actor, as of the call to `ActorRef.statistics()`."""

    name: str
    kind: str
    state: str
    mailbox_depth: int
    mailbox_capacity: int
    messages_handled: int
    busy_seconds: float
    restarts: int


@attrs.frozen(kw_only=True)
class KindStatistics:
    """All actors of one kind: live ones summed, plus what stopped ones did."""

    kind: str
    actors: int
    mailbox_depth: int
    messages_handled: int
    busy_seconds: float
    restarts: int
    dead_letters: int


@attrs.frozen(kw_only=True)
class SystemStatistics:
    """Every kind in an actor system, and its dead letters in total."""

    kinds: dict[str, KindStatistics]
    dead_letters: int


@attrs.define(eq=False, slots=True)
class KindBooks:
    """Live actors of one kind, and the counters of those that have stopped."""

    kind: str
    live: set[_Cell] = attrs.Factory(set)
    retired_handled: int = 0
    retired_busy: float = 0.0
    retired_restarts: int = 0
    dead_letters: int = 0

    def enlist(self, cell: _Cell) -> None:
        if cell not in self.live:
            self.live.add(cell)
            # A revived cell's counters are live again: stop counting them as retired.
            self.retired_handled -= cell.handled
            self.retired_busy -= cell.busy_seconds
            self.retired_restarts -= cell.restarts

    def retire(self, cell: _Cell) -> None:
        if cell in self.live:
            self.live.remove(cell)
            self.retired_handled += cell.handled
            self.retired_busy += cell.busy_seconds
            self.retired_restarts += cell.restarts

    def dead_letter(self) -> None:
        self.dead_letters += 1

    def statistics(self) -> KindStatistics:
        live = self.live
        return KindStatistics(
            kind=self.kind,
            actors=len(live),
            mailbox_depth=sum(len(cell.mailbox) for cell in live),
            messages_handled=self.retired_handled + sum(cell.handled for cell in live),
            busy_seconds=self.retired_busy + sum(cell.busy_seconds for cell in live),
            restarts=self.retired_restarts + sum(cell.restarts for cell in live),
            dead_letters=self.dead_letters,
        )
