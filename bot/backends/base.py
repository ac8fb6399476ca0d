"""The one protocol every video backend implements, and the facts about each model the core decides with.

The core never speaks a provider's wire format. It hands a backend a `VideoRequest` (the user's prompt, the
characters it mentions with their reference files, the chosen model, length and size) and gets `JobState`s
back. What a character becomes on the wire — a native character id, reference clips and stills with prompt
tags, named elements — is the backend's business; what a model allows is published in its
`ModelCapabilities`, so the core can refuse a request before anything is sent.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from bot.models import GenerationKind, HostedReference

#: The key naming soracast's generation in what a provider keeps with a job and gives back (Gemini's
#: `user_metadata`), so a job whose create's answer was lost can be tied back to its generation.
GENERATION_KEY = "soracast_generation"


class CharacterMode(StrEnum):
    """How a model carries a character into a video."""

    #: Upload the clip once, pass the returned id, mention the name verbatim (OpenAI shape).
    NATIVE_ID = "native_id"
    #: Send reference clips and stills with every request (Gemini Omni, Vidu, Veo).
    REFERENCES = "references"
    #: Send named elements (a frontal still plus reference stills) cited as `@Element1` (Kling on fal).
    ELEMENTS = "elements"
    #: The model takes no characters.
    NONE = "none"


#: Resolutions as the providers name them, by the short side of the frame.
RESOLUTIONS = {360: "360p", 480: "480p", 540: "540p", 720: "720p", 1080: "1080p", 2160: "4k"}


def size_of(text: str) -> tuple[int, int]:
    """`1280x720` → (1280, 720)."""
    width, _, height = text.partition("x")
    return int(width), int(height)


def aspect_of(size: str) -> str:
    """`1280x720` → `16:9`, `720x1280` → `9:16`, `1024x1024` → `1:1` (the ratios the providers use)."""
    width, height = size_of(size)
    if width == height:
        return "1:1"
    ratio = width / height
    candidates = {"16:9": 16 / 9, "9:16": 9 / 16, "4:3": 4 / 3, "3:4": 3 / 4, "7:4": 7 / 4, "4:7": 4 / 7}
    return min(candidates, key=lambda name: abs(candidates[name] - ratio))


def resolution_of(size: str) -> str:
    """`1280x720` → `720p`, `2160x3840` → `4k`."""
    short = min(size_of(size))
    return RESOLUTIONS.get(short, f"{short}p")


class ModelCapabilities(BaseModel):
    """What one model accepts, published so the core can check a request and explain a refusal first."""

    model_config = ConfigDict(frozen=True)

    #: The id sent to the provider.
    model: str
    #: Short names users may type instead (`kling-o1`).
    aliases: tuple[str, ...] = ()
    #: A human name (`Gemini Omni 1.1 Flash`).
    label: str = ""
    #: Whole seconds a video may last, ascending.
    durations: tuple[int, ...]
    default_duration: int
    #: Frame sizes as `WIDTHxHEIGHT`; aspect ratio and resolution are derived from them.
    sizes: tuple[str, ...]
    default_size: str
    character_mode: CharacterMode
    #: The most characters one video may feature.
    max_characters: int = Field(ge=0)
    max_reference_images: int = 0
    max_reference_videos: int = 0
    max_reference_video_seconds: float = 0.0
    #: Inputs one request may carry, counted as the provider counts them, for ELEMENTS models: Kling counts
    #: elements + reference images + a start image, and one element is one input however many stills it has.
    max_inputs: int = 0
    #: The same ceiling when a video is among the inputs (Kling: 4 instead of 7).
    max_inputs_with_video: int = 0
    can_remix: bool = False
    can_extend: bool = False
    #: Seconds an extension may add (defaults to `durations`).
    extend_durations: tuple[int, ...] = ()
    #: The longest a video may grow through extensions, in seconds (None: no published total).
    max_total_seconds: int | None = None
    #: USD per second of output by resolution (`720p`), or `*` for any; empty when not published.
    price_per_second: dict[str, float] = Field(default_factory=dict)
    #: Where the price came from and when it was read.
    price_source: str = ""

    @property
    def names(self) -> tuple[str, ...]:
        """Every name this model answers to."""
        return (self.model, *self.aliases)

    @property
    def aspect_ratios(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(aspect_of(s) for s in self.sizes))

    @property
    def resolutions(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(resolution_of(s) for s in self.sizes))

    def price_for(self, size: str) -> float | None:
        """USD per second at this size, or None when the provider publishes no price for it."""
        return self.price_per_second.get(resolution_of(size), self.price_per_second.get("*"))

    def allowed_extensions(self) -> tuple[int, ...]:
        return self.extend_durations or self.durations


class JobStatus(StrEnum):
    """A backend job's state, the same words for every provider."""

    QUEUED = "queued"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"


