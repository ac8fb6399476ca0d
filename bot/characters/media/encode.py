"""Encode: the character clip the backends get (H.264, constant rate, no audio), written under a temporary name."""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av

from bot.characters.media.cut import Geometry, cut_window, decoded_frames, output_rate, plan_geometry, transform_frame
from bot.characters.media.probing import (
    ClipInfo,
    ClipLimits,
    Source,
    open_checked,
    probe_sync,
    quarter_turns,
    shown_seconds,
    unreadable,
)
from bot.errors import InvalidClip, NotAVideo

_KEPT_METADATA = ("title", "comment")
# A prepared clip narrower than this shows the character as a smudge.
_MIN_CLIP_SIDE = 32


async def prepare_character_clip(src: Path, dest: Path, limits: ClipLimits, *, start: float = 0.0) -> ClipInfo:
    """Make the clip the Videos API gets for a character from the video at `src`, write it to `dest`, describe it.

    Cuts [start, start + clip_seconds] (a source shorter than that but at least `min_seconds` long is kept whole),
    turns phone rotation upright, crops to 16:9 or 9:16 (whichever the source is closer to) and scales per
    `plan_geometry`, and encodes H.264 yuv420p at a constant rate (the source's, at most 30 fps) with no audio and
    only the `title` and `comment` metadata (a phone clip's location, device and dates stay behind). `dest` appears
    only when complete.

    Raises everything `probe` does, plus ClipWrongLength for a clip shorter than `min_seconds` or a start that
    leaves less than that, and InvalidClip for a negative start.
    """
    return await asyncio.to_thread(_prepare_sync, Path(src), Path(dest), limits, start)


def _prepare_sync(src: Path, dest: Path, limits: ClipLimits, start: float) -> ClipInfo:
    source = open_checked(src, limits)
    try:
        start, end = cut_window(source.info.duration, start, limits)
        geometry = plan_geometry(source.info.width, source.info.height, limits.max_side)
        if min(geometry.width, geometry.height) < _MIN_CLIP_SIDE:
            raise InvalidClip(
                f"That video is only {source.info.resolution} pixels, too small to show a character.",
                hint="Send a clip of at least 720p.",
            )
        fps = output_rate(source.fps)
        with partial_file(dest) as tmp:
            _encode_clip(source, tmp, start, end, geometry, fps)
    finally:
        source.close()
    # The output is ours and small; only the shape checks matter, not the upload caps.
    return probe_sync(dest, limits.model_copy(update={"max_bytes": max(limits.max_bytes, dest.stat().st_size)}))


@contextlib.contextmanager
def partial_file(dest: Path) -> Iterator[Path]:
    """A temp name beside `dest`, renamed onto it on success and removed on failure."""
    tmp = partial_name(dest)
    try:
        yield tmp
        os.replace(tmp, dest)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def partial_name(dest: Path) -> Path:
    # Hidden and unique, so a half-written file is never mistaken for a result, even by a concurrent job.
    dest.parent.mkdir(parents=True, exist_ok=True)
    return dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.partial")


def _encode_clip(source: Source, dest: Path, start: float, end: float, geometry: Geometry, fps: Fraction) -> None:
    total = max(1, round((end - start) * fps))
    targets = [start + index / fps for index in range(total)]
    # A source frame serves every output instant from its own time on; a hair of tolerance absorbs time-base
    # rounding so equal rates map frame to frame.
    slack = 0.25 / float(source.fps)
    coded = (source.stream.codec_context.width, source.stream.codec_context.height)
    turns = quarter_turns(source.info.rotation)
    with av.open(str(dest), "w", format="mp4", options={"movflags": "+faststart"}) as out:
        # The user's own description of the clip travels on (the offline API's likeness check reads it, as a
        # stand-in for the real one); GPS position, device model and capture dates do not.
        for key in _KEPT_METADATA:
            if value := source.container.metadata.get(key):
                out.metadata[key] = value
        stream = out.add_stream("libx264", rate=fps, options={"preset": "medium", "crf": "18"})
        stream.width, stream.height, stream.pix_fmt = geometry.width, geometry.height, "yuv420p"
        stream.codec_context.time_base = 1 / fps
        # Tag what the RGB→YUV conversion below produces, so players do not guess the colours.
        context = stream.codec_context
        context.colorspace = context.color_primaries = context.color_trc = 1  # BT.709
        context.color_range = 1  # limited ("TV") range

        index = 0
        held: tuple[float, av.VideoFrame] | None = None
        converted: tuple[int, av.VideoFrame] | None = None

        def emit(frame: av.VideoFrame) -> None:
            nonlocal index, converted
            if converted is None or converted[0] != id(frame):
                converted = (id(frame), transform_frame(frame, coded, turns, geometry))
            picture = converted[1]
            picture.pts = index
            picture.time_base = stream.codec_context.time_base
            out.mux(stream.encode(picture))
            index += 1

        for at, frame in decoded_frames(source, start, end):
            while index < total and targets[index] + slack < at:
                emit(held[1] if held is not None else frame)
            held = (at, frame)
            if index >= total:
                break
        if held is None:
            raise unreadable("no picture in the requested window")
        # The last frame covers the remaining instants, unless the pictures stopped well before the stated end.
        if index < total and targets[total - 1] - held[0] > 0.5 + 1 / float(source.fps):
            raise NotAVideo(
                f"That video stops at {shown_seconds(held[0])} although it says it is "
                f"{shown_seconds(source.info.duration)} long — it looks cut off.",
                hint="The upload was probably interrupted; send the MP4 again.",
            )
        while index < total:
            emit(held[1])
        out.mux(stream.encode())
