"""fal's hosts beside the queue, emulated for the routes fal-client and soracast use: storage and the CDN
(`fal_client.AsyncClient.upload`), and the platform API's model pricing (`soracast check`).

- `POST /storage/auth/token?storage_type=fal-cdn-v3` (key) → `{token, token_type, base_url, expires_at}`: the
  token fal-client's CDN uploads carry.
- `POST /files/upload` (that token, the file's bytes, `X-Fal-File-Name`, `X-Fal-Object-Lifecycle`) →
  `{access_url}`; the fallback `POST /storage/upload/initiate?storage_type=gcs` (key) → `{upload_url, file_url}`
  then `PUT upload_url` with the bytes.
- `GET /media/{id}/{name}` serves an uploaded file without a key, as fal's CDN does, until the lifetime the
  upload asked for (`expiration_duration_seconds`) has passed; then it is gone (404).
- `GET /v1/models/pricing?endpoint_id=…` (key) → `{prices: [{endpoint_id, unit_price, unit, currency}]}` for
  the endpoints served; a 404 naming the ones that are not.

`hosted_file` gives a submit the bytes of a URL on this host, the way a model's runner downloads its inputs.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from aiohttp import web

from bot.backends.offline.request_bodies import request_body
from bot.errors import APIRequestRejected

#: Route names of this module that need no key (a CDN download, a signed upload URL) or another credential.
OPEN_ROUTES = ("media", "storage_put")
TOKEN_ROUTE = "cdn_upload"

UPLOADS_KEY = web.AppKey("fal_uploads", dict)
TOKENS_KEY = web.AppKey("fal_cdn_tokens", set)


@dataclass
class Clock:
    """Seconds since the epoch, moved on by `offset` (tests let uploads expire without waiting)."""

    offset: float = 0.0
    now: Callable[[], float] = time.time

    def __call__(self) -> float:
        return self.now() + self.offset


CLOCK_KEY = web.AppKey("fal_clock", Clock)
#: The endpoints this fake serves, by id, with their price per second (soracast check reads them).
PRICES_KEY = web.AppKey("fal_prices", dict)

_MEDIA = re.compile(r"^/media/([0-9a-f]{32})/[^/]+$")


@dataclass
class Upload:
    """A file put on the emulated CDN."""

    data: bytes
    content_type: str
    name: str
    #: Seconds since the epoch after which it is gone; None: kept.
    expires_at: float | None


def _now(request: web.Request) -> float:
    return request.app[CLOCK_KEY]()


def _gone(upload: Upload, now: float) -> bool:
    return upload.expires_at is not None and now >= upload.expires_at


def _lifetime(request: web.Request) -> float | None:
    """`expiration_duration_seconds` from the lifecycle headers fal-client sends, if any."""
    raw = request.headers.get("X-Fal-Object-Lifecycle") or request.headers.get("X-Fal-Object-Lifecycle-Preference")
    if not raw:
        return None
    try:
        seconds = json.loads(raw).get("expiration_duration_seconds")
    except (ValueError, AttributeError):
        raise APIRequestRejected("X-Fal-Object-Lifecycle is not JSON.", status=400) from None
    return float(seconds) if isinstance(seconds, int | float) and seconds > 0 else None


def _store(request: web.Request, data: bytes, content_type: str, name: str, lifetime: float | None) -> str:
    """Keep the file and return its public URL on this host."""
    file_id = secrets.token_hex(16)
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", name)[:80] or "upload.bin"
    expires = _now(request) + lifetime if lifetime is not None else None
    request.app[UPLOADS_KEY][file_id] = Upload(data, content_type, safe, expires)
    return f"{request.url.origin()}/media/{file_id}/{safe}"


async def token(request: web.Request) -> web.StreamResponse:
    issued = f"cdn_{secrets.token_hex(16)}"
    request.app[TOKENS_KEY].add(issued)
    expires = datetime.fromtimestamp(_now(request) + 3600, UTC).isoformat()
    return web.json_response(
        {"token": issued, "token_type": "Bearer", "base_url": str(request.url.origin()), "expires_at": expires}
    )


async def cdn_upload(request: web.Request) -> web.StreamResponse:
    body = request_body(request)
    if body.kind != "raw" or not body.raw:
        raise APIRequestRejected("The upload has no file in its body.", status=400)
    name = request.headers.get("X-Fal-File-Name", "upload.bin")
    url = _store(request, body.raw, request.content_type, name, _lifetime(request))
    return web.json_response({"access_url": url, "content_type": request.content_type, "file_name": name})


async def initiate(request: web.Request) -> web.StreamResponse:
    data = request_body(request).json
    if not isinstance(data, dict) or not isinstance(data.get("content_type"), str):
        raise APIRequestRejected("content_type is required.", status=422)
    name = str(data.get("file_name") or "upload.bin")
    # The file URL is known at once; the bytes arrive with the PUT to the signed URL.
    url = _store(request, b"", data["content_type"], name, _lifetime(request))
    file_id = url.rsplit("/", 2)[-2]
    return web.json_response({"upload_url": f"{request.url.origin()}/storage/put/{file_id}", "file_url": url})


async def storage_put(request: web.Request) -> web.StreamResponse:
    upload = request.app[UPLOADS_KEY].get(request.match_info["file_id"])
    if upload is None:
        raise APIRequestRejected("No such upload.", status=404)
    upload.data = request_body(request).raw
    return web.Response(status=200)


async def media(request: web.Request) -> web.StreamResponse:
    upload = request.app[UPLOADS_KEY].get(request.match_info["file_id"])
    if upload is None or _gone(upload, _now(request)):
        raise APIRequestRejected("File not found", status=404)
    return web.Response(body=upload.data, content_type=upload.content_type)


async def pricing(request: web.Request) -> web.StreamResponse:
    wanted = [part for value in request.query.getall("endpoint_id", []) for part in value.split(",") if part]
    if not wanted:
        raise APIRequestRejected("endpoint_id is required (1–50 endpoint ids).", status=422)
    prices: dict[str, float] = request.app[PRICES_KEY]
    unknown = [e for e in wanted if e not in prices]
    if unknown:
        raise APIRequestRejected(f"Endpoint not found: {', '.join(unknown)}", status=404, api_code="not_found")
    return web.json_response(
        {
            "prices": [
                {"endpoint_id": e, "unit_price": prices[e], "unit": "second", "currency": "USD"} for e in wanted
            ],
            "next_cursor": None,
            "has_more": False,
        }
    )


def hosted_file(request: web.Request, url: str) -> bytes | None:
    """The bytes behind `url` when it is a live file on this host (as a runner downloads it), else None."""
    prefix = str(request.url.origin())
    if not url.startswith(prefix + "/"):
        return None
    match = _MEDIA.match(url[len(prefix) :])
    upload = request.app[UPLOADS_KEY].get(match.group(1)) if match else None
    if upload is None or not upload.data or _gone(upload, _now(request)):
        return None
    return upload.data


def add_platform_routes(app: web.Application, prices: dict[str, float]) -> None:
    """Storage, CDN and pricing routes on `app` (before its catch-all submit route)."""
    app[UPLOADS_KEY] = {}
    app[TOKENS_KEY] = set()
    app[CLOCK_KEY] = Clock()
    app[PRICES_KEY] = dict(prices)
    app.router.add_post("/storage/auth/token", token, name="storage_token")
    app.router.add_post("/storage/upload/initiate", initiate, name="storage_initiate")
    app.router.add_put("/storage/put/{file_id}", storage_put, name="storage_put")
    app.router.add_post("/files/upload", cdn_upload, name=TOKEN_ROUTE)
    app.router.add_get("/media/{file_id}/{name}", media, name="media")
    app.router.add_get("/v1/models/pricing", pricing, name="pricing")


def token_refusal(request: web.Request) -> str | None:
    """Why a CDN upload's token is refused, or None when it is one this host issued."""
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme != "Bearer" or given not in request.app[TOKENS_KEY]:
        return "Invalid or expired storage token."
    return None


PLATFORM_ROUTES: Iterable[str] = (
    "storage_token",
    "storage_initiate",
    "storage_put",
    TOKEN_ROUTE,
    "media",
    "pricing",
)
