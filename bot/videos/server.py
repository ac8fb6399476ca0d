"""The Videos API emulator: `OfflineVideosAPI` served over HTTP with the real API's routes, shapes and errors.

`create_emulator_app(offline, faults=..., prefix="/v1", api_key=None)` builds the aiohttp application;
`run_emulator(settings, host=..., port=...)` serves it for `soracast emulate`. Any client that speaks the
Videos API (soracast's own, the `openai` SDK, curl) can be pointed at `http://HOST:PORT/v1`.

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
import fnmatch
import json
import logging
import random
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from multidict import CIMultiDict

from bot.config import Settings
from bot.errors import APIRequestRejected, VideosAPIError
from bot.videos.offline import OfflineVideosAPI, check_text, content_type_for
from bot.videos.schemas import ImageReference, Video

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

#: Large enough for any character clip; the real API's own limit is not documented.
MAX_BODY_BYTES = 512 * 1024 * 1024

OFFLINE_KEY = web.AppKey("offline", OfflineVideosAPI)
FAULTS_KEY = web.AppKey("faults", "FaultPlan")


# --- the request log -------------------------------------------------------------------------------------


@dataclass
class UploadedFile:
    """One file part of a multipart request."""

    field: str
    filename: str | None
    content_type: str | None
    data: bytes = field(repr=False)

    @property
    def size(self) -> int:
        return len(self.data)


@dataclass
class RecordedRequest:
    """What reached the emulator, and how it answered (`status`, and `fault` when a fault answered)."""

    method: str
    path: str  # as received, with the prefix (e.g. /v1/videos)
    route: str | None  # a name from ROUTES, None for unknown paths
    query: dict[str, str]
    headers: CIMultiDict[str]
    json: Any = None
    form: dict[str, str] = field(default_factory=dict)  # last value of each text field
    form_items: list[tuple[str, str]] = field(default_factory=list)  # every text field, in order
    files: dict[str, UploadedFile] = field(default_factory=dict)
    content_type: str = ""
    body_size: int = 0
    status: int | None = None
    fault: str | None = None
    received_at: float = field(default_factory=time.monotonic)


class RequestLog(list[RecordedRequest]):
    """Every request in arrival order, with helpers for the common assertions."""

    def for_route(self, route: str) -> list[RecordedRequest]:
        """The requests a route name (see ROUTES) received."""
        return [r for r in self if r.route == route]

    def last(self, route: str | None = None) -> RecordedRequest:
        """The latest request (of a route); IndexError when there is none."""
        matching = self.for_route(route) if route else list(self)
        if not matching:
            raise IndexError(f"no request{f' to {route}' if route else ''} was received")
        return matching[-1]

    def count(self, route: str) -> int:  # type: ignore[override]
        """How many requests a route received (list.count is replaced: counting records is never wanted)."""
        return len(self.for_route(route))


# --- faults ----------------------------------------------------------------------------------------------


@dataclass
class Fault:
    """One injected answer.

    `status=None` means "delay, then answer normally". Otherwise the emulator answers `status` with an
    OpenAI-shaped error body (`message`, `type`, `param`, `code`; the type defaults from the status), or with
    `body` sent as-is (e.g. an HTML gateway page) when given. `retry_after` sets `Retry-After` (seconds, may
    be fractional) and `retry-after-ms`. `delay` waits before answering; `times` answers that many requests.
    """

    status: int | None = 500
    code: str | None = None
    type: str | None = None
    param: str | None = None
    message: str | None = None
    retry_after: float | None = None
    delay: float = 0.0
    body: str | bytes | None = None
    content_type: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    times: int = 1
    route: str = "*"

    def describe(self) -> str:
        what = "delay" if self.status is None else str(self.status)
        return f"{what}{f' {self.code}' if self.code else ''} on {self.route}"


class FaultPlan:
    """Faults to inject, random failures and a rate limit, and the log of every request received."""

    def __init__(
        self,
        *,
        fail_rate: float = 0.0,
        rate_limit: float = 0.0,
        seed: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`fail_rate`: share of requests answered with a random 5xx; `rate_limit`: requests per second
        allowed (a token bucket with a burst of the same size) before 429s; 0 turns either off."""
        if not 0.0 <= fail_rate <= 1.0:
            raise ValueError("fail_rate must be between 0 and 1")
        if rate_limit < 0:
            raise ValueError("rate_limit must not be negative")
        self.fail_rate = fail_rate
        self.rate_limit = rate_limit
        self.requests = RequestLog()
        self._queue: list[Fault] = []
        self._rng = random.Random(seed)
        self._clock = clock
        self._tokens = max(1.0, rate_limit)
        self._refilled = clock()

    def push(self, route: str = "*", fault: Fault | None = None, /, **options: Any) -> Fault:
        """Queue a one-shot fault for requests matching `route`.

        `route` is a route name (`create_video`, `retrieve_video`, … see ROUTES), `"*"` for any request, or a
        glob on the path below the prefix, optionally with a method: `"GET /videos/*/content"`,
        `"/videos/characters"`. Faults are used in the order pushed; each answers `times` requests.
        """
        _check_pattern(route)
        fault = fault or Fault(**options)
        fault.route = route
        if fault.times < 1:
            raise ValueError("times must be at least 1")
        self._queue.append(fault)
        return fault

    def clear(self) -> None:
        """Drop every queued fault (the request log stays)."""
        self._queue.clear()

    def pending(self, route: str | None = None) -> int:
        """How many answers queued faults (for one pattern) still hold."""
        return sum(f.times for f in self._queue if route is None or f.route == route)

    def take(self, route: str | None, method: str, path: str) -> Fault | None:
        """The first queued fault matching this request, consuming one of its uses."""
        for fault in self._queue:
            if _matches(fault.route, route, method, path):
                fault.times -= 1
                if fault.times <= 0:
                    self._queue.remove(fault)
                return fault
        return None

    def random_fault(self) -> Fault | None:
        """A rate-limit 429 or a random 5xx, per the configured rate limit and fail rate."""
        if self.rate_limit > 0:
            now = self._clock()
            self._tokens = min(max(1.0, self.rate_limit), self._tokens + (now - self._refilled) * self.rate_limit)
            self._refilled = now
            if self._tokens < 1.0:
                wait = (1.0 - self._tokens) / self.rate_limit
                return Fault(
                    status=429,
                    code="rate_limit_exceeded",
                    type="requests",
                    message=f"Rate limit reached: {self.rate_limit:g} requests per second. Try again in {wait:.3f}s.",
                    retry_after=round(wait, 3),
                    headers={"x-ratelimit-reset-requests": f"{max(1, round(wait * 1000))}ms"},
                    route="rate_limit",
                )
            self._tokens -= 1.0
        if self.fail_rate > 0 and self._rng.random() < self.fail_rate:
            status = self._rng.choice((500, 502, 503))
            return Fault(
                status=status,
                message=f"The emulator injected a {status} (fail rate {self.fail_rate:g}).",
                route="fail_rate",
            )
        return None


