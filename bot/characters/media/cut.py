"""Cut and scale: which seconds of a clip are kept, and how each picture is turned upright, cropped and scaled."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np

from bot.characters.media.probing import MAX_FPS_OUT, ClipLimits, Source, shown_seconds, unreadable
from bot.errors import ClipWrongLength, InvalidClip

# Rates a phone's variable-rate average is snapped to, so 29.81 fps becomes 29.97 rather than 2981/100.
_COMMON_RATES = (
    Fraction(12),
    Fraction(15),
    Fraction(24000, 1001),
    Fraction(24),
    Fraction(25),
    Fraction(30000, 1001),
    Fraction(30),
)
# Sources at least this tall (landscape) or wide (portrait) are scaled to the full HD size, like public clients do.
_HD_SHORT_SIDE = 720


# --- character clips -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Geometry:
    """How a displayed picture becomes the prepared clip: a centred crop (display pixels), then a scale."""

    crop_x: int
    crop_y: int
    crop_width: int
    crop_height: int
    width: int
    height: int


def plan_geometry(width: int, height: int, max_side: int = 1280) -> Geometry:
    """Crop a `width`x`height` picture to 16:9 (or 9:16 when it is taller than wide), then size it.

    Cropping, not padding: black bars would become part of what the API learns as the character. Sources of 720p
    and up become exactly `max_side` on the long side (1280x720 / 720x1280, as the public clients send);
    smaller ones keep their resolution (never upscaled), with even dimensions for H.264.
    """
    portrait = height > width
    long_side, short_side = (height, width) if portrait else (width, height)
    # The largest 16:9 rectangle inside the picture.
    if long_side * 9 >= short_side * 16:
        crop_short = _even_floor(short_side)
        crop_long = _even_floor(short_side * 16 / 9)
    else:
        crop_long = _even_floor(long_side)
        crop_short = _even_floor(long_side * 9 / 16)
    if short_side >= _HD_SHORT_SIDE:
        out_long = _even_floor(max_side)
    else:
        out_long = _even_floor(min(crop_long, max_side))
    out_short = max(2, even_round(out_long * 9 / 16))
    crop_w, crop_h = (crop_short, crop_long) if portrait else (crop_long, crop_short)
    out_w, out_h = (out_short, out_long) if portrait else (out_long, out_short)
    return Geometry(
        # Even offsets keep the crop on chroma sample boundaries.
        crop_x=int((width - crop_w) / 2) // 2 * 2,
        crop_y=int((height - crop_h) / 2) // 2 * 2,
        crop_width=crop_w,
        crop_height=crop_h,
        width=out_w,
        height=out_h,
    )


def _even_floor(value: float) -> int:
    return max(2, int(value) // 2 * 2)


def even_round(value: float) -> int:
    return max(2, round(value / 2) * 2)


def output_rate(source_fps: float | Fraction) -> Fraction:
    """The constant rate of a prepared clip: the source's, capped at 30, snapped to a standard rate when close."""
    fps = Fraction(source_fps).limit_denominator(1001)
    if fps >= MAX_FPS_OUT:
        return Fraction(MAX_FPS_OUT)
    nearest = min(_COMMON_RATES, key=lambda rate: abs(rate - fps))
    if abs(nearest - fps) <= nearest * Fraction(2, 100):
        return nearest
    return Fraction(max(1, round(fps)))


# Containers state a length to within about a frame; a "2 s" phone clip of 59 frames at 30 fps is 1.97 s.
_LENGTH_SLACK = 0.05


