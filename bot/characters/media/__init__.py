"""Clips in and videos out: check, probe, cut, scale and shrink video files with PyAV (no ffmpeg binary).

What the rest of soracast uses:

* `check_upload` — a cheap verdict on an attachment from its name, type and size, before anything is downloaded;
* `probe` — read a file's container metadata and refuse what is too big, too long or not a readable video;
* `prepare_character_clip` — turn an ordinary phone clip into what the Videos API wants for a character:
  a 2–4 s H.264 MP4, 16:9 or 9:16, no audio, constant frame rate;
* `shrink_to_fit` — re-encode a finished video so it fits a chat platform's upload limit.

The public functions are async and run the blocking PyAV work in a worker thread (`asyncio.to_thread`), so a
long encode never stalls the bot's event loop.

Uploads are hostile input. Every cap (bytes, seconds, pixels) is checked from container metadata before a single
frame is decoded, decoding stops after a frame budget derived from those caps, and only the MP4/QuickTime and
Matroska/WebM demuxers are ever used: the container is recognised from its first bytes, never guessed by FFmpeg,
because a playlist or concat file named `.mp4` could otherwise make FFmpeg read other local files or URLs.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

import av
import numpy as np
from pydantic import BaseModel, Field

from bot.errors import ClipTooLarge, ClipWrongLength, InvalidClip, NotAVideo

if TYPE_CHECKING:
    from av.container import InputContainer
    from av.video.stream import VideoStream

    from bot.config import Settings

__all__ = [
    "ACCEPTED_EXTENSIONS",
    "ClipInfo",
    "ClipLimits",
    "Geometry",
    "check_upload",
    "output_rate",
    "plan_geometry",
    "prepare_character_clip",
    "probe",
    "shrink_to_fit",
]

#: File extensions judged by when the platform gives no (or only a generic) content type.
ACCEPTED_EXTENSIONS = frozenset({".mp4", ".m4v", ".mov", ".qt", ".3gp", ".webm", ".mkv"})
# Platforms send these when they do not know; they say nothing either way.
_GENERIC_CONTENT_TYPES = frozenset({"application/octet-stream", "binary/octet-stream", "application/x-binary"})

_MP4_DEMUXER = "mov"  # FFmpeg's one demuxer for MP4, MOV, M4V and 3GP
_MKV_DEMUXER = "matroska"  # also reads WebM
# Top-level box types an MP4/QuickTime file can start with (after the 4-byte size).
_MP4_FIRST_BOXES = frozenset({b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot"})
_EBML_MAGIC = b"\x1a\x45\xdf\xa3"

_MAX_FPS_OUT = 30
_KEPT_METADATA = ("title", "comment")
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
# Anything outside these is a broken header, not a real frame rate.
_SANE_FPS = (0.5, 1000.0)
# Bigger than 8K is not a phone clip, and decoding it could exhaust memory.
_MAX_INPUT_SIDE = 8192
_MAX_INPUT_PIXELS = 8192 * 4320
# Smaller than this is no picture at all (a broken header, or a tracking pixel).
_MIN_INPUT_SIDE = 16
# A prepared clip narrower than this shows the character as a smudge.
_MIN_CLIP_SIDE = 32
# Sources at least this tall (landscape) or wide (portrait) are scaled to the full HD size, like public clients do.
_HD_SHORT_SIDE = 720
# Packets read looking for the first picture, or for a duration the header did not state.
_FIRST_FRAME_PACKETS = 600
_DURATION_SCAN_PACKETS = 200_000


class ClipLimits(BaseModel):
    """The caps a clip must fit: what is accepted as input, and the shape of the clip sent to the API."""

    model_config = {"frozen": True}

    #: Largest upload accepted, in bytes.
    max_bytes: int = Field(gt=0)
    #: Longest input accepted, in seconds (only `clip_seconds` of it are used).
    max_input_seconds: float = Field(gt=0)
    #: The window cut from the input for the API.
    clip_seconds: float = Field(default=4.0, gt=0)
    #: The shortest clip the API is given.
    min_seconds: float = Field(default=2.0, gt=0)
    #: The longer side of the prepared clip, in pixels.
    max_side: int = Field(default=1280, ge=64)

    @classmethod
    def from_settings(cls, settings: Settings) -> ClipLimits:
        """The limits configured by `SORACAST_MAX_UPLOAD_MB`, `…_MAX_CLIP_INPUT_SECONDS`, `…_CLIP_SECONDS` and
        `…_MIN_CLIP_SECONDS`."""
        return cls(
            max_bytes=settings.max_upload_bytes,
            max_input_seconds=settings.max_clip_input_seconds,
            clip_seconds=settings.clip_seconds,
            min_seconds=min(settings.min_clip_seconds, settings.clip_seconds),
        )

    @property
    def max_mb(self) -> str:
        """The byte cap as the user-facing figure (`100`, `7.5`), in the same MB the setting uses."""
        return f"{round(self.max_bytes / 2**20, 1):g}"


class ClipInfo(BaseModel):
    """What a probe learned about a video file. Width and height are as displayed (rotation applied)."""

    #: `mp4`, `mov` (QuickTime-branded) or `matroska` (Matroska and WebM).
    container: str
    duration: float
    width: int
    height: int
    fps: float
    video_codec: str
    has_audio: bool
    size_bytes: int
    #: Counter-clockwise degrees a player turns the coded picture (phones store portrait clips this way).
    rotation: int = 0

    @property
    def is_portrait(self) -> bool:
        return self.height > self.width

    @property
    def resolution(self) -> str:
        """`1280x720`, the API's spelling of a size."""
        return f"{self.width}x{self.height}"


