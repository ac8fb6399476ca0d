"""Faults an emulated API injects: one-shot faults queued by route name or path glob, random 5xx, a rate limit,
and lost answers (the work done, the answer dropped); the plan also holds the request log.
"""

from __future__ import annotations

import fnmatch
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from bot.backends.offline.request_log import RequestLog


@dataclass
class Fault:
    """One injected answer.

    `status=None` means "delay, then answer normally". Otherwise the emulator answers `status` with an error
    body in the emulated API's shape (`message`, `type`, `param`, `code`; the type defaults from the status),
    or with `body` sent as-is (e.g. an HTML gateway page) when given. `retry_after` sets `Retry-After`
    (seconds, may be fractional) and `retry-after-ms`. `delay` waits before answering; `times` answers that
    many requests.

    The hard case of a lost answer: `after_handling=True` lets the request do its work first (the job is made)
    and then answers with the fault instead; `drop_connection=True` closes the connection without any answer
    (with `after_handling`, after the work is done).
    """

    status: int | None = 500
    code: str | None = None
    type: str | None = None
    param: str | None = None
    message: str | None = None
    retry_after: float | None = None
    delay: float = 0.0
    body: str | bytes | None = None
    content_type: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    times: int = 1
    route: str = "*"
    after_handling: bool = False
    drop_connection: bool = False

    def describe(self) -> str:
        what = "drop" if self.drop_connection else "delay" if self.status is None else str(self.status)
        if self.after_handling:
            what += " after handling"
        return f"{what}{f' {self.code}' if self.code else ''} on {self.route}"


class FaultPlan:
    """Faults to inject, random failures and a rate limit, and the log of every request received."""

    def __init__(
        self,
        *,
        fail_rate: float = 0.0,
        rate_limit: float = 0.0,
        seed: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        routes: Iterable[str] = (),
        lost_answer_rate: float = 0.0,
    ) -> None:
        """`fail_rate`: share of requests answered with a random 5xx; `rate_limit`: requests per second
        allowed (a token bucket with a burst of the same size) before 429s; 0 turns either off.
        `lost_answer_rate`: share of the random 5xx that are sent *after* the request did its work (a create
        that made its job and lost the answer). `routes`: the route names faults may name (the app sets them)."""
        if not 0.0 <= fail_rate <= 1.0:
            raise ValueError("fail_rate must be between 0 and 1")
        if rate_limit < 0:
            raise ValueError("rate_limit must not be negative")
        if not 0.0 <= lost_answer_rate <= 1.0:
            raise ValueError("lost_answer_rate must be between 0 and 1")
        self.fail_rate = fail_rate
        self.rate_limit = rate_limit
        self.lost_answer_rate = lost_answer_rate
        self.routes: tuple[str, ...] = tuple(routes)
        self.requests = RequestLog()
        self._queue: list[Fault] = []
        self._rng = random.Random(seed)
        self._clock = clock
        self._tokens = max(1.0, rate_limit)
        self._refilled = clock()

    def push(self, route: str = "*", fault: Fault | None = None, /, **options: Any) -> Fault:
        """Queue a one-shot fault for requests matching `route`.

        `route` is a route name of the emulated API (`create_video`, `retrieve_video`, …), `"*"` for any
        request, or a glob on the path below the prefix, optionally with a method: `"GET /videos/*/content"`,
        `"/videos/characters"`. Faults are used in the order pushed; each answers `times` requests.
        """
        _check_pattern(route, self.routes)
        fault = fault or Fault(**options)
        fault.route = route
        if fault.times < 1:
            raise ValueError("times must be at least 1")
        self._queue.append(fault)
        return fault

    def clear(self) -> None:
        """Drop every queued fault (the request log stays)."""
        self._queue.clear()

    def pending(self, route: str | None = None) -> int:
        """How many answers queued faults (for one pattern) still hold."""
        return sum(f.times for f in self._queue if route is None or f.route == route)

    def take(self, route: str | None, method: str, path: str) -> Fault | None:
        """The first queued fault matching this request, consuming one of its uses."""
        for fault in self._queue:
            if _matches(fault.route, route, method, path):
                fault.times -= 1
                if fault.times <= 0:
                    self._queue.remove(fault)
                return fault
        return None

    def random_fault(self) -> Fault | None:
        """A rate-limit 429 or a random 5xx, per the configured rate limit and fail rate."""
        if self.rate_limit > 0:
            now = self._clock()
            self._tokens = min(max(1.0, self.rate_limit), self._tokens + (now - self._refilled) * self.rate_limit)
            self._refilled = now
            if self._tokens < 1.0:
                wait = (1.0 - self._tokens) / self.rate_limit
                return Fault(
                    status=429,
                    code="rate_limit_exceeded",
                    type="requests",
                    message=f"Rate limit reached: {self.rate_limit:g} requests per second. Try again in {wait:.3f}s.",
                    retry_after=round(wait, 3),
                    headers={"x-ratelimit-reset-requests": f"{max(1, round(wait * 1000))}ms"},
                    route="rate_limit",
                )
            self._tokens -= 1.0
        if self.fail_rate > 0 and self._rng.random() < self.fail_rate:
            status = self._rng.choice((500, 502, 503))
            lost = self.lost_answer_rate > 0 and self._rng.random() < self.lost_answer_rate
            return Fault(
                status=status,
                message=f"The emulator injected a {status} (fail rate {self.fail_rate:g}).",
                route="fail_rate",
                after_handling=lost,
            )
        return None


def _check_pattern(pattern: str, routes: tuple[str, ...]) -> None:
    if pattern == "*" or pattern in routes or (not routes and pattern.isidentifier()):
        return
    target = pattern.split(" ", 1)[1] if " " in pattern else pattern
    if not target.startswith(("/", "*")):
        raise ValueError(f"unknown fault route {pattern!r}: use one of {', '.join(routes)}, '*', or a path glob")


def _matches(pattern: str, route: str | None, method: str, path: str) -> bool:
    if pattern == "*" or pattern == route:
        return True
    if " " in pattern:
        want_method, glob = pattern.split(" ", 1)
        if want_method != "*" and want_method.upper() != method.upper():
            return False
        return fnmatch.fnmatchcase(path, glob)
    return pattern.startswith(("/", "*")) and fnmatch.fnmatchcase(path, pattern)


def seconds_text(value: float) -> str:
    """A wait as headers write it: `2`, `0.05`."""
    return str(int(value)) if float(value).is_integer() else f"{value:.3f}".rstrip("0")
