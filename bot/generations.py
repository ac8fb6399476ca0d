"""GenerationService: submit, track, download and deliver videos exactly once; remix, extend, cut characters.

The order of a request is fixed: persist (`accepted`), submit to the API, then return to the adapter, which
tells the user. A tracker per unfinished generation polls the API (sooner when a webhook says something
changed), downloads the result, and hands it to the platform's Notifier; `delivered_at` is set only once the
notifier confirms, and a claim in storage keeps two deliveries from racing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from pathlib import Path

from bot.config import Settings
from bot.errors import (
    APINotFound,
    GenerationNotReady,
    InvalidInput,
    PermissionDenied,
    SoracastError,
    UnknownGeneration,
    VideosAPIError,
)
from bot.handles import resolve_prompt
from bot.models import (
    Actor,
    Character,
    CharacterSource,
    DeliveryTarget,
    Generation,
    GenerationKind,
    GenerationOptions,
    GenerationStatus,
    Platform,
    Scope,
    utcnow,
)
from bot.notify import Notifier
from bot.registry import CharacterRegistry
from bot.videos.api import VideosAPI
from bot.videos.schemas import ContentVariant, Video, VideoStatus
from storage.base import Storage

log = logging.getLogger(__name__)

_STATUS_MAP = {
    VideoStatus.QUEUED: GenerationStatus.QUEUED,
    VideoStatus.IN_PROGRESS: GenerationStatus.IN_PROGRESS,
    VideoStatus.COMPLETED: GenerationStatus.COMPLETED,
    VideoStatus.FAILED: GenerationStatus.FAILED,
}

#: How often a delivery that the platform refused is tried again within one run.
DELIVERY_ATTEMPTS = 5
#: How long the tracker waits for an adapter to post a generation's first message before reporting on it.
ANNOUNCE_WAIT = 10.0


class GenerationService:
    """Everything that happens to a video job between the user's command and the posted result."""

    def __init__(
        self,
        storage: Storage,
        videos: VideosAPI,
        registry: CharacterRegistry,
        settings: Settings,
    ) -> None:
        self._storage = storage
        self._videos = videos
        self._registry = registry
        self._settings = settings
        self._media_dir = settings.resolved_media_dir
        self._notifiers: dict[Platform, Notifier] = {}
        self._trackers: dict[str, asyncio.Task[None]] = {}
        self._wakeups: dict[str, asyncio.Event] = {}
        self._finished: dict[str, asyncio.Event] = {}
        self._last_progress_note: dict[str, float] = {}
        # Generation id → set once the adapter has recorded its first message (`attach_message`).
        self._announcing: dict[str, asyncio.Event] = {}
        self._closing = False

    # --- wiring ----------------------------------------------------------------------------------------

    def register_notifier(self, platform: Platform, notifier: Notifier) -> None:
        """Adapters call this once; generations of that platform are then reported through it."""
        self._notifiers[platform] = notifier

    async def resume(self, platform: Platform | None = None) -> int:
        """Pick up every unfinished or undelivered generation (of one platform) after a restart."""
        pending = await self._storage.unfinished_generations(platform)
        for generation in pending:
            # A claim left by a process that died mid-delivery must not block delivery for ever.
            await self._storage.release_delivery(generation.id)
            self._start_tracker(generation.id)
        if pending:
            log.info("resumed %d generation(s)%s", len(pending), f" for {platform}" if platform else "")
        return len(pending)

    async def aclose(self) -> None:
        """Stop the trackers; their generations stay stored and resume on the next start."""
        self._closing = True
        tasks = list(self._trackers.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._trackers.clear()

    # --- options ---------------------------------------------------------------------------------------

    def resolve_options(self, options: GenerationOptions) -> tuple[str, str, str]:
        """Model, seconds and size after defaults, each checked against the configured lists."""
        s = self._settings
        model = options.model or s.default_model
        seconds = (options.seconds or s.default_seconds).removesuffix("s")
        size = (options.size or s.default_size).lower().replace("×", "x")
        for label, value, allowed in (
            ("model", model, s.allowed_models),
            ("seconds", seconds, s.allowed_seconds),
            ("size", size, s.allowed_sizes),
        ):
            if value not in allowed:
                raise InvalidInput(
                    f"{value!r} is not an allowed {label}.", hint=f"Choose one of: {', '.join(allowed)}."
                )
        return model, seconds, size

    def _check_prompt(self, prompt: str) -> str:
        text = prompt.strip()
        if not text:
            raise InvalidInput("The prompt is empty.", hint="Describe the video, e.g. `@mascot surfing at sunset`.")
        if len(text) > self._settings.max_prompt_chars:
            raise InvalidInput(
                f"The prompt is {len(text)} characters; the limit is {self._settings.max_prompt_chars}.",
                hint="Shorten it and try again.",
            )
        return text

    # --- submitting ------------------------------------------------------------------------------------

    async def generate(
        self,
        scope: Scope,
        actor: Actor,
        prompt: str,
        options: GenerationOptions,
        target: DeliveryTarget,
        *,
        announce: bool = False,
    ) -> Generation:
        """Resolve the prompt's @handles, persist the request, submit it and start tracking it.

        `announce`: the adapter will post a first message and record it with `attach_message`; until then (at
        most ANNOUNCE_WAIT) the tracker holds its reports, so a fast job never overtakes that message.
        """
        text = self._check_prompt(prompt)
        model, seconds, size = self.resolve_options(options)
        resolved = resolve_prompt(
            text, await self._registry.by_handle(scope), self._settings.max_characters_per_video
        )
        generation = Generation(
            scope=scope,
            requester_id=actor.id,
            prompt=text,
            api_prompt=resolved.text,
            characters=resolved.characters,
            model=model,
            seconds=seconds,
            size=size,
            target=target,
        )
        return await self._persist_and_submit(generation, announce)

    async def remix(
        self,
        scope: Scope,
        actor: Actor,
        generation_id: str,
        prompt: str,
        target: DeliveryTarget,
        *,
        announce: bool = False,
    ) -> Generation:
        """A new video from a finished one, changed as the prompt says."""
        return await self._derive(
            scope, actor, generation_id, prompt, target, GenerationKind.REMIX, None, announce
        )

    async def extend(
        self,
        scope: Scope,
        actor: Actor,
        generation_id: str,
        prompt: str,
        target: DeliveryTarget,
        seconds: str | None = None,
        *,
        announce: bool = False,
    ) -> Generation:
        """Continue a finished video by `seconds` more, as the prompt says."""
        _, extra, _ = self.resolve_options(GenerationOptions(seconds=seconds))
        return await self._derive(
            scope, actor, generation_id, prompt, target, GenerationKind.EXTEND, extra, announce
        )

    async def _derive(
        self,
        scope: Scope,
        actor: Actor,
        generation_id: str,
        prompt: str,
        target: DeliveryTarget,
        kind: GenerationKind,
        seconds: str | None,
        announce: bool,
    ) -> Generation:
        parent = await self._finished_parent(scope, generation_id)
        text = self._check_prompt(prompt)
        resolved = resolve_prompt(
            text, await self._registry.by_handle(scope), self._settings.max_characters_per_video
        )
        generation = Generation(
            scope=scope,
            requester_id=actor.id,
            kind=kind,
            parent_id=parent.id,
            prompt=text,
            api_prompt=resolved.text,
            # The API keeps the source's characters; recording them keeps the posted card truthful.
            characters=resolved.characters or parent.characters,
            model=parent.model,
            seconds=seconds or parent.seconds,
            size=parent.size,
            target=target,
        )
        return await self._persist_and_submit(generation, announce)

    async def _persist_and_submit(self, generation: Generation, announce: bool) -> Generation:
        await self._storage.save_generation(generation)
        try:
            video = await self._submit(generation)
        except SoracastError:
            # The API refused it synchronously: the user is told, and nothing is left behind.
            await self._storage.delete_generation(generation.id)
            raise
        self._apply(generation, video)
        await self._storage.save_generation(generation)
        if announce:
            self._announcing[generation.id] = asyncio.Event()
        log.info("generation %s submitted as %s", generation.id, generation.api_video_id)
        # The create answer is as fresh as a poll: the first status check waits one interval. Offline jobs
        # take seconds, so the local renderer is asked sooner to keep the progress bar alive.
        first_wait = self._settings.poll_interval
        if self._settings.use_offline:
            first_wait = min(first_wait, 1.0)
        self._start_tracker(generation.id, first_wait=first_wait)
        return generation

    async def _submit(self, generation: Generation) -> Video:
        if generation.kind is GenerationKind.CREATE:
            return await self._videos.create_video(
                generation.api_prompt,
                model=generation.model,
                seconds=generation.seconds,
                size=generation.size,
                character_ids=[c.api_character_id for c in generation.characters],
            )
        parent = await self._storage.get_generation(generation.parent_id or "")
        if parent is None or parent.api_video_id is None:
            raise GenerationNotReady("The video this builds on is gone.", hint="Start from a new /sora video.")
        if generation.kind is GenerationKind.REMIX:
            return await self._videos.remix_video(parent.api_video_id, generation.api_prompt)
        return await self._videos.extend_video(parent.api_video_id, generation.api_prompt, generation.seconds)

    async def _finished_parent(self, scope: Scope, generation_id: str) -> Generation:
        parent = await self.get(scope, generation_id)
        if parent.status is not GenerationStatus.COMPLETED or parent.api_video_id is None:
            raise GenerationNotReady(
                f"Video {parent.id} is {parent.status.value.replace('_', ' ')}, not finished.",
                hint="Wait until it is posted, then try again.",
            )
        return parent

    # --- reading and changing ----------------------------------------------------------------------------

    async def get(self, scope: Scope, generation_id: str) -> Generation:
        """A generation of this scope; another scope's id is reported as unknown, never shown."""
        generation = await self._storage.get_generation(generation_id.strip().lower())
        if generation is None or generation.scope != scope:
            raise UnknownGeneration(
                f"There is no video {generation_id!r} in this workspace.",
                hint="Use the id shown under a posted video.",
            )
        return generation

    async def recent(self, scope: Scope, limit: int = 20) -> list[Generation]:
        return list(await self._storage.recent_generations(scope, limit))

    async def attach_message(self, generation_id: str, message_id: str | None, **extra: str) -> None:
        """Record the platform message that shows this generation (and adapter extras); None: none was posted.

        Either way the tracker stops holding its reports for the announcement.
        """
        try:
            generation = await self._storage.get_generation(generation_id)
            if generation is None or message_id is None:
                return
            merged = {**generation.target.extra, **extra}
            target = generation.target.model_copy(update={"message_id": message_id, "extra": merged})
            await self._storage.update_target(generation_id, target)
        finally:
            announced = self._announcing.pop(generation_id, None)
            if announced is not None:
                announced.set()

    async def delete(self, scope: Scope, actor: Actor, generation_id: str) -> Generation:
        """Delete a video at the API and locally; its requester or an admin only."""
        generation = await self.get(scope, generation_id)
        if actor.id != generation.requester_id and not actor.is_admin:
            raise PermissionDenied(
                "Only the person who asked for this video or an admin can delete it.", hint=None
            )
        task = self._trackers.pop(generation.id, None)
        if task is not None:
            task.cancel()
        if generation.api_video_id:
            with contextlib.suppress(APINotFound):
                await self._videos.delete_video(generation.api_video_id)
        for path in (generation.video_path, generation.thumbnail_path):
            if path is not None:
                path.unlink(missing_ok=True)
        generation.status = GenerationStatus.DELETED
        generation.updated_at = utcnow()
        await self._storage.save_generation(generation)
        return generation

    async def character_from_generation(
        self,
        scope: Scope,
        actor: Actor,
        generation_id: str,
        handle: str,
        *,
        name: str | None = None,
        start: float = 0.0,
    ) -> Character:
        """The Sora app's "character from a video": cut a finished generation and register it."""
        generation = await self._finished_parent(scope, generation_id)
        path = generation.video_path
        if path is None or not path.exists():
            path = await self._download(generation, ContentVariant.VIDEO)
        return await self._registry.register(
            scope,
            actor,
            handle,
            path,
            name=name,
            start=start,
            source=CharacterSource.GENERATION,
            source_ref=generation.id,
        )

    async def wait_finished(self, generation_id: str, within: float | None = None) -> Generation:
        """Block until a generation is finished and its outcome delivered (for the console and tests)."""
        event = self._finished.setdefault(generation_id, asyncio.Event())
        current = await self._storage.get_generation(generation_id)
        if current is None:
            raise UnknownGeneration(f"There is no video {generation_id!r}.")
        if not (current.status.finished and current.delivered_at is not None):
            await asyncio.wait_for(event.wait(), within)
        final = await self._storage.get_generation(generation_id)
        assert final is not None
        return final

    async def on_video_event(self, api_video_id: str) -> bool:
        """Handle a `video.completed` / `video.failed` webhook: wake (or restart) the generation's tracker."""
        generation = await self._storage.find_generation_by_video(api_video_id)
        if generation is None:
            return False
        if generation.platform not in self._notifiers:
            # Another process (the Discord worker, say) tracks it; this one could not post it anyway.
            return False
        event = self._wakeups.get(generation.id)
        if event is not None:
            event.set()
        elif generation.delivered_at is None:
            self._start_tracker(generation.id)
        return True

    # --- tracking ------------------------------------------------------------------------------------------

    def _start_tracker(self, generation_id: str, first_wait: float = 0.0) -> None:
        if self._closing or generation_id in self._trackers:
            return
        self._wakeups[generation_id] = asyncio.Event()
        task = asyncio.create_task(self._track(generation_id, first_wait), name=f"track-{generation_id}")
        self._trackers[generation_id] = task
        task.add_done_callback(lambda _t: self._forget(generation_id))

    def _forget(self, generation_id: str) -> None:
        self._trackers.pop(generation_id, None)
        self._wakeups.pop(generation_id, None)
        self._last_progress_note.pop(generation_id, None)
        self._announcing.pop(generation_id, None)

    async def _track(self, generation_id: str, first_wait: float) -> None:
        try:
            if first_wait:
                await self._sleep(generation_id, first_wait)
            await self._track_until_delivered(generation_id)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("tracking %s stopped on an unexpected error; it resumes on restart", generation_id)

    async def _track_until_delivered(self, generation_id: str) -> None:
        failures = 0
        # Read once: while it runs, this tracker is the only writer of the generation's status (a delete
        # cancels it, and the target has its own column, re-read before each notification).
        generation = await self._storage.get_generation(generation_id)
        while True:
            if generation is None or generation.status is GenerationStatus.DELETED:
                return
            if generation.delivered_at is not None:
                self._signal_finished(generation_id)
                return
            if generation.status.finished:
                await self._deliver(generation)
                return
            if generation.api_video_id is None:
                # Accepted but the process died before the API answered: submit it now.
                try:
                    video = await self._submit(generation)
                except VideosAPIError as exc:
                    if exc.retryable:
                        await self._sleep(generation_id, self._backoff(failures := failures + 1))
                        continue
                    self._fail(generation, exc.code, exc.message)
                    await self._storage.save_generation(generation)
                    continue
                self._apply(generation, video)
                await self._storage.save_generation(generation)
                continue
            try:
                polled = await self._videos.retrieve_video(generation.api_video_id)
            except APINotFound:
                self._fail(generation, "not_found", "The Videos API no longer knows this video.")
                await self._storage.save_generation(generation)
                continue
            except VideosAPIError as exc:
                if not exc.retryable:
                    self._fail(generation, exc.code, exc.message)
                    await self._storage.save_generation(generation)
                    continue
                failures += 1
                await self._sleep(generation_id, exc.retry_after or self._backoff(failures))
                continue
            failures = 0
            before = (generation.status, generation.progress)
            self._apply(generation, polled)
            if generation.status is GenerationStatus.COMPLETED:
                await self._fetch_result(generation)
                continue
            if (generation.status, generation.progress) != before:
                await self._storage.save_generation(generation)
                await self._note_progress(generation)
            await self._sleep(generation_id, polled.poll_after or self._settings.poll_interval)

    async def _fetch_result(self, generation: Generation) -> None:
        try:
            generation.video_path = await self._download(generation, ContentVariant.VIDEO)
        except APINotFound:
            self._fail(generation, "expired", "The finished video expired before it could be downloaded.")
            await self._storage.save_generation(generation)
            return
        try:
            generation.thumbnail_path = await self._download(generation, ContentVariant.THUMBNAIL)
        except VideosAPIError as exc:
            # A missing thumbnail never holds back the video.
            log.warning("no thumbnail for %s: %s", generation.id, exc.code)
        generation.progress = 100
        generation.completed_at = generation.completed_at or utcnow()
        generation.updated_at = utcnow()
        await self._storage.save_generation(generation)

    async def _download(self, generation: Generation, variant: ContentVariant) -> Path:
        assert generation.api_video_id is not None
        suffix = {ContentVariant.VIDEO: ".mp4", ContentVariant.THUMBNAIL: ".jpg"}.get(variant, ".jpg")
        dest = self._media_dir / generation.scope.platform.value / f"{generation.id}{suffix}"
        dest.parent.mkdir(parents=True, exist_ok=True)
        return await self._videos.download_content(generation.api_video_id, dest, variant)

    async def _fresh_target(self, generation: Generation) -> None:
        # The adapter records its message id concurrently with the tracker; always notify with the latest,
        # and give a first message that is still being posted a moment to land.
        announced = self._announcing.get(generation.id)
        if announced is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(announced.wait(), ANNOUNCE_WAIT)
            self._announcing.pop(generation.id, None)
        stored = await self._storage.get_generation(generation.id)
        if stored is not None:
            generation.target = stored.target

    async def _deliver(self, generation: Generation) -> None:
        notifier = self._notifiers.get(generation.platform)
        if notifier is None:
            log.info("no %s notifier here; %s waits for its adapter", generation.platform, generation.id)
            return
        await self._fresh_target(generation)
        for attempt in range(1, DELIVERY_ATTEMPTS + 1):
            if not await self._storage.claim_delivery(generation.id, utcnow()):
                return
            try:
                if generation.status is GenerationStatus.COMPLETED:
                    receipt = await notifier.completed(generation)
                    message_id = receipt.message_id
                else:
                    await notifier.failed(generation)
                    message_id = None
            except Exception as exc:
                await self._storage.release_delivery(generation.id)
                log.warning("delivering %s failed (attempt %d): %s", generation.id, attempt, type(exc).__name__)
                await self._sleep(generation.id, self._backoff(attempt))
                continue
            await self._storage.mark_delivered(generation.id, utcnow(), message_id)
            self._signal_finished(generation.id)
            return
        log.error("gave up delivering %s for now; it is retried on the next start", generation.id)

    async def _note_progress(self, generation: Generation) -> None:
        notifier = self._notifiers.get(generation.platform)
        if notifier is None:
            return
        now = time.monotonic()
        last = self._last_progress_note.get(generation.id)
        if last is not None and now - last < self._settings.progress_interval:
            return
        self._last_progress_note[generation.id] = now
        await self._fresh_target(generation)
        try:
            await notifier.progress(generation)
        except Exception as exc:
            # Progress is cosmetic; a failed edit must never stop the job.
            log.warning("progress note for %s failed: %s", generation.id, type(exc).__name__)

    # --- helpers -----------------------------------------------------------------------------------------

    @staticmethod
    def _apply(generation: Generation, video: Video) -> None:
        generation.api_video_id = video.id
        generation.status = _STATUS_MAP.get(video.status, GenerationStatus.QUEUED)
        generation.progress = max(0, min(100, int(video.progress or 0)))
        generation.updated_at = utcnow()
        if video.status is VideoStatus.FAILED:
            error = video.error
            generation.error_code = error.code if error else "failed"
            generation.error_message = (error.message if error else "") or "The Videos API could not make this video."
        if video.status is VideoStatus.COMPLETED:
            generation.completed_at = utcnow()

    @staticmethod
    def _fail(generation: Generation, code: str, message: str) -> None:
        generation.status = GenerationStatus.FAILED
        generation.error_code = code
        generation.error_message = message
        generation.updated_at = utcnow()

    def _backoff(self, attempt: int) -> float:
        base = min(self._settings.poll_interval * (2 ** (attempt - 1)), 300.0)
        return base * (0.5 + random.random() / 2)

    async def _sleep(self, generation_id: str, seconds: float) -> None:
        event = self._wakeups.get(generation_id)
        if event is None:
            await asyncio.sleep(seconds)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), seconds)
        event.clear()

    def _signal_finished(self, generation_id: str) -> None:
        self._finished.setdefault(generation_id, asyncio.Event()).set()