# --- the cheap pre-check -------------------------------------------------------------------------------------


def check_upload(filename: str | None, content_type: str | None, size: int | None, limits: ClipLimits) -> None:
    """Refuse an attachment that cannot be a usable clip, from what the platform says about it, before downloading.

    A specific content type decides: any `video/*` passes (MP4 and MOV are what phones send; WebM and MKV are read
    too), since the download is probed anyway and a wrongly refused clip costs the user more. A missing or generic
    type defers to the extension; with neither, the file passes and `probe` decides after the download. `size` None
    means unknown; 0 means empty. Raises NotAVideo or ClipTooLarge.
    """
    kind = (content_type or "").split(";", 1)[0].strip().lower()
    suffix = Path(filename).suffix.lower() if filename else ""
    if kind and kind not in _GENERIC_CONTENT_TYPES:
        if not kind.startswith("video/"):
            raise NotAVideo(f"That file is {_describe_type(kind)}, not a video.", hint=_send_mp4_hint(limits))
    elif suffix and suffix not in ACCEPTED_EXTENSIONS:
        raise NotAVideo(f"A {suffix} file is not a video soracast can read.", hint=_send_mp4_hint(limits))
    if size is not None:
        if size <= 0:
            raise NotAVideo("That file is empty.", hint=_send_mp4_hint(limits))
        if size > limits.max_bytes:
            raise _too_large(size, limits)


def _describe_type(kind: str) -> str:
    family = kind.split("/", 1)[0]
    return {"image": "an image", "audio": "audio", "text": "text"}.get(family, f"of type {kind}")


def _send_mp4_hint(limits: ClipLimits) -> str:
    return f"Send an MP4 video of {limits.min_seconds:g}–{limits.clip_seconds:g} seconds, under {limits.max_mb} MB."


def _too_large(size: int, limits: ClipLimits) -> ClipTooLarge:
    return ClipTooLarge(
        f"That file is {size / 2**20:.1f} MB; the limit is {limits.max_mb} MB.",
        hint=f"Upload an MP4 under {limits.max_mb} MB — a few seconds of video is all a character needs.",
    )


def _unreadable(detail: str | None = None) -> NotAVideo:
    return NotAVideo(
        "That file is not a video soracast can read.",
        hint="Send an MP4 (or MOV) clip, as a phone records it.",
        log_detail=detail,
    )


# --- probing -------------------------------------------------------------------------------------------------


async def probe(path: Path, limits: ClipLimits) -> ClipInfo:
    """Describe the video at `path`, refusing it when it breaks a cap.

    The caps are checked from container metadata before any frame is decoded; then one picture is decoded, which
    proves the stream is readable and gives the rotation a phone stored. Raises ClipTooLarge (bytes or pixels),
    ClipWrongLength (longer than `max_input_seconds`) or NotAVideo (empty, not a container we read, no video stream,
    cut off, or no picture can be decoded).
    """
    return await asyncio.to_thread(_probe_sync, Path(path), limits)


