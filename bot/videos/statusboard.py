"""Status checks in batches: where a backend can list its jobs, one sweep answers every tracker that asked.

Each tracker asks `await board.status(job_id, by=…)` when it wants news, saying by when the sweep must start at
the latest. The board sweeps once the earliest of those times comes, but at most once per `min_interval`: one
`poll_many` (a few list pages) for every job asked about since the last sweep, and single polls (together) only
for jobs the list did not show. A thousand jobs in flight then cost a handful of calls per interval instead of a
thousand. A tracker that asks `min_interval` before its deadline is in the sweep that starts by then.

A tracker resting between its asks `watch`es its job: a sweep made for others that happens to see it finished
keeps that news for its next ask and calls the tracker at once, so a finished video waits for the next sweep of
anyone (at most `min_interval`), not for its own next turn, and no extra request is made for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

from bot.backends.base import JobState, JobStatus, VideoBackend

log = logging.getLogger(__name__)

#: Runs one backend request through the limiter (the runner's `_call` with poll priority).
Caller = Callable[[Callable[[], Awaitable[Any]]], Awaitable[Any]]
#: A job's state and when (`time.monotonic()`) the sweep that saw it started.
Seen = tuple[JobState, float]
FINISHED = frozenset({JobStatus.COMPLETED, JobStatus.FAILED})


class StatusBoard:
    """Batched status checks for one backend that can list its jobs."""

    def __init__(self, backend: VideoBackend, call: Caller, min_interval: float) -> None:
        self._backend = backend
        self._call = call
        self.min_interval = min_interval
        self._pending: dict[str, list[asyncio.Future[Seen]]] = {}
        self._due = math.inf
        self._sooner = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._last_sweep = -math.inf
        self.sweeps = 0
        #: Jobs whose trackers rest until their next ask, and what to call when a sweep sees one finished.
        self._watched: dict[str, Callable[[], None]] = {}
        #: Finished states seen for watched jobs, kept for their trackers' next ask.
        self._news: dict[str, Seen] = {}
        self._hurried: set[asyncio.Task[None]] = set()

    async def status(self, job_id: str, by: float | None = None) -> Seen:
        """The job's state from the next sweep, which starts by `by` (monotonic; default now) unless the last
        sweep was less than `min_interval` ago."""
        news = self._news.pop(job_id, None)
        if news is not None:
            return news
        due = time.monotonic() if by is None else by
        future: asyncio.Future[Seen] = asyncio.get_running_loop().create_future()
        self._pending.setdefault(job_id, []).append(future)
        if due < self._due:
            self._due = due
            self._sooner.set()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name=f"status-board-{self._backend.name}")
        return await future

    def watch(self, job_id: str, on_finished: Callable[[], None]) -> None:
        """Call `on_finished` if a sweep sees this job finished before its tracker asks again."""
        self._watched[job_id] = on_finished

    def hurry(self, job_id: str) -> bool:
        """Poll this job alone now for whoever waits on it (a webhook said it changed); False if none waits for
        a sweep (its sweep may be under way already)."""
        futures = self._pending.pop(job_id, None)
        if not futures:
            return False
        task = asyncio.create_task(self._poll_one(job_id, futures, time.monotonic()), name=f"status-hurry-{job_id}")
        self._hurried.add(task)
        task.add_done_callback(self._hurried.discard)
        return True

    def news(self, job_id: str) -> Seen | None:
        """The finished state a sweep saw for this watched job since its last ask, taken once; None if none."""
        return self._news.pop(job_id, None)

    def unwatch(self, job_id: str) -> None:
        """The tracker asks again (or stops): news from now on comes by its ask."""
        self._watched.pop(job_id, None)

    async def aclose(self) -> None:
        for task in list(self._hurried):
            task.cancel()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while self._pending:
            wait = max(self._last_sweep + self.min_interval, self._due) - time.monotonic()
            if wait > 0:
                # An ask with an earlier deadline wakes this; the start is then worked out again.
                self._sooner.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._sooner.wait(), wait)
                continue
            asked, self._pending, self._due = self._pending, {}, math.inf
            self._last_sweep = started = time.monotonic()
            self.sweeps += 1
            # Watched jobs ride along: the list pages are read anyway, so seeing them costs nothing extra.
            wanted = list(asked) + [job_id for job_id in self._watched if job_id not in asked]
            try:
                found: dict[str, JobState] = await self._call(lambda ids=wanted: self._backend.poll_many(ids))
            except Exception as exc:  # every tracker that asked handles it its own way (retry, wait, fail)
                for futures in asked.values():
                    _settle(futures, error=exc)
                continue
            missing = [job_id for job_id in asked if job_id not in found]
            for job_id, state in found.items():
                if job_id in asked:
                    _settle(asked[job_id], result=(state, started))
                elif state.status in FINISHED and job_id in self._watched:
                    self._news[job_id] = (state, started)
                    self._watched.pop(job_id)()
            # Jobs the list did not show are polled one by one, side by side, so the sweep is not stretched.
            await asyncio.gather(*(self._poll_one(job_id, asked[job_id], started) for job_id in missing))

    async def _poll_one(self, job_id: str, futures: list[asyncio.Future[Seen]], started: float) -> None:
        try:
            single = await self._call(lambda: self._backend.poll(job_id))
        except Exception as exc:
            _settle(futures, error=exc)
        else:
            _settle(futures, result=(single, started))


def _settle(
    futures: list[asyncio.Future[Seen]], *, result: Seen | None = None, error: BaseException | None = None
) -> None:
    for future in futures:
        if future.done():
            continue
        if error is not None:
            future.set_exception(error)
        else:
            assert result is not None
            future.set_result(result)