def cut_window(duration: float, start: float, limits: ClipLimits) -> tuple[float, float]:
    """The [start, end] seconds to cut, or the error explaining why no such window exists."""
    if not math.isfinite(start) or start < 0:
        problem = "cannot be negative" if start < 0 else "must be a number of seconds"
        raise InvalidClip(f"The start time {problem}.", hint="Give a start in seconds from 0, like 1.5.")
    if duration + _LENGTH_SLACK < limits.min_seconds:
        # Rounded down, so a 1.96 s clip is not called "2 s" in the sentence refusing it for being under 2 s.
        shown = math.floor(duration * 10) / 10
        raise ClipWrongLength(
            f"That clip is only {shown:g} s long; a character clip must be at least {limits.min_seconds:g} s.",
            hint=f"Send a clip of {limits.min_seconds:g}–{limits.clip_seconds:g} seconds.",
        )
    if start > 0 and duration - start + _LENGTH_SLACK < limits.min_seconds:
        latest = max(0.0, duration - limits.min_seconds)
        where = "past its end" if start >= duration else "too close to its end"
        raise ClipWrongLength(
            f"The clip is {shown_seconds(duration)} long, so a start at {start:g} s is {where}.",
            hint=f"Pick a start between 0 and {math.floor(latest * 10) / 10:g} s "
            f"(at least {limits.min_seconds:g} s must remain).",
        )
    return start, min(duration, start + limits.clip_seconds)


def frame_budget(seconds: float, fps: Fraction) -> int:
    # Twice the frames the metadata promises, plus slack for a keyframe interval before a seek point: a file that
    # needs more than that is lying about its rate, and stopping keeps a hostile file from running forever.
    return int((seconds + 10) * max(float(fps), 1.0) * 2) + 600


def decoded_frames(source: Source, start: float, end: float) -> Iterator[tuple[float, av.VideoFrame]]:
    """(seconds from the first picture, frame) for each frame from shortly before `start` until one past `end`."""
    container, stream = source.container, source.stream
    budget = frame_budget(end, source.fps)
    packets_left = budget * 4
    period = 1 / float(source.fps)
    count = 0
    last = -period
    try:
        if start > 0 and stream.time_base:
            # Seek to the keyframe before `start`; frames before it are decoded and skipped by the caller.
            container.seek(int((source.origin + start) / stream.time_base), stream=stream, backward=True)
        for packet in container.demux(stream):
            packets_left -= 1
            if packets_left < 0:
                raise unreadable("packet budget exhausted")
            for frame in packet.decode():
                count += 1
                if count > budget:
                    raise unreadable("frame budget exhausted")
                at = frame.time - source.origin if frame.time is not None else last + period
                last = at
                yield at, frame
                if at >= end:
                    return
    except (av.FFmpegError, OSError) as exc:
        raise unreadable(f"decode: {exc}") from None


def transform_frame(frame: av.VideoFrame, coded: tuple[int, int], turns: int, geometry: Geometry) -> av.VideoFrame:
    """Upright, crop and scale one decoded frame into the clip's picture."""
    g = geometry
    scale = g.width / g.crop_width
    # Scale first, in the same pass as the RGB conversion: turning and cropping a 1080x1920 picture costs more than
    # the whole encode, and the scaled one is less than half of it. Rounding up keeps the crop inside the picture.
    # A stream that changes size mid-way lands on the same size, since the target comes from the plan.
    width, height = math.ceil(coded[0] * scale), math.ceil(coded[1] * scale)
    shrinking = scale <= 1
    # RGBA, so each pixel is one 32-bit word: turning an array of words is several times faster than of byte triples.
    image = frame.reformat(
        width=width, height=height, format="rgba", interpolation="AREA" if shrinking else "BICUBIC"
    ).to_ndarray()
    pixels = image.view(np.uint32).reshape(image.shape[:2])
    if turns:
        pixels = np.rot90(pixels, turns)
    shown_h, shown_w = pixels.shape
    x = min(max(0, round(g.crop_x * scale)), shown_w - g.width)
    y = min(max(0, round(g.crop_y * scale)), shown_h - g.height)
    cropped = np.ascontiguousarray(pixels[y : y + g.height, x : x + g.width])
    return av.VideoFrame.from_ndarray(cropped.view(np.uint8).reshape(g.height, g.width, 4), format="rgba").reformat(
        format="yuv420p", dst_colorspace="ITU709", dst_color_range="MPEG"
    )