@dataclass
class _Source:
    """An open input with what the probe checked about it; closes the container with it."""

    container: InputContainer
    stream: VideoStream
    info: ClipInfo
    #: Seconds of the stream's first timestamp, so user times count from the first picture.
    origin: float
    fps: Fraction

    def close(self) -> None:
        self.container.close()


def _probe_sync(path: Path, limits: ClipLimits) -> ClipInfo:
    source = _open_checked(path, limits)
    source.close()
    return source.info


def _open_checked(path: Path, limits: ClipLimits) -> _Source:
    """Open `path` with a known demuxer and apply every cap; the caller owns (and must close) the result."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise _unreadable(f"{path} does not exist") from None
    if size == 0:
        raise NotAVideo("That file is empty.", hint=_send_mp4_hint(limits))
    if size > limits.max_bytes:
        raise _too_large(size, limits)
    demuxer = _sniff_demuxer(path)
    if demuxer is None:
        raise _unreadable("not an MP4/QuickTime or Matroska/WebM header")
    try:
        container = av.open(str(path), format=demuxer, metadata_errors="replace")
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise _unreadable(f"open: {exc}") from None
    try:
        return _inspect(container, size, limits)
    except BaseException:
        container.close()
        raise


def _sniff_demuxer(path: Path) -> str | None:
    with path.open("rb") as handle:
        head = handle.read(12)
    if head[:4] == _EBML_MAGIC:
        return _MKV_DEMUXER
    if len(head) >= 8 and head[4:8] in _MP4_FIRST_BOXES:
        return _MP4_DEMUXER
    return None


def _inspect(container: InputContainer, size: int, limits: ClipLimits) -> _Source:
    stream = _video_stream(container)
    if stream is None:
        raise NotAVideo(
            "That file has no video in it (only sound, or nothing at all).",
            hint="Send an MP4 video clip.",
        )
    width, height = stream.codec_context.width, stream.codec_context.height
    if width <= 0 or height <= 0:
        raise _unreadable("video stream has no picture size")
    if max(width, height) > _MAX_INPUT_SIDE or width * height > _MAX_INPUT_PIXELS:
        raise ClipTooLarge(
            f"That video is {width}x{height} pixels; soracast reads videos up to 8K.",
            hint="Send it at 1080p or 720p.",
        )
    if min(width, height) < _MIN_INPUT_SIDE:
        raise InvalidClip(
            f"That video is only {width}x{height} pixels, too small to show a character.",
            hint="Send a clip of at least 720p.",
        )
    duration = _stated_duration(container, stream)
    if duration is None:
        # Matroska from a browser recorder often has no duration in its header: read packet times, decode nothing.
        duration = _scan_duration(container, stream, limits)
    if duration <= 0:
        raise _unreadable("no duration")
    if duration > limits.max_input_seconds:
        raise ClipWrongLength(
            f"That video is {_seconds(duration)} long; "
            f"soracast reads clips up to {_seconds(limits.max_input_seconds)}.",
            hint=f"Trim it to a few seconds (only {limits.clip_seconds:g} s are used) and send it again.",
        )
    _check_not_cut_off(stream, size)
    fps = _frame_rate(stream, duration)
    origin = float(stream.start_time * stream.time_base) if stream.start_time is not None and stream.time_base else 0.0
    # Decoder threads can only be chosen before the first decode; a cut or a shrink decodes many frames.
    stream.thread_type = "AUTO"
    # One picture proves the stream decodes, and carries the rotation phones store for portrait clips.
    first = _first_frame(container, stream)
    rotation = _quarter_turns(first.rotation) * 90
    if rotation % 180:
        width, height = height, width
    _rewind(container)  # callers decode from the start (or seek themselves)
    info = ClipInfo(
        container=_container_name(container),
        duration=duration,
        width=width,
        height=height,
        fps=float(fps),
        video_codec=stream.codec_context.name,
        has_audio=bool(container.streams.audio),
        size_bytes=size,
        rotation=_signed_degrees(rotation),
    )
    return _Source(container=container, stream=stream, info=info, origin=origin, fps=fps)


def _container_name(container: InputContainer) -> str:
    name = container.format.name
    if name == _MP4_DEMUXER:
        # One demuxer reads both; the brand says which the file claims to be.
        return "mov" if container.metadata.get("major_brand", "").strip() == "qt" else "mp4"
    return name.split(",", 1)[0]


def _video_stream(container: InputContainer) -> VideoStream | None:
    for stream in container.streams.video:
        # A cover image stored as a one-frame "video" stream is not the clip.
        if not stream.disposition & av.stream.Disposition.attached_pic:
            return stream
    return None


def _stated_duration(container: InputContainer, stream: VideoStream) -> float | None:
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration:
        return container.duration / av.time_base
    return None


def _scan_duration(container: InputContainer, stream: VideoStream, limits: ClipLimits) -> float:
    first: float | None = None
    last = 0.0
    try:
        for count, packet in enumerate(container.demux(stream)):
            if count > _DURATION_SCAN_PACKETS:
                raise _unreadable("no stated duration and too many packets to count")
            if packet.pts is None or packet.time_base is None:
                continue
            at = float(packet.pts * packet.time_base)
            first = at if first is None else min(first, at)
            last = max(last, at + float((packet.duration or 0) * packet.time_base))
            if first is not None and last - first > limits.max_input_seconds:
                break  # already too long: no need to read the rest
    except (av.FFmpegError, OSError) as exc:
        raise _unreadable(f"scan: {exc}") from None
    _rewind(container)
    return 0.0 if first is None else last - first


def _rewind(container: InputContainer) -> None:
    try:
        container.seek(0)
    except (av.FFmpegError, OSError) as exc:
        raise _unreadable(f"seek: {exc}") from None


def _check_not_cut_off(stream: VideoStream, size: int) -> None:
    # An MP4 whose index survived but whose tail did not (an interrupted upload of a "fast start" file) still opens;
    # its index says where every frame should be, so a frame beyond the end of the file gives it away.
    try:
        entries = stream.index_entries
        if entries is None or len(entries) == 0:
            return
        last = entries[len(entries) - 1]
    except (AttributeError, IndexError, av.FFmpegError):
        return
    if last.pos + last.size > size:
        raise NotAVideo(
            "That video is cut off — the file ends before its last frame.",
            hint="The upload was probably interrupted; send the MP4 again.",
        )


def _frame_rate(stream: VideoStream, duration: float) -> Fraction:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate and _SANE_FPS[0] <= float(rate) <= _SANE_FPS[1]:
            return Fraction(rate)
    if stream.frames and duration > 0:
        rate = Fraction(stream.frames / duration).limit_denominator(1001)
        if _SANE_FPS[0] <= float(rate) <= _SANE_FPS[1]:
            return rate
    return Fraction(_MAX_FPS_OUT)


def _first_frame(container: InputContainer, stream: VideoStream) -> av.VideoFrame:
    try:
        for count, packet in enumerate(container.demux(stream)):
            if count > _FIRST_FRAME_PACKETS:
                break
            for frame in packet.decode():
                return frame
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise _unreadable(f"decode: {exc}") from None
    raise _unreadable("no picture decoded")


def _quarter_turns(degrees: float | None) -> int:
    """Counter-clockwise quarter turns in 0–3 (odd angles are rounded to the nearest quarter)."""
    if not degrees or not math.isfinite(degrees):
        return 0
    return round(degrees / 90) % 4


def _signed_degrees(degrees: int) -> int:
    return degrees - 360 if degrees > 180 else degrees


def _seconds(value: float) -> str:
    """`4 s`, `1.5 s`, `3 min 20 s` — how a length is shown to users."""
    if value >= 90:
        minutes, rest = divmod(round(value), 60)
        return f"{minutes} min {rest} s" if rest else f"{minutes} min"
    return f"{value:.1f} s".replace(".0 s", " s")


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
    out_short = max(2, _even_round(out_long * 9 / 16))
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


def _even_round(value: float) -> int:
    return max(2, round(value / 2) * 2)


def output_rate(source_fps: float | Fraction) -> Fraction:
    """The constant rate of a prepared clip: the source's, capped at 30, snapped to a standard rate when close."""
    fps = Fraction(source_fps).limit_denominator(1001)
    if fps >= _MAX_FPS_OUT:
        return Fraction(_MAX_FPS_OUT)
    nearest = min(_COMMON_RATES, key=lambda rate: abs(rate - fps))
    if abs(nearest - fps) <= nearest * Fraction(2, 100):
        return nearest
    return Fraction(max(1, round(fps)))


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
    source = _open_checked(src, limits)
    try:
        start, end = _window(source.info.duration, start, limits)
        geometry = plan_geometry(source.info.width, source.info.height, limits.max_side)
        if min(geometry.width, geometry.height) < _MIN_CLIP_SIDE:
            raise InvalidClip(
                f"That video is only {source.info.resolution} pixels, too small to show a character.",
                hint="Send a clip of at least 720p.",
            )
        fps = output_rate(source.fps)
        with _partial(dest) as tmp:
            _encode_clip(source, tmp, start, end, geometry, fps)
    finally:
        source.close()
    # The output is ours and small; only the shape checks matter, not the upload caps.
    return _probe_sync(dest, limits.model_copy(update={"max_bytes": max(limits.max_bytes, dest.stat().st_size)}))


