"""The Videos API emulator: `OfflineVideosAPI` served over HTTP with the real API's routes, shapes and errors.

`create_emulator_app(offline, faults=..., prefix="/v1", api_key=None)` builds the aiohttp application, which
`soracast emulate --api openai` serves (see `emulator.py`). Any client that speaks the Videos API (soracast's
own, the `openai` SDK, curl) can be pointed at `http://HOST:PORT/v1`.

Requests are accepted the ways real clients send them: JSON or multipart for create / remix / extend / edit,
multipart `name` + `video` for characters. `characters` may come as a JSON array (JSON bodies), or in
multipart as `characters[0][id]` / `characters[][id]` fields (the SDK's encoding) or one JSON string field.
Responses carry every key the published spec marks required (nulls included); retrieve adds
`openai-poll-after-ms`; content is streamed from disk with its content type.

Auth: an `Authorization: Bearer …` or `api-key: …` header must be present; with `api_key` set it must match,
otherwise 401. Fault injection lives in `FaultPlan` (one-shot faults per route, random 5xx, a rate limit, and
the log of every request received), so tests observe retries and error mapping over real HTTP::

    faults.push("create_video", status=429, code="rate_limit_exceeded", retry_after=0.05)
    faults.push("retrieve_video", status=None, delay=2.0)           # slow, then the normal answer
    faults.push("GET /videos/*/content", status=502, body="<html>bad gateway</html>")
    faults.push("*", status=500, times=3)                            # the next three requests, any route
    assert faults.requests.last("create_video").form["prompt"] == "a fox"
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from bot.backends.offline.emulation import MAX_BODY_BYTES, add_stats_route, make_middleware
from bot.backends.offline.faults import FaultPlan
from bot.backends.offline.renderer import OfflineVideosAPI
from bot.backends.offline.request_bodies import Body, request_body
from bot.backends.offline.request_log import UploadedFile
from bot.backends.offline.spec import check_text, content_type_for
from bot.backends.openai.schemas import ImageReference, Video
from bot.errors import APIRequestRejected

log = logging.getLogger(__name__)

#: Route names, usable as fault patterns and in `RequestLog.for_route`.
ROUTES = (
    "create_character",
    "get_character",
    "create_video",
    "list_videos",
    "retrieve_video",
    "delete_video",
    "download_content",
    "remix_video",
    "extend_video",
    "edit_video",
)

OFFLINE_KEY = web.AppKey("offline", OfflineVideosAPI)
FAULTS_KEY = web.AppKey("faults", FaultPlan)


# --- responses -------------------------------------------------------------------------------------------


def _default_type(status: int) -> str:
    if status == 429:
        return "requests"
    if status >= 500:
        return "server_error"
    return "invalid_request_error"


def error_response(
    status: int,
    message: str,
    *,
    type: str | None = None,
    param: str | None = None,
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    """An OpenAI-shaped error: `{"error": {"message", "type", "param", "code"}}`."""
    body = {"error": {"message": message, "type": type or _default_type(status), "param": param, "code": code}}
    return web.json_response(body, status=status, headers=headers)



def _video_json(video: Video) -> dict[str, Any]:
    # Only the spec's keys: PolledVideo's poll_after travels in a header, not in the body.
    return video.model_dump(mode="json", include=set(Video.model_fields))



# --- request bodies --------------------------------------------------------------------------------------

def _reject_unknown(body: Body, allowed: Iterable[str]) -> None:
    allowed = set(allowed)
    for key in sorted(body.keys() - allowed):
        raise APIRequestRejected(f"Unknown parameter: '{key}'.", status=400, api_code="unknown_parameter", param=key)


def _require_object(body: Body) -> None:
    if body.kind == "json" and not isinstance(body.json, dict):
        raise APIRequestRejected(
            "The request body must be a JSON object.", status=400, api_code="invalid_type", param=None
        )


def _string_param(body: Body, name: str) -> str | None:
    value = body.get(name)
    if isinstance(value, UploadedFile):
        raise APIRequestRejected(
            f"Invalid type for '{name}': expected a string, but got a file instead.",
            status=400,
            api_code="invalid_type",
            param=name,
        )
    return value


def _id_of(item: Any, param: str) -> str:
    if isinstance(item, str):
        return item
    if isinstance(item, dict) and isinstance(item.get("id"), str):
        return item["id"]
    raise APIRequestRejected(
        f"Invalid '{param}': expected an object with a string 'id'.", status=400, api_code="invalid_type", param=param
    )


_CHARACTER_FIELD = re.compile(r"characters(?:\[(\d*)\])?(?:\[id\])?")


def _character_ids(body: Body) -> list[str]:
    """`characters` in any of the encodings clients use (see the module docstring)."""
    if body.kind == "json":
        value = body.get("characters")
        if value is None:
            return []
        if not isinstance(value, list):
            raise APIRequestRejected(
                "Invalid type for 'characters': expected an array.",
                status=400,
                api_code="invalid_type",
                param="characters",
            )
        return [_id_of(item, f"characters[{i}]") for i, item in enumerate(value)]
    ordered: list[str] = []
    indexed: dict[int, str] = {}
    for key, value in body.fields:
        match = _CHARACTER_FIELD.fullmatch(key)
        if match is None:
            continue
        text = value.strip()
        if match.group(1):
            indexed[int(match.group(1))] = text
        elif text.startswith(("[", "{")):
            try:
                parsed = json.loads(text)
            except ValueError:
                raise APIRequestRejected(
                    "Invalid 'characters': not valid JSON.", status=400, api_code="invalid_value", param="characters"
                ) from None
            items = parsed if isinstance(parsed, list) else [parsed]
            ordered.extend(_id_of(item, "characters") for item in items)
        elif text:
            ordered.append(text)
    return ordered + [indexed[i] for i in sorted(indexed)]


def _image_reference(body: Body) -> ImageReference | UploadedFile | None:
    value = body.get("input_reference")
    if isinstance(value, UploadedFile):
        return value
    if body.kind == "form":
        parts = {k[len("input_reference[") : -1]: v for k, v in body.fields if k.startswith("input_reference[")}
        if parts:
            value = parts
        elif isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                value = {"image_url": value}
    if value is None:
        return None
    if not isinstance(value, dict):
        raise APIRequestRejected(
            "Invalid type for 'input_reference': expected a file or an object.",
            status=400,
            api_code="invalid_type",
            param="input_reference",
        )
    return ImageReference(image_url=value.get("image_url"), file_id=value.get("file_id"))


def _source_video_id(body: Body) -> str:
    """The `video` reference of extend/edit: `{"id"}` in JSON, `video[id]` or a JSON/plain string in forms."""
    value = body.get("video")
    if isinstance(value, UploadedFile):
        raise APIRequestRejected(
            "The offline emulator can extend or edit only videos it made: pass video[id], not a file.",
            status=400,
            api_code="unsupported_value",
            param="video",
        )
    if body.kind == "form":
        for key, text in body.fields:
            if key == "video[id]":
                value = {"id": text}
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                value = {"id": value}
    if value is None:
        raise APIRequestRejected(
            "Missing required parameter: 'video'.", status=400, api_code="missing_required_parameter", param="video"
        )
    return _id_of(value, "video")


async def _save_upload(offline: OfflineVideosAPI, upload: UploadedFile, default_suffix: str) -> Path:
    suffix = Path(upload.filename or "").suffix or default_suffix
    path = offline.root / "uploads" / f"upload_{secrets.token_hex(8)}{suffix}"
    await asyncio.to_thread(path.write_bytes, upload.data)
    return path


# --- handlers --------------------------------------------------------------------------------------------


def _offline(request: web.Request) -> OfflineVideosAPI:
    return request.app[OFFLINE_KEY]


def _body(request: web.Request) -> Body:
    return request_body(request)


async def create_character(request: web.Request) -> web.StreamResponse:
    body = _body(request)
    if body.kind != "form":
        raise APIRequestRejected(
            "Characters are created with multipart/form-data (fields 'name' and 'video').",
            status=400,
            api_code="invalid_content_type",
            param=None,
        )
    _reject_unknown(body, {"name", "video"})
    name = check_text(_string_param(body, "name"), param="name", max_length=80)
    upload = body.get("video")
    if upload is None:
        raise APIRequestRejected(
            "Missing required parameter: 'video'.", status=400, api_code="missing_required_parameter", param="video"
        )
    if not isinstance(upload, UploadedFile):
        raise APIRequestRejected(
            "Invalid type for 'video': expected a file, but got a string instead.",
            status=400,
            api_code="invalid_type",
            param="video",
        )
    offline = _offline(request)
    path = await _save_upload(offline, upload, ".mp4")
    try:
        character = await offline.create_character(name, path)
    finally:
        path.unlink(missing_ok=True)
    return web.json_response(character.model_dump(mode="json"))


async def get_character(request: web.Request) -> web.StreamResponse:
    character = await _offline(request).get_character(request.match_info["character_id"])
    return web.json_response(character.model_dump(mode="json"))


async def create_video(request: web.Request) -> web.StreamResponse:
    body = _body(request)
    _require_object(body)
    _reject_unknown(body, {"prompt", "model", "seconds", "size", "input_reference", "characters"})
    offline = _offline(request)
    reference = _image_reference(body)
    upload_path: Path | None = None
    image: Path | ImageReference | None = None
    if isinstance(reference, UploadedFile):
        upload_path = image = await _save_upload(offline, reference, ".png")
    else:
        image = reference
    try:
        video = await offline.create_video(
            body.get("prompt"),
            model=_string_param(body, "model"),
            seconds=body.get("seconds"),
            size=_string_param(body, "size"),
            character_ids=_character_ids(body),
            image=image,
        )
    finally:
        if upload_path is not None:
            upload_path.unlink(missing_ok=True)
    return web.json_response(_video_json(video))


async def list_videos(request: web.Request) -> web.StreamResponse:
    query = request.query
    raw_limit = query.get("limit", "20")
    try:
        limit = int(raw_limit)
    except ValueError:
        raise APIRequestRejected(
            f"Invalid type for 'limit': expected an integer, but got {raw_limit!r}.",
            status=400,
            api_code="invalid_type",
            param="limit",
        ) from None
    page = await _offline(request).list_videos(
        limit=limit, after=query.get("after") or None, order=query.get("order", "desc")
    )
    return web.json_response(
        {
            "object": "list",
            "data": [_video_json(video) for video in page.data],
            "first_id": page.first_id,
            "last_id": page.last_id,
            "has_more": page.has_more,
        }
    )


async def retrieve_video(request: web.Request) -> web.StreamResponse:
    offline = _offline(request)
    video = await offline.retrieve_video(request.match_info["video_id"])
    headers = {}
    if video.poll_after is not None:
        headers["openai-poll-after-ms"] = str(max(1, round(video.poll_after * 1000)))
    return web.json_response(_video_json(video), headers=headers)


async def delete_video(request: web.Request) -> web.StreamResponse:
    deleted = await _offline(request).delete_video(request.match_info["video_id"])
    return web.json_response(deleted.model_dump(mode="json"))


async def download_content(request: web.Request) -> web.StreamResponse:
    variant = request.query.get("variant", "video")
    path = await _offline(request).content_path(request.match_info["video_id"], variant)
    # FileResponse streams from disk (sendfile where available) instead of loading the video into memory.
    return web.FileResponse(path, headers={"Content-Type": content_type_for(variant)})


async def remix_video(request: web.Request) -> web.StreamResponse:
    body = _body(request)
    _require_object(body)
    _reject_unknown(body, {"prompt"})
    video = await _offline(request).remix_video(request.match_info["video_id"], body.get("prompt"))
    return web.json_response(_video_json(video))


async def extend_video(request: web.Request) -> web.StreamResponse:
    body = _body(request)
    _require_object(body)
    _reject_unknown(body, {"video", "prompt", "seconds"})
    seconds = body.get("seconds")
    if seconds is None:
        raise APIRequestRejected(
            "Missing required parameter: 'seconds'.",
            status=400,
            api_code="missing_required_parameter",
            param="seconds",
        )
    video = await _offline(request).extend_video(_source_video_id(body), body.get("prompt"), seconds)
    return web.json_response(_video_json(video))


async def edit_video(request: web.Request) -> web.StreamResponse:
    body = _body(request)
    _require_object(body)
    _reject_unknown(body, {"video", "prompt"})
    video = await _offline(request).edit_video(_source_video_id(body), body.get("prompt"))
    return web.json_response(_video_json(video))


# --- the application -------------------------------------------------------------------------------------


@dataclass
class OpenAIDialect:
    """OpenAI's key headers and error envelope."""

    api_key: str | None = None

    def authorize(self, request: web.Request) -> web.Response | None:
        bearer = request.headers.get("Authorization", "")
        given = bearer[7:].strip() if bearer.lower().startswith("bearer ") else None
        given = given or request.headers.get("api-key")
        if not given:
            return error_response(
                401,
                "No API key was provided: send 'Authorization: Bearer <key>' or an 'api-key' header.",
                code=None,
            )
        if self.api_key is not None and given != self.api_key:
            return error_response(401, "Incorrect API key provided.", code="invalid_api_key")
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
        return error_response(status, message, type=type, param=param, code=code, headers=headers)