class JobState(BaseModel):
    """What a backend said about a job when last asked."""

    id: str
    status: JobStatus
    #: 0–100 when the provider reports it; None when it does not (the core estimates from time).
    progress: int | None = None
    #: Place in the provider's own queue, when it says (fal's `queue_position`).
    queue_position: int | None = None
    #: Seconds the provider asked us to wait before asking again.
    poll_after: float | None = None
    error_code: str | None = None
    error_message: str | None = None
    #: The soracast generation the provider says this job was made for, where it keeps one (Gemini returns the
    #: `user_metadata` it was sent); None when it keeps none.
    request_key: str | None = None


class CharacterInput(BaseModel):
    """One character of a request as a backend receives it: its name and its reference files on disk."""

    handle: str
    name: str
    #: The stored character's id (stable across renames), for caching native ids.
    character_id: str
    #: The prepared reference clip (H.264 MP4, at most a few seconds), if one is stored.
    clip: Path | None = None
    #: The chosen stills, best first (JPEG).
    stills: list[Path] = Field(default_factory=list)
    #: The id this backend's account gave the character before (NATIVE_ID models), if any.
    native_id: str | None = None
    #: Where the backend's account already hosts some of these files, by content hash (backends that send
    #: references as URLs they host: see `HostsReferences`).
    hosted: dict[str, HostedReference] = Field(default_factory=dict)
    #: Its owner's standing instructions ("always wears the red scarf"), with no @handle left in them ("" for
    #: none): each backend's prompt composer places them in its own form (`standing_instructions`).
    instructions: str = ""


class Mention(BaseModel):
    """Where a handle stands in the user's prompt (`prompt[start:end] == "@" + what the user typed`)."""

    start: int
    end: int
    handle: str


class VideoRequest(BaseModel):
    """Everything a backend needs to start one job."""

    kind: GenerationKind = GenerationKind.CREATE
    #: The prompt exactly as the user typed it, handles included.
    prompt: str
    mentions: list[Mention] = Field(default_factory=list)
    #: The characters the prompt uses, in order of first mention.
    characters: list[CharacterInput] = Field(default_factory=list)
    model: str
    seconds: int
    size: str
    #: For remix and extend: the backend's id of the finished source job (None when this backend did not make
    #: it), its video file when on disk, and how long it is in seconds.
    source_job_id: str | None = None
    source_video: Path | None = None
    source_seconds: int | None = None
    #: Stable for the life of the request (soracast's generation id), for providers that deduplicate.
    request_key: str


def name_prompt(request: VideoRequest) -> str:
    """The user's prompt with each @handle replaced by its character's name, verbatim (as Sora wants it)."""
    names = {c.handle: c.name for c in request.characters}
    pieces: list[str] = []
    cursor = 0
    for mention in sorted(request.mentions, key=lambda m: m.start):
        pieces.append(request.prompt[cursor : mention.start])
        pieces.append(names.get(mention.handle, request.prompt[mention.start : mention.end]))
        cursor = mention.end
    pieces.append(request.prompt[cursor:])
    return "".join(pieces).strip()


def standing_instructions(characters: Sequence[CharacterInput], label: Callable[[CharacterInput], str]) -> str:
    """The characters' standing instructions as prompt sentences, each led by how this backend's prompt refers to
    the character (`label`: its name, or `@Element1`); "" when none has any."""
    lines = [
        f"Standing instructions for {label(c)}: {c.instructions.rstrip('.')}." for c in characters if c.instructions
    ]
    return " ".join(lines)