# Containers state a length to within about a frame; a "2 s" phone clip of 59 frames at 30 fps is 1.97 s.
_LENGTH_SLACK = 0.05


def _window(duration: float, start: float, limits: ClipLimits) -> tuple[float, float]:
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
            f"The clip is {_seconds(duration)} long, so a start at {start:g} s is {where}.",
            hint=f"Pick a start between 0 and {math.floor(latest * 10) / 10:g} s "
            f"(at least {limits.min_seconds:g} s must remain).",
        )
    return start, min(duration, start + limits.clip_seconds)


@contextlib.contextmanager
def _partial(dest: Path) -> Iterator[Path]:
    """A temp name beside `dest`, renamed onto it on success and removed on failure."""
    tmp = _partial_name(dest)
    try:
        yield tmp
        os.replace(tmp, dest)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _partial_name(dest: Path) -> Path:
    # Hidden and unique, so a half-written file is never mistaken for a result, even by a concurrent job.
    dest.parent.mkdir(parents=True, exist_ok=True)
    return dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.partial")


def _frame_budget(seconds: float, fps: Fraction) -> int:
    # Twice the frames the metadata promises, plus slack for a keyframe interval before a seek point: a file that
    # needs more than that is lying about its rate, and stopping keeps a hostile file from running forever.
    return int((seconds + 10) * max(float(fps), 1.0) * 2) + 600


