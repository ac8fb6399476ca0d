"""Status checks in batches: where a backend can list its jobs, one sweep answers every tracker that asked.

Each tracker asks `await board.status(job_id)` when it wants news. The board runs at most one sweep per
`min_interval`: one `poll_many` (a few list pages) for every job asked about since the last sweep, and single
polls only for jobs the list did not show. A thousand jobs in flight then cost a handful of calls per interval
instead of a thousand.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from bot.backends.base import JobState, VideoBackend

log = logging.getLogger(__name__)

#: Runs one backend request through the limiter (the runner's `_call` with poll priority).
Caller = Callable[[Callable[[], Awaitable[Any]]], Awaitable[Any]]


class StatusBoard:
    """Batched status checks for one backend that can list its jobs."""

    def __init__(self, backend: VideoBackend, call: Caller, min_interval: float) -> None:
        self._backend = backend
        self._call = call
        self._min_interval = min_interval
        self._pending: dict[str, list[asyncio.Future[JobState]]] = {}
        self._task: asyncio.Task[None] | None = None
        self._last_sweep = 0.0
        self.sweeps = 0

    async def status(self, job_id: str) -> JobState:
        future: asyncio.Future[JobState] = asyncio.get_running_loop().create_future()
        self._pending.setdefault(job_id, []).append(future)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name=f"status-board-{self._backend.name}")
        return await future

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while self._pending:
            wait = self._last_sweep + self._min_interval - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            asked, self._pending = self._pending, {}
            self._last_sweep = time.monotonic()
            self.sweeps += 1
            try:
                found: dict[str, JobState] = await self._call(lambda ids=list(asked): self._backend.poll_many(ids))
            except Exception as exc:  # every tracker that asked handles it its own way (retry, wait, fail)
                for futures in asked.values():
                    _settle(futures, error=exc)
                continue
            for job_id, futures in asked.items():
                state = found.get(job_id)
                if state is not None:
                    _settle(futures, result=state)
                    continue
                try:
                    single = await self._call(lambda j=job_id: self._backend.poll(j))
                except Exception as exc:
                    _settle(futures, error=exc)
                else:
                    _settle(futures, result=single)


def _settle(
    futures: list[asyncio.Future[JobState]], *, result: JobState | None = None, error: BaseException | None = None
) -> None:
    for future in futures:
        if future.done():
            continue
        if error is not None:
            future.set_exception(error)
        else:
            assert result is not None
            future.set_result(result)
