"""Gemini Omni Flash through the Gemini API's Interactions API, with Google's `google-genai` SDK.

Jobs run in background mode: `interactions.create(background=True)` answers at once with an id, which is
polled with `interactions.get`. A character travels as reference parts — its clip as a video part and its
stills as image parts, base64 inline — tied to its name by tags in the prompt (see `prompt.py`). The finished
video comes back inline (base64) or, for large outputs, as a Files API file that is downloaded straight to
disk; both are accepted whatever was asked for, as Google's guide warns either may come. A poll that finds the
video inline writes it to a spool file at once (one at a time), so the download neither fetches the interaction
again nor holds several videos in memory when many jobs finish together (at most four interactions are read
at once, and one video decoded).

Remix is Omni's `edit` and extend its `extend`, both of the earlier interaction by `previous_interaction_id`
(Google stores interactions): an edit sends no duration or aspect ratio, an extension only the seconds it adds.
Only a video this backend did not make is uploaded inline, which Google does not offer in every region.

With webhooks configured (`SORACAST_PUBLIC_URL`, or a registered webhook's `GEMINI_WEBHOOK_SECRET`) every create
carries `webhook_config` naming soracast's generation in `user_metadata`: Google announces the job's end, and a
create whose answer was lost is tied back to its generation instead of being sent (and paid for) twice.

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
import shutil
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
    GENERATION_KEY,
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
    is_region_refusal,
    map_gemini_error,
    read_error,
)
from bot.backends.gemini.models import gemini_models, omni_model
from bot.backends.gemini.prompt import allocate, compose
from bot.config import Settings
from bot.errors import APIRequestRejected, APIUnavailable, ConfigError, InvalidInput, VideosAPIError
from bot.models import GenerationKind

log = logging.getLogger(__name__)

#: Inline request bodies above this are refused by the API; checked before sending.
MAX_INLINE_BYTES = 20 * 1024 * 1024
#: How long a finished Files API output may take to become ACTIVE before we give up for this attempt.
FILE_READY_WAIT = 120.0
#: Interactions read at once: a finished one may carry its whole video inline (up to about 4 MB of base64), so
#: this bounds how many can be in memory when many jobs finish together.
MAX_CONCURRENT_READS = 4

_STATUS = {
    "queued": JobStatus.QUEUED,
    "in_progress": JobStatus.IN_PROGRESS,
    "requires_continuation": JobStatus.IN_PROGRESS,
    "completed": JobStatus.COMPLETED,
    "failed": JobStatus.FAILED,
    "cancelled": JobStatus.FAILED,
    "incomplete": JobStatus.FAILED,
    "budget_exceeded": JobStatus.FAILED,
    # A video job has nobody to answer an action or wake an idle interaction: waiting would last until the
    # deadline, so these end the job with words a user understands (see `_STOPPED`).
    "requires_action": JobStatus.FAILED,
    "idle": JobStatus.FAILED,
}
#: Why a job ended without a video, by the interaction status that ended it.
_STOPPED = {
    "cancelled": "The job was cancelled.",
    "incomplete": "Gemini stopped before the video was finished.",
    "budget_exceeded": "Gemini stopped: the request's budget was exceeded.",
    "requires_action": "Gemini paused this video to ask for an action soracast cannot take, so it was stopped.",
    "idle": "Gemini left this video idle instead of making it, so it was stopped.",
}
_FILE_ID = re.compile(r"files/([a-z0-9-]+)")
REGION_TEXT = (
    "Gemini does not offer editing or extending an uploaded video where this bot runs (it is not offered in the "
    "EEA, Switzerland or the UK)."
)


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
        webhook_url: str | None = None,
        registered_webhook: bool = False,
        spool_dir: Path | None = None,
    ) -> None:
        if not api_key:
            raise ConfigError("GEMINI_API_KEY is empty: set the Gemini API key.")
        self.name = name
        self.account_key = account_key or f"gemini@{base_url or 'generativelanguage.googleapis.com'}"
        self._models = models
        #: Where Google is asked to announce each job (per request), or None (a registered webhook, or none).
        self._webhook_url = webhook_url
        self.announces_jobs = webhook_url is not None or registered_webhook
        self._spool_root = spool_dir
        self._spool: Path | None = None
        #: Job id → what its finishing poll found: a spooled video file, or the Files API link to fetch.
        self._spooled: dict[str, Path] = {}
        self._links: dict[str, str] = {}
        #: Few interactions read at once, and one inline video decoded at a time, however many jobs finish together.
        self._reads = asyncio.Semaphore(MAX_CONCURRENT_READS)
        self._decoding = asyncio.Semaphore(1)
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
        options: dict[str, Any] = {
            "base_url": settings.gemini_base_url,
            "timeout": settings.api_timeout,
            "webhook_url": settings.gemini_webhook_url,
            "registered_webhook": settings.gemini_webhook_secret is not None,
            "spool_dir": settings.resolved_media_dir,
        }
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
        # An uploaded source is the first video part; one Gemini made travels by id and takes no tag.
        uploads_source = request.kind is not GenerationKind.CREATE and request.source_job_id is None
        return compose(request, parts, video_offset=1 if uploads_source else 0)

    async def create_character(self, character: CharacterInput) -> str:
        raise InvalidInput("Gemini keeps no characters of its own; soracast sends references instead.")

    async def submit(self, request: VideoRequest, api_prompt: str) -> JobState:
        caps = self._caps(request.model)
        parts = allocate(request.characters, caps.max_reference_images, caps.max_reference_videos)
        uploads_source = request.kind is not GenerationKind.CREATE and request.source_job_id is None
        if uploads_source:
            self._check_uploaded_source(request)
        media = await asyncio.to_thread(self._media_parts, request, parts, uploads_source)
        task = {
            GenerationKind.CREATE: "reference_to_video" if media else "text_to_video",
            GenerationKind.REMIX: "edit",
            GenerationKind.EXTEND: "extend",
        }[request.kind]
        body: dict[str, Any] = {
            "model": request.model,
            "input": [{"type": "text", "text": api_prompt}, *media] if media else api_prompt,
            "background": True,
            "response_format": _response_format(request),
            "generation_config": {"video_config": {"task": task}},
        }
        if request.kind is not GenerationKind.CREATE and request.source_job_id is not None:
            body["previous_interaction_id"] = request.source_job_id
        if self.announces_jobs:
            config: dict[str, Any] = {"user_metadata": {GENERATION_KEY: request.request_key}}
            if self._webhook_url is not None:
                config["uris"] = [self._webhook_url]
            body["webhook_config"] = config
        try:
            interaction = await self._call("create", self._client.aio.interactions.create(**body))
        except APIRequestRejected as exc:
            if uploads_source and is_region_refusal(exc.api_message or exc.message):
                raise APIRequestRejected(
                    REGION_TEXT,
                    hint="Make a new video with /sora instead.",
                    status=exc.status,
                    api_code=exc.api_code,
                    api_message=exc.api_message,
                    log_detail=exc.log_detail,
                ) from None
            raise
        return self._state(interaction)

    def job_id_of(self, provider_id: str, model: str) -> str:
        return provider_id

    def provider_id_of(self, job_id: str) -> str:
        return job_id

    async def poll(self, job_id: str) -> JobState:
        async with self._reads:
            interaction = await self._call("get", self._client.aio.interactions.get(job_id))
            state = self._state(interaction)
            if state.status is JobStatus.COMPLETED:
                await self._keep_output(job_id, interaction.output_video)
            stopped = str(getattr(interaction, "status", "")) in ("requires_action", "idle")
            del interaction
        if stopped:
            # Nothing will move it on: stop it at Google too, so it holds nothing (best effort).
            with contextlib.suppress(VideosAPIError):
                await self._call("cancel", self._client.aio.interactions.cancel(job_id))
        return state

    async def poll_many(self, job_ids: Sequence[str]) -> dict[str, JobState]:
        return {}

    async def find_job(self, request: VideoRequest, api_prompt: str, since: datetime) -> JobState | None:
        return None

    async def download(self, job_id: str, dest: Path) -> Path:
        if job_id not in self._spooled and job_id not in self._links:
            # Not polled to completion by this process (a restart, another machine): ask once more.
            async with self._reads:
                interaction = await self._call("get", self._client.aio.interactions.get(job_id))
                if getattr(interaction, "output_video", None) is None:
                    raise APINotReady(f"Gemini has no video for {job_id}.")
                await self._keep_output(job_id, interaction.output_video)
                del interaction
        spooled = self._spooled.pop(job_id, None)
        if spooled is not None:
            await asyncio.to_thread(_move_into, spooled, dest)
            return dest
        uri = self._links.pop(job_id, "")
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
        if self._spool is not None:
            await asyncio.to_thread(shutil.rmtree, self._spool, True)
            self._spool = None
        self._spooled.clear()

    # --- internals --------------------------------------------------------------------------------------

    def _caps(self, model: str) -> ModelCapabilities:
        for caps in self._models:
            if model in caps.names:
                return caps
        raise InvalidInput(f"{model!r} is not a Gemini model this bot offers.")

    def _check_uploaded_source(self, request: VideoRequest) -> None:
        """An uploaded source must be on this machine and no longer than the model takes."""
        if request.source_video is None:
            raise InvalidInput(
                "The video to build on is not on this machine any more.", hint="Make a new video with /sora."
            )
        cap = omni_model(request.model).max_uploaded_source_seconds
        if cap is not None and request.source_seconds is not None and request.source_seconds > cap:
            raise InvalidInput(
                f"{request.model} edits and extends uploaded videos of up to {cap} s; this one is "
                f"{request.source_seconds} s.",
                hint="Build on a shorter video, or make a new one with /sora.",
            )

    def _media_parts(self, request: VideoRequest, parts: list[Any], upload_source: bool) -> list[dict[str, str]]:
        """The video and image parts, in the order the prompt's tags count them (read in a worker thread)."""
        videos: list[dict[str, str]] = []
        images: list[dict[str, str]] = []
        if upload_source:
            assert request.source_video is not None
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

    async def _keep_output(self, job_id: str, video: Any) -> None:
        """Remember a finished job's video: written to a spool file now when it came inline, else its link."""
        if video is None:
            return
        data = getattr(video, "data", None)
        if data:
            async with self._decoding:
                path = await asyncio.to_thread(self._spool_path, job_id)
                await asyncio.to_thread(_write_atomically, path, base64.b64decode(data))
            self._spooled[job_id] = path
            return
        uri = getattr(video, "uri", None)
        if uri:
            self._links[job_id] = str(uri)

    def _spool_path(self, job_id: str) -> Path:
        if self._spool is None:
            root = self._spool_root or Path(tempfile.gettempdir())
            root.mkdir(parents=True, exist_ok=True)
            self._spool = Path(tempfile.mkdtemp(prefix=".gemini-spool-", dir=root))
        return self._spool / (re.sub(r"[^A-Za-z0-9_-]", "_", job_id)[:120] + ".mp4")

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
            code = status_text if status_text in _STOPPED and status_text != "budget_exceeded" else "failed"
            if reported:
                code, message = classify_failure(reported, code)
            message = reported or _STOPPED.get(status_text, "Gemini could not make this video.")
        return JobState(
            id=str(interaction.id),
            status=status,
            progress=100 if status is JobStatus.COMPLETED else None,
            error_code=code,
            error_message=message,
            request_key=_request_key(interaction),
        )

    async def _call(self, operation: str, call: Any) -> Any:
        try:
            return await call
        except gx.APIStatusError as exc:
            headers = dict(exc.response.headers) if getattr(exc, "response", None) is not None else {}
            body = exc.body
            detail = f"{operation} -> {exc.status_code}: {str(body)[:2000]}"
            raise map_gemini_error(exc.status_code, read_error(body), headers, log_detail=detail) from None
        except gx.APITimeoutError as exc:
            error = APIUnavailable(
                "Gemini did not answer in time.",
                hint="soracast tries again by itself; if it keeps happening, try again later.",
                log_detail=f"{operation}: timeout",
            )
            error.maybe_sent = not _never_connected(exc)
            raise error from None
        except gx.APIConnectionError as exc:
            error = APIUnavailable(
                "Could not reach Gemini.",
                hint="soracast tries again by itself; the bot's operator should check the network.",
                log_detail=f"{operation}: {type(exc).__name__}",
            )
            # A connection that was never made carried no create: nothing to wait for or to pay twice.
            error.maybe_sent = not _never_connected(exc)
            raise error from None
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