def _decoded(source: _Source, start: float, end: float) -> Iterator[tuple[float, av.VideoFrame]]:
    """(seconds from the first picture, frame) for each frame from shortly before `start` until one past `end`."""
    container, stream = source.container, source.stream
    budget = _frame_budget(end, source.fps)
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
                raise _unreadable("packet budget exhausted")
            for frame in packet.decode():
                count += 1
                if count > budget:
                    raise _unreadable("frame budget exhausted")
                at = frame.time - source.origin if frame.time is not None else last + period
                last = at
                yield at, frame
                if at >= end:
                    return
    except (av.FFmpegError, OSError) as exc:
        raise _unreadable(f"decode: {exc}") from None


def _encode_clip(source: _Source, dest: Path, start: float, end: float, geometry: Geometry, fps: Fraction) -> None:
    total = max(1, round((end - start) * fps))
    targets = [start + index / fps for index in range(total)]
    # A source frame serves every output instant from its own time on; a hair of tolerance absorbs time-base
    # rounding so equal rates map frame to frame.
    slack = 0.25 / float(source.fps)
    coded = (source.stream.codec_context.width, source.stream.codec_context.height)
    turns = _quarter_turns(source.info.rotation)
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
                converted = (id(frame), _transform(frame, coded, turns, geometry))
            picture = converted[1]
            picture.pts = index
            picture.time_base = stream.codec_context.time_base
            out.mux(stream.encode(picture))
            index += 1

        for at, frame in _decoded(source, start, end):
            while index < total and targets[index] + slack < at:
                emit(held[1] if held is not None else frame)
            held = (at, frame)
            if index >= total:
                break
        if held is None:
            raise _unreadable("no picture in the requested window")
        # The last frame covers the remaining instants, unless the pictures stopped well before the stated end.
        if index < total and targets[total - 1] - held[0] > 0.5 + 1 / float(source.fps):
            raise NotAVideo(
                f"That video stops at {_seconds(held[0])} although it says it is {_seconds(source.info.duration)} "
                "long — it looks cut off.",
                hint="The upload was probably interrupted; send the MP4 again.",
            )
        while index < total:
            emit(held[1])
        out.mux(stream.encode())


