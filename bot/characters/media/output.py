"""Output: what soracast makes of a finished video — a thumbnail, and a copy that fits a platform's upload limit."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from bot.characters.media.cut import even_round, frame_budget, output_rate
from bot.characters.media.encode import partial_file, partial_name
from bot.characters.media.probing import MAX_FPS_OUT, ClipLimits, open_checked, quarter_turns, unreadable

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
        raise unreadable(f"thumbnail: {exc}") from None
    if picked is None:
        raise unreadable("thumbnail: no picture")
    with partial_file(dest) as tmp:
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
        with partial_file(dest) as tmp:
            shutil.copyfile(src, tmp)
        return dest
    source = open_checked(src, _FINISHED_LIMITS)
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
    tmp = partial_name(dest)
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
        w, h = even_round(width * scale), even_round(height * scale)
        if bitrate / (w * h * max(fps, 1.0)) >= _MIN_BITS_PER_PIXEL:
            return w, h
    return even_round(width * _SCALES[-1]), even_round(height * _SCALES[-1])


def _reencode(src: Path, dest: Path, width: int, height: int, bitrate: int, audio_bitrate: int) -> None:
    source = open_checked(src, _FINISHED_LIMITS)
    try:
        container, video = source.container, source.stream
        audio = container.streams.audio[0] if container.streams.audio and audio_bitrate else None
        fps = output_rate(source.fps) if source.fps <= MAX_FPS_OUT else Fraction(source.fps)
        coded = (video.codec_context.width, video.codec_context.height)
        turns = quarter_turns(source.info.rotation)
        budget = frame_budget(source.info.duration, source.fps)
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
                        raise unreadable("frame budget exhausted")
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
        raise unreadable(f"re-encode: {exc}") from None
    finally:
        source.close()
