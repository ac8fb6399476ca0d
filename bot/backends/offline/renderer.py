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
import contextlib
import hashlib
import json
import math
import random
import re
import secrets
import shutil
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import av
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from bot.backends.openai.api import PolledVideo
from bot.backends.openai.client import APIErrorInfo, map_api_error
from bot.backends.openai.schemas import (
    ContentVariant,
    DeletedVideo,
    ImageReference,
    Video,
    VideoCharacter,
    VideoJobError,
    VideoList,
    VideoStatus,
)
from bot.config import Settings
from bot.errors import (
    VideosAPIError,
)

#: A prompt containing this ends its job `failed` with `moderation_blocked` (after the job's duration).
MODERATION_TRIGGER = "[[moderation]]"
#: A character clip whose metadata title or comment contains this word is refused as human likeness.
HUMAN_LIKENESS_MARKER = "person"
HUMAN_LIKENESS_CODE = "human_likeness_not_allowed"
#: The spec's limit on prompt length (the bot's own limit is lower and configurable).
MAX_PROMPT_CHARS = 32000
MAX_NAME_CHARS = 80
#: Share of a job's simulated duration spent `queued` before it starts `in_progress`.
QUEUED_SHARE = 0.1

RenderMode = Literal["full", "shared", "stub"]

_VIDEO_CONTENT_TYPES = {
    ContentVariant.VIDEO: "video/mp4",
    ContentVariant.THUMBNAIL: "image/jpeg",
    ContentVariant.SPRITESHEET: "image/jpeg",
}
_FILE_NAMES = {
    ContentVariant.VIDEO: "video.mp4",
    ContentVariant.THUMBNAIL: "thumbnail.jpg",
    ContentVariant.SPRITESHEET: "spritesheet.jpg",
}
_SPRITE_COLUMNS = 5
_SPRITE_FRAMES = 25
_SPRITE_TILE_WIDTH = 160
_CLIP_CACHE_ENTRIES = 4


def _settings_default(name: str) -> list[str]:
    return list(Settings.model_fields[name].default)


def content_type_for(variant: ContentVariant | str) -> str:
    """The `Content-Type` of a downloaded variant."""
    return _VIDEO_CONTENT_TYPES[ContentVariant(variant)]


# --- errors shaped like the real API's ------------------------------------------------------------------


def _refusal(status: int, message: str, *, param: str | None, code: str | None, operation: str = "") -> VideosAPIError:
    # Raised through the client's mapping, so an offline refusal reads exactly like the real API's.
    info = APIErrorInfo(message=message, code=code, param=param, type="invalid_request_error")
    return map_api_error(status, info, operation=operation)


def _invalid(message: str, *, param: str | None, code: str | None, operation: str = "") -> VideosAPIError:
    return _refusal(400, message, param=param, code=code, operation=operation)


def _not_found(message: str, *, param: str | None) -> VideosAPIError:
    return _refusal(404, message, param=param, code="not_found")


def check_text(value: object, *, param: str, max_length: int) -> str:
    """Validate a required string parameter the way the API does (type, empty, too long)."""
    if value is None:
        raise _invalid(f"Missing required parameter: '{param}'.", param=param, code="missing_required_parameter")
    if not isinstance(value, str):
        raise _invalid(
            f"Invalid type for '{param}': expected a string, but got {type(value).__name__} instead.",
            param=param,
            code="invalid_type",
        )
    if not value.strip():
        raise _invalid(
            f"Invalid '{param}': empty string. Expected a string with minimum length 1.",
            param=param,
            code="empty_string",
        )
    if len(value) > max_length:
        raise _invalid(
            f"Invalid '{param}': string too long. Expected a string with maximum length {max_length}, "
            f"but got a string with length {len(value)} instead.",
            param=param,
            code="string_above_max_length",
        )
    return value


def _check_choice(value: str, allowed: Sequence[str], *, param: str) -> str:
    if value not in allowed:
        supported = ", ".join(f"'{v}'" for v in allowed)
        raise _invalid(
            f"Invalid value: '{value}'. Supported values are: {supported}.", param=param, code="invalid_value"
        )
    return value


# --- records ---------------------------------------------------------------------------------------------


@dataclass
class _Character:
    id: str
    name: str
    created_at: int
    clip: str  # path of the stored clip

    def model(self) -> VideoCharacter:
        return VideoCharacter(id=self.id, name=self.name, created_at=self.created_at)


