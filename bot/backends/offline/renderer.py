"""OfflineVideosAPI: the Videos API made on this machine, for `soracast try`, the emulator, tests and benchmarks.

It keeps the real API's contract rather than faking success: requests the real endpoint refuses are refused
here with the same HTTP status, `param` and a comparable `code` (as `bot.errors` types), jobs walk
`queued → in_progress → completed | failed` over simulated time, and the results are real H.264 MP4s of
exactly the requested size and duration that visibly use the inputs — frames of each character's clip over an
animated background, with the prompt as a caption.

Time. Each job gets a simulated duration (`job_seconds`: a fixed value or a `(min, max)` range drawn per job).
Status and progress are *computed* whenever a job is read, from `(clock() - started) * time_scale`; no task
runs per job, so thousands of pending jobs cost nothing but a small record each.

Rendering happens lazily, on the first download of a completed job, in a worker thread
(`asyncio.to_thread`), once per job (a lock per job keeps concurrent downloads from rendering twice). Three
modes, chosen with `render=`:

- `"full"` (default): every video is rendered with its own caption, characters and background.
- `"shared"`: one render per (size, seconds, characters, kind) is reused by every job with the same key; the
  caption is that of the first job rendered for the key. For benchmarks that still want real-size files.
- `"stub"`: a small MP4 (longest side 160 px, 2 fps, solid colour, the requested duration) shared by all
  jobs of the same size and seconds. Not the requested size: for benchmarks that only measure the plumbing.

Deterministic refusals and failures that the real API would decide by looking at the content:

- Human likeness: a character clip whose container metadata `title` or `comment` contains `person`
  (any case) is refused with 400, `param="video"`, `code="human_likeness_not_allowed"`
  (`HumanLikenessRefused`). The real API's exact code is not documented; the 400 and the param are.
- Moderation: a prompt containing `[[moderation]]` is accepted, then the job ends `failed` with
  `error.code="moderation_blocked"`. `fail_next()` and `fail_video()` inject the same from tests.

State (characters and jobs) is kept as small JSON files under `root`, so a restarted `soracast try` still
knows its characters and videos.
"""

from __future__ import annotations

import asyncio
import random
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

from bot.backends.offline.clips import copy_into, file_sha256, probe_clip, stored_reference
from bot.backends.offline.drawing import SceneRenderer
from bot.backends.offline.job_table import (
    CharacterRecord,
    JobRecord,
    JobTable,
    Scene,
    video_of,
)
from bot.backends.offline.rendered_files import RenderedFiles
from bot.backends.offline.spec import (
    FILE_NAMES,
    HUMAN_LIKENESS_CODE,
    HUMAN_LIKENESS_MARKER,
    MAX_NAME_CHARS,
    MAX_PROMPT_CHARS,
    MODERATION_TRIGGER,
    RenderMode,
    check_characters,
    check_choice,
    check_model,
    check_seconds,
    check_text,
    invalid,
    not_found,
    settings_default,
)
from bot.backends.openai.api import PolledVideo
from bot.backends.openai.schemas import (
    ContentVariant,
    DeletedVideo,
    ImageReference,
    Video,
    VideoCharacter,
    VideoList,
    VideoStatus,
)
from bot.config import Settings

# --- the API ---------------------------------------------------------------------------------------------