def _check_pattern(pattern: str) -> None:
    if pattern == "*" or pattern in ROUTES:
        return
    target = pattern.split(" ", 1)[1] if " " in pattern else pattern
    if not target.startswith(("/", "*")):
        raise ValueError(f"unknown fault route {pattern!r}: use one of {', '.join(ROUTES)}, '*', or a path glob")


def _matches(pattern: str, route: str | None, method: str, path: str) -> bool:
    if pattern == "*" or pattern == route:
        return True
    if " " in pattern:
        want_method, glob = pattern.split(" ", 1)
        if want_method != "*" and want_method.upper() != method.upper():
            return False
        return fnmatch.fnmatchcase(path, glob)
    return pattern.startswith(("/", "*")) and fnmatch.fnmatchcase(path, pattern)


# --- responses -------------------------------------------------------------------------------------------


def _default_type(status: int) -> str:
    if status == 429:
        return "requests"
    if status >= 500:
        return "server_error"
    return "invalid_request_error"


def _seconds_text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.3f}".rstrip("0")


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


def _fault_response(fault: Fault) -> web.StreamResponse:
    assert fault.status is not None
    headers = dict(fault.headers)
    if fault.retry_after is not None:
        headers["Retry-After"] = _seconds_text(fault.retry_after)
        headers["retry-after-ms"] = str(round(fault.retry_after * 1000))
    if fault.body is not None:
        data = fault.body.encode() if isinstance(fault.body, str) else fault.body
        default = "text/html" if data.lstrip().startswith(b"<") else "text/plain"
        return web.Response(
            body=data,
            status=fault.status,
            content_type=None,
            headers={
                "Content-Type": fault.content_type or default,
                **headers,
            },
        )
    message = fault.message or f"Injected fault: HTTP {fault.status}."
    return error_response(fault.status, message, type=fault.type, param=fault.param, code=fault.code, headers=headers)