def with_instructions(prompt: str, characters: Sequence[CharacterInput], label: Callable[[CharacterInput], str]) -> str:
    """`prompt`, followed by the characters' standing instructions (a paragraph of their own) where there are any."""
    rules = standing_instructions(characters, label)
    return f"{prompt}\n\n{rules}" if rules else prompt


class VideoBackend(Protocol):
    """A video API soracast can send jobs to. Errors are `bot.errors.VideosAPIError` subclasses."""

    #: The name the operator picks it by (`SORACAST_BACKEND`) and that generations record.
    name: str
    #: How users read it in messages: "Gemini", "fal", "the Videos API".
    service: str
    #: Where native character ids live (one account at one endpoint): native ids are cached under it.
    account_key: str
    #: Whether the provider can list recent jobs: `poll_many` checks many in few calls, and `find_job` can tell
    #: whether a create whose answer was lost made a job.
    can_list_jobs: bool
    #: Whether the provider announces this backend's jobs by a webhook naming soracast's generation (configured
    #: here): a create whose answer was lost is then waited for, not sent again (see `bot.videos.jobs`).
    announces_jobs: bool

    def models(self) -> Sequence[ModelCapabilities]:
        """Every model this backend offers here, the default first."""

    def compose_prompt(self, request: VideoRequest) -> str:
        """The prompt as this backend's API gets it (deterministic: stored before submitting)."""

    async def create_character(self, character: CharacterInput) -> str:
        """NATIVE_ID backends: upload the character's clip and return the provider's id."""

    async def submit(self, request: VideoRequest, api_prompt: str) -> JobState:
        """Start a job; raises when the provider refuses it."""

    async def poll(self, job_id: str) -> JobState:
        """Where a job is now."""

    async def poll_many(self, job_ids: Sequence[str]) -> dict[str, JobState]:
        """Where many jobs are, in as few calls as the provider allows; ids it could not see are left out."""

    async def find_job(self, request: VideoRequest, api_prompt: str, since: datetime) -> JobState | None:
        """The job an unanswered create made, if the provider can tell (None: none was made, or unknowable —
        see `can_list_jobs`)."""

    def job_id_of(self, provider_id: str, model: str) -> str:
        """The job id soracast stores for a job the provider names `provider_id` (what its webhooks carry)."""

    def provider_id_of(self, job_id: str) -> str:
        """The provider's own id of a stored job (the inverse of `job_id_of`)."""

    async def download(self, job_id: str, dest: Path) -> Path:
        """Stream a completed job's video to `dest` (written beside it, renamed into place)."""

    async def download_thumbnail(self, job_id: str, dest: Path) -> Path | None:
        """The provider's thumbnail, or None when it makes none (the core then cuts one from the video)."""

    async def cancel(self, job_id: str) -> None:
        """Stop a job that has not finished (best effort)."""

    async def delete(self, job_id: str) -> None:
        """Delete a job's stored output at the provider, where it keeps one."""

    async def check(self) -> BackendCheck:
        """Prove the key, the endpoint and the configured models with the provider's cheapest calls (no video
        is made); problems are reported in the answer, not raised."""

    async def aclose(self) -> None:
        """Release connections (and, for the offline backend, its local server)."""


@runtime_checkable
class HostsReferences(Protocol):
    """A backend whose API reads references from URLs it hosts, so they are uploaded (once) before a submit."""

    #: Whose storage the URLs live in: hosted references are remembered under it.
    hosting_account: str

    async def host_references(self, request: VideoRequest) -> list[HostedReference]:
        """Upload what `request` will send and its characters' `hosted` lacks (or holds too close to expiry),
        record them in `hosted`, and return the new ones to remember. Nothing is submitted."""


class BackendCheck(BaseModel):
    """What `soracast check` learnt of one backend with the cheapest calls its provider offers."""

    #: Where it was asked (a host, a base URL): the operator checks this against their settings.
    endpoint: str
    #: The configured models the provider confirmed (or, where it cannot tell, that were not refused).
    models_available: list[str] = Field(default_factory=list)
    #: One line per problem, each saying what to fix (a refused key, a wrong URL, a model not enabled).
    problems: list[str] = Field(default_factory=list)
    #: Anything else worth a line (what could not be verified, a price the provider quoted).
    notes: list[str] = Field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems
