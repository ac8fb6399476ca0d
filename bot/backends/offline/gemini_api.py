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

The request is read in `gemini_requests`, answered in `gemini_interactions`, refused in `gemini_dialect`'s
envelope, and announced by webhook (`gemini_webhooks`) when it ends.
"""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import Any

from aiohttp import web

from bot.backends.offline.clips import probe_clip
from bot.backends.offline.emulation import MAX_BODY_BYTES, add_stats_route, make_middleware
from bot.backends.offline.faults import FaultPlan
from bot.backends.offline.gemini_dialect import GoogleDialect, invalid
from bot.backends.offline.gemini_interactions import (
    DELIVERY_KEY,
    FAULTS_KEY,
    LIMITS_KEY,
    OFFLINE_KEY,
    OPTIONS_KEY,
    SIGNER_KEY,
    STATE_MARKERS,
    WEBHOOK_CONFIG_KEY,
    WEBHOOKS_KEY,
    EmulatorOptions,
    interaction_body,
    interaction_id,
    known_video,
)
from bot.backends.offline.gemini_models import add_model_routes
from bot.backends.offline.gemini_requests import (
    MODELS,
    Part,
    ReferenceLimits,
    frame_size,
    metadata_text,
    read_format,
    read_parts,
    read_webhook_config,
    save_reference,
)
from bot.backends.offline.gemini_webhooks import WebhookSigner, announce_when_done
from bot.backends.offline.renderer import OfflineVideosAPI
from bot.backends.offline.request_bodies import request_body
from bot.backends.offline.spec import HUMAN_LIKENESS_MARKER, MODERATION_TRIGGER
from bot.backends.offline.webhook_sender import WebhookSender
from bot.backends.openai.schemas import VideoStatus
from bot.errors import VideosAPIError

ROUTES = (
    "create_interaction",
    "get_interaction",
    "cancel_interaction",
    "delete_interaction",
    "get_file",
    "jwks",
)

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
    seconds, aspect, resolution, delivery = read_format(data.get("response_format"), model, task)
    webhook_config = read_webhook_config(data.get("webhook_config"))
    parts = read_parts(data.get("input"))
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
        path = await save_reference(offline, part)
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
        if HUMAN_LIKENESS_MARKER in (await asyncio.to_thread(metadata_text, part.kind, path)).lower():
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
    announce_when_done(request, video.id, webhook_config)
    return web.json_response({"id": interaction_id(video.id), "status": "in_progress", "model": model})


async def _source(
    request: web.Request, data: dict[str, Any], task: str | None, model: str, videos: list[Part]
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
        source = await known_video(offline, previous)
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
        added = read_format(data.get("response_format"), model, task)[0] or 0
        if source_seconds + added > rules.max_total_seconds:
            raise invalid(
                f"An extended video may be at most {rules.max_total_seconds} seconds with {model}; "
                f"{source_seconds} + {added} seconds is {source_seconds + added}."
            )
    return source_id


async def _interaction(request: web.Request, video_id: str) -> dict[str, Any]:
    return await interaction_body(request.app, video_id, str(request.url.origin()))


async def get_interaction(request: web.Request) -> web.StreamResponse:
    video = await known_video(_offline(request), request.match_info["interaction_id"])
    return web.json_response(await _interaction(request, video.id))


async def cancel_interaction(request: web.Request) -> web.StreamResponse:
    offline = _offline(request)
    video = await known_video(offline, request.match_info["interaction_id"])
    if any(mark in (video.prompt or "") for mark in STATE_MARKERS):
        # Waiting for an action (or idle) is not finished: a cancel ends it.
        offline.fail_video(video.id, code="cancelled", message="The job was cancelled.")
        offline.finish_now(video.id)
    else:
        offline.cancel_video(video.id)
    return web.json_response(await _interaction(request, video.id))


async def delete_interaction(request: web.Request) -> web.StreamResponse:
    video = await known_video(_offline(request), request.match_info["interaction_id"])
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
