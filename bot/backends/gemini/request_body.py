"""What a create sends Gemini, checked before it is sent: the reference and source video parts (inline, under
the API's request size), an uploaded source's length, and `response_format` for each task.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from bot.backends.base import VideoRequest, aspect_of, resolution_of
from bot.backends.gemini.models import omni_model
from bot.errors import InvalidInput
from bot.models import GenerationKind

#: Inline request bodies above this are refused by the API; checked before sending.
MAX_INLINE_BYTES = 20 * 1024 * 1024
REGION_TEXT = (
    "Gemini does not offer editing or extending an uploaded video where this bot runs (it is not offered in the "
    "EEA, Switzerland or the UK)."
)


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode("ascii")


def check_uploaded_source(request: VideoRequest) -> None:
    """An uploaded source must be on this machine and no longer than the model takes."""
    if request.source_video is None:
        raise InvalidInput(
            "The video to build on is not on this machine any more.", hint="Make a new video with /sora."
        )
    cap = omni_model(request.model).max_uploaded_source_seconds
    if cap is not None and request.source_seconds is not None and request.source_seconds > cap:
        raise InvalidInput(
            f"{request.model} edits and extends uploaded videos of up to {cap} s; this one is "
            f"{request.source_seconds} s.",
            hint="Build on a shorter video, or make a new one with /sora.",
        )


def media_parts(request: VideoRequest, parts: list[Any], upload_source: bool) -> list[dict[str, str]]:
    """The video and image parts, in the order the prompt's tags count them (read in a worker thread)."""
    videos: list[dict[str, str]] = []
    images: list[dict[str, str]] = []
    if upload_source:
        assert request.source_video is not None
        videos.append({"type": "video", "mime_type": "video/mp4", "data": _b64(request.source_video)})
    for part in parts:
        if part.clip is not None:
            videos.append({"type": "video", "mime_type": "video/mp4", "data": _b64(part.clip)})
        for still in part.stills:
            images.append({"type": "image", "mime_type": "image/jpeg", "data": _b64(still)})
    total = sum(len(p["data"]) for p in videos + images)
    if total > MAX_INLINE_BYTES:
        raise InvalidInput(
            f"The references and source video add up to {total / 2**20:.1f} MB, more than the "
            f"{MAX_INLINE_BYTES / 2**20:.0f} MB Gemini takes in one request.",
            hint="Use fewer @handles, or build on a shorter video.",
        )
    return videos + images


def response_format(request: VideoRequest) -> dict[str, str]:
    """What the video should be: an edit keeps its source's length and frame, an extension names only the seconds
    it adds; a new video names all of it."""
    # Inline answers above about 4 MB are not allowed; large frames come back as a file.
    delivery = "inline" if resolution_of(request.size) in ("360p", "720p") else "uri"
    if request.kind is GenerationKind.REMIX:
        return {"type": "video", "delivery": delivery}
    if request.kind is GenerationKind.EXTEND:
        return {"type": "video", "duration": f"{request.seconds}s", "delivery": delivery}
    return {
        "type": "video",
        "aspect_ratio": aspect_of(request.size),
        "resolution": resolution_of(request.size),
        "duration": f"{request.seconds}s",
        "delivery": delivery,
    }
