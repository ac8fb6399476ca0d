"""The offline API's records — characters, jobs and the scenes they show — their state at a given moment, and
the small JSON files that keep them across restarts."""

from __future__ import annotations

import contextlib
import json
import random
import secrets
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bot.backends.offline.spec import not_found
from bot.backends.openai.schemas import (
    Video,
    VideoCharacter,
    VideoJobError,
    VideoStatus,
)

#: Share of a job's simulated duration spent `queued` before it starts `in_progress`.
QUEUED_SHARE = 0.1


# --- records ---------------------------------------------------------------------------------------------


@dataclass
class CharacterRecord:
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
class JobRecord:
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
    def from_dict(cls, data: dict[str, Any]) -> JobRecord:
        data = dict(data)
        data["scene"] = Scene.from_dict(data["scene"])
        failure = data.get("failure")
        data["failure"] = tuple(failure) if failure else None
        return cls(**data)


def scene_shape(scene: Scene) -> str:
    """The parts of a scene a shared render depends on (not the prompt)."""
    chars = ",".join(c[0] for c in scene.characters)
    inner = scene_shape(scene.source) if scene.source and scene.kind in ("extend", "edit") else ""
    return f"{scene.kind}:{scene.seconds}:{chars}:{scene.image or ''}[{inner}]"


def video_of(job: JobRecord, elapsed: float | None, *, time_scale: float, expires_after: float) -> Video:
    """The job as the API shows it after `elapsed` simulated seconds (None: just created, so `queued`)."""
    completed_at: int | None = None
    expires_at: int | None = None
    error: VideoJobError | None = None
    if elapsed is not None and elapsed >= job.duration:
        finished = job.created_at + job.duration / time_scale
        completed_at = int(finished)
        if job.failure is not None:
            status, progress = VideoStatus.FAILED, 0
            error = VideoJobError(code=job.failure[0], message=job.failure[1])
        else:
            status, progress = VideoStatus.COMPLETED, 100
            expires_at = int(finished + expires_after)
    else:
        elapsed = elapsed or 0.0
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


# --- persistence -----------------------------------------------------------------------------------------


class JobTable:
    """The offline API's characters and jobs in memory, each written to a small JSON file as it changes."""

    def __init__(self, root: Path, *, persist: bool, rng: random.Random, seeded: bool) -> None:
        """Load what `root` holds; with `persist` off nothing is written (reads still happen)."""
        self.root = root
        self.persist = persist
        self._rng = rng
        # Seeded runs give reproducible ids too, which keeps test logs comparable between runs.
        self._seeded = seeded
        self.characters: dict[str, CharacterRecord] = {}
        self.jobs: dict[str, JobRecord] = {}
        self.order: list[str] = []  # creation order, for listing
        characters, jobs = load_records(root)
        self.characters.update(characters)
        for job in jobs:
            self.jobs[job.id] = job
            self.order.append(job.id)

    def new_hex(self) -> str:
        """32 random hex digits (from the seed, when there is one)."""
        return f"{self._rng.getrandbits(128):032x}" if self._seeded else secrets.token_hex(16)

    def new_id(self, prefix: str) -> str:
        """A fresh `prefix_…` id no character or job has."""
        # A seeded instance restarted on the same root replays the same sequence: skip ids already stored.
        while True:
            candidate = f"{prefix}_{self.new_hex()}"
            if candidate not in self.jobs and candidate not in self.characters:
                return candidate

    def add_character(self, character: CharacterRecord) -> None:
        """Keep a new character, and its record on disk."""
        self.characters[character.id] = character
        self._write(self.root / "characters" / f"{character.id}.json", asdict(character))

    def add_job(self, job: JobRecord) -> None:
        """Keep a new job at the end of the listing order."""
        self.jobs[job.id] = job
        self.order.append(job.id)
        self.save(job)

    def save(self, job: JobRecord) -> None:
        """Write a job's record again after it changed."""
        self._write(self.root / "videos" / job.id / "job.json", job.to_dict())

    def character(self, character_id: str, *, param: str) -> CharacterRecord:
        """A registered character, or the API's 404 naming `param`."""
        character = self.characters.get(character_id)
        if character is None:
            raise not_found(f"No character found with id '{character_id}'.", param=param)
        return character

    def job(self, video_id: str) -> JobRecord:
        """A job that exists and was not deleted, or the API's 404."""
        job = self.jobs.get(video_id)
        if job is None or job.deleted:
            raise not_found(f"No video found with id '{video_id}'.", param="video_id")
        return job

    def _write(self, path: Path, data: dict[str, Any]) -> None:
        if self.persist:
            write_json(path, data)


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write a record whole or not at all (a temp file renamed over it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data), encoding="utf-8")
    tmp.replace(path)


def load_records(root: Path) -> tuple[dict[str, CharacterRecord], list[JobRecord]]:
    """The characters and jobs stored under `root`, jobs oldest first; unreadable records are skipped."""
    characters: dict[str, CharacterRecord] = {}
    for path in sorted((root / "characters").glob("char_*.json")):
        with contextlib.suppress(ValueError, KeyError, TypeError, OSError):
            data = json.loads(path.read_text(encoding="utf-8"))
            characters[data["id"]] = CharacterRecord(**data)
    jobs = []
    for path in (root / "videos").glob("video_*/job.json"):
        with contextlib.suppress(ValueError, KeyError, TypeError, OSError):
            jobs.append(JobRecord.from_dict(json.loads(path.read_text(encoding="utf-8"))))
    return characters, sorted(jobs, key=lambda j: j.created_at)
