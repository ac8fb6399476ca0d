"""How fast soracast may talk to one backend, learnt from what the backend says.

Three limits, all per backend:
- jobs in flight (submitted and not finished) at most `max_in_flight` (`SORACAST_MAX_IN_FLIGHT`);
- creates per minute at most `submits_per_minute` (`SORACAST_SUBMITS_PER_MINUTE`), as a token bucket whose
  rate is also learnt: a 429 halves it and pauses every call to that backend for as long as the backend asked
  (`Retry-After`, `x-ratelimit-reset-*`, or a backoff when it did not say); each success earns back a little;
- every request (polls and downloads too) goes through one gate that honours that pause and a per-second
  budget — `SORACAST_REQUESTS_PER_SECOND` when set, and in any case the rate learnt from 429s: a 429 sets it
  to a little under the rate that was being sent, and each success raises it a little again. Creates are
  served before polls, so status checks never starve submits.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections import deque
from collections.abc import Callable
from enum import IntEnum

#: Waits when a 429 says nothing about how long: doubling from here up to the cap.
FIRST_BACKOFF = 2.0
MAX_BACKOFF = 120.0
#: The learnt create rate never drops below this many per minute.
MIN_SUBMIT_RATE = 0.5
#: Without a configured rate, creates start this fast and only slow down when the backend says so.
DEFAULT_SUBMIT_RATE = 120.0
#: After a 429 requests go at this share of the rate that provoked it; each success adds a little back.
BACKOFF_SHARE = 0.7
RECOVERY_STEP = 1.02
MIN_REQUEST_RATE = 0.2
#: The window the sent rate is measured over.
RATE_WINDOW = 2.0


class Priority(IntEnum):
    """Who goes first through the request gate."""

    SUBMIT = 0
    POLL = 1


class BackendLimiter:
    """The limits of one backend and the pause it asked for; shared by the dispatcher and the trackers."""

    def __init__(
        self,
        *,
        max_in_flight: int,
        submits_per_minute: float | None = None,
        requests_per_second: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_in_flight = max(1, max_in_flight)
        self._ceiling = submits_per_minute or DEFAULT_SUBMIT_RATE
        self._rate = self._ceiling  # creates per minute, learnt
        self._tokens = min(self._ceiling, max(1.0, self._ceiling / 6))
        self._clock = clock
        self._refilled = clock()
        self._paused_until = 0.0
        self._backoff = FIRST_BACKOFF
        self._ceiling_per_second = requests_per_second
        self._per_second = requests_per_second
        self._request_tokens = float(requests_per_second or 0)
        self._request_refilled = clock()
        self._sent: deque[float] = deque()
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._order = itertools.count()
        self._gate_task: asyncio.Task[None] | None = None
        self.rate_limited_count = 0

    # --- creates --------------------------------------------------------------------------------------------

    @property
    def submit_rate(self) -> float:
        """Creates per minute allowed now (learnt)."""
        return self._rate

    def pause_left(self) -> float:
        return max(0.0, self._paused_until - self._clock())

    def submit_wait(self, in_flight: int) -> float | None:
        """0 when a create may go now; seconds until it may; None while every in-flight slot is taken."""
        if in_flight >= self.max_in_flight:
            return None
        pause = self.pause_left()
        if pause > 0:
            return pause
        self._refill()
        if self._tokens >= 1.0:
            return 0.0
        return (1.0 - self._tokens) * 60.0 / self._rate

    def unreachable(self) -> float:
        """A create could not even connect: hold the creates back (doubling each time, reset by a success), so a
        backend that is down is not retried in a tight loop. Returns the pause, in seconds."""
        pause = self._backoff
        self._backoff = min(MAX_BACKOFF, self._backoff * 2)
        self._paused_until = max(self._paused_until, self._clock() + pause)
        return pause

    def take_submit(self) -> None:
        """A create is going out now."""
        self._refill()
        self._tokens = max(0.0, self._tokens - 1.0)

    def succeeded(self) -> None:
        """A create went through: the learnt create rate creeps back up, the backoff resets."""
        self._backoff = FIRST_BACKOFF
        self._rate = min(self._ceiling, self._rate + max(1.0, self._ceiling / 20))

    def request_succeeded(self) -> None:
        """Any request went through: a learnt request rate creeps back up (never above a configured one)."""
        if self._per_second is None:
            return
        raised = self._per_second * RECOVERY_STEP
        self._per_second = min(raised, self._ceiling_per_second) if self._ceiling_per_second else raised

    @property
    def request_rate(self) -> float | None:
        """Requests per second allowed now (learnt or configured); None while nothing limits them."""
        return self._per_second

    def rate_limited(self, retry_after: float | None, *, create: bool = False) -> float:
        """The backend answered 429: pause every call for as long as it asked and slow every request down; a
        429 on a create also halves the create rate.

        Returns the pause, in seconds.
        """
        self.rate_limited_count += 1
        now = self._clock()
        pause = retry_after if retry_after is not None else self._backoff
        self._backoff = min(MAX_BACKOFF, self._backoff * 2)
        self._paused_until = max(self._paused_until, now + pause)
        if create:
            self._rate = max(MIN_SUBMIT_RATE, self._rate / 2)
            self._tokens = min(self._tokens, 0.0)
        # Every request slows down to a little under what provoked the 429, measured over the last moments.
        self._forget_old(now)
        sent_rate = len(self._sent) / RATE_WINDOW
        current = self._per_second if self._per_second is not None else sent_rate
        learnt = max(MIN_REQUEST_RATE, min(current, sent_rate or current) * BACKOFF_SHARE)
        self._per_second = min(learnt, self._ceiling_per_second) if self._ceiling_per_second else learnt
        self._request_tokens = 0.0
        self._request_refilled = now
        self._wake_gate()
        return pause

    def _forget_old(self, now: float) -> None:
        while self._sent and now - self._sent[0] > RATE_WINDOW:
            self._sent.popleft()

    def _refill(self) -> None:
        now = self._clock()
        burst = max(1.0, self._rate / 6)  # at most ten seconds' worth at once
        self._tokens = min(burst, self._tokens + (now - self._refilled) * self._rate / 60.0)
        self._refilled = now

    # --- every request ----------------------------------------------------------------------------------

    async def gate(self, priority: Priority) -> None:
        """Wait until a request to this backend may go: after any pause, within the per-second budget, creates
        before polls."""
        if self.pause_left() <= 0 and not self._waiters and self._take_request_token():
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (int(priority), next(self._order), future))
        self._wake_gate()
        try:
            await future
        except asyncio.CancelledError:
            if not future.done():
                future.cancel()
            raise

    def _take_request_token(self) -> bool:
        now = self._clock()
        if self._per_second is None:
            self._note_sent(now)
            return True
        burst = max(1.0, self._per_second)
        self._request_tokens = min(burst, self._request_tokens + (now - self._request_refilled) * self._per_second)
        self._request_refilled = now
        if self._request_tokens >= 1.0:
            self._request_tokens -= 1.0
            self._note_sent(now)
            return True
        return False

    def _note_sent(self, now: float) -> None:
        self._sent.append(now)
        self._forget_old(now)

    def _wake_gate(self) -> None:
        if self._gate_task is None or self._gate_task.done():
            try:
                self._gate_task = asyncio.get_running_loop().create_task(self._open_gate())
            except RuntimeError:
                self._gate_task = None

    async def _open_gate(self) -> None:
        while self._waiters:
            pause = self.pause_left()
            if pause > 0:
                await asyncio.sleep(pause)
                continue
            if not self._take_request_token():
                await asyncio.sleep(1.0 / (self._per_second or 1.0))
                continue
            _, _, future = heapq.heappop(self._waiters)
            if future.done():
                # A cancelled waiter gives its token to the next one.
                self._request_tokens += 1.0 if self._per_second else 0.0
                continue
            future.set_result(None)