def _transform(frame: av.VideoFrame, coded: tuple[int, int], turns: int, geometry: Geometry) -> av.VideoFrame:
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


# --- a thumbnail for backends that make none ---------------------------------------------------------------


async def thumbnail(video: Path, dest: Path) -> Path:
    """A JPEG of the middle frame of `video`, written to `dest` (for providers that send no thumbnail)."""
    return await asyncio.to_thread(_thumbnail_sync, Path(video), Path(dest))


def _thumbnail_sync(video: Path, dest: Path) -> Path:
    try:
        with av.open(str(video)) as container:
            stream = container.streams.video[0]
            middle = (container.duration or 0) / 2 / 1_000_000
            picked = None
            for frame in container.decode(stream):
                picked = frame
                if frame.time is not None and frame.time >= middle:
                    break
    except (av.FFmpegError, OSError, IndexError) as exc:
        raise _unreadable(f"thumbnail: {exc}") from None
    if picked is None:
        raise _unreadable("thumbnail: no picture")
    with _partial(dest) as tmp:
        picked.to_image().save(tmp, format="JPEG", quality=85)
    return dest


# --- fitting a finished video under an upload limit ----------------------------------------------------------

# Finished videos come from the API or the offline renderer, not from users; these caps only bound the work.
_FINISHED_LIMITS = ClipLimits(max_bytes=2**40, max_input_seconds=3600, clip_seconds=4.0, min_seconds=0.1)
# Fractions of the original size tried, largest first, once the bitrate is too low for the current size.
_SCALES = (1.0, 0.75, 0.5, 0.375, 0.25)
# Below this many bits per pixel per frame H.264 turns to mush; a smaller picture looks better.
_MIN_BITS_PER_PIXEL = 0.05
_MIN_VIDEO_BITRATE = 48_000
_AUDIO_BITRATE = 64_000
_MIN_AUDIO_BITRATE = 16_000
_AUDIO_SHARE = 0.2
# Container overhead and rate-control overshoot are kept inside the limit by aiming a little below it.
_HEADROOM = 0.9
_ATTEMPTS = 4


async def shrink_to_fit(src: Path, dest: Path, max_bytes: int) -> Path | None:
    """Write a version of the video at `src` no larger than `max_bytes` to `dest`, and return `dest`.

    A file that already fits is copied as is. Otherwise it is re-encoded (H.264, AAC audio kept) at the bitrate the
    limit allows, at a lower resolution when that bitrate is too thin for the full picture, retrying lower if the
    encoder overshoots. Returns None, leaving no `dest`, when even the smallest attempt cannot fit (the video is
    then too long for the limit). Raises NotAVideo when `src` cannot be read.
    """
    return await asyncio.to_thread(_shrink_sync, Path(src), Path(dest), max_bytes)


