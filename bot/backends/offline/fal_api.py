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

A submit with `?fal_webhook=<url>` is announced there once it ends, as fal does (docs.fal.ai webhooks page):
`{request_id, gateway_request_id, status: OK|ERROR, payload}`, signed with Ed25519 over
`request id \n user id \n timestamp \n sha256(body)` (headers `X-Fal-Webhook-*`, signature in hex), the public
key published at `GET /.well-known/jwks.json`; an answer other than 2xx gets the webhook again.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import io
import json
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from PIL import Image

from bot.backends.offline.emulation import (
    MAX_BODY_BYTES,
    FaultPlan,
    WebhookSender,
    add_stats_route,
    make_middleware,
    request_body,
)
from bot.backends.offline.fal_platform import (
    OPEN_ROUTES,
    PLATFORM_ROUTES,
    TOKEN_ROUTE,
    add_platform_routes,
    hosted_file,
    token_refusal,
)
from bot.backends.offline.renderer import OfflineVideosAPI
from bot.backends.offline.spec import HUMAN_LIKENESS_MARKER
from bot.backends.openai.schemas import VideoStatus
from bot.errors import APIRequestRejected, VideosAPIError
from bot.jwks import b64url_encode

ROUTES = ("submit", "status", "result", "cancel", "file", "jwks", *PLATFORM_ROUTES)

_FRAMES = {"16:9": (16, 9), "9:16": (9, 16), "1:1": (1, 1), "4:3": (4, 3), "3:4": (3, 4)}
_SHORT_SIDE = {"360p": 360, "540p": 540, "720p": 720, "1080p": 1080, "4k": 2160}


@dataclass(frozen=True)
class Endpoint:
    """What one fal endpoint takes, as its schema on fal's model page says."""

    #: How the references travel: `elements` (Kling), `reference_image_urls` (Vidu) or `image_urls` (Veo).
    references: str
    #: The durations the schema allows, typed as it types them ("5", 5 or "8s"), and its default.
    durations: tuple[Any, ...]
    default_duration: Any
    aspect_ratios: tuple[str, ...]
    #: Resolutions the `resolution` field takes; empty when the model has no such field.
    resolutions: tuple[str, ...]
    #: The resolution rendered when the model takes none.
    fixed_resolution: str
    #: Vidu, Veo: the images the list takes. Kling: the inputs (elements + images + a start image).
    max_images: int
    min_images: int
    max_prompt: int
    #: Kling: the inputs allowed when one of them is a video.
    max_with_video: int = 0
    #: Whether the model takes images as base64 data URIs; otherwise only as URLs it can download.
    data_uris: bool = False
    #: USD per second, as `GET /v1/models/pricing` quotes it.
    price: float = 0.1


def _kling(durations: range, resolution: str, price: float) -> Endpoint:
    return Endpoint(
        references="elements",
        durations=tuple(str(d) for d in durations),
        default_duration="5",
        aspect_ratios=("16:9", "9:16", "1:1"),
        resolutions=(),
        fixed_resolution=resolution,
        max_images=7,
        min_images=0,
        max_prompt=2500,
        max_with_video=4,
        price=price,
    )


#: The endpoints served, by fal model id (fal serves O1 under both ids: the standard one and the older one).
ENDPOINTS: dict[str, Endpoint] = {
    "fal-ai/kling-video/o1/standard/reference-to-video": _kling(range(3, 11), "720p", 0.084),
    "fal-ai/kling-video/o1/reference-to-video": _kling(range(3, 11), "1080p", 0.112),
    "fal-ai/kling-video/o3/standard/reference-to-video": _kling(range(3, 16), "720p", 0.084),
    "fal-ai/kling-video/o3/pro/reference-to-video": _kling(range(3, 16), "1080p", 0.112),
    "fal-ai/vidu/q3/reference-to-video/mix": Endpoint(
        references="reference_image_urls",
        durations=tuple(range(1, 17)),
        default_duration=5,
        aspect_ratios=("16:9", "9:16", "4:3", "3:4", "1:1"),
        resolutions=("360p", "540p", "720p", "1080p"),
        fixed_resolution="720p",
        max_images=4,
        min_images=1,
        max_prompt=2000,
        price=0.154,
    ),
    "fal-ai/veo3.1/reference-to-video": Endpoint(
        references="image_urls",
        durations=("8s",),
        default_duration="8s",
        aspect_ratios=("16:9", "9:16"),
        resolutions=("720p", "1080p", "4k"),
        fixed_resolution="720p",
        max_images=3,
        min_images=1,
        max_prompt=4000,
        price=0.2,
    ),
}

