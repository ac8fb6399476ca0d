"""Request and response models of the Videos API, as in the published spec (plus `characters`)."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


class VideoStatus(StrEnum):
    QUEUED = "queued"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"


class ContentVariant(StrEnum):
    VIDEO = "video"
    THUMBNAIL = "thumbnail"
    SPRITESHEET = "spritesheet"


class _Lenient(BaseModel):
    # Real endpoints add fields over time; ignore what we do not know rather than fail.
    model_config = ConfigDict(extra="ignore")


class VideoJobError(_Lenient):
    code: str = "unknown"
    message: str = ""


class Video(_Lenient):
    """The video job object (`object: "video"`)."""

    id: str
    object: str = "video"
    model: str = "sora-2"
    status: VideoStatus
    progress: int = 0
    created_at: int = 0
    completed_at: int | None = None
    expires_at: int | None = None
    prompt: str | None = None
    size: str | None = None
    seconds: str | None = None
    remixed_from_video_id: str | None = None
    error: VideoJobError | None = None


class VideoList(_Lenient):
    object: str = "list"
    data: list[Video] = Field(default_factory=list)
    first_id: str | None = None
    last_id: str | None = None
    has_more: bool = False


class DeletedVideo(_Lenient):
    id: str
    object: str = "video.deleted"
    deleted: bool = True


class VideoCharacter(_Lenient):
    """A character created from an uploaded clip (`char_…`)."""

    id: str | None = None
    name: str | None = None
    created_at: int = 0


class CharacterParam(BaseModel):
    id: str


class ImageReference(BaseModel):
    """`input_reference` as an object: exactly one of these."""

    image_url: str | None = None
    file_id: str | None = None


class CreateVideoRequest(BaseModel):
    """Body of `POST /videos`."""

    prompt: str = Field(min_length=1, max_length=32000)
    model: str | None = None
    seconds: str | None = None
    size: str | None = None
    characters: list[CharacterParam] | None = None
    input_reference: ImageReference | None = None


class APIErrorBody(_Lenient):
    message: str = ""
    type: str | None = None
    param: str | None = None
    code: str | None = None


class APIErrorEnvelope(_Lenient):
    error: APIErrorBody
