"""The arithmetic of shared create turns, the same for every engine: a generic cell rate algorithm.

One row per backend account keeps `next_at`, the time the next turn is due if turns were taken one per
`every` seconds without a break. A turn may be taken up to `(burst - 1) * every` before that time (so a quiet
account allows a short burst), and taking one moves `next_at` on by `every`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class Turn:
    """The outcome of asking for a turn: `wait` seconds (0: taken) and the `next_at` to store when taken."""

    wait: float
    next_at: datetime | None


def ask_turn(
    next_at: datetime | None, held_until: datetime | None, now: datetime, every: float, burst: int
) -> Turn:
    """Whether a create may go at `now` on an account whose row says `next_at` and `held_until`."""
    if held_until is not None and held_until > now:
        return Turn((held_until - now).total_seconds(), None)
    due = max(next_at or now, now)
    early = timedelta(seconds=max(0, burst - 1) * every)
    if due - now > early:
        return Turn((due - early - now).total_seconds(), None)
    return Turn(0.0, due + timedelta(seconds=every))
