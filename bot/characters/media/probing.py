"""Probing: read what a video file is from its container, refusing what breaks a cap, before any frame is used.

`check_upload` judges an attachment from its name, type and size before it is downloaded; `probe` and
`open_checked` read a file with only the MP4/QuickTime or Matroska/WebM demuxer, recognised from its first bytes.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

import av
from pydantic import BaseModel, Field

from bot.errors import ClipTooLarge, ClipWrongLength, InvalidClip, NotAVideo

if TYPE_CHECKING:
    from av.container import InputContainer
    from av.video.stream import VideoStream

    from bot.config import Settings


#: File extensions judged by when the platform gives no (or only a generic) content type.
ACCEPTED_EXTENSIONS = frozenset({".mp4", ".m4v", ".mov", ".qt", ".3gp", ".webm", ".mkv"})
# Platforms send these when they do not know; they say nothing either way.
_GENERIC_CONTENT_TYPES = frozenset({"application/octet-stream", "binary/octet-stream", "application/x-binary"})

_MP4_DEMUXER = "mov"  # FFmpeg's one demuxer for MP4, MOV, M4V and 3GP
_MKV_DEMUXER = "matroska"  # also reads WebM
# Top-level box types an MP4/QuickTime file can start with (after the 4-byte size).
_MP4_FIRST_BOXES = frozenset({b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot"})
_EBML_MAGIC = b"\x1a\x45\xdf\xa3"

#: The highest frame rate soracast writes (prepared clips, shrunk videos); faster sources are read at this rate.
MAX_FPS_OUT = 30
# Anything outside these is a broken header, not a real frame rate.
_SANE_FPS = (0.5, 1000.0)
# Bigger than 8K is not a phone clip, and decoding it could exhaust memory.
_MAX_INPUT_SIDE = 8192
_MAX_INPUT_PIXELS = 8192 * 4320
# Smaller than this is no picture at all (a broken header, or a tracking pixel).
_MIN_INPUT_SIDE = 16
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


def unreadable(detail: str | None = None) -> NotAVideo:
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
    return await asyncio.to_thread(probe_sync, Path(path), limits)


@dataclass
class Source:
    """An open input with what the probe checked about it; closes the container with it."""

    container: InputContainer
    stream: VideoStream
    info: ClipInfo
    #: Seconds of the stream's first timestamp, so user times count from the first picture.
    origin: float
    fps: Fraction

    def close(self) -> None:
        self.container.close()


def probe_sync(path: Path, limits: ClipLimits) -> ClipInfo:
    source = open_checked(path, limits)
    source.close()
    return source.info


def open_checked(path: Path, limits: ClipLimits) -> Source:
    """Open `path` with a known demuxer and apply every cap; the caller owns (and must close) the result."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise unreadable(f"{path} does not exist") from None
    if size == 0:
        raise NotAVideo("That file is empty.", hint=_send_mp4_hint(limits))
    if size > limits.max_bytes:
        raise _too_large(size, limits)
    demuxer = _sniff_demuxer(path)
    if demuxer is None:
        raise unreadable("not an MP4/QuickTime or Matroska/WebM header")
    try:
        container = av.open(str(path), format=demuxer, metadata_errors="replace")
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise unreadable(f"open: {exc}") from None
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


def _inspect(container: InputContainer, size: int, limits: ClipLimits) -> Source:
    stream = _video_stream(container)
    if stream is None:
        raise NotAVideo(
            "That file has no video in it (only sound, or nothing at all).",
            hint="Send an MP4 video clip.",
        )
    width, height = stream.codec_context.width, stream.codec_context.height
    if width <= 0 or height <= 0:
        raise unreadable("video stream has no picture size")
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
        raise unreadable("no duration")
    if duration > limits.max_input_seconds:
        raise ClipWrongLength(
            f"That video is {shown_seconds(duration)} long; "
            f"soracast reads clips up to {shown_seconds(limits.max_input_seconds)}.",
            hint=f"Trim it to a few seconds (only {limits.clip_seconds:g} s are used) and send it again.",
        )
    _check_not_cut_off(stream, size)
    fps = _frame_rate(stream, duration)
    origin = float(stream.start_time * stream.time_base) if stream.start_time is not None and stream.time_base else 0.0
    # Decoder threads can only be chosen before the first decode; a cut or a shrink decodes many frames.
    stream.thread_type = "AUTO"
    # One picture proves the stream decodes, and carries the rotation phones store for portrait clips.
    first = _first_frame(container, stream)
    rotation = quarter_turns(first.rotation) * 90
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
    return Source(container=container, stream=stream, info=info, origin=origin, fps=fps)


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
                raise unreadable("no stated duration and too many packets to count")
            if packet.pts is None or packet.time_base is None:
                continue
            at = float(packet.pts * packet.time_base)
            first = at if first is None else min(first, at)
            last = max(last, at + float((packet.duration or 0) * packet.time_base))
            if first is not None and last - first > limits.max_input_seconds:
                break  # already too long: no need to read the rest
    except (av.FFmpegError, OSError) as exc:
        raise unreadable(f"scan: {exc}") from None
    _rewind(container)
    return 0.0 if first is None else last - first


def _rewind(container: InputContainer) -> None:
    try:
        container.seek(0)
    except (av.FFmpegError, OSError) as exc:
        raise unreadable(f"seek: {exc}") from None


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
    return Fraction(MAX_FPS_OUT)


def _first_frame(container: InputContainer, stream: VideoStream) -> av.VideoFrame:
    try:
        for count, packet in enumerate(container.demux(stream)):
            if count > _FIRST_FRAME_PACKETS:
                break
            for frame in packet.decode():
                return frame
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise unreadable(f"decode: {exc}") from None
    raise unreadable("no picture decoded")


def quarter_turns(degrees: float | None) -> int:
    """Counter-clockwise quarter turns in 0–3 (odd angles are rounded to the nearest quarter)."""
    if not degrees or not math.isfinite(degrees):
        return 0
    return round(degrees / 90) % 4


def _signed_degrees(degrees: int) -> int:
    return degrees - 360 if degrees > 180 else degrees


def shown_seconds(value: float) -> str:
    """`4 s`, `1.5 s`, `3 min 20 s` — how a length is shown to users."""
    if value >= 90:
        minutes, rest = divmod(round(value), 60)
        return f"{minutes} min {rest} s" if rest else f"{minutes} min"
    return f"{value:.1f} s".replace(".0 s", " s")
