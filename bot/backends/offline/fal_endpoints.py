"""The fal endpoints the emulator serves and what each takes, as its schema on fal's model page says; where a
model's requests live, and the frame a request's aspect ratio and resolution make.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

FRAMES = {"16:9": (16, 9), "9:16": (9, 16), "1:1": (1, 1), "4:3": (4, 3), "3:4": (3, 4)}
SHORT_SIDE = {"360p": 360, "540p": 540, "720p": 720, "1080p": 1080, "4k": 2160}


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


def app_path(model: str) -> str:
    """`fal-ai/kling-video/o1/reference-to-video` → `fal-ai/kling-video`: where its requests live."""
    return "/".join(model.split("/")[:2])


def frame_size(aspect: str, resolution: str) -> str:
    """`16:9` at `720p` → `1280x720`; `1:1` at `1080p` → `1080x1080`."""
    short = SHORT_SIDE[resolution]
    a, b = FRAMES[aspect]
    long = short * max(a, b) // min(a, b)
    if a == b:
        return f"{short}x{short}"
    return f"{long}x{short}" if a > b else f"{short}x{long}"