async def list_models(request: web.Request) -> web.StreamResponse:
    """`GET /v1/models`: the models this endpoint serves, as OpenAI lists them (`soracast check` reads it)."""
    models = request.app[OFFLINE_KEY].allowed_models
    return web.json_response(
        {
            "object": "list",
            "data": [{"id": m, "object": "model", "created": 0, "owned_by": "soracast-emulator"} for m in models],
        }
    )


def create_emulator_app(
    offline: OfflineVideosAPI,
    *,
    faults: FaultPlan | None = None,
    prefix: str = "/v1",
    api_key: str | None = None,
) -> web.Application:
    """The OpenAI-shape emulator as an aiohttp application; `faults` (a fresh plan if None) is `app[FAULTS_KEY]`."""
    prefix = "/" + prefix.strip("/") if prefix.strip("/") else ""
    faults = faults or FaultPlan()
    faults.routes = ROUTES
    middleware = make_middleware(faults, prefix, OpenAIDialect(api_key))
    app = web.Application(middlewares=[middleware], client_max_size=MAX_BODY_BYTES)
    app[OFFLINE_KEY] = offline
    app[FAULTS_KEY] = faults
    p = prefix
    app.router.add_post(f"{p}/videos/characters", create_character, name="create_character")
    app.router.add_get(f"{p}/videos/characters/{{character_id}}", get_character, name="get_character")
    app.router.add_post(f"{p}/videos/extensions", extend_video, name="extend_video")
    app.router.add_post(f"{p}/videos/edits", edit_video, name="edit_video")
    app.router.add_post(f"{p}/videos", create_video, name="create_video")
    app.router.add_get(f"{p}/videos", list_videos, name="list_videos", allow_head=False)
    app.router.add_get(f"{p}/videos/{{video_id}}", retrieve_video, name="retrieve_video", allow_head=False)
    app.router.add_delete(f"{p}/videos/{{video_id}}", delete_video, name="delete_video")
    app.router.add_get(f"{p}/videos/{{video_id}}/content", download_content, name="download_content")
    app.router.add_post(f"{p}/videos/{{video_id}}/remix", remix_video, name="remix_video")
    app.router.add_get(f"{p}/models", list_models, name="list_models", allow_head=False)
    add_stats_route(app, faults)
    return app