@dataclass
class Scene:
    """What a video shows, kept apart from the job so remixes, extensions and edits can re-render a source.

    `kind` is `create`, `remix`, `extend` (the source's frames, then `seconds` new ones) or `edit` (the source's
    frames, tinted, with the new caption).
    """

    kind: str
    prompt: str
    seconds: int
    characters: list[tuple[str, str]] = field(default_factory=list)  # (character id, clip path)
    image: str | None = None  # an input_reference image file, used as the background
    source: Scene | None = None

    @property
    def total_seconds(self) -> int:
        if self.kind == "extend" and self.source is not None:
            return self.source.total_seconds + self.seconds
        if self.kind == "edit" and self.source is not None:
            return self.source.total_seconds
        return self.seconds

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Scene:
        source = data.get("source")
        return cls(
            kind=data["kind"],
            prompt=data["prompt"],
            seconds=int(data["seconds"]),
            characters=[(c[0], c[1]) for c in data.get("characters", [])],
            image=data.get("image"),
            source=cls.from_dict(source) if source else None,
        )


@dataclass
class _Job:
    id: str
    model: str
    size: str
    seconds: str
    prompt: str
    created_at: float  # wall clock, for the API's timestamps
    started: float  # `clock()` at creation, for the simulated progress
    duration: float  # simulated seconds the job takes
    scene: Scene
    remixed_from_video_id: str | None = None
    failure: tuple[str, str] | None = None  # (code, message) reported once the job ends
    deleted: bool = False
    output_sha256: str | None = None  # of the rendered video, so an API that sends videos back can find it

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["scene"] = self.scene.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> _Job:
        data = dict(data)
        data["scene"] = Scene.from_dict(data["scene"])
        failure = data.get("failure")
        data["failure"] = tuple(failure) if failure else None
        return cls(**data)


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
        self.allowed_models = list(allowed_models or _settings_default("allowed_models"))
        self.allowed_sizes = list(allowed_sizes or _settings_default("allowed_sizes"))
        self.allowed_seconds = list(allowed_seconds or _settings_default("allowed_seconds"))
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
        self._seeded = seed is not None
        self._characters: dict[str, _Character] = {}
        self._jobs: dict[str, _Job] = {}
        self._order: list[str] = []  # creation order, for listing
        self._render_locks: dict[str, asyncio.Lock] = {}
        self._fail_next: list[tuple[str, str]] = []
        self._renderer = _Renderer(fps=fps)
        for sub in ("characters", "videos", "cache", "uploads"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self._load()

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
        job = self._job(video_id)
        job.failure = (code, message or "The request was blocked by our moderation system.")
        self._save_job(job)

    def finish_now(self, video_id: str) -> None:
        """Move a job's start back so that it is finished now (completed, or failed if a failure is set)."""
        job = self._job(video_id)
        job.started = self.clock() - job.duration / self.time_scale - 1e-6
        job.created_at = min(job.created_at, time.time() - job.duration / self.time_scale)
        self._save_job(job)

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
            raise _invalid(
                f"The character video must be between {low:g} and {high:g} seconds long; "
                f"this one is {info.seconds:.2f} seconds.",
                param="video",
                code="invalid_video_duration",
            )
        if HUMAN_LIKENESS_MARKER in f"{info.title} {info.comment}".lower():
            raise _invalid(
                "Character uploads that depict human likeness are not allowed for this organization.",
                param="video",
                code=HUMAN_LIKENESS_CODE,
                operation="create_character",
            )
        character_id = self._new_id("char")
        stored = self.root / "characters" / f"{character_id}.mp4"
        await asyncio.to_thread(shutil.copyfile, clip, stored)
        character = _Character(id=character_id, name=name, created_at=int(time.time()), clip=str(stored))
        self._characters[character_id] = character
        self._write_json(self.root / "characters" / f"{character_id}.json", asdict(character))
        return character.model()

    async def get_character(self, character_id: str) -> VideoCharacter:
        """A registered character, or 404."""
        return self._character(character_id, param="character_id").model()

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
        size = _check_choice(size or self.default_size, self.allowed_sizes, param="size")
        seconds = self._check_seconds(seconds or self.default_seconds)
        characters = self._check_characters(character_ids)
        image_path = await self._check_image(image, size)
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
        job = self._job(video_id)
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
        return self._job(video_id).failure

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
        self, source: _Job, kind: str, prompt: str, *, added: str, total: str, remixed: bool = False
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
        job = self._job(video_id)
        video = self._video(job)
        return PolledVideo(**video.model_dump(), poll_after=self._poll_after(job, video))

    def seconds_left(self, video_id: str) -> float:
        """Real seconds until a job finishes (0 once it has)."""
        job = self._job(video_id)
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
            raise _invalid(
                f"Invalid 'limit': {limit!r}. Expected an integer between 0 and 100.",
                param="limit",
                code="invalid_value",
            )
        order = _check_choice(order, ["asc", "desc"], param="order")
        ids = [job_id for job_id in self._order if not self._jobs[job_id].deleted]
        if order == "desc":
            ids.reverse()
        if after is not None:
            if after not in ids:
                raise _not_found(f"No video found with id '{after}'.", param="after")
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
        job = self._job(video_id)
        job.deleted = True
        self._save_job(job)
        folder = self.root / "videos" / job.id
        for variant in ContentVariant:
            (folder / _FILE_NAMES[variant]).unlink(missing_ok=True)
        return DeletedVideo(id=job.id)

    async def content_path(self, video_id: str, variant: ContentVariant | str = ContentVariant.VIDEO) -> Path:
        """The file of a completed video's variant, rendering it first (in a thread) if needed."""
        try:
            variant = ContentVariant(variant)
        except ValueError:
            raise _invalid(
                f"Invalid value: '{variant}'. Supported values are: 'video', 'thumbnail', 'spritesheet'.",
                param="variant",
                code="invalid_value",
            ) from None
        job = self._job(video_id)
        video = self._video(job)
        if video.status is not VideoStatus.COMPLETED:
            raise _invalid(
                f"Video '{job.id}' is {video.status.value}; content is available once it is completed.",
                param="video_id",
                code="video_not_ready",
            )
        paths = await self._ensure_rendered(job)
        return paths[variant]

    async def download_content(self, video_id: str, dest: Path, variant: ContentVariant = ContentVariant.VIDEO) -> Path:
        """Copy a completed video's variant to `dest` (rendering it first if needed)."""
        source = await self.content_path(video_id, variant)
        dest = Path(dest)
        await asyncio.to_thread(_copy_into, source, dest)
        return dest

    async def aclose(self) -> None:
        """Nothing runs in the background; renders in progress finish with their awaiting callers."""

    # --- internals: validation --------------------------------------------------------------------------

    def _check_model(self, model: str | None) -> str:
        if model is None:
            return self.default_model
        if not isinstance(model, str):
            raise _invalid("Invalid type for 'model': expected a string.", param="model", code="invalid_type")
        # Dated snapshots (`sora-2-2025-10-06`) of an allowed model are accepted, as the real API does.
        base = re.sub(r"-\d{4}-\d{2}-\d{2}$", "", model)
        if model in self.allowed_models or base in self.allowed_models:
            return model
        return _check_choice(model, self.allowed_models, param="model")

    def _check_seconds(self, seconds: object) -> str:
        if not isinstance(seconds, str):
            raise _invalid(
                f"Invalid type for 'seconds': expected one of {', '.join(self.allowed_seconds)} as a string, "
                f"but got {type(seconds).__name__} instead.",
                param="seconds",
                code="invalid_type",
            )
        return _check_choice(seconds, self.allowed_seconds, param="seconds")

    def _check_characters(self, character_ids: Sequence[str]) -> list[_Character]:
        ids = list(character_ids)
        if len(ids) > self.max_characters:
            raise _invalid(
                f"Invalid 'characters': array too long. Expected an array with maximum length "
                f"{self.max_characters}, but got an array with length {len(ids)} instead.",
                param="characters",
                code="array_above_max_length",
            )
        found = []
        for index, character_id in enumerate(ids):
            character = self._characters.get(character_id) if isinstance(character_id, str) else None
            if character is None:
                raise _invalid(
                    f"Character '{character_id}' not found.", param=f"characters[{index}].id", code="invalid_value"
                )
            found.append(character)
        return found

    async def _check_image(self, image: Path | ImageReference | None, size: str) -> str | None:
        if image is None:
            return None
        if isinstance(image, ImageReference):
            if (image.image_url is None) == (image.file_id is None):
                raise _invalid(
                    "Provide exactly one of 'image_url' or 'file_id' in 'input_reference'.",
                    param="input_reference",
                    code="invalid_value",
                )
            # Offline there is nothing to fetch a URL or a file id from: accepted, not drawn.
            return None
        width, height = _parse_size(size)
        try:
            actual = await asyncio.to_thread(_image_size, Path(image))
        except (OSError, ValueError, Image.DecompressionBombError):
            raise _invalid(
                "The input_reference file is not a supported image.", param="input_reference", code="invalid_image"
            ) from None
        if actual != (width, height):
            raise _invalid(
                f"The input_reference image must be {width}x{height} to match 'size'; it is {actual[0]}x{actual[1]}.",
                param="input_reference",
                code="invalid_image_dimensions",
            )
        stored = self.root / "uploads" / f"ref_{self._new_hex()}{Path(image).suffix or '.png'}"
        await asyncio.to_thread(shutil.copyfile, image, stored)
        return str(stored)

    def _character(self, character_id: str, *, param: str) -> _Character:
        character = self._characters.get(character_id)
        if character is None:
            raise _not_found(f"No character found with id '{character_id}'.", param=param)
        return character

    def _job(self, video_id: str) -> _Job:
        job = self._jobs.get(video_id)
        if job is None or job.deleted:
            raise _not_found(f"No video found with id '{video_id}'.", param="video_id")
        return job

    def _completed_source(self, video_id: str, *, param: str) -> _Job:
        job = self._job(video_id)
        status = self._video(job).status
        if status is not VideoStatus.COMPLETED:
            raise _invalid(
                f"Video '{video_id}' is {status.value}; only completed videos can be used as a source.",
                param=param,
                code="invalid_video_status",
            )
        return job

    # --- internals: jobs --------------------------------------------------------------------------------

    def _new_hex(self) -> str:
        return f"{self._rng.getrandbits(128):032x}" if self._seeded else secrets.token_hex(16)

    def _new_id(self, prefix: str) -> str:
        # A seeded instance restarted on the same root replays the same sequence: skip ids already stored.
        while True:
            candidate = f"{prefix}_{self._new_hex()}"
            if candidate not in self._jobs and candidate not in self._characters:
                return candidate

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
    ) -> _Job:
        failure: tuple[str, str] | None = None
        if self._fail_next:
            failure = self._fail_next.pop(0)
        elif MODERATION_TRIGGER in prompt.lower():
            failure = ("moderation_blocked", "The request was blocked by our moderation system.")
        job = _Job(
            id=self._new_id("video"),
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
        self._jobs[job.id] = job
        self._order.append(job.id)
        self._save_job(job)
        return job

    def _elapsed(self, job: _Job) -> float:
        return (self.clock() - job.started) * self.time_scale

    def _video(self, job: _Job, *, just_created: bool = False) -> Video:
        # A create answers `queued` as the real API does, however fast simulated time runs.
        elapsed = 0.0 if just_created else self._elapsed(job)
        completed_at: int | None = None
        expires_at: int | None = None
        error: VideoJobError | None = None
        if elapsed >= job.duration and not just_created:
            finished = job.created_at + job.duration / self.time_scale
            completed_at = int(finished)
            if job.failure is not None:
                status, progress = VideoStatus.FAILED, 0
                error = VideoJobError(code=job.failure[0], message=job.failure[1])
            else:
                status, progress = VideoStatus.COMPLETED, 100
                expires_at = int(finished + self.expires_after)
        else:
            queued_for = job.duration * QUEUED_SHARE
            if elapsed < queued_for:
                status, progress = VideoStatus.QUEUED, 0
            else:
                status = VideoStatus.IN_PROGRESS
                share = (elapsed - queued_for) / max(1e-9, job.duration - queued_for)
                progress = min(99, max(0, int(share * 100)))
        return Video(
            id=job.id,
            model=job.model,
            status=status,
            progress=progress,
            created_at=int(job.created_at),
            completed_at=completed_at,
            expires_at=expires_at,
            prompt=job.prompt,
            size=job.size,
            seconds=job.seconds,
            remixed_from_video_id=job.remixed_from_video_id,
            error=error,
        )

    def _poll_after(self, job: _Job, video: Video) -> float | None:
        if video.status in (VideoStatus.COMPLETED, VideoStatus.FAILED) or self.poll_after_ms is None:
            return None
        if self.poll_after_ms != "auto":
            return self.poll_after_ms / 1000
        remaining_real = max(0.0, job.duration - self._elapsed(job)) / self.time_scale
        return min(2.0, max(0.001, remaining_real / 5))

    # --- internals: rendering ---------------------------------------------------------------------------

    async def _ensure_rendered(self, job: _Job) -> dict[ContentVariant, Path]:
        folder = self.root / "videos" / job.id
        paths = {variant: folder / name for variant, name in _FILE_NAMES.items()}
        if all(path.exists() for path in paths.values()):
            return paths
        key = self._cache_key(job)
        lock = self._render_locks.setdefault(key, asyncio.Lock())
        async with lock:
            if all(path.exists() for path in paths.values()):
                return paths
            if self.render_mode == "full":
                await asyncio.to_thread(self._renderer.render, job.scene, job.size, folder)
                await self._remember_output(job, paths[ContentVariant.VIDEO])
                return paths
            # Shared and stub renders live in the cache; each job links (or copies) the cached files.
            cache = self.root / "cache" / key
            cached = {variant: cache / name for variant, name in _FILE_NAMES.items()}
            if not all(path.exists() for path in cached.values()):
                if self.render_mode == "stub":
                    await asyncio.to_thread(self._renderer.render_stub, job.size, job.scene.total_seconds, cache)
                else:
                    await asyncio.to_thread(self._renderer.render, job.scene, job.size, cache)
            await asyncio.to_thread(_link_all, cached, paths)
            await self._remember_output(job, paths[ContentVariant.VIDEO])
        return paths

    async def _remember_output(self, job: _Job, video: Path) -> None:
        job.output_sha256 = await asyncio.to_thread(_file_sha256, video)
        self._save_job(job)

    def _cache_key(self, job: _Job) -> str:
        if self.render_mode == "full":
            return job.id
        if self.render_mode == "stub":
            return f"stub-{job.size}-{job.scene.total_seconds}"
        shape = _scene_shape(job.scene)
        digest = hashlib.sha1(shape.encode()).hexdigest()[:16]
        return f"shared-{job.size}-{job.scene.total_seconds}-{digest}"

    # --- internals: persistence -------------------------------------------------------------------------

    def _write_json(self, path: Path, data: dict[str, Any]) -> None:
        if not self.persist:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data), encoding="utf-8")
        tmp.replace(path)

    def _save_job(self, job: _Job) -> None:
        self._write_json(self.root / "videos" / job.id / "job.json", job.to_dict())

    def _load(self) -> None:
        for path in sorted((self.root / "characters").glob("char_*.json")):
            with contextlib.suppress(ValueError, KeyError, TypeError, OSError):
                data = json.loads(path.read_text(encoding="utf-8"))
                self._characters[data["id"]] = _Character(**data)
        jobs = []
        for path in (self.root / "videos").glob("video_*/job.json"):
            with contextlib.suppress(ValueError, KeyError, TypeError, OSError):
                jobs.append(_Job.from_dict(json.loads(path.read_text(encoding="utf-8"))))
        for job in sorted(jobs, key=lambda j: j.created_at):
            self._jobs[job.id] = job
            self._order.append(job.id)


