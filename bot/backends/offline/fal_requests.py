"""Reading a submit to the emulated fal queue, checked as fal's endpoints check it: a choice among the values a
field takes, and the images, fetched as the model's runner would (a URL on this host's CDN, or a data URI where
the model takes those) and counted as fal counts them (Kling: elements + `image_urls` + a start image).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aiohttp import web
from PIL import Image

from bot.backends.offline.fal_dialect import invalid
from bot.backends.offline.fal_endpoints import Endpoint
from bot.backends.offline.fal_platform import hosted_file
from bot.backends.offline.renderer import OfflineVideosAPI


def choice(data: dict[str, Any], name: str, allowed: Sequence[Any], default: Any) -> Any:
    """Field `name` of the request (`default` when absent), refused in fal's words unless `allowed`."""
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


def read_images(request: web.Request, data: dict[str, Any], endpoint: Endpoint) -> list[tuple[str, bytes]]:
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


async def save_image(offline: OfflineVideosAPI, data: bytes) -> Path:
    """Where an image is kept for the renderer (one file per content)."""
    path = offline.root / "uploads" / f"fal_{hashlib.sha256(data).hexdigest()[:32]}.jpg"
    if not path.exists():
        await asyncio.to_thread(path.write_bytes, data)
    return path


def image_comment(data: bytes) -> str:
    """An image's own comment, where a "person" marker is looked for."""
    with Image.open(io.BytesIO(data)) as image:
        comment = image.info.get("comment", b"")
    return comment.decode("utf-8", "replace") if isinstance(comment, bytes) else str(comment)
