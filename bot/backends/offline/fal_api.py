"""fal's queue routes, emulated over the offline renderer (`soracast emulate --api fal`).

`POST /{model id}` submits and answers `{request_id, status_url, response_url, cancel_url}`; those URLs drop
the model's sub-path, as fal's do (`/fal-ai/kling-video/requests/{id}/status`), so a client that builds them
itself instead of following them meets a 404. `GET …/status` answers `IN_QUEUE` with a `queue_position`
(the requests submitted earlier that still wait), `IN_PROGRESS`, or `COMPLETED` — with `error` and
`error_type` when the job failed. `GET …/requests/{id}` gives the result, whose video URL is served by this
app under `/files/`, like fal's file host without a key. `PUT …/cancel` stops a job that has not finished.

It refuses what fal's endpoints are documented to refuse, with fal's error shapes: validation errors as 422
`{"detail": [{"loc", "msg", "type"}]}` — a duration, aspect ratio or resolution the model does not take,
more inputs than Kling takes (elements + `image_urls` + a start image ≤ 7, ≤ 4 with a video, one element being
one input whatever its stills; an element is a front view and 1–3 more), more images than Vidu (1–4) or Veo
(1–3) take, a missing or too long prompt, an image it cannot download (a URL that is not a live file on this
host's CDN, or a data URI, which none of these models' pages says it takes) — and platform errors as
`{"detail", "error_type"}` with `X-Fal-Error-Type`: a missing or wrong `Authorization: Key …` (401), an
unknown application or request (404). Files reach it as they reach fal: uploaded with fal-client to the storage
and CDN routes of `fal_platform` (served by this same app), then named by URL. Content rules are played as the
other emulators play them: a still whose JPEG comment says "person" is refused as a real person's likeness, and
a prompt containing `[[moderation]]` completes with a content-policy error.

The endpoints are in `fal_endpoints`, a submit is read in `fal_requests`, refused in `fal_dialect`'s shapes, its
state and ids are in `fal_jobs`, and its webhook (`?fal_webhook=<url>`) is built and signed in `fal_webhooks`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from aiohttp import web

from bot.backends.offline.emulation import MAX_BODY_BYTES, add_stats_route, make_middleware
from bot.backends.offline.fal_dialect import FalDialect, invalid, platform_error
from bot.backends.offline.fal_endpoints import ENDPOINTS, app_path, frame_size
from bot.backends.offline.fal_jobs import (
    ERROR_TYPES,
    FAULTS_KEY,
    OFFLINE_KEY,
    PENDING_KEY,
    SERVED_KEY,
    SIGNER_KEY,
    WEBHOOKS_KEY,
    request_id_of,
    result_body,
    video_id_of,
)
from bot.backends.offline.fal_platform import PLATFORM_ROUTES, add_platform_routes
from bot.backends.offline.fal_requests import choice, image_comment, read_images, save_image
from bot.backends.offline.fal_webhooks import WebhookSigner, webhook_body
from bot.backends.offline.faults import FaultPlan
from bot.backends.offline.renderer import OfflineVideosAPI
from bot.backends.offline.request_bodies import request_body
from bot.backends.offline.spec import HUMAN_LIKENESS_MARKER
from bot.backends.offline.webhook_sender import WebhookSender
from bot.backends.openai.schemas import VideoStatus
from bot.errors import VideosAPIError

ROUTES = ("submit", "status", "result", "cancel", "file", "jwks", *PLATFORM_ROUTES)


def _offline(request: web.Request) -> OfflineVideosAPI:
    return request.app[OFFLINE_KEY]


def _urls(request: web.Request, model: str, request_id: str) -> dict[str, str]:
    base = f"{request.url.origin()}/{app_path(model)}/requests/{request_id}"
    return {"response_url": base, "status_url": f"{base}/status", "cancel_url": f"{base}/cancel"}


async def submit(request: web.Request) -> web.StreamResponse:
    model = request.match_info["model"]
    endpoint = request.app[SERVED_KEY].get(model)
    if endpoint is None:
        raise platform_error(404, f"Application '{model}' not found")
    data = request_body(request).json
    if not isinstance(data, dict):
        raise invalid("Input should be a valid dictionary", None, "dict_type")
    prompt = data.get("prompt")
    if not isinstance(prompt, str):
        raise invalid("Field required" if prompt is None else "Input should be a valid string", "prompt", "missing")
    if not prompt.strip():
        raise invalid("String should have at least 1 character", "prompt", "string_too_short")
    if len(prompt) > endpoint.max_prompt:
        raise invalid(f"String should have at most {endpoint.max_prompt} characters", "prompt", "string_too_long")
    seconds_value = choice(data, "duration", endpoint.durations, endpoint.default_duration)
    aspect = choice(data, "aspect_ratio", endpoint.aspect_ratios, "16:9")
    resolution = endpoint.fixed_resolution
    if endpoint.resolutions:
        resolution = choice(data, "resolution", endpoint.resolutions, endpoint.fixed_resolution)
    # Reading and checking the images is file work: off the event loop.
    images = await asyncio.to_thread(read_images, request, data, endpoint)
    offline = _offline(request)
    references: list[Path] = []
    for field, image in images:
        if HUMAN_LIKENESS_MARKER in (await asyncio.to_thread(image_comment, image)).lower():
            raise invalid(
                "The content could not be processed: a reference image appears to show a real person, and "
                "generating a real person's likeness is not allowed.",
                field,
                "content_policy_violation",
            )
        references.append(await save_image(offline, image))
    seconds = int(str(seconds_value).removesuffix("s"))
    video = await offline.create_from_references(
        prompt, model=model, size=frame_size(aspect, resolution), seconds=seconds, references=references
    )
    request.app[PENDING_KEY].append(video.id)
    request_id = request_id_of(video.id)
    webhook = request.query.get("fal_webhook")
    if webhook:
        app, origin = request.app, str(request.url.origin())

        async def announce(video_id: str) -> list[tuple[str, bytes, dict[str, str]]]:
            ended = await app[OFFLINE_KEY].retrieve_video(video_id)
            body = await webhook_body(request_id, ended, app, origin)
            return [(webhook, body, app[SIGNER_KEY].headers(request_id, body))]

        request.app[WEBHOOKS_KEY].after_job(video.id, announce)
    return web.json_response(
        {"request_id": request_id, "status": "IN_QUEUE", "queue_position": 0, **_urls(request, model, request_id)}
    )


async def _job(request: web.Request) -> tuple[str, Any]:
    """The renderer's job of the request in the path; 404 when it is unknown or under another app's path."""
    request_id = request.match_info["request_id"]
    video_id = video_id_of(request_id)
    try:
        video = await _offline(request).retrieve_video(video_id)
    except VideosAPIError:
        raise platform_error(404, f"Request {request_id} not found") from None
    owner_alias = f"{request.match_info['owner']}/{request.match_info['alias']}"
    if app_path(video.model) != owner_alias:
        raise platform_error(404, f"Request {request_id} not found")
    return video_id, video


async def _queue_position(request: web.Request, video_id: str) -> int:
    """How many requests submitted earlier still wait in the queue."""
    pending: list[str] = request.app[PENDING_KEY]
    ahead = 0
    for other in list(pending):
        if other == video_id:
            break
        try:
            state = (await _offline(request).retrieve_video(other)).status
        except VideosAPIError:
            state = VideoStatus.FAILED
        if state in (VideoStatus.COMPLETED, VideoStatus.FAILED):
            pending.remove(other)
        elif state is VideoStatus.QUEUED:
            ahead += 1
    return ahead


def _logs(video: Any, wanted: bool) -> list[dict[str, Any]] | None:
    if not wanted:
        return None
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    line = {"message": f"rendering {video.seconds}s at {video.size}", "level": "INFO", "source": "user"}
    return [{**line, "timestamp": stamp}]


async def status(request: web.Request) -> web.StreamResponse:
    video_id, video = await _job(request)
    with_logs = request.query.get("logs", "false").lower() in ("1", "true")
    model = video.model
    answer: dict[str, Any] = {"request_id": request.match_info["request_id"]}
    answer.update(_urls(request, model, answer["request_id"]))
    if video.status is VideoStatus.QUEUED:
        answer.update(status="IN_QUEUE", queue_position=await _queue_position(request, video_id))
        return web.json_response(answer, status=202)
    if video.status is VideoStatus.IN_PROGRESS:
        answer.update(status="IN_PROGRESS", logs=_logs(video, with_logs))
        return web.json_response(answer, status=202)
    answer.update(status="COMPLETED", logs=_logs(video, with_logs), metrics={"inference_time": float(video.seconds)})
    if video.status is VideoStatus.FAILED:
        code, message = _offline(request).failure_of(video_id) or ("failed", "The video could not be generated.")
        answer.update(error=message, error_type=ERROR_TYPES.get(code, "internal_error"))
    return web.json_response(answer)


async def result(request: web.Request) -> web.StreamResponse:
    video_id, video = await _job(request)
    if video.status in (VideoStatus.QUEUED, VideoStatus.IN_PROGRESS):
        raise platform_error(400, "Request is still in progress")
    if video.status is VideoStatus.FAILED:
        code, message = _offline(request).failure_of(video_id) or ("failed", "The video could not be generated.")
        if code == "moderation_blocked":
            raise invalid(message, "prompt", "content_policy_violation")
        raise platform_error(400 if code == "cancelled" else 500, message, ERROR_TYPES.get(code, "internal_error"))
    return web.json_response(await result_body(request.app, video_id, str(request.url.origin())))


async def cancel(request: web.Request) -> web.StreamResponse:
    video_id, video = await _job(request)
    if video.status in (VideoStatus.COMPLETED, VideoStatus.FAILED):
        return web.json_response({"status": "ALREADY_COMPLETED"}, status=400)
    _offline(request).cancel_video(video_id)
    return web.json_response({"status": "CANCELLATION_REQUESTED"}, status=202)


async def get_file(request: web.Request) -> web.StreamResponse:
    file_id = request.match_info["file_id"]
    if not file_id.isalnum():
        raise platform_error(404, "File not found")
    try:
        path = await _offline(request).content_path("video_" + file_id)
    except VideosAPIError:
        raise platform_error(404, "File not found") from None
    return web.FileResponse(path, headers={"Content-Type": "video/mp4"})


async def unknown(request: web.Request) -> web.StreamResponse:
    raise platform_error(404, f"Not Found: {request.method} {request.path}")


async def jwks(request: web.Request) -> web.StreamResponse:
    return web.json_response(request.app[SIGNER_KEY].jwks())


def create_fal_app(
    offline: OfflineVideosAPI,
    *,
    faults: FaultPlan | None = None,
    api_key: str | None = None,
    endpoints: Iterable[str] | None = None,
) -> web.Application:
    """fal's queue, storage, CDN and pricing routes as one aiohttp application (every fal host is its origin).

    `endpoints` narrows the models served (default: all of ENDPOINTS), to play an account or a region where a
    model is not available."""
    faults = faults or FaultPlan()
    faults.routes = ROUTES
    middleware = make_middleware(faults, "", FalDialect(api_key))
    app = web.Application(middlewares=[middleware], client_max_size=MAX_BODY_BYTES)
    app[OFFLINE_KEY] = offline
    app[FAULTS_KEY] = faults
    app[PENDING_KEY] = []
    served = {m: ENDPOINTS[m] for m in (endpoints if endpoints is not None else ENDPOINTS)}
    app[SERVED_KEY] = served
    add_platform_routes(app, {model: endpoint.price for model, endpoint in served.items()})
    app[WEBHOOKS_KEY] = WebhookSender(offline)
    app[SIGNER_KEY] = WebhookSigner()

    async def stop_webhooks(_app: web.Application) -> None:
        await _app[WEBHOOKS_KEY].aclose()

    app.on_cleanup.append(stop_webhooks)
    requests = "/{owner}/{alias}/requests/{request_id}"
    app.router.add_get("/.well-known/jwks.json", jwks, name="jwks")
    app.router.add_get("/files/{file_id}/{name}", get_file, name="file")
    app.router.add_get(f"{requests}/status", status, name="status")
    app.router.add_put(f"{requests}/cancel", cancel, name="cancel")
    app.router.add_get(requests, result, name="result")
    add_stats_route(app, faults)
    app.router.add_post("/{model:.+}", submit, name="submit")
    # Anything else (a status URL built with the model's sub-path, say) is not found, as at fal.
    app.router.add_route("*", "/{path:.*}", unknown)
    return app
