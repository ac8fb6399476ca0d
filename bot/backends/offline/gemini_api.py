"""The Gemini API's Interactions routes, emulated over the offline renderer (`soracast emulate --api gemini`).

The routes `google-genai` uses for Omni Flash video: `POST /v1beta/interactions` (background mode),
`GET /v1beta/interactions/{id}`, `POST /v1beta/interactions/{id}/cancel`, `DELETE /v1beta/interactions/{id}`,
and the Files API's `GET /v1beta/files/{id}` and `GET /v1beta/files/{id}:download?alt=media` for outputs sent
by link. The videos are real renders that show the request's reference clips and stills.

It refuses what the real API is documented to refuse, in Google's envelope
`{"error": {"code", "message", "status"}}`: a missing key (403 PERMISSION_DENIED), a wrong one (400 with reason
API_KEY_INVALID), unknown fields, a model it does not serve, a duration without its unit or out of the model's
range, an aspect ratio or resolution it does not make, too many reference clips or stills, a reference clip over
3 s, and an edit or extension with no source video. Content rules are played deterministically: a reference whose
metadata (MP4 title/comment, JPEG comment) says "person" is refused at create as human likeness, and a prompt
containing `[[moderation]]` completes with words and no video, as a safety block does.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import io
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web
from PIL import Image

from bot.backends.offline.emulation import MAX_BODY_BYTES, FaultPlan, add_stats_route, make_middleware, request_body
from bot.backends.offline.gemini_models import add_model_routes
from bot.backends.offline.renderer import HUMAN_LIKENESS_MARKER, MODERATION_TRIGGER, OfflineVideosAPI, probe_clip
from bot.backends.openai.schemas import VideoStatus
from bot.errors import APIRequestRejected, VideosAPIError

ROUTES = ("create_interaction", "get_interaction", "cancel_interaction", "delete_interaction", "get_file")

#: The models this emulator serves, with the durations each makes (seconds).
MODELS = {"gemini-omni-1.1-flash": range(3, 11), "gemini-omni-1.2-flash": range(3, 16)}
ASPECT_RATIOS = {"16:9": (16, 9), "9:16": (9, 16)}
RESOLUTIONS = {"360p": 360, "720p": 720, "1080p": 1080, "4k": 2160}
#: Inline answers above this are sent as a Files API link instead, as the real API does.
MAX_INLINE_OUTPUT = 4 * 1024 * 1024
TOKENS_PER_SECOND = 5800
_CREATE_FIELDS = {
    "model",
    "input",
    "background",
    "response_format",
    "generation_config",
    "webhook_config",
    "store",
    "system_instruction",
    "safety_settings",
    "labels",
    "previous_interaction_id",
}
_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}

OFFLINE_KEY = web.AppKey("gemini_offline", OfflineVideosAPI)
LIMITS_KEY = web.AppKey("gemini_limits", "ReferenceLimits")
FAULTS_KEY = web.AppKey("gemini_faults", FaultPlan)
#: Delivery asked per job (in memory: after a restart outputs go inline or by link by their size alone).
DELIVERY_KEY = web.AppKey("gemini_delivery", dict)


@dataclass(frozen=True)
class ReferenceLimits:
    """How many references one request may carry (the real ceiling for stills is not published)."""

    max_images: int = 3
    max_videos: int = 3
    max_video_seconds: float = 3.0


def invalid(message: str, status: int = 400) -> APIRequestRejected:
    """A refusal in Google's words, answered through the dialect."""
    return APIRequestRejected(message, status=status, api_message=message, api_code=_STATUS_NAMES.get(status))


def google_error(
    status: int, message: str, *, reason: str | None = None, headers: dict[str, str] | None = None
) -> web.Response:
    """Google's error envelope."""
    error: dict[str, Any] = {"code": status, "message": message, "status": _STATUS_NAMES.get(status, "UNKNOWN")}
    if reason:
        error["details"] = [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason}]
    return web.json_response({"error": error}, status=status, headers=headers)


