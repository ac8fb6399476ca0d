"""Tracking: one task per generation this process holds, which polls its job (in the backend's batched sweep
where it can list jobs, at once when a webhook woke it) until it is finished, then has it delivered."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from bot.backends.base import JobState, VideoBackend
from bot.errors import APINotFound, SoracastError
from bot.models import GenerationStatus
from bot.videos.jobs.state import RunnerState, capitalised, exc_wait, on_disk
from bot.videos.limiter import Priority
from bot.videos.statusboard import StatusBoard

log = logging.getLogger(__name__)


class JobTracker(RunnerState):
    """Starts, wakes and stops the trackers. A job without an id is settled by the submitter
    (`_settle_create`); a finished one is fetched and delivered by the deliverer (`_fetch_result`, `_deliver`,
    `_signal_finished`), which also sends the progress notes (`_note_progress`)."""

    def track(self, generation_id: str, first_wait: float = 0.0) -> None:
        if self._closing or generation_id in self._trackers or generation_id in self._sending:
            return
        self._wakeups[generation_id] = asyncio.Event()
        task = asyncio.create_task(self._track(generation_id, first_wait), name=f"track-{generation_id}")
        self._trackers[generation_id] = task
        task.add_done_callback(lambda _t: self._forget(generation_id))

    def stop_tracking(self, generation_id: str) -> None:
        task = self._trackers.pop(generation_id, None)
        if task is not None:
            task.cancel()

    def wake(self, generation_id: str) -> bool:
        """Poll a tracked generation now (a webhook said it changed); False if this process does not track it."""
        if generation_id in self._sending:
            # Its create's answer is on its way: tracking starts once it is in, and polls at once.
            self._woken_while_sending.add(generation_id)
            return True
        event = self._wakeups.get(generation_id)
        if event is None:
            return False
        asking = self._asking.get(generation_id)
        if asking is not None and asking[0].hurry(asking[1]):
            return True  # it was waiting for a sweep: the board polls it alone now, and that answer is the news
        event.set()  # a sweep under way may have missed the change: the tracker's next rest is cut short
        return True

    def is_tracking(self, generation_id: str) -> bool:
        return generation_id in self._trackers

    def _forget(self, generation_id: str) -> None:
        self._trackers.pop(generation_id, None)
        self._told.pop(generation_id, None)
        self._wakeups.pop(generation_id, None)
        self._last_progress_note.pop(generation_id, None)
        self._owed_notes.discard(generation_id)
        self._left_line.discard(generation_id)
        self._announcing.pop(generation_id, None)
        self._gone.discard(generation_id)
        self._awaiting.discard(generation_id)

    async def _track(self, generation_id: str, first_wait: float) -> None:
        try:
            woken = await self._sleep(generation_id, first_wait) if first_wait else False
            await self._track_until_delivered(generation_id, woken=woken)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("tracking %s stopped on an unexpected error; another pass takes it up", generation_id)
            # Let the lease lapse here so the next lease round (this process or another) starts it afresh.
            with contextlib.suppress(Exception):
                await self._storage.release_lease(self.owner, generation_id)

    async def _track_until_delivered(self, generation_id: str, *, woken: bool = False) -> None:
        failures = 0
        #: When the next status must be seen by (monotonic): one spacing after the last one was seen, however
        #: long its answer took, so waiting for a batched sweep never stretches the spacing of a job's polls.
        due: float | None = None
        # Read once: while it runs, this tracker is the only writer of the generation's status (a delete or a
        # cancel stops it first; the target has its own column, re-read before each notification).
        generation = await self._storage.get_generation(generation_id)
        while True:
            if generation is None or generation.status in (GenerationStatus.DELETED, GenerationStatus.WAITING):
                return
            if generation.delivered_at is not None:
                self._signal_finished(generation_id)
                return
            backend = self._catalog.backend(generation.backend)
            if generation.status is GenerationStatus.COMPLETED and backend is not None and not await on_disk(
                generation.video_path
            ):
                # Finished by a process on another machine (or before a move): fetch it to this one's disk.
                await self._fetch_result(generation, backend)
                if generation.status is not GenerationStatus.COMPLETED:
                    continue
            if generation.status.finished:
                await self._deliver(generation)
                return
            if backend is None:
                self.fail(generation, "backend_gone", f"This video was sent to {generation.backend}, which this bot "
                          "no longer uses.")
                await self._storage.save_generation(generation)
                continue
            try:
                if generation.api_video_id is None:
                    await self._settle_create(generation, backend)
                    failures = 0
                    continue
                polled, seen = await self._status(
                    backend, generation.api_video_id, urgent=woken, by=due, generation_id=generation_id
                )
            except APINotFound:
                self.fail(generation, "not_found", f"{capitalised(backend.service)} no longer knows this video.")
                await self._storage.save_generation(generation)
                await self._budgets.refund(generation.id)
                continue
            except SoracastError as exc:
                if not exc.retryable:
                    self.fail(generation, exc.code, exc.user_text())
                    await self._storage.save_generation(generation)
                    continue
                failures += 1
                await self._sleep(generation_id, exc_wait(exc) or self.backoff(failures))
                continue
            failures = 0
            before = (generation.status, generation.progress, generation.queue_position)
            self.apply(generation, polled)
            if generation.status is GenerationStatus.COMPLETED:
                await self._fetch_result(generation, backend)
                continue
            if generation.status is GenerationStatus.FAILED:
                await self._storage.save_generation(generation)
                await self._budgets.refund(generation.id)
                continue
            changed = (generation.status, generation.progress, generation.queue_position) != before
            if changed:
                await self._storage.save_generation(generation)  # a poll that says nothing new is not written
            # A backend may report nothing new for minutes after a create (Gemini); a video that came from the line
            # is reported once anyway, or its message would keep its place and Cancel button.
            owed = generation_id in self._left_line or generation_id in self._owed_notes
            if changed or owed:
                self._left_line.discard(generation_id)
                await self._note_progress(generation, surely=owed)
            due = seen + (polled.poll_after or self._settings.poll_interval)
            rest = max(0.0, due - self._ask_ahead(backend) - time.monotonic())
            if not backend.can_list_jobs:
                woken = await self._sleep(generation_id, rest)
                continue
            # Resting, it is watched: a sweep made for other jobs that sees it finished wakes it with the news.
            board, job_id = self._board(backend), generation.api_video_id
            board.watch(job_id, lambda: self.wake(generation_id))
            try:
                woken = await self._sleep(generation_id, rest)
            finally:
                board.unwatch(job_id)

    async def _status(
        self,
        backend: VideoBackend,
        job_id: str,
        *,
        urgent: bool = False,
        by: float | None = None,
        generation_id: str | None = None,
    ) -> tuple[JobState, float]:
        """A job's status and when (`time.monotonic()`) it was seen: from the backend's batched sweep (starting by
        `by`) where it can list jobs, else (or when a webhook just said it changed, before or while waiting for
        the sweep) one poll."""
        if backend.can_list_jobs:
            news = self._board(backend).news(job_id)
            if news is not None:
                return news  # a sweep for other jobs saw it finished while its tracker rested
        event = self._wakeups.get(generation_id) if generation_id is not None else None
        if event is not None and event.is_set():
            event.clear()
            urgent = True
        if urgent or not backend.can_list_jobs:
            return await self._poll_once(backend, job_id)
        board = self._board(backend)
        if generation_id is None:
            return await board.status(job_id, by=by)
        # The next sweep may be seconds away: a webhook meanwhile has the board poll this one job at once (`wake`).
        # Noted rather than raced against the wake-up: two extra tasks per ask made every video about a second
        # later to post with a thousand trackers (benchmarks/track_jobs.py).
        self._asking[generation_id] = (board, job_id)
        try:
            return await board.status(job_id, by=by)
        finally:
            self._asking.pop(generation_id, None)

    async def _poll_once(self, backend: VideoBackend, job_id: str) -> tuple[JobState, float]:
        seen = time.monotonic()
        return await self._call(backend, Priority.POLL, lambda: backend.poll(job_id)), seen

    def _board(self, backend: VideoBackend) -> StatusBoard:
        board = self._boards.get(backend.name)
        if board is None:
            board = StatusBoard(
                backend,
                lambda call, b=backend: self._call(b, Priority.POLL, call),
                min_interval=self._settings.poll_interval / 2,
            )
            self._boards[backend.name] = board
        return board

    def _ask_ahead(self, backend: VideoBackend) -> float:
        """How long before a poll is due its tracker asks: a batched ask may wait up to the board's spacing for
        its sweep, so it goes out that much early to be seen in time; a single poll goes out when due."""
        return self._board(backend).min_interval if backend.can_list_jobs else 0.0
