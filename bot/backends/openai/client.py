"""`HTTPVideosAPI`: the `VideosAPI` protocol over HTTP, for OpenAI's Videos API and compatible endpoints.

Each method builds one `Call` for its endpoint; `bot.backends.openai.transport` sends it (auth, retries, error
mapping; its docstring gives the retry policy). Uploads are streamed from disk and re-opened for every attempt;
downloads are streamed into a temporary file beside the destination and renamed into place only when complete.
"""

from __future__ import annotations

import asyncio
import contextlib
import mimetypes
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from bot.backends.openai.api import PolledVideo
from bot.backends.openai.schemas import (
    ContentVariant,
    DeletedVideo,
    ImageReference,
    Video,
    VideoCharacter,
    VideoList,
)
from bot.backends.openai.transport import Call, Success, VideosTransport, validate
from bot.config import Settings
from bot.errors import APIUnavailable, ConfigError, InvalidClip, InvalidInput

__all__ = ["HTTPVideosAPI"]

DOWNLOAD_CHUNK = 256 * 1024


class HTTPVideosAPI(VideosTransport):
    """The Videos API over HTTP (OpenAI, Azure OpenAI's v1 surface, or any compatible gateway).

    Errors are `bot.errors.VideosAPIError` subclasses; `VideosTransport` gives the retry policy and the options.
    Use as an async context manager, or call `aclose()` when done.
    """

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> HTTPVideosAPI:
        """The client the app uses: base URL, key, auth style, timeout and retries from the settings."""
        if settings.openai_api_key is None:
            raise ConfigError("OPENAI_API_KEY is not set: the HTTP Videos API client needs a key.")
        options: dict[str, Any] = {
            "auth_style": settings.api_auth_style,
            "timeout": settings.api_timeout,
            "max_retries": settings.api_max_retries,
        }
        options.update(overrides)
        return cls(settings.api_base_url, settings.openai_api_key.get_secret_value(), **options)

    def __repr__(self) -> str:
        return f"HTTPVideosAPI(base_url={self.base_url!r}, auth_style={self.auth_style.value!r})"

    # --- characters -------------------------------------------------------------------------------------

    async def create_character(self, name: str, clip: Path) -> VideoCharacter:
        """Upload `clip` (an MP4) as a character called `name` (multipart `name` + `video`)."""
        clip = Path(clip)
        await self._check_file(clip, InvalidClip, "clip")
        call = Call("POST", "/videos/characters", "create_character", form={"name": name})
        call.files["video"] = (clip, "video/mp4")
        return await self._request_model(call, VideoCharacter)

    async def get_character(self, character_id: str) -> VideoCharacter:
        """A character by id (`char_…`)."""
        return await self._request_model(
            Call("GET", f"/videos/characters/{_segment(character_id)}", "get_character"), VideoCharacter
        )

    # --- videos -----------------------------------------------------------------------------------------

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
        """Queue a video. JSON body, or multipart when `image` is a local file to upload as `input_reference`."""
        scalars = {"prompt": prompt, "model": model, "seconds": seconds, "size": size}
        scalars = {k: v for k, v in scalars.items() if v is not None}
        if isinstance(image, Path):
            await self._check_file(image, InvalidInput, "image")
            form = dict(scalars)
            # Explicit indices: the SDK-style `characters[][id]` is ambiguous once an item has more than one
            # key, and an account of real use reports the API refusing that flattening while accepting
            # `characters[0][id]`; a JSON string in one field is a guess no public client was seen making.
            for index, character_id in enumerate(character_ids):
                form[f"characters[{index}][id]"] = character_id
            call = Call("POST", "/videos", "create_video", form=form)
            call.files["input_reference"] = (image, mimetypes.guess_type(image.name)[0] or "application/octet-stream")
        else:
            body: dict[str, Any] = dict(scalars)
            if character_ids:
                body["characters"] = [{"id": character_id} for character_id in character_ids]
            if isinstance(image, ImageReference):
                body["input_reference"] = _reference_json(image)
            call = Call("POST", "/videos", "create_video", json=body)
        return await self._request_model(call, Video)

    async def retrieve_video(self, video_id: str) -> PolledVideo:
        """The video's current state, with `poll_after` from `openai-poll-after-ms` (None when absent)."""

        async def parse(response: httpx.Response) -> PolledVideo:
            data = await self._json(response, "retrieve_video")
            video = validate(PolledVideo, data, "retrieve_video")
            return video.model_copy(update={"poll_after": _poll_after(response.headers)})

        # A `Deprecation` header on this answer is informational; nothing here depends on it.
        return await self._request(Call("GET", f"/videos/{_segment(video_id)}", "retrieve_video"), parse)

    async def list_videos(self, *, limit: int = 20, after: str | None = None, order: str = "desc") -> VideoList:
        """One page of videos; pass the page's `last_id` as `after` while `has_more`."""
        params: dict[str, Any] = {"limit": limit, "order": order}
        if after:
            params["after"] = after
        return await self._request_model(Call("GET", "/videos", "list_videos", params=params), VideoList)

    async def list_models(self) -> list[str]:
        """The model ids `GET /models` lists, asked once without retries (`soracast check` wants a quick answer)."""
        call = Call("GET", "/models", "list_models")

        async def parse(response: httpx.Response) -> list[str]:
            body = await self._json(response, call.operation)
            data = body.get("data") if isinstance(body, dict) else None
            if not isinstance(data, list):
                raise APIUnavailable(
                    "The endpoint's /models answer is not an OpenAI-shape model list.",
                    hint="Check OPENAI_BASE_URL: it should end in /v1 (or the gateway's equivalent).",
                )
            return [str(m["id"]) for m in data if isinstance(m, dict) and "id" in m]

        outcome, _ = await self._attempt(call, parse, 1, 1)
        if isinstance(outcome, Success):
            return list(outcome.value)
        raise outcome

    async def delete_video(self, video_id: str) -> DeletedVideo:
        """Delete a video and its assets at the API."""
        return await self._request_model(Call("DELETE", f"/videos/{_segment(video_id)}", "delete_video"), DeletedVideo)

    async def remix_video(self, video_id: str, prompt: str) -> Video:
        """A new video from a completed one with a new prompt."""
        call = Call("POST", f"/videos/{_segment(video_id)}/remix", "remix_video", json={"prompt": prompt})
        return await self._request_model(call, Video)

    async def extend_video(self, video_id: str, prompt: str, seconds: str) -> Video:
        """Continue a completed video by `seconds` more (`POST /videos/extensions`)."""
        body = {"video": {"id": video_id}, "prompt": prompt, "seconds": seconds}
        return await self._request_model(Call("POST", "/videos/extensions", "extend_video", json=body), Video)

    async def edit_video(self, video_id: str, prompt: str) -> Video:
        """A targeted edit of a completed video (`POST /videos/edits`)."""
        body = {"video": {"id": video_id}, "prompt": prompt}
        return await self._request_model(Call("POST", "/videos/edits", "edit_video", json=body), Video)

    async def download_content(self, video_id: str, dest: Path, variant: ContentVariant = ContentVariant.VIDEO) -> Path:
        """Stream an asset to `dest`: written to a temporary file beside it, renamed into place when complete."""
        dest = Path(dest)
        call = Call(
            "GET",
            f"/videos/{_segment(video_id)}/content",
            "download_content",
            params={"variant": ContentVariant(variant).value},
            headers={"Accept": "*/*"},
        )

        async def save(response: httpx.Response) -> Path:
            await asyncio.to_thread(dest.parent.mkdir, parents=True, exist_ok=True)
            # Same directory as dest, so the final rename stays on one filesystem and is atomic.
            fd, tmp_name = await asyncio.to_thread(
                tempfile.mkstemp, prefix=f".{dest.name}.", suffix=".part", dir=dest.parent
            )
            tmp = Path(tmp_name)
            try:
                with os.fdopen(fd, "wb") as out:
                    async for chunk in response.aiter_bytes(DOWNLOAD_CHUNK):
                        await asyncio.to_thread(out.write, chunk)
                    await asyncio.to_thread(out.flush)
                    await asyncio.to_thread(os.fsync, out.fileno())
                await asyncio.to_thread(os.replace, tmp, dest)
            except BaseException:
                # Synchronous on purpose: a second cancellation must not leave the partial file behind.
                _discard(tmp)
                raise
            return dest

        return await self._request(call, save)

    async def _check_file(self, path: Path, error: type[InvalidInput], what: str) -> None:
        if not await asyncio.to_thread(path.is_file):
            raise error(f"The {what} file {path.name!r} could not be found.", hint="Upload it again.")


def _segment(value: str) -> str:
    # Ids come from users' commands too; quoting keeps "../x" or "a/b" inside one path segment.
    return quote(value, safe="")


def _reference_json(reference: ImageReference) -> dict[str, Any]:
    return reference.model_dump(exclude_none=True)


def _discard(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()


def _poll_after(headers: httpx.Headers) -> float | None:
    raw = headers.get("openai-poll-after-ms")
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        return None
    return value / 1000 if value >= 0 else None
