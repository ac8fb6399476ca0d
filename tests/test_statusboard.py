"""The status board: one sweep answers every tracker that asked, and tells resting trackers their job finished."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from bot.backends.base import JobState, JobStatus
from bot.videos.statusboard import StatusBoard


class ListingBackend:
    """Just enough of a backend that lists its jobs: states set by the test, every call counted."""

    name = "listing"

    def __init__(self) -> None:
        self.states: dict[str, JobStatus] = {}
        self.lists: list[list[str]] = []
        self.polls: list[str] = []

    async def poll_many(self, job_ids: Sequence[str]) -> dict[str, JobState]:
        self.lists.append(list(job_ids))
        return {i: JobState(id=i, status=self.states[i]) for i in job_ids if i in self.states}

    async def poll(self, job_id: str) -> JobState:
        self.polls.append(job_id)
        return JobState(id=job_id, status=self.states[job_id])


async def _direct(call: Callable[[], Awaitable[Any]]) -> Any:
    return await call()


async def test_a_sweep_for_others_tells_a_resting_tracker_its_job_finished_without_another_request() -> None:
    backend = ListingBackend()
    backend.states = {"asked": JobStatus.IN_PROGRESS, "resting": JobStatus.COMPLETED, "busy": JobStatus.IN_PROGRESS}
    board = StatusBoard(backend, _direct, min_interval=0.0)  # type: ignore[arg-type]
    told: list[str] = []
    board.watch("resting", lambda: told.append("resting"))
    board.watch("busy", lambda: told.append("busy"))

    state, _seen = await asyncio.wait_for(board.status("asked"), 5)

    assert state.status is JobStatus.IN_PROGRESS
    assert set(backend.lists[0]) == {"asked", "resting", "busy"}, "watched jobs ride along in the same sweep"
    assert told == ["resting"], "only a finished job wakes its tracker"
    news, _ = await asyncio.wait_for(board.status("resting"), 5)
    assert news.status is JobStatus.COMPLETED
    assert len(backend.lists) == 1 and backend.polls == [], "the news was kept: no request for it"
    await board.aclose()


async def test_news_is_taken_once_and_an_unwatched_job_is_not_listed() -> None:
    backend = ListingBackend()
    backend.states = {"asked": JobStatus.IN_PROGRESS, "resting": JobStatus.FAILED}
    board = StatusBoard(backend, _direct, min_interval=0.0)  # type: ignore[arg-type]
    board.watch("resting", lambda: None)
    await asyncio.wait_for(board.status("asked"), 5)
    assert board.news("resting") is not None
    assert board.news("resting") is None

    board.unwatch("resting")
    await asyncio.wait_for(board.status("asked"), 5)
    assert backend.lists[-1] == ["asked"]
    await board.aclose()


async def test_a_hurried_job_is_polled_alone_without_waiting_for_the_sweep() -> None:
    backend = ListingBackend()
    backend.states = {"first": JobStatus.IN_PROGRESS, "second": JobStatus.COMPLETED}
    board = StatusBoard(backend, _direct, min_interval=60.0)  # type: ignore[arg-type]
    await asyncio.wait_for(board.status("first"), 5)  # a sweep now: the next one is a minute away
    waiting = asyncio.create_task(board.status("second"))
    await asyncio.sleep(0.05)
    assert not waiting.done(), "it waits for the next sweep"

    assert board.hurry("second")
    state, _seen = await asyncio.wait_for(waiting, 5)

    assert state.status is JobStatus.COMPLETED
    assert backend.polls == ["second"] and len(backend.lists) == 1
    assert not board.hurry("second"), "nobody waits for it any more"
    await board.aclose()