# --- probing and small file helpers ---------------------------------------------------------------------


@dataclass
class ClipInfo:
    """What the API learns from a character clip."""

    seconds: float
    width: int
    height: int
    title: str
    comment: str


def probe_clip(path: Path) -> ClipInfo:
    """Open and decode the clip's first frame; a file that is not a decodable video is refused (400)."""
    refused = _invalid("The uploaded file is not a supported video.", param="video", code="invalid_video")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise refused
            stream = container.streams.video[0]
            meta = {k.lower(): v for k, v in {**stream.metadata, **container.metadata}.items()}
            first = next(container.decode(stream), None)
            if first is None:
                raise refused
            if container.duration is not None:
                seconds = container.duration / 1_000_000
            elif stream.duration is not None and stream.time_base is not None:
                seconds = float(stream.duration * stream.time_base)
            else:
                seconds = 0.0
            return ClipInfo(
                seconds=seconds,
                width=first.width,
                height=first.height,
                title=str(meta.get("title", "")),
                comment=str(meta.get("comment", "")),
            )
    except VideosAPIError:
        raise
    except (av.FFmpegError, OSError, ValueError, IndexError, StopIteration):
        raise refused from None


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _image_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        return image.size


def _parse_size(size: str) -> tuple[int, int]:
    width, height = size.lower().split("x")
    return int(width), int(height)