def _never_connected(exc: BaseException) -> bool:
    """Whether the request failed before a connection was made (so it cannot have reached Google). The SDK's
    HTTP stack is httpx or its fork httpx2: their connect errors are recognised by name, and refused
    connections by the OS error underneath."""
    seen: BaseException | None = exc
    for _ in range(10):
        if seen is None:
            return False
        if type(seen).__name__ in ("ConnectError", "ConnectTimeout") or isinstance(seen, ConnectionRefusedError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _response_format(request: VideoRequest) -> dict[str, str]:
    """What the video should be: an edit keeps its source's length and frame, an extension names only the seconds
    it adds; a new video names all of it."""
    # Inline answers above about 4 MB are not allowed; large frames come back as a file.
    delivery = "inline" if resolution_of(request.size) in ("360p", "720p") else "uri"
    if request.kind is GenerationKind.REMIX:
        return {"type": "video", "delivery": delivery}
    if request.kind is GenerationKind.EXTEND:
        return {"type": "video", "duration": f"{request.seconds}s", "delivery": delivery}
    return {
        "type": "video",
        "aspect_ratio": aspect_of(request.size),
        "resolution": resolution_of(request.size),
        "duration": f"{request.seconds}s",
        "delivery": delivery,
    }


def _request_key(interaction: Any) -> str | None:
    """The generation id a create put in `webhook_config.user_metadata`, when Google sends it back."""
    config = getattr(interaction, "webhook_config", None)
    metadata = getattr(config, "user_metadata", None) if config is not None else None
    value = metadata.get(GENERATION_KEY) if isinstance(metadata, dict) else None
    return value if isinstance(value, str) else None


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


def _move_into(source: Path, dest: Path) -> None:
    """Put a spooled file at `dest` (renamed where both share a file system, copied beside it otherwise)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(source, dest)
    except OSError:
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
        os.close(fd)
        try:
            shutil.copyfile(source, tmp)
            os.replace(tmp, dest)
        except BaseException:
            _discard(Path(tmp))
            raise
        _discard(source)


def _discard(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()
