"""Gemini Omni Flash through the Gemini API's Interactions API, with Google's `google-genai` SDK.

Jobs run in background mode: `interactions.create(background=True)` answers at once with an id, which is
polled with `interactions.get`. A character travels as reference parts — its clip as a video part and its
stills as image parts, base64 inline — tied to its name by tags in the prompt (see `prompt.py`). The finished
video comes back inline (base64) or, for large outputs, as a Files API file that is downloaded straight to
disk; both are accepted whatever was asked for, as Google's guide warns either may come.

The SDK's own retries are off: they would repeat a create after a 5xx, and a second create is a second paid
video. The core decides what is retried, from the mapped error.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import re
import tempfile
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from google import genai
from google.genai import _interactions as gx
from google.genai import errors as genai_errors
from google.genai import types

from bot.backends.base import (
    BackendCheck,
    CharacterInput,
    JobState,
    JobStatus,
    ModelCapabilities,
    VideoRequest,
    aspect_of,
    resolution_of,
)
from bot.backends.gemini.check import check_gemini
from bot.backends.gemini.errors import (
    GoogleError,
    classify_failure,
    classify_refusal_text,
    map_gemini_error,
    read_error,
)
from bot.backends.gemini.models import gemini_models
from bot.backends.gemini.prompt import allocate, compose
from bot.config import Settings
from bot.errors import APIRequestRejected, APIUnavailable, ConfigError, InvalidInput, VideosAPIError
from bot.models import GenerationKind

log = logging.getLogger(__name__)

#: Inline request bodies above this are refused by the API; checked before sending.
MAX_INLINE_BYTES = 20 * 1024 * 1024
#: How long a finished Files API output may take to become ACTIVE before we give up for this attempt.
FILE_READY_WAIT = 120.0

_STATUS = {
    "queued": JobStatus.QUEUED,
    "in_progress": JobStatus.IN_PROGRESS,
    "requires_continuation": JobStatus.IN_PROGRESS,
    "completed": JobStatus.COMPLETED,
    "failed": JobStatus.FAILED,
    "cancelled": JobStatus.FAILED,
    "incomplete": JobStatus.FAILED,
    "budget_exceeded": JobStatus.FAILED,
}
_FILE_ID = re.compile(r"files/([a-z0-9-]+)")


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode("ascii")


class GeminiBackend:
    """`VideoBackend` for Gemini Omni Flash models (`gemini-omni-1.1-flash`, `gemini-omni-1.2-flash`)."""

    service = "Gemini"
    #: The Interactions API has no list of interactions and no idempotency key (checked in google-genai 3.6.1).
    can_list_jobs = False

    def __init__(
        self,
        api_key: str,
        models: list[ModelCapabilities],
        *,
        base_url: str | None = None,
        timeout: float = 60.0,
        name: str = "gemini",
        account_key: str | None = None,
    ) -> None:
        if not api_key:
            raise ConfigError("GEMINI_API_KEY is empty: set the Gemini API key.")
        self.name = name
        self.account_key = account_key or f"gemini@{base_url or 'generativelanguage.googleapis.com'}"
        self._models = models
        options = types.HttpOptions(
            base_url=base_url,
            api_version="v1beta",
            timeout=int(timeout * 1000),
            retry_options=types.HttpRetryOptions(attempts=1),
        )
        self._client = genai.Client(api_key=api_key, http_options=options)
        self._base_url = base_url

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> GeminiBackend:
        """The backend the app uses: key, endpoint, models and reference ceilings from the settings."""
        if settings.gemini_api_key is None:
            raise ConfigError("GEMINI_API_KEY is not set: the Gemini backend needs a key.")
        options: dict[str, Any] = {"base_url": settings.gemini_base_url, "timeout": settings.api_timeout}
        options.update(overrides)
        models = gemini_models(
            settings.gemini_models,
            max_images=settings.gemini_max_reference_images,
            max_videos=settings.gemini_max_reference_videos,
        )
        return cls(settings.gemini_api_key.get_secret_value(), models, **options)

    def __repr__(self) -> str:
        return f"GeminiBackend(name={self.name!r}, account={self.account_key!r})"

    # --- the protocol -----------------------------------------------------------------------------------

    def models(self) -> Sequence[ModelCapabilities]:
        return self._models

    def compose_prompt(self, request: VideoRequest) -> str:
        caps = self._caps(request.model)
        parts = allocate(request.characters, caps.max_reference_images, caps.max_reference_videos)
        offset = 1 if request.kind is not GenerationKind.CREATE else 0
        return compose(request, parts, video_offset=offset)

    async def create_character(self, character: CharacterInput) -> str:
        raise InvalidInput("Gemini keeps no characters of its own; soracast sends references instead.")

    async def submit(self, request: VideoRequest, api_prompt: str) -> JobState:
        caps = self._caps(request.model)
        parts = allocate(request.characters, caps.max_reference_images, caps.max_reference_videos)
        media = await asyncio.to_thread(self._media_parts, request, parts)
        task = {
            GenerationKind.CREATE: "reference_to_video" if media else "text_to_video",
            GenerationKind.REMIX: "edit",
            GenerationKind.EXTEND: "extend",
        }[request.kind]
        body: dict[str, Any] = {
            "model": request.model,
            "input": [{"type": "text", "text": api_prompt}, *media] if media else api_prompt,
            "background": True,
            "response_format": {
                "type": "video",
                "aspect_ratio": aspect_of(request.size),
                "resolution": resolution_of(request.size),
                "duration": f"{request.seconds}s",
                # Inline answers above about 4 MB are not allowed; large frames come back as a file.
                "delivery": "inline" if resolution_of(request.size) in ("360p", "720p") else "uri",
            },
            "generation_config": {"video_config": {"task": task}},
        }
        interaction = await self._call("create", self._client.aio.interactions.create(**body))
        return self._state(interaction)

    async def poll(self, job_id: str) -> JobState:
        return self._state(await self._call("get", self._client.aio.interactions.get(job_id)))

    async def poll_many(self, job_ids: Sequence[str]) -> dict[str, JobState]:
        return {}

    async def find_job(self, request: VideoRequest, api_prompt: str, since: datetime) -> JobState | None:
        return None

    async def download(self, job_id: str, dest: Path) -> Path:
        interaction = await self._call("get", self._client.aio.interactions.get(job_id))
        video = getattr(interaction, "output_video", None)
        if video is None:
            raise APINotReady(f"Gemini has no video for {job_id}.")
        if getattr(video, "data", None):
            await asyncio.to_thread(_write_atomically, dest, base64.b64decode(video.data))
            return dest
        uri = getattr(video, "uri", None) or ""
        match = _FILE_ID.search(uri)
        if match is None:
            raise APIRequestRejected(
                "Gemini sent a video link soracast cannot fetch.", hint="Try again later.", log_detail=uri[:200]
            )
        await self._download_file(f"files/{match.group(1)}", dest)
        return dest

    async def download_thumbnail(self, job_id: str, dest: Path) -> Path | None:
        return None

    async def cancel(self, job_id: str) -> None:
        await self._call("cancel", self._client.aio.interactions.cancel(job_id))

    async def delete(self, job_id: str) -> None:
        await self._call("delete", self._client.aio.interactions.delete(job_id))

    async def check(self) -> BackendCheck:
        return await check_gemini(self._client, self._models, self._base_url)

    async def aclose(self) -> None:
        await self._client.aio.aclose()

    # --- internals --------------------------------------------------------------------------------------

    def _caps(self, model: str) -> ModelCapabilities:
        for caps in self._models:
            if model in caps.names:
                return caps
        raise InvalidInput(f"{model!r} is not a Gemini model this bot offers.")

    def _media_parts(self, request: VideoRequest, parts: list[Any]) -> list[dict[str, str]]:
        """The video and image parts, in the order the prompt's tags count them (read in a worker thread)."""
        videos: list[dict[str, str]] = []
        images: list[dict[str, str]] = []
        if request.kind is not GenerationKind.CREATE:
            if request.source_video is None:
                raise InvalidInput(
                    "The video to build on is not on this machine any more.", hint="Make a new video with /sora."
                )
            videos.append({"type": "video", "mime_type": "video/mp4", "data": _b64(request.source_video)})
        for part in parts:
            if part.clip is not None:
                videos.append({"type": "video", "mime_type": "video/mp4", "data": _b64(part.clip)})
            for still in part.stills:
                images.append({"type": "image", "mime_type": "image/jpeg", "data": _b64(still)})
        total = sum(len(p["data"]) for p in videos + images)
        if total > MAX_INLINE_BYTES:
            raise InvalidInput(
                f"The references and source video add up to {total / 2**20:.1f} MB, more than the "
                f"{MAX_INLINE_BYTES / 2**20:.0f} MB Gemini takes in one request.",
                hint="Use fewer @handles, or build on a shorter video.",
            )
        return videos + images

    def _state(self, interaction: Any) -> JobState:
        status_text = str(getattr(interaction, "status", None) or "in_progress")
        status = _STATUS.get(status_text, JobStatus.IN_PROGRESS)
        code, message = None, None
        if status is JobStatus.COMPLETED and getattr(interaction, "output_video", None) is None:
            # A safety block can end as a completed interaction that answered in words instead of a video.
            status = JobStatus.FAILED
            code, message = classify_refusal_text(_output_text(interaction))
        elif status is JobStatus.FAILED:
            errors = getattr(interaction, "errors", None) or []
            first = errors[0] if errors else None
            reported = str(getattr(first, "message", "") or "") if first is not None else ""
            code = {"cancelled": "cancelled", "incomplete": "incomplete"}.get(status_text, "failed")
            if reported:
                code, message = classify_failure(reported, code)
            message = reported or {
                "cancelled": "The job was cancelled.",
                "incomplete": "Gemini stopped before the video was finished.",
                "budget_exceeded": "Gemini stopped: the request's budget was exceeded.",
            }.get(status_text, "Gemini could not make this video.")
        return JobState(
            id=str(interaction.id),
            status=status,
            progress=100 if status is JobStatus.COMPLETED else None,
            error_code=code,
            error_message=message,
        )

    async def _call(self, operation: str, call: Any) -> Any:
        try:
            return await call
        except gx.APIStatusError as exc:
            headers = dict(exc.response.headers) if getattr(exc, "response", None) is not None else {}
            body = exc.body
            detail = f"{operation} -> {exc.status_code}: {str(body)[:2000]}"
            raise map_gemini_error(exc.status_code, read_error(body), headers, log_detail=detail) from None
        except gx.APITimeoutError:
            raise APIUnavailable(
                "Gemini did not answer in time.",
                hint="soracast tries again by itself; if it keeps happening, try again later.",
                log_detail=f"{operation}: timeout",
            ) from None
        except gx.APIConnectionError as exc:
            raise APIUnavailable(
                "Could not reach Gemini.",
                hint="soracast tries again by itself; the bot's operator should check the network.",
                log_detail=f"{operation}: {type(exc).__name__}",
            ) from None
        except gx.APIError as exc:
            raise APIUnavailable(
                "Gemini sent an answer soracast could not read.",
                hint="Try again later.",
                log_detail=f"{operation}: {type(exc).__name__}: {str(exc)[:500]}",
            ) from None

    async def _download_file(self, name: str, dest: Path) -> None:
        """Wait for a Files API output to be ACTIVE, then stream it to `dest` (beside it, renamed into place)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + FILE_READY_WAIT
        while True:
            info = await self._files_call(self._client.aio.files.get(name=name))
            state = str(getattr(info, "state", "") or "").upper()
            if state.endswith("ACTIVE") or not state:
                break
            if state.endswith("FAILED"):
                raise APIUnavailable("Gemini could not prepare the finished video for download.", hint="Try again.")
            if loop.time() > deadline:
                raise APIUnavailable("Gemini's finished video is not ready to download yet.", hint="Try again soon.")
            await asyncio.sleep(1.0)
        await asyncio.to_thread(dest.parent.mkdir, parents=True, exist_ok=True)
        fd, tmp_name = await asyncio.to_thread(
            tempfile.mkstemp, prefix=f".{dest.name}.", suffix=".part", dir=dest.parent
        )
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            await self._files_call(self._client.aio.files.download(file=name, destination=str(tmp)))
            await asyncio.to_thread(os.replace, tmp, dest)
        except BaseException:
            _discard(tmp)
            raise

    async def _files_call(self, call: Any) -> Any:
        try:
            return await call
        except genai_errors.APIError as exc:
            error = GoogleError(message=str(exc.message or ""), status=str(exc.status or "") or None)
            raise map_gemini_error(int(exc.code or 500), error, log_detail=f"files -> {exc.code}") from None
        except (TimeoutError, OSError) as exc:
            raise APIUnavailable(
                "The connection to Gemini broke off while downloading the video.",
                hint="soracast tries again by itself.",
                log_detail=f"files: {type(exc).__name__}",
            ) from None


class APINotReady(VideosAPIError):
    """A completed interaction without a video to download (answered as a failure by the tracker)."""

    code = "no_video"


def _output_text(interaction: Any) -> str:
    given = getattr(interaction, "output_text", None)
    if given:
        return str(given)
    texts: list[str] = []
    for step in getattr(interaction, "steps", None) or []:
        if getattr(step, "type", None) != "model_output":
            continue
        for content in getattr(step, "content", None) or []:
            text = getattr(content, "text", None)
            if text:
                texts.append(str(text))
    return " ".join(texts)


def _write_atomically(dest: Path, data: bytes) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _discard(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()
