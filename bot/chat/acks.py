"""Acknowledgements first: when interactions arrive in a burst, their acks go out before anyone's slow work."""

from __future__ import annotations

import asyncio
import contextlib


class AckGate:
    """Lets acknowledgements go before slow work when a burst of interactions arrives at once.

    Every handler counts itself in when it starts and out once it has acknowledged; work after an
    acknowledgement waits (briefly, never for ever) until no interaction is still waiting for its own. On one
    event loop, a job's database and API calls would otherwise delay the acks queued behind them.

    At most `in_flight` acknowledgements are on the wire at once: a burst then reuses connections instead of
    opening one per interaction, whose set-up would delay every ack queued behind it (200 at once, in
    benchmarks/discord_ack.py: p99 ~75 ms with 64, ~125 ms unbounded). Platforms whose ack is the HTTP answer
    itself (Slack over HTTP) only count arrivals and acknowledgements.
    """

    def __init__(self, max_wait: float = 1.0, in_flight: int = 64) -> None:
        self._max_wait = max_wait
        self._slots = asyncio.Semaphore(in_flight)
        self._waiting = 0
        self._clear = asyncio.Event()
        self._clear.set()

    @property
    def slot(self) -> asyncio.Semaphore:
        """Held while an acknowledgement is on its way (bounds how many are sent at once)."""
        return self._slots

    def arrived(self) -> None:
        self._waiting += 1
        self._clear.clear()

    def acknowledged(self) -> None:
        self._waiting = max(0, self._waiting - 1)
        if self._waiting == 0:
            self._clear.set()

    async def settle(self) -> None:
        """Wait until every interaction that arrived so far has been acknowledged (at most `max_wait`)."""
        if self._waiting:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._clear.wait(), self._max_wait)