OFFLINE_KEY = web.AppKey("fal_offline", OfflineVideosAPI)
FAULTS_KEY = web.AppKey("fal_faults", FaultPlan)
#: The endpoints this app serves (all of ENDPOINTS unless the test or operator narrowed them).
SERVED_KEY = web.AppKey("fal_served", dict)
#: Video ids of requests not known to be finished, in the order submitted (their queue).
PENDING_KEY = web.AppKey("fal_pending", list)
WEBHOOKS_KEY = web.AppKey("fal_webhooks", WebhookSender)
SIGNER_KEY = web.AppKey("fal_signer", "WebhookSigner")

#: fal's `error_type` for the renderer's failure codes.
_ERROR_TYPES = {"moderation_blocked": "content_policy_violation", "cancelled": "request_cancelled"}


# --- errors in fal's shapes ------------------------------------------------------------------------------


def invalid(message: str, field: str | None = None, kind: str = "value_error") -> APIRequestRejected:
    """A validation refusal, answered as fal's 422 `detail` list (`field` under `body`)."""
    return APIRequestRejected(message, status=422, api_message=message, api_code=kind, param=field)


def platform_error(status: int, message: str, error_type: str | None = None) -> APIRequestRejected:
    """A platform refusal, answered as `{"detail", "error_type"}`."""
    return APIRequestRejected(message, status=status, api_message=message, api_code=error_type)


def fal_error(
    status: int,
    message: str,
    *,
    error_type: str | None = None,
    field: str | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    """fal's error body: a `detail` list for 422 validation errors, `{detail, error_type}` otherwise."""
    sent = dict(headers or {})
    body: dict[str, Any]
    if status == 422:
        loc: list[Any] = ["body", *field.split(".")] if field else ["body"]
        body = {"detail": [{"loc": loc, "msg": message, "type": error_type or "value_error"}]}
    else:
        body = {"detail": message}
        if error_type:
            body["error_type"] = error_type
            sent["X-Fal-Error-Type"] = error_type
    return web.json_response(body, status=status, headers=sent)


@dataclass
class FalDialect:
    """fal's key check (`Authorization: Key …`) and error shapes; the file host needs no key."""

    api_key: str | None = None

    def authorize(self, request: web.Request) -> web.Response | None:
        route = request.match_info.route.name
        if route in ("file", "jwks") or route in OPEN_ROUTES:
            return None
        if route == TOKEN_ROUTE:
            refused = token_refusal(request)
            return fal_error(401, refused) if refused else None
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme != "Key" or not given:
            return fal_error(401, "Missing or malformed Authorization header: send `Key <your fal key>`.")
        if self.api_key is not None and given != self.api_key:
            return fal_error(401, "No user found for Key ID and Secret")
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
        return fal_error(status, message, error_type=type or code, field=param, headers=headers)


# --- webhooks --------------------------------------------------------------------------------------------


class WebhookSigner:
    """fal's webhook signature: Ed25519 over `request id \n user id \n timestamp \n sha256(body)`, in hex."""

    def __init__(self, user_id: str = "emulator-user") -> None:
        self.user_id = user_id
        self.key = Ed25519PrivateKey.generate()
        self.kid = uuid.uuid4().hex[:16]

    def headers(self, request_id: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
        stamp = str(int(time.time()) if timestamp is None else timestamp)
        message = "\n".join([request_id, self.user_id, stamp, hashlib.sha256(body).hexdigest()]).encode()
        return {
            "Content-Type": "application/json",
            "X-Fal-Webhook-Request-Id": request_id,
            "X-Fal-Webhook-User-Id": self.user_id,
            "X-Fal-Webhook-Timestamp": stamp,
            "X-Fal-Webhook-Signature": self.key.sign(message).hex(),
        }

    def jwks(self) -> dict[str, Any]:
        raw = self.key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return {"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": self.kid, "use": "sig", "x": b64url_encode(raw)}]}


async def _webhook_body(request_id: str, video: Any, app: web.Application, origin: str) -> bytes:
    """What fal posts when a request ends: its result as `payload`, or the error."""
    video_id = video_id_of(request_id)
    event: dict[str, Any] = {"request_id": request_id, "gateway_request_id": request_id}
    if video.status is VideoStatus.FAILED:
        code, message = app[OFFLINE_KEY].failure_of(video_id) or ("failed", "The video could not be generated.")
        event.update(status="ERROR", error=message, payload={"detail": message, "error_type": _ERROR_TYPES.get(code)})
    else:
        event.update(status="OK", payload=await _result_body(app, video_id, origin))
    return json.dumps(event).encode()


async def jwks(request: web.Request) -> web.StreamResponse:
    return web.json_response(request.app[SIGNER_KEY].jwks())


