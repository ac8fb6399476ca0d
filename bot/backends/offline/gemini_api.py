"""The Gemini API's Interactions routes, emulated over the offline renderer (`soracast emulate --api gemini`).

The routes `google-genai` uses for Omni Flash video: `POST /v1beta/interactions` (background mode),
`GET /v1beta/interactions/{id}`, `POST /v1beta/interactions/{id}/cancel`, `DELETE /v1beta/interactions/{id}`,
and the Files API's `GET /v1beta/files/{id}` and `GET /v1beta/files/{id}:download?alt=media` for outputs sent
by link. The videos are real renders that show the request's reference clips and stills.

It refuses what the real API is documented to refuse, in Google's envelope
`{"error": {"code", "message", "status"}}`: a missing key (403 PERMISSION_DENIED), a wrong one (400 with reason
API_KEY_INVALID), unknown fields, a model it does not serve, a duration without its unit or out of the model's
range, an aspect ratio or resolution it does not make, more reference clips or stills than the model takes, a
reference clip over 3 s, and an edit or extension with no source. An unknown or expired interaction id — in the
path or as `previous_interaction_id` — is Google's 400 "Invalid interaction name". An edit (`task: edit`) takes
no duration or aspect ratio; an extension adds 3–10 s and may not take the video past the model's total (1.2:
30 s). A source may be the earlier interaction (`previous_interaction_id`, how Google's guide edits a video it
made) or an uploaded video part; `uploaded_video_editing=False` plays a region where Google does not offer the
latter (the EEA, Switzerland, the UK). Content rules are played deterministically: a reference whose metadata
(MP4 title/comment, JPEG comment) says "person" is refused at create as human likeness, a prompt containing
`[[moderation]]` completes with words and no video, as a safety block does, and `[[requires_action]]` or
`[[idle]]` leave the interaction in that state.

Webhooks are sent as Google's webhooks guide describes them: a create whose `webhook_config` names `uris` is
announced there when it ends (`interaction.completed`, `interaction.failed`, `interaction.requires_action`),
with the `user_metadata` it was given, under Standard Webhooks headers whose `webhook-signature` is an RS256
JSON Web Token (a per-request webhook's), the key published at `GET /.well-known/jwks.json`. A webhook registered
with the emulator (`registered_webhook=(uri, "whsec_…")`) gets the events of creates without `uris`, signed
with that secret's HMAC. An answer other than 2xx gets the webhook again.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import io
import json
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from PIL import Image

from bot.backends.offline.clips import probe_clip
from bot.backends.offline.emulation import (
    MAX_BODY_BYTES,
    FaultPlan,
    WebhookSender,
    add_stats_route,
    make_middleware,
    request_body,
)
from bot.backends.offline.gemini_models import add_model_routes
from bot.backends.offline.renderer import OfflineVideosAPI
from bot.backends.offline.spec import HUMAN_LIKENESS_MARKER, MODERATION_TRIGGER
from bot.backends.openai.schemas import VideoStatus
from bot.errors import APIRequestRejected, VideosAPIError
from bot.jwks import b64url_encode
from bot.signing import sign as sign_hmac

ROUTES = (
    "create_interaction",
    "get_interaction",
    "cancel_interaction",
    "delete_interaction",
    "get_file",
    "jwks",
)


@dataclass(frozen=True)
class ModelRules:
    """What one Omni model takes, as Google's guide says (read 2026-12-04)."""

    durations: range
    max_images: int
    max_videos: int
    #: The longest a video may grow through extensions (None: not published).
    max_total_seconds: int | None
    #: The longest uploaded source an edit or extension takes (None: not published).
    max_uploaded_source_seconds: int | None


#: The models this emulator serves.
MODELS = {
    "gemini-omni-1.1-flash": ModelRules(range(3, 11), 7, 3, None, 10),
    "gemini-omni-1.2-flash": ModelRules(range(3, 16), 6, 3, 30, None),
}
#: Seconds one extension adds.
EXTEND_SECONDS = range(3, 11)
#: Prompt markers that leave an interaction waiting in these states (played like `[[moderation]]`).
STATE_MARKERS = {"[[requires_action]]": "requires_action", "[[idle]]": "idle"}
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
#: The `webhook_config` each create was sent with (kept in memory, like delivery).
WEBHOOK_CONFIG_KEY = web.AppKey("gemini_webhook_configs", dict)
WEBHOOKS_KEY = web.AppKey("gemini_webhooks", WebhookSender)
SIGNER_KEY = web.AppKey("gemini_signer", "WebhookSigner")
OPTIONS_KEY = web.AppKey("gemini_options", "EmulatorOptions")


