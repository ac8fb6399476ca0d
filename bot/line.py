"""The fair line: in which order waiting videos are sent, and where each one stands.

Order is round-robin at two levels: across workspaces, and across people within a workspace, each person's own
videos oldest first. One person's twenty videos therefore wait behind everyone else's first one, and a busy
workspace cannot hold back a quiet one. The order is computed from what is stored (who asked, when), so a
waiting video keeps its place across a restart.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from bot.models import Generation


def _round_robin(queues: Iterable[list[Generation]]) -> list[Generation]:
    pending = [list(q) for q in queues if q]
    order: list[Generation] = []
    while pending:
        for queue in pending:
            order.append(queue.pop(0))
        pending = [q for q in pending if q]
    return order


def fair_order(waiting: Sequence[Generation]) -> list[Generation]:
    """The order the waiting generations of one backend are sent in."""
    by_scope: OrderedDict[str, OrderedDict[str, list[Generation]]] = OrderedDict()
    for generation in sorted(waiting, key=lambda g: (g.created_at, g.id)):
        people = by_scope.setdefault(generation.scope.key, OrderedDict())
        people.setdefault(generation.requester_id, []).append(generation)
    # Within a workspace people take turns; workspaces take turns with each other's turns.
    per_scope = [_round_robin(people.values()) for people in by_scope.values()]
    return _round_robin(per_scope)


@dataclass(frozen=True)
class Place:
    """Where a waiting generation stands: 1 is next, and a rough wait in seconds."""

    position: int
    eta_seconds: float


def places(order: Sequence[Generation], *, slots: int, job_seconds: float) -> dict[str, Place]:
    """Each waiting generation's place, with a wait estimated from how many run at once and how long jobs take."""
    slots = max(1, slots)
    # The line moves in batches of `slots` jobs, each batch taking about one job's time.
    return {
        generation.id: Place(position=index + 1, eta_seconds=(index // slots + 1) * job_seconds)
        for index, generation in enumerate(order)
    }