# --- ids -------------------------------------------------------------------------------------------------


def request_id_of(video_id: str) -> str:
    """The renderer's `video_<32 hex>` as a fal request id (a UUID)."""
    return str(uuid.UUID(hex=video_id.removeprefix("video_")))


def video_id_of(request_id: str) -> str:
    try:
        return "video_" + uuid.UUID(request_id).hex
    except ValueError:
        raise platform_error(404, f"Request {request_id} not found") from None


def app_path(model: str) -> str:
    """`fal-ai/kling-video/o1/reference-to-video` → `fal-ai/kling-video`: where its requests live."""
    return "/".join(model.split("/")[:2])


def frame_size(aspect: str, resolution: str) -> str:
    """`16:9` at `720p` → `1280x720`; `1:1` at `1080p` → `1080x1080`."""
    short = _SHORT_SIDE[resolution]
    a, b = _FRAMES[aspect]
    long = short * max(a, b) // min(a, b)
    if a == b:
        return f"{short}x{short}"
    return f"{long}x{short}" if a > b else f"{short}x{long}"


# --- reading a submit ------------------------------------------------------------------------------------


def _choice(data: dict[str, Any], name: str, allowed: Sequence[Any], default: Any) -> Any:
    value = data.get(name, default)
    if value not in allowed or isinstance(value, bool):
        shown = repr(allowed[0]) if len(allowed) == 1 else ", ".join(map(repr, allowed[:-1])) + f" or {allowed[-1]!r}"
        raise invalid(f"Input should be {shown}", name, "enum" if isinstance(allowed[0], str) else "literal_error")
    return value


def _image(request: web.Request, value: Any, field: str, endpoint: Endpoint) -> bytes:
    """The bytes of one image input, fetched as the model's runner would: a URL on this host's CDN, or a data
    URI where the model takes those."""
    if not isinstance(value, str):
        raise invalid("Input should be a valid string", field, "string_type")
    if value.startswith("data:"):
        if not endpoint.data_uris:
            raise invalid(
                "Failed to download the file: this model takes files as URLs (upload them to fal's CDN first).",
                field,
                "file_download_error",
            )
        head, comma, payload = value.partition(",")
        if not (head.startswith("data:image/") and head.endswith(";base64") and comma):
            raise invalid("Could not load the image: a data URI must be base64-encoded.", field, "image_load_error")
        try:
            data = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            raise invalid("Could not load the image: the data URI is not base64.", field, "image_load_error") from None
    else:
        found = hosted_file(request, value)
        if found is None:
            raise invalid(
                "Failed to download the file. Please check that the URL is accessible.", field, "file_download_error"
            )
        data = found
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.verify()
    except (ValueError, OSError, Image.DecompressionBombError):
        raise invalid(
            "Could not load the image: it is not a readable JPEG, PNG or WebP.", field, "image_load_error"
        ) from None
    return data


def _kling_images(request: web.Request, data: dict[str, Any], endpoint: Endpoint) -> list[tuple[str, bytes]]:
    """Kling's images, with Kling's count of inputs: one per element (whatever its stills), image, start image."""
    found: list[tuple[str, bytes]] = []
    elements = data.get("elements") or []
    if not isinstance(elements, list):
        raise invalid("Input should be a valid list", "elements", "list_type")
    extras = data.get("image_urls") or []
    if not isinstance(extras, list):
        raise invalid("Input should be a valid list", "image_urls", "list_type")
    with_video = [i for i, e in enumerate(elements) if isinstance(e, dict) and e.get("video_url")]
    if len(with_video) > 1:
        raise invalid("A request can only have one element with a video.", f"elements.{with_video[1]}.video_url")
    inputs = len(elements) + len(extras) + int(bool(data.get("start_image_url")))
    limit = endpoint.max_with_video if with_video or data.get("video_url") else endpoint.max_images
    if inputs > limit:
        what = "when using video" if limit == endpoint.max_with_video else "(elements + reference images + start image)"
        raise invalid(f"Value error, maximum {limit} total inputs {what}, got {inputs}", "elements")
    for index, element in enumerate(elements):
        where = f"elements.{index}"
        if not isinstance(element, dict):
            raise invalid("Input should be a valid dictionary", where, "dict_type")
        if element.get("video_url"):
            continue
        if "frontal_image_url" not in element:
            raise invalid("Field required", f"{where}.frontal_image_url", "missing")
        references = element.get("reference_image_urls") or []
        if not isinstance(references, list):
            raise invalid("Input should be a valid list", f"{where}.reference_image_urls", "list_type")
        if not 1 <= len(references) <= 3:
            raise invalid(
                f"Value error, 1-3 reference images per element, at least one is required; got {len(references)}",
                f"{where}.reference_image_urls",
            )
        found.append((f"{where}.frontal_image_url", _image(request, element["frontal_image_url"], where, endpoint)))
        for number, reference in enumerate(references):
            field = f"{where}.reference_image_urls.{number}"
            found.append((field, _image(request, reference, field, endpoint)))
    for number, extra in enumerate(extras):
        found.append((f"image_urls.{number}", _image(request, extra, f"image_urls.{number}", endpoint)))
    if data.get("start_image_url"):
        found.append(("start_image_url", _image(request, data["start_image_url"], "start_image_url", endpoint)))
    return found