@dataclass(frozen=True)
class ReferenceLimits:
    """Lower ceilings on references per request than each model's own (None: the model's)."""

    max_images: int | None = None
    max_videos: int | None = None
    max_video_seconds: float = 3.0


@dataclass(frozen=True)
class EmulatorOptions:
    """Where the emulator plays from: whether uploaded-video editing is offered there, and a registered webhook
    (`(uri, whsec_ secret)`) that gets the events of creates that name no `uris`."""

    uploaded_video_editing: bool = True
    registered_webhook: tuple[str, str] | None = None


class WebhookSigner:
    """Signs per-request webhooks as Google does: an RS256 JSON Web Token in `webhook-signature`."""

    def __init__(self, issuer: str = "https://generativelanguage.googleapis.com") -> None:
        self.issuer = issuer
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = secrets.token_hex(8)

    def token(self, audience: str, *, now: float | None = None, lifetime: float = 300.0) -> str:
        issued = int(time.time() if now is None else now)
        header = {"alg": "RS256", "kid": self.kid, "typ": "JWT"}
        claims = {"iss": self.issuer, "aud": audience, "iat": issued, "exp": issued + int(lifetime)}
        signing_input = ".".join(b64url_encode(json.dumps(part).encode()) for part in (header, claims))
        signature = self.key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{b64url_encode(signature)}"

    def jwks(self) -> dict[str, Any]:
        numbers = self.key.public_key().public_numbers()
        return {
            "keys": [
                {
                    "kty": "RSA",
                    "alg": "RS256",
                    "use": "sig",
                    "kid": self.kid,
                    "n": b64url_encode(numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")),
                    "e": b64url_encode(numbers.e.to_bytes((numbers.e.bit_length() + 7) // 8, "big")),
                }
            ]
        }


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
        if request.match_info.route.name == "jwks":
            return None  # published keys are public
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
    if not interaction.startswith("v1_") or not interaction[3:].isalnum():
        raise invalid(f"Invalid interaction name: {interaction[:80]}")
    return "video_" + interaction.removeprefix("v1_")


async def _known_video(offline: OfflineVideosAPI, interaction: str) -> Any:
    """The renderer's job of an interaction id; Google's 400 "Invalid interaction name" for an unknown one."""
    video_id = video_id_of(interaction)
    try:
        return await offline.retrieve_video(video_id)
    except VideosAPIError:
        raise invalid(f"Invalid interaction name: {interaction[:80]}") from None


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


def _format(value: Any, model: str, task: str | None) -> tuple[int | None, str, str, str]:
    """(seconds, aspect ratio, resolution, delivery) from `response_format`, checked like the API checks it: an
    edit takes no duration or aspect ratio (its seconds are None), an extension the seconds it adds."""
    formats = value if isinstance(value, list) else [value]
    video = next((f for f in formats if isinstance(f, dict) and f.get("type") == "video"), None)
    if video is None:
        raise invalid("Video generation needs response_format with type 'video'.")
    if task == "edit":
        for field in ("duration", "aspect_ratio"):
            if field in video:
                raise invalid(
                    f"Invalid value at 'response_format.{field}': an edit keeps its source video's {field}; "
                    f"remove '{field}' for task 'edit'."
                )
    seconds: int | None = None
    if task != "edit":
        duration = video.get("duration", "6s")
        if not isinstance(duration, str) or not duration.endswith("s"):
            raise invalid(
                f"Invalid value at 'response_format.duration' ({duration!r}): a duration is a string with a unit, "
                "like '6s'."
            )
        try:
            value_seconds = float(duration[:-1])
        except ValueError:
            raise invalid(f"Invalid value at 'response_format.duration' ({duration!r}).") from None
        allowed = EXTEND_SECONDS if task == "extend" else MODELS[model].durations
        if not value_seconds.is_integer() or int(value_seconds) not in allowed:
            what = "An extension adds" if task == "extend" else f"{model} makes videos of"
            raise invalid(f"{what} {allowed.start} to {allowed.stop - 1} seconds; got {duration}.")
        seconds = int(value_seconds)
    aspect = video.get("aspect_ratio", "16:9")
    if aspect not in ASPECT_RATIOS:
        raise invalid(f"Unsupported aspect_ratio {aspect!r}: use 16:9 or 9:16.")
    resolution = video.get("resolution", "720p")
    if resolution not in RESOLUTIONS:
        raise invalid(f"Unsupported resolution {resolution!r}: use 360p, 720p, 1080p or 4k.")
    delivery = video.get("delivery", "inline")
    if delivery not in ("inline", "uri"):
        raise invalid(f"Unsupported delivery {delivery!r}: use inline or uri.")
    return seconds, aspect, resolution, delivery


def _webhook_config(value: Any) -> dict[str, Any] | None:
    """`webhook_config` as the API checks it: `uris` a list of http(s) URLs, `user_metadata` an object."""
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) - {"uris", "user_metadata"}:
        raise invalid("Invalid value at 'webhook_config': expected {uris, user_metadata}.")
    uris = value.get("uris", [])
    urls = isinstance(uris, list) and all(isinstance(u, str) and u.startswith(("https://", "http://")) for u in uris)
    if not urls:
        raise invalid("Invalid value at 'webhook_config.uris': expected a list of URLs.")
    metadata = value.get("user_metadata", {})
    if not isinstance(metadata, dict):
        raise invalid("Invalid value at 'webhook_config.user_metadata': expected an object.")
    return {"uris": list(uris), "user_metadata": dict(metadata)}


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
    config = data.get("generation_config") or {}
    task = ((config.get("video_config") or {}) if isinstance(config, dict) else {}).get("task")
    seconds, aspect, resolution, delivery = _format(data.get("response_format"), model, task)
    webhook_config = _webhook_config(data.get("webhook_config"))
    parts = _parts(data.get("input"))
    prompt = " ".join(p.text for p in parts if p.kind == "text").strip()
    if not prompt:
        raise invalid("The input has no text prompt.")
    videos = [p for p in parts if p.kind == "video"]
    images = [p for p in parts if p.kind == "image"]
    offline = _offline(request)
    source_id = await _source(request, data, task, model, videos)
    rules = MODELS[model]
    limits: ReferenceLimits = request.app[LIMITS_KEY]
    max_videos = min(rules.max_videos, limits.max_videos) if limits.max_videos is not None else rules.max_videos
    max_images = min(rules.max_images, limits.max_images) if limits.max_images is not None else rules.max_images
    if len(videos) > max_videos:
        raise invalid(f"Too many reference videos: {len(videos)}; at most {max_videos} are allowed.")
    if len(images) > max_images:
        raise invalid(f"Too many reference images: {len(images)}; at most {max_images} are allowed.")
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
        seconds=seconds or 0,
        references=references,
        kind=task or "create",
        source_video_id=source_id,
    )
    request.app[DELIVERY_KEY][video.id] = delivery
    if webhook_config is not None:
        request.app[WEBHOOK_CONFIG_KEY][video.id] = webhook_config
    _announce_when_done(request, video.id, webhook_config)
    return web.json_response({"id": interaction_id(video.id), "status": "in_progress", "model": model})


async def _source(
    request: web.Request, data: dict[str, Any], task: str | None, model: str, videos: list[_Part]
) -> str | None:
    """The renderer's job an edit or extension builds on: the earlier interaction, or an uploaded video part
    (taken out of `videos`); each checked as the API checks it."""
    previous = data.get("previous_interaction_id")
    if task not in ("edit", "extend"):
        return None
    offline = _offline(request)
    rules = MODELS[model]
    if previous is not None:
        if not isinstance(previous, str):
            raise invalid("Invalid value at 'previous_interaction_id': expected a string.")
        source = await _known_video(offline, previous)
        if source.status is not VideoStatus.COMPLETED or MODERATION_TRIGGER in (source.prompt or "").lower():
            raise invalid(f"Interaction {previous} has no finished video to {task}.")
        source_id = str(source.id)
        source_seconds = int(source.seconds or 0)
    else:
        if not videos:
            raise invalid(
                f"Task '{task}' needs a source: previous_interaction_id, or the video to {task} as the first "
                "video part."
            )
        if not request.app[OPTIONS_KEY].uploaded_video_editing:
            raise invalid("Editing an uploaded video is not available in your location.", 400)
        uploaded = videos.pop(0)
        found = await offline.find_by_output(hashlib.sha256(uploaded.data).hexdigest())
        if found is None:
            raise invalid(f"The emulator can {task} only videos it made.")
        source_id = found
        source_seconds = int((await offline.retrieve_video(found)).seconds or 0)
        cap = rules.max_uploaded_source_seconds
        if cap is not None and source_seconds > cap:
            raise invalid(f"{model} edits uploaded videos of up to {cap} seconds; this one is {source_seconds}.")
    if task == "extend" and rules.max_total_seconds is not None:
        added = _format(data.get("response_format"), model, task)[0] or 0
        if source_seconds + added > rules.max_total_seconds:
            raise invalid(
                f"An extended video may be at most {rules.max_total_seconds} seconds with {model}; "
                f"{source_seconds} + {added} seconds is {source_seconds + added}."
            )
    return source_id


def _announce_when_done(request: web.Request, video_id: str, config: dict[str, Any] | None) -> None:
    """Send the job's webhook once it ends: to the create's `uris` (a signed token), else to the registered
    webhook (its HMAC secret)."""
    app = request.app
    registered = app[OPTIONS_KEY].registered_webhook
    if config is None and registered is None:
        return
    if config is not None and not config["uris"] and registered is None:
        return
    origin = str(request.url.origin())

    async def announce(done_id: str) -> list[tuple[str, bytes, dict[str, str]]]:
        answer = await _interaction_body(app, done_id, origin)
        kind = {
            "completed": "interaction.completed",
            "failed": "interaction.failed",
            "requires_action": "interaction.requires_action",
        }.get(str(answer.get("status")))
        if kind is None:
            return []  # a cancelled job is the caller's own doing; nothing is announced
        metadata = (config or {}).get("user_metadata") or {}
        event = {
            "type": kind,
            "version": "v1",
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "data": {"id": answer["id"], "status": answer["status"], "user_metadata": metadata},
        }
        body = json.dumps(event).encode()
        webhook_id = "msg_" + secrets.token_hex(12)
        stamp = int(time.time())
        headers = {"Content-Type": "application/json", "webhook-id": webhook_id, "webhook-timestamp": str(stamp)}
        if config is not None and config["uris"]:
            return [
                (uri, body, {**headers, "webhook-signature": app[SIGNER_KEY].token(uri)}) for uri in config["uris"]
            ]
        assert registered is not None
        uri, secret = registered
        return [(uri, body, {**headers, "webhook-signature": sign_hmac(secret, webhook_id, stamp, body)})]

    app[WEBHOOKS_KEY].after_job(video_id, announce)


async def _interaction(request: web.Request, video_id: str) -> dict[str, Any]:
    return await _interaction_body(request.app, video_id, str(request.url.origin()))


async def _interaction_body(app: web.Application, video_id: str, origin: str) -> dict[str, Any]:
    offline = app[OFFLINE_KEY]
    video = await offline.retrieve_video(video_id)
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(video.created_at))
    answer: dict[str, Any] = {
        "id": interaction_id(video.id),
        "model": video.model,
        "created": created,
        "updated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    config = app[WEBHOOK_CONFIG_KEY].get(video.id)
    if config is not None:
        answer["webhook_config"] = config
    failure = offline.failure_of(video.id)
    marker = next((state for mark, state in STATE_MARKERS.items() if mark in (video.prompt or "")), None)
    if marker is not None and not (failure and failure[0] == "cancelled"):
        answer["status"] = marker
        return answer
    if video.status in (VideoStatus.QUEUED, VideoStatus.IN_PROGRESS):
        answer["status"] = "queued" if video.status is VideoStatus.QUEUED else "in_progress"
        return answer
    if video.status is VideoStatus.FAILED:
        code, message = failure or ("failed", "The video could not be generated.")
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
    if app[DELIVERY_KEY].get(video.id) == "uri" or size > MAX_INLINE_OUTPUT:
        content["uri"] = f"{origin}/v1beta/files/{file_id(video.id)}"
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
    video = await _known_video(_offline(request), request.match_info["interaction_id"])
    return web.json_response(await _interaction(request, video.id))


async def cancel_interaction(request: web.Request) -> web.StreamResponse:
    offline = _offline(request)
    video = await _known_video(offline, request.match_info["interaction_id"])
    if any(mark in (video.prompt or "") for mark in STATE_MARKERS):
        # Waiting for an action (or idle) is not finished: a cancel ends it.
        offline.fail_video(video.id, code="cancelled", message="The job was cancelled.")
        offline.finish_now(video.id)
    else:
        offline.cancel_video(video.id)
    return web.json_response(await _interaction(request, video.id))


async def delete_interaction(request: web.Request) -> web.StreamResponse:
    video = await _known_video(_offline(request), request.match_info["interaction_id"])
    await _offline(request).delete_video(video.id)
    return web.json_response({})


async def jwks(request: web.Request) -> web.StreamResponse:
    return web.json_response(request.app[SIGNER_KEY].jwks())


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
    options: EmulatorOptions | None = None,
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
    app[WEBHOOK_CONFIG_KEY] = {}
    app[OPTIONS_KEY] = options or EmulatorOptions()
    app[WEBHOOKS_KEY] = WebhookSender(offline)
    app[SIGNER_KEY] = WebhookSigner()

    async def stop_webhooks(_app: web.Application) -> None:
        await _app[WEBHOOKS_KEY].aclose()

    app.on_cleanup.append(stop_webhooks)
    app.router.add_get("/.well-known/jwks.json", jwks, name="jwks")
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
