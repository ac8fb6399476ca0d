"""The fair line: in which order waiting videos are sent, and where each one stands.

Order is round-robin at two levels: across workspaces, and across people within a workspace, each person's own
videos oldest first. One person's twenty videos therefore wait behind everyone else's first one, and a busy
workspace cannot hold back a quiet one. The order is computed from what is stored (who asked, when), so a
waiting video keeps its place across a restart.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, TypeVar

from bot.models import Scope


class InLine(Protocol):
    """What the line orders by: a whole `Generation`, or the light `WaitingSpot` the dispatcher reads."""

    @property
    def id(self) -> str: ...

    @property
    def scope(self) -> Scope: ...

    @property
    def requester_id(self) -> str: ...

    @property
    def created_at(self) -> datetime: ...


Waiting = TypeVar("Waiting", bound=InLine)


def fair_order(waiting: Sequence[Waiting], busy: Mapping[tuple[str, str], int] | None = None) -> list[Waiting]:
    """The order the waiting generations of one backend are sent in.

    `busy` counts, per (workspace key, person), the videos already sent and not finished: someone with three
    videos rendering waits for their fourth until those with none have had their turn, so the line stays fair
    while it moves (the order is computed afresh each time, from stored facts only).
    """
    busy = busy or {}
    by_scope: OrderedDict[str, OrderedDict[str, list[Waiting]]] = OrderedDict()
    for generation in sorted(waiting, key=lambda g: (g.created_at, g.id)):
        people = by_scope.setdefault(generation.scope.key, OrderedDict())
        people.setdefault(generation.requester_id, []).append(generation)
    scope_busy: dict[str, int] = {}
    for (scope_key, _), count in busy.items():
        scope_busy[scope_key] = scope_busy.get(scope_key, 0) + count
    # Within a workspace people take turns: a person's i-th waiting video comes in turn busy + i.
    per_scope: list[tuple[str, list[Waiting]]] = []
    for scope_key, people in by_scope.items():
        turns = [
            (busy.get((scope_key, person), 0) + index, arrival, index, generation)
            for arrival, (person, jobs) in enumerate(people.items())
            for index, generation in enumerate(jobs)
        ]
        per_scope.append((scope_key, [t[3] for t in sorted(turns, key=lambda t: t[:3])]))
    # Workspaces take turns the same way, counting what each already has rendering.
    turns = [
        (scope_busy.get(scope_key, 0) + index, arrival, index, generation)
        for arrival, (scope_key, sequence) in enumerate(per_scope)
        for index, generation in enumerate(sequence)
    ]
    return [t[3] for t in sorted(turns, key=lambda t: t[:3])]


@dataclass(frozen=True)
class Place:
    """Where a waiting generation stands: 1 is next, and a rough wait in seconds."""

    position: int
    eta_seconds: float


def places(order: Sequence[InLine], *, slots: int, job_seconds: float) -> dict[str, Place]:
    """Each waiting generation's place, with a wait estimated from how many run at once and how long jobs take."""
    slots = max(1, slots)
    # The line moves in batches of `slots` jobs, each batch taking about one job's time.
    return {
        generation.id: Place(position=index + 1, eta_seconds=(index // slots + 1) * job_seconds)
        for index, generation in enumerate(order)
    }