def _images(request: web.Request, data: dict[str, Any], endpoint: Endpoint) -> list[tuple[str, bytes]]:
    """Every image of the request with the field it came from, in the order the model numbers them."""
    if endpoint.references == "elements":
        return _kling_images(request, data, endpoint)
    urls = data.get(endpoint.references)
    if urls is None and endpoint.min_images:
        raise invalid("Field required", endpoint.references, "missing")
    if not isinstance(urls, list):
        raise invalid("Input should be a valid list", endpoint.references, "list_type")
    if len(urls) < endpoint.min_images:
        raise invalid(
            f"List should have at least {endpoint.min_images} item after validation, not {len(urls)}",
            endpoint.references,
            "too_short",
        )
    if len(urls) > endpoint.max_images:
        raise invalid(
            f"List should have at most {endpoint.max_images} items after validation, not {len(urls)}",
            endpoint.references,
            "too_long",
        )
    field = endpoint.references
    return [(f"{field}.{i}", _image(request, url, f"{field}.{i}", endpoint)) for i, url in enumerate(urls)]


async def _save(offline: OfflineVideosAPI, data: bytes) -> Path:
    path = offline.root / "uploads" / f"fal_{hashlib.sha256(data).hexdigest()[:32]}.jpg"
    if not path.exists():
        await asyncio.to_thread(path.write_bytes, data)
    return path


def _comment(data: bytes) -> str:
    with Image.open(io.BytesIO(data)) as image:
        comment = image.info.get("comment", b"")
    return comment.decode("utf-8", "replace") if isinstance(comment, bytes) else str(comment)


# --- handlers --------------------------------------------------------------------------------------------


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
    seconds_value = _choice(data, "duration", endpoint.durations, endpoint.default_duration)
    aspect = _choice(data, "aspect_ratio", endpoint.aspect_ratios, "16:9")
    resolution = endpoint.fixed_resolution
    if endpoint.resolutions:
        resolution = _choice(data, "resolution", endpoint.resolutions, endpoint.fixed_resolution)
    # Reading and checking the images is file work: off the event loop.
    images = await asyncio.to_thread(_images, request, data, endpoint)
    offline = _offline(request)
    references: list[Path] = []
    for field, image in images:
        if HUMAN_LIKENESS_MARKER in (await asyncio.to_thread(_comment, image)).lower():
            raise invalid(
                "The content could not be processed: a reference image appears to show a real person, and "
                "generating a real person's likeness is not allowed.",
                field,
                "content_policy_violation",
            )
        references.append(await _save(offline, image))
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
            body = await _webhook_body(request_id, ended, app, origin)
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
        answer.update(error=message, error_type=_ERROR_TYPES.get(code, "internal_error"))
    return web.json_response(answer)


async def result(request: web.Request) -> web.StreamResponse:
    video_id, video = await _job(request)
    if video.status in (VideoStatus.QUEUED, VideoStatus.IN_PROGRESS):
        raise platform_error(400, "Request is still in progress")
    if video.status is VideoStatus.FAILED:
        code, message = _offline(request).failure_of(video_id) or ("failed", "The video could not be generated.")
        if code == "moderation_blocked":
            raise invalid(message, "prompt", "content_policy_violation")
        raise platform_error(400 if code == "cancelled" else 500, message, _ERROR_TYPES.get(code, "internal_error"))
    return web.json_response(await _result_body(request.app, video_id, str(request.url.origin())))


async def _result_body(app: web.Application, video_id: str, origin: str) -> dict[str, Any]:
    path = await app[OFFLINE_KEY].content_path(video_id)
    size = await asyncio.to_thread(lambda: path.stat().st_size)
    file_id = video_id.removeprefix("video_")
    return {
        "video": {
            "url": f"{origin}/files/{file_id}/output.mp4",
            "content_type": "video/mp4",
            "file_name": "output.mp4",
            "file_size": size,
        }
    }


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
