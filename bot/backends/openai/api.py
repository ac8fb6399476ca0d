"""The Videos API surface the core depends on; the HTTP client and the offline renderer both provide it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from bot.backends.openai.schemas import (
    ContentVariant,
    DeletedVideo,
    ImageReference,
    Video,
    VideoCharacter,
    VideoList,
)


class PolledVideo(Video):
    """A retrieved video plus how long the API asked us to wait before the next poll (seconds, or None)."""

    poll_after: float | None = None


class VideosAPI(Protocol):
    """Everything soracast asks of a Videos API endpoint. Errors are `bot.errors.VideosAPIError` subclasses."""

    async def create_character(self, name: str, clip: Path) -> VideoCharacter: ...

    async def get_character(self, character_id: str) -> VideoCharacter: ...

    async def create_video(
        self,
        prompt: str,
        *,
        model: str | None = None,
        seconds: str | None = None,
        size: str | None = None,
        character_ids: Sequence[str] = (),
        image: Path | ImageReference | None = None,
    ) -> Video: ...

    async def retrieve_video(self, video_id: str) -> PolledVideo: ...

    async def list_videos(self, *, limit: int = 20, after: str | None = None, order: str = "desc") -> VideoList: ...

    async def delete_video(self, video_id: str) -> DeletedVideo: ...

    async def remix_video(self, video_id: str, prompt: str) -> Video: ...

    async def extend_video(self, video_id: str, prompt: str, seconds: str) -> Video: ...

    async def edit_video(self, video_id: str, prompt: str) -> Video: ...

    async def download_content(
        self, video_id: str, dest: Path, variant: ContentVariant = ContentVariant.VIDEO
    ) -> Path: ...

    async def aclose(self) -> None: ...