def _shrink_sync(src: Path, dest: Path, max_bytes: int) -> Path | None:
    if max_bytes <= 0:
        return None
    size = src.stat().st_size
    if size <= max_bytes:
        with _partial(dest) as tmp:
            shutil.copyfile(src, tmp)
        return dest
    source = _open_checked(src, _FINISHED_LIMITS)
    info, fps = source.info, source.fps
    source.close()
    total = max_bytes * 8 * _HEADROOM / info.duration
    audio_bitrate = 0
    if info.has_audio:
        # Sound gets a modest share; when even that is too thin to be worth hearing, the picture gets it all.
        audio_bitrate = int(min(_AUDIO_BITRATE, total * _AUDIO_SHARE))
        if audio_bitrate < _MIN_AUDIO_BITRATE:
            audio_bitrate = 0
    bitrate = total - audio_bitrate
    tmp = _partial_name(dest)
    try:
        for _ in range(_ATTEMPTS):
            if bitrate < _MIN_VIDEO_BITRATE:
                return None
            width, height = _shrunk_size(info.width, info.height, bitrate, float(fps))
            _reencode(src, tmp, width, height, int(bitrate), audio_bitrate)
            written = tmp.stat().st_size
            if written <= max_bytes:
                os.replace(tmp, dest)
                return dest
            # Single-pass rate control overshot: aim lower by the overshoot, and a bit more.
            bitrate *= max_bytes / written * _HEADROOM
        return None
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _shrunk_size(width: int, height: int, bitrate: float, fps: float) -> tuple[int, int]:
    """The largest step down from `width`x`height` at which `bitrate` still gives a watchable picture."""
    for scale in _SCALES:
        w, h = _even_round(width * scale), _even_round(height * scale)
        if bitrate / (w * h * max(fps, 1.0)) >= _MIN_BITS_PER_PIXEL:
            return w, h
    return _even_round(width * _SCALES[-1]), _even_round(height * _SCALES[-1])


def _reencode(src: Path, dest: Path, width: int, height: int, bitrate: int, audio_bitrate: int) -> None:
    source = _open_checked(src, _FINISHED_LIMITS)
    try:
        container, video = source.container, source.stream
        audio = container.streams.audio[0] if container.streams.audio and audio_bitrate else None
        fps = output_rate(source.fps) if source.fps <= _MAX_FPS_OUT else Fraction(source.fps)
        coded = (video.codec_context.width, video.codec_context.height)
        turns = _quarter_turns(source.info.rotation)
        budget = _frame_budget(source.info.duration, source.fps)
        with av.open(str(dest), "w", format="mp4", options={"movflags": "+faststart"}) as out:
            # maxrate/bufsize keep single-pass rate control from spending the whole budget on the first seconds.
            options = {"preset": "medium", "maxrate": str(int(bitrate * 1.5)), "bufsize": str(bitrate * 2)}
            vout = out.add_stream("libx264", rate=fps, options=options)
            vout.width, vout.height, vout.pix_fmt = width, height, "yuv420p"
            vout.bit_rate = bitrate
            vout.codec_context.time_base = 1 / fps
            aout = None
            if audio is not None:
                layout = audio.codec_context.layout.name if audio.codec_context.layout else "stereo"
                aout = out.add_stream("aac", rate=audio.codec_context.sample_rate or 48000, layout=layout)
                aout.bit_rate = audio_bitrate
            streams = [video] if audio is None else [video, audio]
            frames = 0
            last_pts = -1
            for packet in container.demux(*streams):
                for frame in packet.decode():
                    if audio is not None and packet.stream.index == audio.index:
                        frame.pts = None  # let the encoder number samples; the input's may not start at 0
                        out.mux(aout.encode(frame))
                        continue
                    frames += 1
                    if frames > budget:
                        raise _unreadable("frame budget exhausted")
                    at = (frame.time or 0.0) - source.origin
                    pts = max(last_pts + 1, round(at * fps))
                    last_pts = pts
                    if (frame.width, frame.height) != coded:
                        frame = frame.reformat(width=coded[0], height=coded[1])
                    if turns:
                        # Bake the rotation in: the output carries no display matrix.
                        image = np.ascontiguousarray(np.rot90(frame.to_ndarray(format="rgb24"), turns))
                        frame = av.VideoFrame.from_ndarray(image, format="rgb24")
                    picture = frame.reformat(width=width, height=height, format="yuv420p", interpolation="AREA")
                    picture.pts = pts
                    # The decoded frame's time base came along through reformat; the numbering above is in frames.
                    picture.time_base = vout.codec_context.time_base
                    out.mux(vout.encode(picture))
            out.mux(vout.encode())
            if aout is not None:
                out.mux(aout.encode())
    except (av.FFmpegError, OSError) as exc:
        raise _unreadable(f"re-encode: {exc}") from None
    finally:
        source.close()