def _copy_into(source: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".part")
    shutil.copyfile(source, tmp)
    tmp.replace(dest)


def _link_all(sources: dict[ContentVariant, Path], targets: dict[ContentVariant, Path]) -> None:
    for variant, source in sources.items():
        target = targets[variant]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.unlink(missing_ok=True)
        try:
            target.hardlink_to(source)  # shared renders cost no disk per job where links work
        except OSError:
            shutil.copyfile(source, target)


def _scene_shape(scene: Scene) -> str:
    """The parts of a scene a shared render depends on (not the prompt)."""
    chars = ",".join(c[0] for c in scene.characters)
    inner = _scene_shape(scene.source) if scene.source and scene.kind in ("extend", "edit") else ""
    return f"{scene.kind}:{scene.seconds}:{chars}:{scene.image or ''}[{inner}]"


# --- rendering ------------------------------------------------------------------------------------------


class _Renderer:
    """Draws scenes into MP4 + thumbnail + spritesheet. Runs in worker threads; caches decoded clip frames."""

    def __init__(self, *, fps: int) -> None:
        self.fps = fps
        # Decoded clips are big (a 4 s clip at 1792 px is ~100 MB of RGB), so only the latest few are kept.
        self._clip_cache: OrderedDict[tuple[str, int, int], list[np.ndarray]] = OrderedDict()
        self._lock = threading.Lock()

    # Public entry points (called through asyncio.to_thread).

    def render(self, scene: Scene, size: str, folder: Path) -> None:
        """Render `scene` at `size` into `folder`/{video.mp4, thumbnail.jpg, spritesheet.jpg}."""
        width, height = _parse_size(size)
        total = scene.total_seconds * self.fps
        self._encode(self._frames(scene, width, height), total, width, height, self.fps, folder)

    def render_stub(self, size: str, seconds: int, folder: Path) -> None:
        """A small solid-colour MP4 of the right duration (longest side 160 px, 2 fps)."""
        width, height = _parse_size(size)
        scale = 160 / max(width, height)
        small_w, small_h = max(2, round(width * scale / 2) * 2), max(2, round(height * scale / 2) * 2)
        fps = 2
        frame = np.empty((small_h, small_w, 3), dtype=np.uint8)
        frame[:] = (40, 90, 160)
        frames = (frame for _ in range(seconds * fps))
        self._encode(frames, seconds * fps, small_w, small_h, fps, folder)

    # Encoding.

    def _encode(
        self, frames: Iterator[np.ndarray], total: int, width: int, height: int, fps: int, folder: Path
    ) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        video_tmp = folder / "video.mp4.part"
        thumb_index = total // 2
        sprite_every = max(1, total // _SPRITE_FRAMES)
        thumbnail: Image.Image | None = None
        tiles: list[Image.Image] = []
        tile_w = min(_SPRITE_TILE_WIDTH, width)
        tile_h = max(2, round(height * tile_w / width))
        with av.open(str(video_tmp), "w", format="mp4", options={"movflags": "+faststart"}) as out:
            stream = out.add_stream("libx264", rate=fps)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            # ultrafast keeps renders quick on small machines; quality is not the point offline.
            stream.options = {"preset": "ultrafast", "crf": "28"}
            stream.codec_context.time_base = Fraction(1, fps)
            for index, image in enumerate(frames):
                if index >= total:
                    break
                if index == thumb_index:
                    thumbnail = Image.fromarray(image)
                if index % sprite_every == 0 and len(tiles) < _SPRITE_FRAMES:
                    tiles.append(Image.fromarray(image).resize((tile_w, tile_h), Image.Resampling.BILINEAR))
                frame = av.VideoFrame.from_ndarray(image, format="rgb24")
                frame.pts = index
                for packet in stream.encode(frame):
                    out.mux(packet)
            for packet in stream.encode():
                out.mux(packet)
        if thumbnail is None:
            thumbnail = Image.new("RGB", (width, height))
        thumb_tmp = folder / "thumbnail.jpg.part"
        thumbnail.save(thumb_tmp, format="JPEG", quality=85)
        sprite_tmp = folder / "spritesheet.jpg.part"
        _spritesheet(tiles, tile_w, tile_h).save(sprite_tmp, format="JPEG", quality=80)
        # Publish the video last: its presence is what marks a render as done.
        thumb_tmp.replace(folder / "thumbnail.jpg")
        sprite_tmp.replace(folder / "spritesheet.jpg")
        video_tmp.replace(folder / "video.mp4")

    # Frames.

    def _frames(self, scene: Scene, width: int, height: int) -> Iterator[np.ndarray]:
        if scene.kind == "extend" and scene.source is not None:
            yield from self._frames(scene.source, width, height)
            offset = scene.source.total_seconds * self.fps
            yield from self._segment(scene, width, height, frame_offset=offset)
        elif scene.kind == "edit" and scene.source is not None:
            caption = _Caption(scene.prompt, width, height, label="edit")
            tint = np.array(_palette(scene.prompt)[1], dtype=np.uint16)
            for image in self._frames(scene.source, width, height):
                # A visible, cheap "edit": blend a quarter of the edit's colour in and re-caption.
                tinted = ((image.astype(np.uint16) * 3 + tint) // 4).astype(np.uint8)
                caption.apply(tinted)
                yield tinted
        else:
            yield from self._segment(scene, width, height, frame_offset=0)

    def _segment(self, scene: Scene, width: int, height: int, *, frame_offset: int) -> Iterator[np.ndarray]:
        fps = self.fps
        background = _Background(scene, width, height, fps)
        label = {"remix": "remix", "extend": "extended"}.get(scene.kind)
        caption = _Caption(scene.prompt, width, height, label=label)
        sprites = self._character_sprites(scene, width, height)
        count = len(sprites)
        for index in range(scene.seconds * fps):
            t = (index + frame_offset) / fps
            image = background.frame(index + frame_offset)
            for slot, (frames, (box_w, box_h)) in enumerate(sprites):
                clip_frame = frames[(index + frame_offset) % len(frames)]
                # Characters stand side by side and sway, so the composition visibly moves.
                centre = width * (slot + 1) / (count + 1)
                sway = math.sin(t * 1.7 + slot) * width * 0.04
                x = int(min(max(0, centre + sway - box_w / 2), width - box_w))
                bob = abs(math.sin(t * 3.1 + slot * 0.9)) * height * 0.04
                y = int(min(max(0, height * 0.52 - box_h / 2 - bob), height - box_h))
                image[y : y + box_h, x : x + box_w] = clip_frame
            caption.apply(image)
            yield image

    def _character_sprites(
        self, scene: Scene, width: int, height: int
    ) -> list[tuple[list[np.ndarray], tuple[int, int]]]:
        sprites = []
        count = len(scene.characters)
        for _character_id, clip in scene.characters:
            frames = self._clip_frames(clip, width, height, count)
            if frames:
                box_h, box_w = frames[0].shape[:2]
                sprites.append((frames, (box_w, box_h)))
        return sprites

    def _clip_frames(self, clip: str, width: int, height: int, count: int) -> list[np.ndarray]:
        """The clip's frames at the render's fps, scaled to fit a character's box (decoded once, cached)."""
        max_w = int(width * 0.9 / max(1, count))
        max_h = int(height * 0.45)
        key = (clip, max_w, max_h)
        with self._lock:
            cached = self._clip_cache.get(key)
            if cached is not None:
                self._clip_cache.move_to_end(key)
                return cached
        frames: list[np.ndarray] = []
        if Path(clip).suffix.lower() in (".jpg", ".jpeg", ".png", ".webp"):
            return self._still_frames(clip, max_w, max_h, key)
        try:
            with av.open(clip) as container:
                stream = container.streams.video[0]
                next_time = 0.0
                for frame in container.decode(stream):
                    when = float(frame.time or 0.0)
                    if when + 1e-6 < next_time:
                        continue  # thin the clip to the render's frame rate
                    next_time = when + 1 / self.fps
                    scale = min(max_w / frame.width, max_h / frame.height)
                    box_w = max(2, int(frame.width * scale) // 2 * 2)
                    box_h = max(2, int(frame.height * scale) // 2 * 2)
                    frames.append(frame.to_ndarray(format="rgb24", width=box_w, height=box_h))
                    if len(frames) >= 20 * self.fps:
                        break
        except (av.FFmpegError, OSError, IndexError):
            frames = []  # a clip that vanished since upload: draw the scene without it
        with self._lock:
            self._clip_cache[key] = frames
            while len(self._clip_cache) > _CLIP_CACHE_ENTRIES:
                self._clip_cache.popitem(last=False)
        return frames

    def _still_frames(self, path: str, max_w: int, max_h: int, key: tuple[str, int, int]) -> list[np.ndarray]:
        """A reference still as a one-frame sprite, scaled to fit the character's box."""
        try:
            with Image.open(path) as image:
                picture = image.convert("RGB")
        except (OSError, ValueError, Image.DecompressionBombError):
            return []
        scale = min(max_w / picture.width, max_h / picture.height)
        box = (max(2, int(picture.width * scale) // 2 * 2), max(2, int(picture.height * scale) // 2 * 2))
        frames = [np.asarray(picture.resize(box, Image.Resampling.BILINEAR))]
        with self._lock:
            self._clip_cache[key] = frames
            while len(self._clip_cache) > _CLIP_CACHE_ENTRIES:
                self._clip_cache.popitem(last=False)
        return frames


def _palette(text: str) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """Two colours derived from a text, so different prompts look different (and the same one the same)."""
    digest = hashlib.sha256(text.encode()).digest()
    first = (40 + digest[0] % 120, 40 + digest[1] % 120, 80 + digest[2] % 150)
    second = (60 + digest[3] % 160, 30 + digest[4] % 120, 40 + digest[5] % 120)
    return first, second


class _Background:
    """A diagonal-stripe gradient that scrolls sideways: one precomputed tile, one slice per frame."""

    def __init__(self, scene: Scene, width: int, height: int, fps: int) -> None:
        self.width = width
        self.period = max(32, width // 6)
        # Pixels per frame, so the motion speed is the same in seconds at any fps.
        self.speed = max(1.0, width / 8 / fps)
        tile_w = width + self.period
        base: np.ndarray | None = None
        if scene.image:
            with contextlib.suppress(OSError, ValueError):
                with Image.open(scene.image) as image:
                    base = np.asarray(image.convert("RGB").resize((width, height)), dtype=np.uint8)
        first, second = _palette(scene.prompt if scene.kind != "extend" else scene.prompt + "+")
        ys = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
        xs = np.arange(tile_w, dtype=np.float32)[None, :, None]
        yy = np.arange(height, dtype=np.float32)[:, None, None]
        stripes = ((xs + yy) % self.period < self.period / 2).astype(np.float32)
        top = np.array(first, dtype=np.float32)
        bottom = np.array(second, dtype=np.float32)
        gradient = top * (1 - ys) + bottom * ys
        tile = gradient * (0.8 + 0.2 * stripes)
        if base is not None:
            # An input reference image shows through, with the stripes drifting over it.
            wide = np.concatenate([base, base[:, : self.period]], axis=1).astype(np.float32)
            tile = wide * 0.75 + tile * 0.25
        self.tile = np.clip(tile, 0, 255).astype(np.uint8)

    def frame(self, index: int) -> np.ndarray:
        offset = int(index * self.speed) % self.period
        return self.tile[:, offset : offset + self.width].copy()


class _Caption:
    """The prompt drawn once with Pillow's default font, then blended onto every frame's bottom band."""

    MAX_LINES = 4

    def __init__(self, prompt: str, width: int, height: int, *, label: str | None) -> None:
        font_size = max(10, min(48, height // 22))
        font = _font(font_size)
        text = " ".join(prompt.split())
        if label:
            text = f"[{label}] {text}"
        lines = _wrap(text, font, width * 0.94, self.MAX_LINES)
        line_h = int(font_size * 1.25)
        pad = max(4, font_size // 3)
        band_h = min(height, line_h * len(lines) + pad * 2)
        overlay = Image.new("RGBA", (width, band_h), (0, 0, 0, 150))
        draw = ImageDraw.Draw(overlay)
        for row, line in enumerate(lines):
            draw.text((pad * 2, pad + row * line_h), line, font=font, fill=(255, 255, 255, 255))
        rgba = np.asarray(overlay, dtype=np.uint16)
        alpha = rgba[:, :, 3:4]
        self.top = height - band_h
        self.keep = 255 - alpha
        self.add = rgba[:, :, :3] * alpha

    def apply(self, image: np.ndarray) -> None:
        band = image[self.top :]
        band[:] = ((band.astype(np.uint16) * self.keep + self.add) // 255).astype(np.uint8)


def _wrap(text: str, font: Any, max_width: float, max_lines: int) -> list[str]:
    """Greedy word wrap by measured width; a last line that does not fit all the text ends with an ellipsis."""
    words = text.split(" ")
    lines: list[str] = []
    current = ""
    for word in words:
        candidate = f"{current} {word}" if current else word
        if font.getlength(candidate) <= max_width:
            current = candidate
            continue
        if current:
            lines.append(current)
        current = word
        # Very long words are cut, so one URL cannot push the caption off the frame.
        while font.getlength(current) > max_width and len(current) > 1:
            cut = max(1, int(len(current) * max_width / font.getlength(current)))
            lines.append(current[:cut])
            current = current[cut:]
        if len(lines) >= max_lines:
            lines = lines[:max_lines]
            last = lines[-1]
            while last and font.getlength(last + " …") > max_width:
                last = last[:-1]
            lines[-1] = last.rstrip() + " …"
            return lines
    if current:
        lines.append(current)
    return lines or [""]


_FONTS: dict[int, Any] = {}


def _font(size: int) -> Any:
    font = _FONTS.get(size)
    if font is None:
        try:
            font = ImageFont.load_default(size=size)
        except (TypeError, OSError):  # Pillow without FreeType: the fixed bitmap font
            font = ImageFont.load_default()
        _FONTS[size] = font
    return font


def _spritesheet(tiles: list[Image.Image], tile_w: int, tile_h: int) -> Image.Image:
    columns = min(_SPRITE_COLUMNS, max(1, len(tiles)))
    rows = max(1, math.ceil(len(tiles) / columns))
    sheet = Image.new("RGB", (tile_w * columns, tile_h * rows))
    for index, tile in enumerate(tiles):
        sheet.paste(tile, ((index % columns) * tile_w, (index // columns) * tile_h))
    return sheet