class OfflineVideosAPI:
    """The `VideosAPI` protocol implemented in-process; see the module docstring for behaviour and modes."""

    def __init__(
        self,
        root: Path,
        *,
        time_scale: float = 1.0,
        job_seconds: float | tuple[float, float] = (3.0, 6.0),
        poll_after_ms: int | Literal["auto"] | None = "auto",
        max_characters: int = 2,
        allowed_models: Sequence[str] | None = None,
        allowed_sizes: Sequence[str] | None = None,
        allowed_seconds: Sequence[str] | None = None,
        default_model: str = "sora-2",
        default_size: str = "720x1280",
        default_seconds: str = "4",
        clip_seconds_range: tuple[float, float] = (1.0, 10.0),
        fps: int = 24,
        render: RenderMode = "full",
        expires_after: float = 24 * 3600,
        seed: int | None = None,
        clock: Callable[[], float] = time.time,
        persist: bool = True,
    ) -> None:
        """Keep files and state under `root`.

        `time_scale` is simulated seconds per real second; `job_seconds` each job's simulated duration (a
        value, or a `(min, max)` range drawn per job with `seed`). `poll_after_ms` is what `retrieve_video`
        asks the caller to wait (`"auto"`: a fraction of the remaining time, 1 ms–2 s; `None`: no advice).
        `clip_seconds_range` is the duration window the API accepts for character clips. `fps` and `render`
        trade fidelity for speed (see the module docstring); `clock` can be replaced to step time in tests.
        The API's defaults (`default_size` 720x1280, as the spec says) apply when a create omits a value.
        """
        if time_scale <= 0:
            raise ValueError("time_scale must be positive")
        if fps < 1:
            raise ValueError("fps must be at least 1")
        self.root = Path(root)
        self.time_scale = float(time_scale)
        self.job_seconds = job_seconds
        self.poll_after_ms = poll_after_ms
        self.max_characters = max_characters
        self.allowed_models = list(allowed_models or settings_default("allowed_models"))
        self.allowed_sizes = list(allowed_sizes or settings_default("allowed_sizes"))
        self.allowed_seconds = list(allowed_seconds or settings_default("allowed_seconds"))
        self.default_model = default_model if default_model in self.allowed_models else self.allowed_models[0]
        self.default_size = default_size if default_size in self.allowed_sizes else self.allowed_sizes[0]
        self.default_seconds = default_seconds if default_seconds in self.allowed_seconds else self.allowed_seconds[0]
        self.clip_seconds_range = clip_seconds_range
        self.fps = fps
        self.render_mode: RenderMode = render
        self.expires_after = expires_after
        self.clock = clock
        self.persist = persist
        self._rng = random.Random(seed)
        # Seeded runs give reproducible ids too, which keeps test logs comparable between runs.
        seeded = seed is not None
        self._fail_next: list[tuple[str, str]] = []
        self._renderer = SceneRenderer(fps=fps)
        self._files = RenderedFiles(self.root, render, self._renderer)
        for sub in ("characters", "videos", "cache", "uploads"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self._table = JobTable(self.root, persist=persist, rng=self._rng, seeded=seeded)
        # The table's own containers, under the names tests and benchmarks read.
        self._characters, self._jobs, self._order = self._table.characters, self._table.jobs, self._table.order

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> OfflineVideosAPI:
        """The offline API the app uses: rooted in the data directory, with the configured lists and pace."""
        options: dict[str, Any] = {
            "time_scale": settings.offline_time_scale,
            "max_characters": settings.openai_max_characters,
            "allowed_models": settings.allowed_models,
            "allowed_sizes": settings.allowed_sizes,
            "allowed_seconds": settings.allowed_seconds,
        }
        options.update(overrides)
        root = options.pop("root", settings.data_dir / "offline-videos")
        return cls(root, **options)

    # --- test and benchmark hooks -----------------------------------------------------------------------

    def fail_next(self, count: int = 1, *, code: str = "moderation_blocked", message: str | None = None) -> None:
        """Make the next `count` jobs created end `failed` with this error (after their duration)."""
        text = message or "The request was blocked by our moderation system."
        self._fail_next.extend([(code, text)] * count)

    def fail_video(self, video_id: str, *, code: str = "moderation_blocked", message: str | None = None) -> None:
        """Make an existing, unfinished job end `failed` with this error."""
        job = self._table.job(video_id)
        job.failure = (code, message or "The request was blocked by our moderation system.")
        self._table.save(job)

    def finish_now(self, video_id: str) -> None:
        """Move a job's start back so that it is finished now (completed, or failed if a failure is set)."""
        job = self._table.job(video_id)
        job.started = self.clock() - job.duration / self.time_scale - 1e-6
        job.created_at = min(job.created_at, time.time() - job.duration / self.time_scale)
        self._table.save(job)

    @property
    def job_count(self) -> int:
        """How many jobs exist (deleted ones excluded)."""
        return sum(1 for job in self._jobs.values() if not job.deleted)

    # --- characters -------------------------------------------------------------------------------------

    async def create_character(self, name: str, clip: Path) -> VideoCharacter:
        """Register a clip as a character: checks the name, that the clip decodes, its length and likeness."""
        check_text(name, param="name", max_length=MAX_NAME_CHARS)
        info = await asyncio.to_thread(probe_clip, Path(clip))
        low, high = self.clip_seconds_range
        if not low <= info.seconds <= high:
            raise invalid(
                f"The character video must be between {low:g} and {high:g} seconds long; "
                f"this one is {info.seconds:.2f} seconds.",
                param="video",
                code="invalid_video_duration",
            )
        if HUMAN_LIKENESS_MARKER in f"{info.title} {info.comment}".lower():
            raise invalid(
                "Character uploads that depict human likeness are not allowed for this organization.",
                param="video",
                code=HUMAN_LIKENESS_CODE,
                operation="create_character",
            )
        character_id = self._table.new_id("char")
        stored = self.root / "characters" / f"{character_id}.mp4"
        await asyncio.to_thread(shutil.copyfile, clip, stored)
        character = CharacterRecord(id=character_id, name=name, created_at=int(time.time()), clip=str(stored))
        self._table.add_character(character)
        return character.model()

    async def get_character(self, character_id: str) -> VideoCharacter:
        """A registered character, or 404."""
        return self._table.character(character_id, param="character_id").model()

    # --- creating jobs ----------------------------------------------------------------------------------

    async def create_video(
        self,
        prompt: str,
        *,
        model: str | None = None,
        seconds: str | None = None,
        size: str | None = None,
        character_ids: Sequence[str] = (),
        image: Path | ImageReference | None = None,
    ) -> Video:
        """Queue a new video; every parameter is checked like the real API checks it."""
        check_text(prompt, param="prompt", max_length=MAX_PROMPT_CHARS)
        model = self._check_model(model)
        size = check_choice(size or self.default_size, self.allowed_sizes, param="size")
        seconds = self._check_seconds(seconds or self.default_seconds)
        characters = self._check_characters(character_ids)
        image_path = await stored_reference(image, size, self.root / "uploads", self._table.new_hex)
        scene = Scene(
            kind="create",
            prompt=prompt,
            seconds=int(seconds),
            characters=[(c.id, c.clip) for c in characters],
            image=image_path,
        )
        job = self._new_job(model=model, size=size, seconds=seconds, prompt=prompt, scene=scene)
        return self._video(job, just_created=True)

    async def create_from_references(
        self,
        prompt: str,
        *,
        model: str,
        size: str,
        seconds: int,
        references: Sequence[Path],
        kind: str = "create",
        source_video_id: str | None = None,
    ) -> Video:
        """A job drawn from reference files (clips or stills), for the emulated APIs that take references.

        The caller has checked the request by its own API's rules. With `source_video_id` (a completed job of
        this renderer) the job extends or edits that video, as `kind` says; the references join its cast.
        """
        cast = [(f"ref{i}", str(path)) for i, path in enumerate(references)]
        if source_video_id is not None:
            source = self._completed_source(source_video_id, param="video")
            derived = "extend" if kind == "extend" else "edit"
            total = int(source.seconds) + seconds if derived == "extend" else int(source.seconds)
            scene = Scene(
                kind=derived,
                prompt=prompt,
                seconds=seconds if derived == "extend" else int(source.seconds),
                characters=[*source.scene.characters, *cast],
                source=source.scene,
            )
            job = self._new_job(model=model, size=source.size, seconds=str(total), prompt=prompt, scene=scene)
        else:
            scene = Scene(kind="create", prompt=prompt, seconds=seconds, characters=cast)
            job = self._new_job(model=model, size=size, seconds=str(seconds), prompt=prompt, scene=scene)
        return self._video(job, just_created=True)

    def cancel_video(self, video_id: str) -> None:
        """End an unfinished job now as `cancelled` (a finished one is left as it is)."""
        job = self._table.job(video_id)
        if self._video(job).status in (VideoStatus.COMPLETED, VideoStatus.FAILED):
            return
        job.failure = ("cancelled", "The job was cancelled.")
        self.finish_now(video_id)

    async def find_by_output(self, data_sha256: str) -> str | None:
        """The id of the job whose rendered video has this SHA-256, if this renderer made it."""
        for job_id in reversed(self._order):
            job = self._jobs[job_id]
            if job.output_sha256 == data_sha256 and not job.deleted:
                return job_id
        return None

    def failure_of(self, video_id: str) -> tuple[str, str] | None:
        """The (code, message) a job ends with, if it is set to fail."""
        return self._table.job(video_id).failure

    async def remix_video(self, video_id: str, prompt: str) -> Video:
        """A new video from a completed one with a new prompt (same model, size, length and characters)."""
        check_text(prompt, param="prompt", max_length=MAX_PROMPT_CHARS)
        source = self._completed_source(video_id, param="video_id")
        return self._derive(source, "remix", prompt, added=source.seconds, total=source.seconds, remixed=True)

    async def extend_video(self, video_id: str, prompt: str, seconds: str) -> Video:
        """Continue a completed video by `seconds`; the result's `seconds` is the stitched total."""
        check_text(prompt, param="prompt", max_length=MAX_PROMPT_CHARS)
        added = self._check_seconds(seconds)
        source = self._completed_source(video_id, param="video")
        return self._derive(source, "extend", prompt, added=added, total=str(int(source.seconds) + int(added)))

    async def edit_video(self, video_id: str, prompt: str) -> Video:
        """A targeted edit of a completed video: same length and size, the change described by `prompt`."""
        check_text(prompt, param="prompt", max_length=MAX_PROMPT_CHARS)
        source = self._completed_source(video_id, param="video")
        return self._derive(source, "edit", prompt, added=source.seconds, total=source.seconds)

    def _derive(
        self, source: JobRecord, kind: str, prompt: str, *, added: str, total: str, remixed: bool = False
    ) -> Video:
        # Remix, extend and edit keep the source's model, size and characters and render on top of its scene.
        scene = Scene(
            kind=kind,
            prompt=prompt,
            seconds=int(added),
            characters=list(source.scene.characters),
            image=source.scene.image,
            source=source.scene,
        )
        job = self._new_job(
            model=source.model,
            size=source.size,
            seconds=total,
            prompt=prompt,
            scene=scene,
            remixed_from=source.id if remixed else None,
        )
        return self._video(job, just_created=True)

    # --- reading and deleting ---------------------------------------------------------------------------

    async def retrieve_video(self, video_id: str) -> PolledVideo:
        """The job's current state (computed now) and how long to wait before asking again."""
        job = self._table.job(video_id)
        video = self._video(job)
        return PolledVideo(**video.model_dump(), poll_after=self._poll_after(job, video))

    def seconds_left(self, video_id: str) -> float:
        """Real seconds until a job finishes (0 once it has)."""
        job = self._table.job(video_id)
        return max(0.0, job.duration - self._elapsed(job)) / self.time_scale

    def poll_after_ms_for(self, video: Video) -> int | None:
        """The `openai-poll-after-ms` value for a video just read (None: send no header)."""
        job = self._jobs.get(video.id)
        if job is None:
            return None
        seconds = self._poll_after(job, video)
        return None if seconds is None else max(1, round(seconds * 1000))

    async def list_videos(self, *, limit: int = 20, after: str | None = None, order: str = "desc") -> VideoList:
        """A page of videos, newest first by default; `after` is the last id of the previous page."""
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 0 or limit > 100:
            raise invalid(
                f"Invalid 'limit': {limit!r}. Expected an integer between 0 and 100.",
                param="limit",
                code="invalid_value",
            )
        order = check_choice(order, ["asc", "desc"], param="order")
        ids = [job_id for job_id in self._order if not self._jobs[job_id].deleted]
        if order == "desc":
            ids.reverse()
        if after is not None:
            if after not in ids:
                raise not_found(f"No video found with id '{after}'.", param="after")
            ids = ids[ids.index(after) + 1 :]
        page = ids[:limit]
        data = [self._video(self._jobs[job_id]) for job_id in page]
        return VideoList(
            data=data,
            first_id=page[0] if page else None,
            last_id=page[-1] if page else None,
            has_more=len(ids) > len(page),
        )

    async def delete_video(self, video_id: str) -> DeletedVideo:
        """Delete a job and its files. Allowed in any state (the core deletes whatever the user asks)."""
        job = self._table.job(video_id)
        job.deleted = True
        self._table.save(job)
        folder = self.root / "videos" / job.id
        for variant in ContentVariant:
            (folder / FILE_NAMES[variant]).unlink(missing_ok=True)
        return DeletedVideo(id=job.id)

    async def content_path(self, video_id: str, variant: ContentVariant | str = ContentVariant.VIDEO) -> Path:
        """The file of a completed video's variant, rendering it first (in a thread) if needed."""
        try:
            variant = ContentVariant(variant)
        except ValueError:
            raise invalid(
                f"Invalid value: '{variant}'. Supported values are: 'video', 'thumbnail', 'spritesheet'.",
                param="variant",
                code="invalid_value",
            ) from None
        job = self._table.job(video_id)
        video = self._video(job)
        if video.status is not VideoStatus.COMPLETED:
            raise invalid(
                f"Video '{job.id}' is {video.status.value}; content is available once it is completed.",
                param="video_id",
                code="video_not_ready",
            )
        paths = await self._files.ensure(job, self._remember_output)
        return paths[variant]

    async def download_content(self, video_id: str, dest: Path, variant: ContentVariant = ContentVariant.VIDEO) -> Path:
        """Copy a completed video's variant to `dest` (rendering it first if needed)."""
        source = await self.content_path(video_id, variant)
        dest = Path(dest)
        await asyncio.to_thread(copy_into, source, dest)
        return dest

    async def aclose(self) -> None:
        """Nothing runs in the background; renders in progress finish with their awaiting callers."""

    # --- internals: validation --------------------------------------------------------------------------

    def _check_model(self, model: str | None) -> str:
        return check_model(model, self.allowed_models, self.default_model)

    def _check_seconds(self, seconds: object) -> str:
        return check_seconds(seconds, self.allowed_seconds)

    def _check_characters(self, character_ids: Sequence[str]) -> list[CharacterRecord]:
        return check_characters(character_ids, self._characters, self.max_characters)

    def _completed_source(self, video_id: str, *, param: str) -> JobRecord:
        job = self._table.job(video_id)
        status = self._video(job).status
        if status is not VideoStatus.COMPLETED:
            raise invalid(
                f"Video '{video_id}' is {status.value}; only completed videos can be used as a source.",
                param=param,
                code="invalid_video_status",
            )
        return job

    # --- internals: jobs --------------------------------------------------------------------------------

    def _draw_duration(self) -> float:
        if isinstance(self.job_seconds, tuple):
            low, high = self.job_seconds
            return self._rng.uniform(low, high)
        return float(self.job_seconds)

    def _new_job(
        self,
        *,
        model: str,
        size: str,
        seconds: str,
        prompt: str,
        scene: Scene,
        remixed_from: str | None = None,
    ) -> JobRecord:
        failure: tuple[str, str] | None = None
        if self._fail_next:
            failure = self._fail_next.pop(0)
        elif MODERATION_TRIGGER in prompt.lower():
            failure = ("moderation_blocked", "The request was blocked by our moderation system.")
        job = JobRecord(
            id=self._table.new_id("video"),
            model=model,
            size=size,
            seconds=seconds,
            prompt=prompt,
            created_at=time.time(),
            started=self.clock(),
            duration=max(0.0, self._draw_duration()),
            scene=scene,
            remixed_from_video_id=remixed_from,
            failure=failure,
        )
        self._table.add_job(job)
        return job

    def _elapsed(self, job: JobRecord) -> float:
        return (self.clock() - job.started) * self.time_scale

    def _video(self, job: JobRecord, *, just_created: bool = False) -> Video:
        # A create answers `queued` as the real API does, however fast simulated time runs.
        elapsed = None if just_created else self._elapsed(job)
        return video_of(job, elapsed, time_scale=self.time_scale, expires_after=self.expires_after)

    def _poll_after(self, job: JobRecord, video: Video) -> float | None:
        if video.status in (VideoStatus.COMPLETED, VideoStatus.FAILED) or self.poll_after_ms is None:
            return None
        if self.poll_after_ms != "auto":
            return self.poll_after_ms / 1000
        remaining_real = max(0.0, job.duration - self._elapsed(job)) / self.time_scale
        return min(2.0, max(0.001, remaining_real / 5))

    # --- internals: rendering ---------------------------------------------------------------------------

    async def _remember_output(self, job: JobRecord, video: Path) -> None:
        job.output_sha256 = await asyncio.to_thread(file_sha256, video)
        self._table.save(job)