@dataclass
class GoogleDialect:
    """The Gemini API's key check (`x-goog-api-key` or `?key=`) and error envelope."""

    api_key: str | None = None

    def authorize(self, request: web.Request) -> web.Response | None:
        given = request.headers.get("x-goog-api-key") or request.query.get("key")
        if not given:
            return google_error(
                403, "Method doesn't allow unregistered callers. Please use an API key or other form of credentials."
            )
        if self.api_key is not None and given != self.api_key:
            return google_error(400, "API key not valid. Please pass a valid API key.", reason="API_KEY_INVALID")
        return None

    def error(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        type: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> web.Response:
        return google_error(status, message, headers=headers)


# --- ids -------------------------------------------------------------------------------------------------


def interaction_id(video_id: str) -> str:
    return "v1_" + video_id.removeprefix("video_")


def video_id_of(interaction: str) -> str:
    if not interaction.startswith("v1_"):
        raise invalid(f"Interaction {interaction!r} not found.", 404)
    return "video_" + interaction.removeprefix("v1_")


def file_id(video_id: str) -> str:
    return video_id.removeprefix("video_")


# --- reading a create request ----------------------------------------------------------------------------


@dataclass
class _Part:
    kind: str  # "text", "image" or "video"
    text: str = ""
    data: bytes = b""


def _parts(value: Any) -> list[_Part]:
    """The input as parts, however it was given: a string, parts, or `user_input` steps of parts."""
    if isinstance(value, str):
        return [_Part("text", text=value)]
    if not isinstance(value, list):
        raise invalid("Invalid value at 'input': expected a string or a list of content.")
    found: list[_Part] = []
    for item in value:
        if not isinstance(item, dict):
            raise invalid("Invalid value at 'input': every item must be an object.")
        if item.get("type") in ("user_input", "model_output") or "content" in item:
            found.extend(_parts(item.get("content") or []))
            continue
        kind = item.get("type")
        if kind == "text":
            found.append(_Part("text", text=str(item.get("text") or "")))
        elif kind in ("image", "video"):
            if item.get("uri") and not item.get("data"):
                raise invalid(f"The emulator takes {kind} content inline ('data'), not by 'uri'.")
            try:
                data = base64.b64decode(str(item.get("data") or ""), validate=True)
            except (binascii.Error, ValueError):
                raise invalid(f"Invalid value at 'input': {kind} data is not base64.") from None
            if not data:
                raise invalid(f"Invalid value at 'input': {kind} content has no data.")
            found.append(_Part(kind, data=data))
        else:
            raise invalid(f"Invalid value at 'input': unknown content type {kind!r}.")
    return found


def _format(value: Any, model: str) -> tuple[int, str, str, str]:
    """(seconds, aspect ratio, resolution, delivery) from `response_format`, checked like the API checks it."""
    formats = value if isinstance(value, list) else [value]
    video = next((f for f in formats if isinstance(f, dict) and f.get("type") == "video"), None)
    if video is None:
        raise invalid("Video generation needs response_format with type 'video'.")
    duration = video.get("duration", "6s")
    if not isinstance(duration, str) or not duration.endswith("s"):
        raise invalid(
            f"Invalid value at 'response_format.duration' ({duration!r}): a duration is a string with a unit, "
            "like '6s'."
        )
    try:
        seconds = float(duration[:-1])
    except ValueError:
        raise invalid(f"Invalid value at 'response_format.duration' ({duration!r}).") from None
    allowed = MODELS[model]
    if not seconds.is_integer() or int(seconds) not in allowed:
        raise invalid(f"{model} makes videos of {allowed.start} to {allowed.stop - 1} seconds; got {duration}.")
    aspect = video.get("aspect_ratio", "16:9")
    if aspect not in ASPECT_RATIOS:
        raise invalid(f"Unsupported aspect_ratio {aspect!r}: use 16:9 or 9:16.")
    resolution = video.get("resolution", "720p")
    if resolution not in RESOLUTIONS:
        raise invalid(f"Unsupported resolution {resolution!r}: use 360p, 720p, 1080p or 4k.")
    delivery = video.get("delivery", "inline")
    if delivery not in ("inline", "uri"):
        raise invalid(f"Unsupported delivery {delivery!r}: use inline or uri.")
    return int(seconds), aspect, resolution, delivery


def frame_size(aspect: str, resolution: str) -> str:
    """`16:9` + `720p` → `1280x720`."""
    short = RESOLUTIONS[resolution]
    a, b = ASPECT_RATIOS[aspect]
    long = short * max(a, b) // min(a, b)
    return f"{long}x{short}" if a > b else f"{short}x{long}"


def _metadata_text(kind: str, path: Path) -> str:
    if kind == "video":
        info = probe_clip(path)
        return f"{info.title} {info.comment}"
    with Image.open(path) as image:
        comment = image.info.get("comment", b"")
    return comment.decode("utf-8", "replace") if isinstance(comment, bytes) else str(comment)


async def _save_reference(offline: OfflineVideosAPI, part: _Part) -> Path:
    suffix = ".mp4" if part.kind == "video" else _image_suffix(part.data)
    path = offline.root / "uploads" / f"ref_{hashlib.sha256(part.data).hexdigest()[:32]}{suffix}"
    if not path.exists():
        await asyncio.to_thread(path.write_bytes, part.data)
    return path


def _image_suffix(data: bytes) -> str:
    try:
        with Image.open(io.BytesIO(data)) as image:
            return {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp"}.get(image.format or "", ".jpg")
    except (OSError, ValueError, Image.DecompressionBombError):
        raise invalid("Invalid value at 'input': an image part is not a supported image.") from None


# --- handlers --------------------------------------------------------------------------------------------


def _offline(request: web.Request) -> OfflineVideosAPI:
    return request.app[OFFLINE_KEY]


async def create_interaction(request: web.Request) -> web.StreamResponse:
    body = request_body(request)
    data = body.json
    if not isinstance(data, dict):
        raise invalid("The request body must be a JSON object.")
    for key in sorted(set(data) - _CREATE_FIELDS):
        raise invalid(f'Invalid JSON payload received. Unknown name "{key}": Cannot find field.')
    model = data.get("model")
    if not isinstance(model, str) or not model:
        raise invalid("Missing required field 'model'.")
    if model not in MODELS:
        raise invalid(f"models/{model} is not found for API version v1beta, or is not supported.", 404)
    if data.get("background") is not True:
        raise invalid("Video generation runs in the background: set background to true.")
    seconds, aspect, resolution, delivery = _format(data.get("response_format"), model)
    config = data.get("generation_config") or {}
    task = ((config.get("video_config") or {}) if isinstance(config, dict) else {}).get("task")
    parts = _parts(data.get("input"))
    prompt = " ".join(p.text for p in parts if p.kind == "text").strip()
    if not prompt:
        raise invalid("The input has no text prompt.")
    videos = [p for p in parts if p.kind == "video"]
    images = [p for p in parts if p.kind == "image"]
    limits: ReferenceLimits = request.app[LIMITS_KEY]
    offline = _offline(request)
    source_id: str | None = None
    if task in ("edit", "extend"):
        if not videos:
            raise invalid(f"Task '{task}' needs the video to {task} as the first video part.")
        source = videos.pop(0)
        source_id = await offline.find_by_output(hashlib.sha256(source.data).hexdigest())
        if source_id is None:
            raise invalid(f"The emulator can {task} only videos it made.")
    if len(videos) > limits.max_videos:
        raise invalid(f"Too many reference videos: {len(videos)}; at most {limits.max_videos} are allowed.")
    if len(images) > limits.max_images:
        raise invalid(f"Too many reference images: {len(images)}; at most {limits.max_images} are allowed.")
    references: list[Path] = []
    for part in videos + images:
        path = await _save_reference(offline, part)
        if part.kind == "video":
            try:
                info = await asyncio.to_thread(probe_clip, path)
            except VideosAPIError:
                raise invalid("Invalid value at 'input': a video part is not a supported video.") from None
            if info.seconds > limits.max_video_seconds + 0.05:
                raise invalid(
                    f"Reference videos may be at most {limits.max_video_seconds:g} seconds; one is "
                    f"{info.seconds:.1f} seconds."
                )
        if HUMAN_LIKENESS_MARKER in (await asyncio.to_thread(_metadata_text, part.kind, path)).lower():
            raise invalid(
                "The request was blocked by safety filters: a reference shows a real person, and generating "
                "videos of real people's likeness from references is not allowed."
            )
        references.append(path)
    video = await offline.create_from_references(
        prompt,
        model=model,
        size=frame_size(aspect, resolution),
        seconds=seconds,
        references=references,
        kind=task or "create",
        source_video_id=source_id,
    )
    request.app[DELIVERY_KEY][video.id] = delivery
    return web.json_response({"id": interaction_id(video.id), "status": "in_progress", "model": model})


async def _interaction(request: web.Request, video_id: str) -> dict[str, Any]:
    offline = _offline(request)
    video = await offline.retrieve_video(video_id)
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(video.created_at))
    answer: dict[str, Any] = {
        "id": interaction_id(video.id),
        "model": video.model,
        "created": created,
        "updated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if video.status in (VideoStatus.QUEUED, VideoStatus.IN_PROGRESS):
        answer["status"] = "queued" if video.status is VideoStatus.QUEUED else "in_progress"
        return answer
    if video.status is VideoStatus.FAILED:
        code, message = offline.failure_of(video.id) or ("failed", "The video could not be generated.")
        if code == "cancelled":
            answer["status"] = "cancelled"
        elif code == "moderation_blocked" or MODERATION_TRIGGER in (video.prompt or "").lower():
            # Omni answers a safety block in words: the interaction completes, with text and no video.
            answer["status"] = "completed"
            answer["steps"] = [
                {
                    "type": "model_output",
                    "content": [
                        {
                            "type": "text",
                            "text": "I can't create that video because the request may violate the safety "
                            "policy on harmful content.",
                        }
                    ],
                }
            ]
        else:
            answer["status"] = "failed"
            answer["errors"] = [{"code": code, "message": message}]
        return answer
    path = await offline.content_path(video.id)
    size = await asyncio.to_thread(lambda: path.stat().st_size)
    content: dict[str, Any] = {"type": "video", "mime_type": "video/mp4"}
    if request.app[DELIVERY_KEY].get(video.id) == "uri" or size > MAX_INLINE_OUTPUT:
        content["uri"] = f"{request.url.origin()}/v1beta/files/{file_id(video.id)}"
    else:
        content["data"] = base64.b64encode(await asyncio.to_thread(path.read_bytes)).decode("ascii")
    answer["status"] = "completed"
    answer["steps"] = [{"type": "model_output", "content": [content]}]
    answer["usage"] = {
        "total_output_tokens": int(video.seconds or 0) * TOKENS_PER_SECOND,
        "output_tokens_by_modality": [{"modality": "video", "tokens": int(video.seconds or 0) * TOKENS_PER_SECOND}],
    }
    return answer


async def get_interaction(request: web.Request) -> web.StreamResponse:
    video_id = video_id_of(request.match_info["interaction_id"])
    return web.json_response(await _interaction(request, video_id))


async def cancel_interaction(request: web.Request) -> web.StreamResponse:
    video_id = video_id_of(request.match_info["interaction_id"])
    _offline(request).cancel_video(video_id)
    return web.json_response(await _interaction(request, video_id))


async def delete_interaction(request: web.Request) -> web.StreamResponse:
    video_id = video_id_of(request.match_info["interaction_id"])
    await _offline(request).delete_video(video_id)
    return web.json_response({})


async def get_file(request: web.Request) -> web.StreamResponse:
    name = request.match_info["file"]
    downloading = name.endswith(":download")
    ident = name.removesuffix(":download")
    if not ident.isalnum() or ident.lower() != ident:
        raise invalid(f"File files/{ident} not found.", 404)
    offline = _offline(request)
    video_id = "video_" + ident
    path = await offline.content_path(video_id)
    if downloading:
        return web.FileResponse(path, headers={"Content-Type": "video/mp4"})
    size = await asyncio.to_thread(lambda: path.stat().st_size)
    origin = request.url.origin()
    return web.json_response(
        {
            "name": f"files/{ident}",
            "mimeType": "video/mp4",
            "sizeBytes": str(size),
            "uri": f"{origin}/v1beta/files/{ident}",
            "downloadUri": f"{origin}/v1beta/files/{ident}:download?alt=media",
            "state": "ACTIVE",
            "source": "GENERATED",
        }
    )


def create_gemini_app(
    offline: OfflineVideosAPI,
    *,
    faults: FaultPlan | None = None,
    api_key: str | None = None,
    limits: ReferenceLimits | None = None,
) -> web.Application:
    """The Interactions API emulator as an aiohttp application (base URL: the server's origin)."""
    prefix = "/v1beta"
    faults = faults or FaultPlan()
    faults.routes = ROUTES
    app = web.Application(
        middlewares=[make_middleware(faults, prefix, GoogleDialect(api_key))], client_max_size=MAX_BODY_BYTES
    )
    app[OFFLINE_KEY] = offline
    app[LIMITS_KEY] = limits or ReferenceLimits()
    app[FAULTS_KEY] = faults
    app[DELIVERY_KEY] = {}
    app.router.add_post(f"{prefix}/interactions", create_interaction, name="create_interaction")
    app.router.add_get(f"{prefix}/interactions/{{interaction_id}}", get_interaction, name="get_interaction")
    app.router.add_post(
        f"{prefix}/interactions/{{interaction_id}}/cancel", cancel_interaction, name="cancel_interaction"
    )
    app.router.add_delete(f"{prefix}/interactions/{{interaction_id}}", delete_interaction, name="delete_interaction")
    app.router.add_get(f"{prefix}/files/{{file}}", get_file, name="get_file")
    add_model_routes(app, prefix, MODELS)
    add_stats_route(app, faults)
    return app
