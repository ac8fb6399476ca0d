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

from bot import media
from bot.actions import VideoAction
from bot.backends.base import JobState, JobStatus, ModelCapabilities, VideoBackend, VideoRequest
from bot.catalog import Choice, ModelCatalog
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
from bot.handles import mentions_of, resolve_prompt
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
from storage.base import Storage

log = logging.getLogger(__name__)

_STATUS_MAP = {
    JobStatus.QUEUED: GenerationStatus.QUEUED,
    JobStatus.IN_PROGRESS: GenerationStatus.IN_PROGRESS,
    JobStatus.COMPLETED: GenerationStatus.COMPLETED,
    JobStatus.FAILED: GenerationStatus.FAILED,
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
        catalog: ModelCatalog,
        registry: CharacterRegistry,
        settings: Settings,
    ) -> None:
        self._storage = storage
        self._catalog = catalog
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

    def resolve_options(self, options: GenerationOptions) -> Choice:
        """Backend, model, seconds and size after defaults, each checked against what the model makes."""
        return self._catalog.resolve(options)

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
        choice = self.resolve_options(options)
        characters = await self._registry.by_handle(scope)
        resolved = resolve_prompt(text, characters, self._catalog.max_characters(choice.caps), choice.caps.model)
        self._registry.check_usable([characters[c.handle] for c in resolved.characters], choice.caps)
        generation = Generation(
            scope=scope,
            requester_id=actor.id,
            prompt=text,
            api_prompt=resolved.text,
            characters=resolved.characters,
            backend=choice.backend.name,
            model=choice.caps.model,
            seconds=str(choice.seconds),
            size=choice.size,
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
        return await self._derive(
            scope, actor, generation_id, prompt, target, GenerationKind.EXTEND, seconds, announce
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
        backend, caps = self.derivable(parent, kind)
        text = self._check_prompt(prompt)
        if kind is GenerationKind.EXTEND:
            allowed = caps.allowed_extensions()
            added = self._catalog.check_seconds(caps, seconds, allowed) if seconds else None
            seconds = str(added or min(allowed, key=lambda d: abs(d - int(parent.seconds))))
        characters = await self._registry.by_handle(scope)
        resolved = resolve_prompt(text, characters, self._catalog.max_characters(caps), caps.model)
        self._registry.check_usable([characters[c.handle] for c in resolved.characters], caps)
        generation = Generation(
            scope=scope,
            requester_id=actor.id,
            kind=kind,
            parent_id=parent.id,
            prompt=text,
            api_prompt=resolved.text,
            # The backend keeps the source's characters; recording them keeps the posted card truthful.
            characters=resolved.characters or parent.characters,
            backend=backend.name,
            model=parent.model,
            seconds=seconds or parent.seconds,
            size=parent.size,
            target=target,
        )
        return await self._persist_and_submit(generation, announce)

    def derivable(self, parent: Generation, kind: GenerationKind) -> tuple[VideoBackend, ModelCapabilities]:
        """The backend and model a remix or extension of `parent` goes to, or why there is none."""
        backend = self._catalog.backend(parent.backend)
        caps = self._catalog.capabilities_of(parent.backend, parent.model)
        if backend is None or caps is None:
            raise GenerationNotReady(
                f"Video {parent.id} was made with {parent.model} on {parent.backend}, which this bot no longer uses.",
                hint="Make a new video with /sora instead.",
            )
        allowed = caps.can_remix if kind is GenerationKind.REMIX else caps.can_extend
        if not allowed:
            verb = "remix" if kind is GenerationKind.REMIX else "extend"
            raise GenerationNotReady(
                f"{caps.label or caps.model} cannot {verb} a finished video.",
                hint="Describe the change in a new /sora prompt instead.",
            )
        return backend, caps

    def can_derive(self, generation: Generation, kind: GenerationKind) -> bool:
        """Whether a Remix or Extend button should be offered for this video."""
        try:
            self.derivable(generation, kind)
        except GenerationNotReady:
            return False
        return True

    def offered_actions(self, generation: Generation) -> list[VideoAction]:
        """The buttons a finished video gets: Remix and Extend only where its backend can do them."""
        wanted = {
            VideoAction.REMIX: self.can_derive(generation, GenerationKind.REMIX),
            VideoAction.EXTEND: self.can_derive(generation, GenerationKind.EXTEND),
        }
        return [action for action in VideoAction if wanted.get(action, True)]

    def extend_choices(self, generation: Generation) -> list[int]:
        """The lengths an extension of `generation` may add (empty when it cannot be extended)."""
        caps = self._catalog.capabilities_of(generation.backend, generation.model)
        return list(caps.allowed_extensions()) if caps is not None and caps.can_extend else []

    async def _persist_and_submit(self, generation: Generation, announce: bool) -> Generation:
        request, backend = await self._request(generation)
        generation.api_prompt = backend.compose_prompt(request)
        await self._storage.save_generation(generation)
        try:
            job = await backend.submit(request, generation.api_prompt)
        except SoracastError:
            # The backend refused it synchronously: the user is told, and nothing is left behind.
            await self._storage.delete_generation(generation.id)
            raise
        self._apply(generation, job)
        await self._storage.save_generation(generation)
        if announce:
            self._announcing[generation.id] = asyncio.Event()
        log.info("generation %s submitted as %s", generation.id, generation.api_video_id)
        # The create answer is as fresh as a poll: the first status check waits one interval. Offline jobs
        # take seconds, so the local renderer is asked sooner to keep the progress bar alive.
        first_wait = self._settings.poll_interval
        if generation.backend == "offline":
            first_wait = min(first_wait, 1.0)
        self._start_tracker(generation.id, first_wait=first_wait)
        return generation

    async def _request(self, generation: Generation) -> tuple[VideoRequest, VideoBackend]:
        """What the generation's backend is sent: characters with their references, the source for derivations."""
        backend = self._catalog.backend(generation.backend)
        caps = self._catalog.capabilities_of(generation.backend, generation.model)
        if backend is None or caps is None:
            raise GenerationNotReady(
                f"This video was meant for {generation.model} on {generation.backend}, which this bot no longer uses.",
                hint="Make it again with /sora.",
            )
        characters = await self._registry.inputs_for(generation.characters, backend, caps)
        source_job, source_video = None, None
        if generation.kind is not GenerationKind.CREATE:
            parent = await self._storage.get_generation(generation.parent_id or "")
            if parent is None or parent.api_video_id is None:
                raise GenerationNotReady("The video this builds on is gone.", hint="Start from a new /sora video.")
            source_job = parent.api_video_id
            source_video = parent.video_path if parent.video_path and parent.video_path.exists() else None
        used = set(generation.handles)
        request = VideoRequest(
            kind=generation.kind,
            prompt=generation.prompt,
            mentions=[m for m in mentions_of(generation.prompt) if m.handle in used],
            characters=characters,
            model=generation.model,
            seconds=int(generation.seconds),
            size=generation.size,
            source_job_id=source_job,
            source_video=source_video,
            request_key=generation.id,
        )
        return request, backend

    async def _submit(self, generation: Generation) -> JobState:
        request, backend = await self._request(generation)
        return await backend.submit(request, generation.api_prompt)

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
        backend = self._catalog.backend(generation.backend)
        if generation.api_video_id and backend is not None:
            with contextlib.suppress(APINotFound):
                await backend.delete(generation.api_video_id)
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
            path = await self._download(generation)
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
                    job = await self._submit(generation)
                except SoracastError as exc:
                    if exc.retryable:
                        await self._sleep(generation_id, self._backoff(failures := failures + 1))
                        continue
                    self._fail(generation, exc.code, exc.user_text())
                    await self._storage.save_generation(generation)
                    continue
                self._apply(generation, job)
                await self._storage.save_generation(generation)
                continue
            backend = self._catalog.backend(generation.backend)
            if backend is None:
                self._fail(
                    generation,
                    "backend_gone",
                    f"This video was sent to {generation.backend}, which this bot no longer uses.",
                )
                await self._storage.save_generation(generation)
                continue
            try:
                polled = await backend.poll(generation.api_video_id)
            except APINotFound:
                self._fail(generation, "not_found", f"{_capital(backend.service)} no longer knows this video.")
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
            before = (generation.status, generation.progress, generation.queue_position)
            self._apply(generation, polled)
            if generation.status is GenerationStatus.COMPLETED:
                await self._fetch_result(generation)
                continue
            if (generation.status, generation.progress, generation.queue_position) != before:
                await self._storage.save_generation(generation)
                await self._note_progress(generation)
            await self._sleep(generation_id, polled.poll_after or self._settings.poll_interval)

    async def _fetch_result(self, generation: Generation) -> None:
        try:
            generation.video_path = await self._download(generation)
        except APINotFound:
            self._fail(generation, "expired", "The finished video expired before it could be downloaded.")
            await self._storage.save_generation(generation)
            return
        generation.thumbnail_path = await self._thumbnail(generation, generation.video_path)
        generation.progress = 100
        generation.completed_at = generation.completed_at or utcnow()
        generation.updated_at = utcnow()
        await self._storage.save_generation(generation)

    def _media_path(self, generation: Generation, suffix: str) -> Path:
        dest = self._media_dir / generation.scope.platform.value / f"{generation.id}{suffix}"
        dest.parent.mkdir(parents=True, exist_ok=True)
        return dest

    async def _download(self, generation: Generation) -> Path:
        assert generation.api_video_id is not None
        backend = self._catalog.backend(generation.backend)
        if backend is None:
            raise GenerationNotReady(
                f"This video was made on {generation.backend}, which this bot no longer uses.",
                hint="Make a new video with /sora.",
            )
        return await backend.download(generation.api_video_id, self._media_path(generation, ".mp4"))

    async def _thumbnail(self, generation: Generation, video: Path) -> Path | None:
        """The backend's thumbnail, or one cut from the video; a missing thumbnail never holds the video back."""
        dest = self._media_path(generation, ".jpg")
        backend = self._catalog.backend(generation.backend)
        try:
            if backend is not None and generation.api_video_id is not None:
                made = await backend.download_thumbnail(generation.api_video_id, dest)
                if made is not None:
                    return made
            return await media.thumbnail(video, dest)
        except (SoracastError, OSError) as exc:
            log.warning("no thumbnail for %s: %s", generation.id, getattr(exc, "code", type(exc).__name__))
            return None

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
    def _apply(generation: Generation, job: JobState) -> None:
        generation.api_video_id = job.id
        status = _STATUS_MAP.get(job.status, GenerationStatus.QUEUED)
        if status is GenerationStatus.IN_PROGRESS and generation.started_at is None:
            generation.started_at = utcnow()
        generation.status = status
        if job.progress is not None:
            generation.progress = max(0, min(100, job.progress))
        generation.queue_position = job.queue_position if status is GenerationStatus.QUEUED else None
        generation.updated_at = utcnow()
        if job.status is JobStatus.FAILED:
            generation.error_code = job.error_code or "failed"
            generation.error_message = job.error_message or "The video service could not make this video."
        if job.status is JobStatus.COMPLETED:
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


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]
