"""Reading a create request to the emulated Gemini API, checked as the real API checks it: the models and what
each takes, the input's parts, `response_format` (duration, aspect ratio, resolution, delivery) and
`webhook_config`; and the reference parts saved where the renderer reads them.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from bot.backends.offline.clips import probe_clip
from bot.backends.offline.gemini_dialect import invalid
from bot.backends.offline.renderer import OfflineVideosAPI


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
ASPECT_RATIOS = {"16:9": (16, 9), "9:16": (9, 16)}
RESOLUTIONS = {"360p": 360, "720p": 720, "1080p": 1080, "4k": 2160}


@dataclass(frozen=True)
class ReferenceLimits:
    """Lower ceilings on references per request than each model's own (None: the model's)."""

    max_images: int | None = None
    max_videos: int | None = None
    max_video_seconds: float = 3.0


@dataclass
class Part:
    """One part of a create's input."""

    kind: str  # "text", "image" or "video"
    text: str = ""
    data: bytes = b""


def read_parts(value: Any) -> list[Part]:
    """The input as parts, however it was given: a string, parts, or `user_input` steps of parts."""
    if isinstance(value, str):
        return [Part("text", text=value)]
    if not isinstance(value, list):
        raise invalid("Invalid value at 'input': expected a string or a list of content.")
    found: list[Part] = []
    for item in value:
        if not isinstance(item, dict):
            raise invalid("Invalid value at 'input': every item must be an object.")
        if item.get("type") in ("user_input", "model_output") or "content" in item:
            found.extend(read_parts(item.get("content") or []))
            continue
        kind = item.get("type")
        if kind == "text":
            found.append(Part("text", text=str(item.get("text") or "")))
        elif kind in ("image", "video"):
            if item.get("uri") and not item.get("data"):
                raise invalid(f"The emulator takes {kind} content inline ('data'), not by 'uri'.")
            try:
                data = base64.b64decode(str(item.get("data") or ""), validate=True)
            except (binascii.Error, ValueError):
                raise invalid(f"Invalid value at 'input': {kind} data is not base64.") from None
            if not data:
                raise invalid(f"Invalid value at 'input': {kind} content has no data.")
            found.append(Part(kind, data=data))
        else:
            raise invalid(f"Invalid value at 'input': unknown content type {kind!r}.")
    return found


def read_format(value: Any, model: str, task: str | None) -> tuple[int | None, str, str, str]:
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


def read_webhook_config(value: Any) -> dict[str, Any] | None:
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


def metadata_text(kind: str, path: Path) -> str:
    """A reference's own words (MP4 title and comment, image comment), where a "person" marker is looked for."""
    if kind == "video":
        info = probe_clip(path)
        return f"{info.title} {info.comment}"
    with Image.open(path) as image:
        comment = image.info.get("comment", b"")
    return comment.decode("utf-8", "replace") if isinstance(comment, bytes) else str(comment)


async def save_reference(offline: OfflineVideosAPI, part: Part) -> Path:
    """Where a reference part is kept for the renderer (one file per content)."""
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