def _api_error_response(exc: VideosAPIError) -> web.Response:
    status = exc.status or 500
    headers = {"Retry-After": _seconds_text(exc.retry_after)} if exc.retry_after is not None else None
    return error_response(status, exc.api_message or exc.message, param=exc.param, code=exc.api_code, headers=headers)


def _video_json(video: Video) -> dict[str, Any]:
    # Only the spec's keys: PolledVideo's poll_after travels in a header, not in the body.
    return video.model_dump(mode="json", include=set(Video.model_fields))


# --- request bodies --------------------------------------------------------------------------------------


class BodyError(Exception):
    """The body could not be read as its content type says (answered as a 400)."""


@dataclass
class Body:
    """A request body, whatever its encoding: JSON object, or multipart/urlencoded fields and files."""

    kind: str  # "json", "form" or "none"
    json: Any = None
    fields: list[tuple[str, str]] = field(default_factory=list)
    files: dict[str, UploadedFile] = field(default_factory=dict)
    size: int = 0

    def keys(self) -> set[str]:
        """Top-level parameter names (`characters[0][id]` counts as `characters`)."""
        if self.kind == "json":
            return set(self.json) if isinstance(self.json, dict) else set()
        names = [key for key, _ in self.fields] + list(self.files)
        return {key.split("[", 1)[0] for key in names}

    def get(self, name: str) -> Any:
        if self.kind == "json":
            return self.json.get(name) if isinstance(self.json, dict) else None
        if name in self.files:
            return self.files[name]
        value = None
        for key, text in self.fields:
            if key == name:
                value = text
        return value


# aiohttp 3.13+ wants typed request keys (and warns about strings); older 3.x versions only take strings.
_BODY_KEY: Any = web.RequestKey("body", Body) if hasattr(web, "RequestKey") else "soracast_body"


async def _read_body(request: web.Request) -> Body:
    if not request.body_exists:
        return Body(kind="none")
    ctype = request.content_type
    if ctype in ("multipart/form-data", "application/x-www-form-urlencoded"):
        try:
            posted = await request.post()
        except (ValueError, AssertionError) as exc:
            raise BodyError(f"The {ctype} body could not be parsed: {exc}") from None
        body = Body(kind="form")
        for key, value in posted.items():
            if isinstance(value, web.FileField):
                data = value.file.read()
                body.files[key] = UploadedFile(key, value.filename, value.content_type, data)
                body.size += len(data)
            else:
                text = value if isinstance(value, str) else bytes(value).decode("utf-8", "replace")
                body.fields.append((key, text))
                body.size += len(text)
        return body
    raw = await request.read()
    if not raw:
        return Body(kind="none")
    try:
        parsed = json.loads(raw)
    except ValueError:
        raise BodyError(
            "We could not parse the JSON body of your request. The emulator expects a JSON object or "
            "multipart/form-data."
        ) from None
    return Body(kind="json", json=parsed, size=len(raw))


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
    return request[_BODY_KEY]


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


def _authorized(request: web.Request, api_key: str | None) -> web.Response | None:
    bearer = request.headers.get("Authorization", "")
    given = bearer[7:].strip() if bearer.lower().startswith("bearer ") else None
    given = given or request.headers.get("api-key")
    if not given:
        return error_response(
            401,
            "No API key was provided: send 'Authorization: Bearer <key>' or an 'api-key' header.",
            code=None,
        )
    if api_key is not None and given != api_key:
        return error_response(401, "Incorrect API key provided.", code="invalid_api_key")
    return None


