"""Request bodies of an emulated API, read whatever their encoding (JSON, multipart or urlencoded fields and
files, or a file's raw bytes) once, by the middleware, for the route and the request log.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from bot.backends.offline.request_log import UploadedFile


class BodyError(Exception):
    """The body could not be read as its content type says (answered as a 400)."""


@dataclass
class Body:
    """A request body, whatever its encoding: JSON object, or multipart/urlencoded fields and files."""

    kind: str  # "json", "form", "raw" (a file's bytes, e.g. an upload to a CDN) or "none"
    json: Any = None
    raw: bytes = b""
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
BODY_KEY: Any = web.RequestKey("body", Body) if hasattr(web, "RequestKey") else "soracast_body"


async def read_body(request: web.Request) -> Body:
    """The request's body as its content type says; `BodyError` when it cannot be read so."""
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
    if ctype.startswith(("image/", "video/", "audio/")) or ctype == "application/octet-stream":
        return Body(kind="raw", raw=raw, size=len(raw))
    try:
        parsed = json.loads(raw)
    except ValueError:
        raise BodyError(
            "We could not parse the JSON body of your request. The emulator expects a JSON object or "
            "multipart/form-data."
        ) from None
    return Body(kind="json", json=parsed, size=len(raw))


def request_body(request: web.Request) -> Body:
    """The body the middleware read (and recorded) for this request."""
    return request[BODY_KEY]
