"""Delivering: the finished video downloaded with its thumbnail, posted through the platform's notifier under
the lease (`delivered_at` only once it confirms), and the progress notes on the way, at most one per interval."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path

from bot.backends.base import VideoBackend
from bot.characters import media
from bot.characters.access import characters_in
from bot.characters.likeness import explain_failure
from bot.chat.notify import DestinationGone
from bot.errors import APINotFound, SoracastError
from bot.models import Generation, GenerationStatus, utcnow
from bot.videos.jobs.state import ANNOUNCE_WAIT, RunnerState, exc_wait
from bot.videos.limiter import Priority

log = logging.getLogger(__name__)


class Deliverer(RunnerState):
    """Fetches finished videos and posts them (and progress notes) through the notifiers; a video fetched or
    delivered frees a slot, so it wakes the line (the dispatcher's `wake_line`)."""

    def announce(self, generation_id: str) -> None:
        """The adapter will post a first message for this generation: hold reports until it is recorded."""
        self._announcing[generation_id] = asyncio.Event()

    def announced(self, generation_id: str) -> None:
        event = self._announcing.pop(generation_id, None)
        if event is not None:
            event.set()

    async def fresh_target(self, generation: Generation) -> None:
        """Notify with the latest target: the adapter records its message concurrently with the tracker, and a
        first message still being posted gets a moment to land."""
        announced = self._announcing.get(generation.id)
        if announced is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(announced.wait(), ANNOUNCE_WAIT)
            self._announcing.pop(generation.id, None)
        stored = await self._storage.get_generation(generation.id)
        if stored is not None:
            generation.target = stored.target

    async def _fetch_result(self, generation: Generation, backend: VideoBackend) -> None:
        """Download the finished video (retrying whatever is retryable), cut a thumbnail, and store both."""
        failures = 0
        assert generation.api_video_id is not None
        job_id, dest = generation.api_video_id, self.media_path(generation, ".mp4")
        while True:
            try:
                generation.video_path = await self._call(backend, Priority.POLL, lambda: backend.download(job_id, dest))
                break
            except APINotFound:
                self.fail(generation, "expired", "The finished video expired before it could be downloaded.")
                await self._storage.save_generation(generation)
                return
            except SoracastError as exc:
                if not exc.retryable:
                    self.fail(generation, exc.code, exc.user_text())
                    await self._storage.save_generation(generation)
                    return
                failures += 1
                log.info("downloading %s failed (%s); trying again", generation.id, exc.code)
                await self._sleep(generation.id, exc_wait(exc) or self.backoff(failures))
        generation.thumbnail_path = await self._thumbnail(generation, backend, generation.video_path)
        generation.progress = 100
        generation.completed_at = generation.completed_at or utcnow()
        generation.updated_at = utcnow()
        if generation.started_at is not None and generation.submitted_at is not None:
            took = (generation.completed_at - generation.submitted_at).total_seconds()
            previous = self._job_seconds.get(generation.backend, took)
            self._job_seconds[generation.backend] = 0.8 * previous + 0.2 * took
        await self._storage.save_generation(generation)
        self.wake_line(generation.backend)

    async def _thumbnail(self, generation: Generation, backend: VideoBackend, video: Path) -> Path | None:
        """The backend's thumbnail, or one cut from the video; a missing thumbnail never holds the video back."""
        dest = self.media_path(generation, ".jpg")
        try:
            if generation.api_video_id is not None:
                job_id = generation.api_video_id
                made = await self._call(backend, Priority.POLL, lambda: backend.download_thumbnail(job_id, dest))
                if made is not None:
                    return made
            return await media.thumbnail(video, dest)
        except (SoracastError, OSError) as exc:
            log.warning("no thumbnail for %s: %s", generation.id, getattr(exc, "code", type(exc).__name__))
            return None

    async def _deliver(self, generation: Generation) -> None:
        notifier = self._notifiers.get(generation.platform)
        if notifier is None:
            log.info("no %s notifier here; %s waits for its adapter", generation.platform, generation.id)
            return
        await self.fresh_target(generation)
        attempt = 0
        while not self._closing:
            attempt += 1
            if not await self._storage.claim_delivery(generation.id, utcnow(), self.owner):
                return  # delivered already, or the lease moved to another process
            try:
                if generation.status is GenerationStatus.COMPLETED:
                    receipt = await notifier.completed(generation)
                    message_id = receipt.message_id
                else:
                    await self._explain_likeness(generation)
                    await notifier.failed(generation)
                    message_id = None
            except DestinationGone as gone:
                # Ended, not delivered: marked so no process ever tries it again.
                log.info("generation %s of %s ends without being posted: %s", generation.id, generation.scope.key, gone)
                message_id = None
            except Exception as exc:
                log.warning("delivering %s failed (attempt %d): %s", generation.id, attempt, type(exc).__name__)
                await self._sleep(generation.id, self.backoff(attempt))
                await self.fresh_target(generation)
                continue
            await self._storage.mark_delivered(generation.id, utcnow(), message_id)
            await self._storage.release_lease(self.owner, generation.id)
            self._signal_finished(generation.id)
            self.wake_line(generation.backend)
            self.on_delivered()
            return

    async def _explain_likeness(self, generation: Generation) -> None:
        """A video refused for showing a real person says whose rights confirmation it was made under."""
        if generation.error_code != "human_likeness":
            return
        characters = await characters_in(self._storage, generation.scope, generation.character_ids)
        explained = explain_failure(generation.error_message or "", characters)
        if explained != generation.error_message:
            generation.error_message = explained
            await self._storage.save_generation(generation)

    def _note_due(self, generation_id: str) -> bool:
        """Whether a progress note for this generation may go now (one per progress interval)."""
        last = self._last_progress_note.get(generation_id)
        return last is None or time.monotonic() - last >= self._settings.progress_interval

    async def _note_progress(self, generation: Generation, *, surely: bool = False) -> None:
        """Tell the adapter, at most once per progress interval. Within the interval the note is dropped, or,
        with `surely` (a change no later poll would report again), owed: its tracker sends it once the interval
        is over, without holding back a poll meanwhile."""
        notifier = self._notifiers.get(generation.platform)
        if notifier is None:
            return
        if not self._note_due(generation.id):
            if surely:
                self._owed_notes.add(generation.id)
            return
        self._owed_notes.discard(generation.id)
        self._last_progress_note[generation.id] = time.monotonic()
        if generation.id in self._gone:
            return
        await self.fresh_target(generation)
        try:
            await notifier.progress(generation)
        except DestinationGone:
            self._gone.add(generation.id)  # its delivery ends it, with one log line
        except Exception as exc:
            # Progress is cosmetic; a failed edit must never stop the job.
            log.warning("progress note for %s failed: %s", generation.id, type(exc).__name__)

    async def wait_finished(self, generation_id: str, within: float | None) -> None:
        event = self._finished.setdefault(generation_id, asyncio.Event())
        await asyncio.wait_for(event.wait(), within)

    def _signal_finished(self, generation_id: str) -> None:
        self._finished.setdefault(generation_id, asyncio.Event()).set()