def _make_middleware(
    faults: FaultPlan, prefix: str, api_key: str | None
) -> Callable[[web.Request, Callable[[web.Request], Awaitable[web.StreamResponse]]], Awaitable[web.StreamResponse]]:
    @web.middleware
    async def emulate(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        route = request.match_info.route.name
        subpath = request.path[len(prefix) :] if request.path.startswith(prefix) else request.path
        body_error: str | None = None
        try:
            body = await _read_body(request)
        except BodyError as exc:
            body, body_error = Body(kind="none"), str(exc)
        record = RecordedRequest(
            method=request.method,
            path=request.path,
            route=route,
            query=dict(request.query),
            headers=CIMultiDict(request.headers),
            json=body.json,
            form=dict(body.fields),  # last value wins, as a server reads a repeated field
            form_items=list(body.fields),
            files=dict(body.files),
            content_type=request.content_type,
            body_size=body.size,
        )
        faults.requests.append(record)
        request[_BODY_KEY] = body
        response = await _answer(request, handler, record, subpath, body_error)
        response.headers.setdefault("x-request-id", f"req_{secrets.token_hex(12)}")
        record.status = response.status
        return response

    async def _answer(
        request: web.Request,
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
        record: RecordedRequest,
        subpath: str,
        body_error: str | None,
    ) -> web.StreamResponse:
        fault = faults.take(record.route, request.method, subpath)
        if fault is not None:
            record.fault = fault.describe()
            log.debug("fault %s for %s %s", record.fault, request.method, request.path)
            if fault.delay > 0:
                await asyncio.sleep(fault.delay)
            if fault.status is not None:
                return _fault_response(fault)
        denied = _authorized(request, api_key)
        if denied is not None:
            return denied
        random_fault = faults.random_fault()
        if random_fault is not None:
            record.fault = random_fault.describe()
            return _fault_response(random_fault)
        if body_error is not None:
            return error_response(400, body_error)
        try:
            return await handler(request)
        except VideosAPIError as exc:
            return _api_error_response(exc)
        except web.HTTPNotFound:
            return error_response(404, f"Invalid URL ({request.method} {request.path})")
        except web.HTTPMethodNotAllowed:
            return error_response(405, f"Invalid method for URL ({request.method} {request.path})")
        except web.HTTPException:
            raise
        except Exception:
            # A bug in the emulator still answers like the API would (a JSON 5xx), so clients see a server error.
            log.exception("emulator error on %s %s", request.method, request.path)
            return error_response(500, "The emulator failed while processing the request.")

    return emulate


def create_emulator_app(
    offline: OfflineVideosAPI,
    *,
    faults: FaultPlan | None = None,
    prefix: str = "/v1",
    api_key: str | None = None,
) -> web.Application:
    """The emulator as an aiohttp application; `faults` (a fresh plan if None) is `app[FAULTS_KEY]`."""
    prefix = "/" + prefix.strip("/") if prefix.strip("/") else ""
    faults = faults or FaultPlan()
    app = web.Application(middlewares=[_make_middleware(faults, prefix, api_key)], client_max_size=MAX_BODY_BYTES)
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
    return app


async def run_emulator(
    settings: Settings,
    *,
    host: str = "127.0.0.1",
    port: int = 8089,
    time_scale: float = 1.0,
    fail_rate: float = 0.0,
    rate_limit: float = 0.0,
    api_key: str | None = None,
    prefix: str = "/v1",
    root: Path | None = None,
    on_ready: Callable[[str], object] | None = None,
    **offline_options: Any,
) -> None:
    """Serve the emulator until cancelled (`soracast emulate`). Binds 127.0.0.1 unless told otherwise.

    `api_key` None accepts any key; `root` defaults to `<data_dir>/emulator`; `offline_options` go to
    `OfflineVideosAPI` (e.g. `job_seconds`, `fps`, `render`). `on_ready(base_url)` is called once the port
    is bound (port 0 picks a free one).
    """
    offline = OfflineVideosAPI.from_settings(
        settings, root=root or settings.data_dir / "emulator", time_scale=time_scale, **offline_options
    )
    faults = FaultPlan(fail_rate=fail_rate, rate_limit=rate_limit)
    app = create_emulator_app(offline, faults=faults, prefix=prefix, api_key=api_key)
    runner = web.AppRunner(app, access_log=log)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound_host, bound_port = runner.addresses[0][:2]
        url = f"http://{bound_host}:{bound_port}{prefix}"
        log.info(
            "Videos API emulator at %s (time scale %g, fail rate %g, rate limit %s)",
            url,
            time_scale,
            fail_rate,
            f"{rate_limit:g}/s" if rate_limit else "off",
        )
        print(f"soracast emulator: serving the Videos API at {url}  (OPENAI_BASE_URL={url})", flush=True)
        if on_ready is not None:
            on_ready(url)
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
        await offline.aclose()
