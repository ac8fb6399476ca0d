"""Files the offline API reads and writes: a character clip's probe, image sizes, copies and links."""

from __future__ import annotations

import asyncio
import hashlib
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import av
from PIL import Image

from bot.backends.offline.spec import invalid
from bot.backends.openai.schemas import (
    ContentVariant,
    ImageReference,
)
from bot.errors import (
    VideosAPIError,
)

# --- probing and small file helpers ---------------------------------------------------------------------


@dataclass
class ClipInfo:
    """What the API learns from a character clip."""

    seconds: float
    width: int
    height: int
    title: str
    comment: str


def probe_clip(path: Path) -> ClipInfo:
    """Open and decode the clip's first frame; a file that is not a decodable video is refused (400)."""
    refused = invalid("The uploaded file is not a supported video.", param="video", code="invalid_video")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise refused
            stream = container.streams.video[0]
            meta = {k.lower(): v for k, v in {**stream.metadata, **container.metadata}.items()}
            first = next(container.decode(stream), None)
            if first is None:
                raise refused
            if container.duration is not None:
                seconds = container.duration / 1_000_000
            elif stream.duration is not None and stream.time_base is not None:
                seconds = float(stream.duration * stream.time_base)
            else:
                seconds = 0.0
            return ClipInfo(
                seconds=seconds,
                width=first.width,
                height=first.height,
                title=str(meta.get("title", "")),
                comment=str(meta.get("comment", "")),
            )
    except VideosAPIError:
        raise
    except (av.FFmpegError, OSError, ValueError, IndexError, StopIteration):
        raise refused from None


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def image_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        return image.size


def parse_size(size: str) -> tuple[int, int]:
    width, height = size.lower().split("x")
    return int(width), int(height)


def copy_into(source: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".part")
    shutil.copyfile(source, tmp)
    tmp.replace(dest)


def link_all(sources: dict[ContentVariant, Path], targets: dict[ContentVariant, Path]) -> None:
    for variant, source in sources.items():
        target = targets[variant]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.unlink(missing_ok=True)
        try:
            target.hardlink_to(source)  # shared renders cost no disk per job where links work
        except OSError:
            shutil.copyfile(source, target)


async def stored_reference(
    image: Path | ImageReference | None, size: str, uploads: Path, new_name: Callable[[], str]
) -> str | None:
    """Check a create's `input_reference` like the API does and keep the image under `uploads` (its path), or
    None where there is nothing to draw. `new_name` is asked only once the image is kept."""
    if image is None:
        return None
    if isinstance(image, ImageReference):
        if (image.image_url is None) == (image.file_id is None):
            raise invalid(
                "Provide exactly one of 'image_url' or 'file_id' in 'input_reference'.",
                param="input_reference",
                code="invalid_value",
            )
        # Offline there is nothing to fetch a URL or a file id from: accepted, not drawn.
        return None
    width, height = parse_size(size)
    try:
        actual = await asyncio.to_thread(image_size, Path(image))
    except (OSError, ValueError, Image.DecompressionBombError):
        raise invalid(
            "The input_reference file is not a supported image.", param="input_reference", code="invalid_image"
        ) from None
    if actual != (width, height):
        raise invalid(
            f"The input_reference image must be {width}x{height} to match 'size'; it is {actual[0]}x{actual[1]}.",
            param="input_reference",
            code="invalid_image_dimensions",
        )
    stored = uploads / f"ref_{new_name()}{Path(image).suffix or '.png'}"
    await asyncio.to_thread(shutil.copyfile, image, stored)
    return str(stored)
