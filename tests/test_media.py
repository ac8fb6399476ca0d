"""bot.characters.media: what happens to the clips users send and the videos soracast posts.

Every clip here is made on the spot by tests/fixtures/media.py and kept tiny, so the suite runs in seconds.
Outputs are checked by opening them again with PyAV, never by trusting what the code under test reports.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import pytest

from bot.characters import media
from bot.config import Settings
from bot.errors import ClipTooLarge, ClipWrongLength, InvalidClip, NotAVideo
from tests.fixtures.media import Mp4Factory

MB = 2**20


@pytest.fixture
def limits() -> media.ClipLimits:
    """The shipped defaults: 100 MB, 180 s in, 3 s out, at least 2 s, 1280 px on the long side."""
    return media.ClipLimits.from_settings(Settings(_env_file=None))  # type: ignore[call-arg]


@dataclass
class Opened:
    """A video as PyAV reads it back."""

    codec: str
    pix_fmt: str | None
    width: int
    height: int
    fps: float
    duration: float
    frames: int
    audio_streams: int
    metadata: dict[str, str]
    #: Decoded pictures, RGB, in order.
    pictures: list[np.ndarray]


def open_video(path: Path) -> Opened:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        pictures = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
        return Opened(
            codec=stream.codec_context.name,
            pix_fmt=stream.codec_context.pix_fmt,
            width=stream.codec_context.width,
            height=stream.codec_context.height,
            fps=float(stream.average_rate),
            duration=float(stream.duration * stream.time_base),
            frames=len(pictures),
            audio_streams=len(container.streams.audio),
            metadata=dict(container.metadata),
            pictures=pictures,
        )


def files_in(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir())


def mark_position(picture: np.ndarray, axis: int) -> float:
    """Where the fixture's moving square is along `axis` (1 = left→right, 0 = top→bottom), as a mean index."""
    background = picture[0, -1].astype(int)  # the square never reaches the top-right corner
    differs = np.abs(picture.astype(int) - background).sum(axis=2) > 60
    return float(np.nonzero(differs.any(axis=1 - axis))[0].mean())


def assert_api_ready(clip: Opened, width: int, height: int, seconds: float) -> None:
    """What the Videos API wants for a character: H.264 yuv420p, this size and length, no sound."""
    assert (clip.codec, clip.pix_fmt) == ("h264", "yuv420p")
    assert (clip.width, clip.height) == (width, height)
    assert clip.audio_streams == 0
    assert abs(clip.duration - seconds) <= 1 / clip.fps
    assert abs(clip.frames - seconds * clip.fps) <= 1


# --- cutting and shaping a character clip --------------------------------------------------------------------


async def test_a_30_second_clip_is_cut_to_3_s(make_mp4: Mp4Factory, limits: media.ClipLimits, tmp_path: Path) -> None:
    source = make_mp4("holiday.mp4", seconds=30.0, fps=12)

    info = await media.prepare_character_clip(source, tmp_path / "character.mp4", limits)

    # 3 s: the longest reference clip Gemini Omni takes, and inside the 2–4 s Sora characters worked best at.
    clip = open_video(tmp_path / "character.mp4")
    assert_api_ready(clip, 320, 180, 3.0)
    assert (info.width, info.height, info.has_audio, info.video_codec) == (320, 180, False, "h264")
    assert info.duration == pytest.approx(3.0, abs=1 / 12)


async def test_the_cut_starts_where_the_user_asked(
    make_mp4: Mp4Factory, limits: media.ClipLimits, tmp_path: Path
) -> None:
    source = make_mp4("holiday.mp4", seconds=30.0, fps=12)
    original = open_video(source).pictures

    await media.prepare_character_clip(source, tmp_path / "character.mp4", limits, start=10.0)

    first = open_video(tmp_path / "character.mp4").pictures[0]
    # The moving square sits where it was 10 s (120 frames) into the source, not where it was at 0 s.
    assert mark_position(first, axis=1) == pytest.approx(mark_position(original[120], axis=1), abs=2)
    assert abs(mark_position(first, axis=1) - mark_position(original[0], axis=1)) > 20


async def test_a_1080x1920_portrait_phone_clip_with_sound_is_scaled_to_720x1280_without_sound(
    make_mp4: Mp4Factory, limits: media.ClipLimits, tmp_path: Path
) -> None:
    source = make_mp4("IMG_0042.MOV", width=1080, height=1920, seconds=2.5, fps=10, audio=True, title="Home")

    info = await media.prepare_character_clip(source, tmp_path / "character.mp4", limits)

    clip = open_video(tmp_path / "character.mp4")
    assert_api_ready(clip, 720, 1280, 2.5)
    assert info.is_portrait and info.resolution == "720x1280"
    assert clip.metadata.get("title") == "Home"


async def test_a_clip_keeps_its_title_and_comment_but_not_where_it_was_filmed(
    limits: media.ClipLimits, tmp_path: Path
) -> None:
    source = tmp_path / "IMG_0043.mp4"
    tagged = {"title": "Biscuit", "comment": "our dog", "location": "+48.8584+002.2945/", "model": "iPhone 15"}
    with av.open(str(source), "w") as container:
        container.metadata.update(tagged)
        stream = container.add_stream("libx264", rate=12, options={"preset": "ultrafast"})
        stream.width, stream.height, stream.pix_fmt = 320, 180, "yuv420p"
        for index in range(30):
            frame = av.VideoFrame.from_ndarray(np.full((180, 320, 3), index * 8, np.uint8), format="rgb24")
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    assert {"location", "title"} <= open_video(source).metadata.keys()

    await media.prepare_character_clip(source, tmp_path / "character.mp4", limits)

    kept = open_video(tmp_path / "character.mp4").metadata
    assert (kept.get("title"), kept.get("comment")) == ("Biscuit", "our dog")
    assert "location" not in kept and "model" not in kept


async def test_a_rotated_phone_clip_is_turned_upright(
    make_mp4: Mp4Factory, limits: media.ClipLimits, tmp_path: Path
) -> None:
    # Phones store portrait video as landscape pictures plus "turn 90° clockwise to show".
    source = make_mp4("portrait.mp4", width=320, height=180, seconds=2.0, fps=12, rotation=-90)

    probed = await media.probe(source, limits)
    await media.prepare_character_clip(source, tmp_path / "character.mp4", limits)

    assert (probed.width, probed.height, probed.rotation) == (180, 320, -90)
    clip = open_video(tmp_path / "character.mp4")
    assert (clip.width, clip.height) == (180, 320)
    # The square moves left→right in the stored pictures, so top→bottom once turned clockwise.
    assert mark_position(clip.pictures[5], axis=0) > mark_position(clip.pictures[0], axis=0) + 20


async def test_a_4_3_clip_is_cropped_to_16_9_and_a_60_fps_clip_runs_at_30(
    make_mp4: Mp4Factory, limits: media.ClipLimits, tmp_path: Path
) -> None:
    source = make_mp4("old.mp4", width=320, height=240, seconds=2.0, fps=60)

    await media.prepare_character_clip(source, tmp_path / "character.mp4", limits)

    clip = open_video(tmp_path / "character.mp4")
    assert_api_ready(clip, 320, 180, 2.0)
    assert clip.fps == 30


async def test_a_matroska_clip_is_accepted(make_mp4: Mp4Factory, limits: media.ClipLimits, tmp_path: Path) -> None:
    source = make_mp4("screen.mkv", seconds=3.0)

    info = await media.prepare_character_clip(source, tmp_path / "character.mp4", limits)

    assert info.container == "mp4"
    assert_api_ready(open_video(tmp_path / "character.mp4"), 320, 180, 3.0)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        pytest.param((1920, 1080), (1280, 720), id="1080p-landscape"),
        pytest.param((1080, 1920), (720, 1280), id="1080p-portrait"),
        pytest.param((3840, 2160), (1280, 720), id="4k"),
        pytest.param((960, 720), (1280, 720), id="720p-4:3-cropped-then-hd"),
        pytest.param((1792, 1024), (1280, 720), id="sora-1792x1024"),
        pytest.param((640, 480), (640, 360), id="small-4:3-kept-small"),
        pytest.param((480, 640), (360, 640), id="small-3:4-portrait"),
        pytest.param((64, 64), (64, 36), id="square-counts-as-landscape"),
    ],
)
def test_the_output_size_is_16_9_or_9_16(source: tuple[int, int], expected: tuple[int, int]) -> None:
    geometry = media.plan_geometry(*source)

    assert (geometry.width, geometry.height) == expected
    # The crop is centred and inside the picture.
    assert 0 <= geometry.crop_x and geometry.crop_x + geometry.crop_width <= source[0]
    assert 0 <= geometry.crop_y and geometry.crop_y + geometry.crop_height <= source[1]
    assert abs(geometry.crop_width / geometry.crop_height - expected[0] / expected[1]) < 0.02


async def test_a_clip_shorter_than_4_s_is_kept_whole(
    make_mp4: Mp4Factory, limits: media.ClipLimits, tmp_path: Path
) -> None:
    source = make_mp4("short.mp4", seconds=3.0)

    await media.prepare_character_clip(source, tmp_path / "character.mp4", limits)

    assert_api_ready(open_video(tmp_path / "character.mp4"), 320, 180, 3.0)


async def test_a_start_near_the_end_keeps_what_remains(
    make_mp4: Mp4Factory, limits: media.ClipLimits, tmp_path: Path
) -> None:
    source = make_mp4("six.mp4", seconds=6.0)

    await media.prepare_character_clip(source, tmp_path / "character.mp4", limits, start=3.5)

    assert_api_ready(open_video(tmp_path / "character.mp4"), 320, 180, 2.5)


# --- refusals ------------------------------------------------------------------------------------------------


async def test_a_1_5_s_clip_is_refused_as_too_short(
    make_mp4: Mp4Factory, limits: media.ClipLimits, tmp_path: Path
) -> None:
    source = make_mp4("blink.mp4", seconds=1.5)

    with pytest.raises(ClipWrongLength, match=r"only 1\.5 s long.*at least 2 s"):
        await media.prepare_character_clip(source, tmp_path / "character.mp4", limits)
    assert files_in(tmp_path) == [source.name]  # no output, not even a partial one


async def test_start_past_the_end_is_refused_with_the_clips_length(
    make_mp4: Mp4Factory, limits: media.ClipLimits, tmp_path: Path
) -> None:
    source = make_mp4("three.mp4", seconds=3.0)

    with pytest.raises(ClipWrongLength, match=r"The clip is 3 s long, so a start at 5 s is past its end") as caught:
        await media.prepare_character_clip(source, tmp_path / "character.mp4", limits, start=5.0)
    assert caught.value.hint == "Pick a start between 0 and 1 s (at least 2 s must remain)."


async def test_a_start_leaving_less_than_2_s_is_refused(
    make_mp4: Mp4Factory, limits: media.ClipLimits, tmp_path: Path
) -> None:
    source = make_mp4("three.mp4", seconds=3.0)

    with pytest.raises(ClipWrongLength, match="too close to its end"):
        await media.prepare_character_clip(source, tmp_path / "character.mp4", limits, start=1.5)


async def test_a_negative_start_is_refused(make_mp4: Mp4Factory, limits: media.ClipLimits, tmp_path: Path) -> None:
    with pytest.raises(InvalidClip, match="cannot be negative"):
        await media.prepare_character_clip(make_mp4(), tmp_path / "character.mp4", limits, start=-1.0)


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        pytest.param("text_renamed", "not a video soracast can read", id="a-text-file-renamed-mp4"),
        pytest.param("truncated", "not a video soracast can read", id="a-truncated-mp4"),
        pytest.param("truncated_faststart", "cut off", id="a-truncated-mp4-whose-index-survived"),
        pytest.param("empty", "empty", id="an-empty-file"),
        pytest.param("audio_only", "no video in it", id="sound-only"),
    ],
)
async def test_a_file_that_is_not_a_readable_video_is_refused(
    make_broken_file: Callable[..., Path], limits: media.ClipLimits, tmp_path: Path, kind: str, expected: str
) -> None:
    broken = make_broken_file(kind)

    with pytest.raises(NotAVideo, match=expected) as caught:
        await media.probe(broken, limits)
    assert "MP4" in caught.value.user_text()
    with pytest.raises(NotAVideo):
        await media.prepare_character_clip(broken, tmp_path / "character.mp4", limits)
    assert not (tmp_path / "character.mp4").exists()


def _garble_frames(path: Path) -> None:
    """Keep the container's header but destroy every coded picture, so any decoding attempt would fail."""
    data = bytearray(path.read_bytes())
    start = data.index(b"mdat") + 4
    data[start:] = bytes(len(data) - start)
    path.write_bytes(bytes(data))


async def test_a_clip_longer_than_the_cap_is_refused_from_its_header_alone(
    make_mp4: Mp4Factory, limits: media.ClipLimits
) -> None:
    source = make_mp4("long.mp4", seconds=5.0, faststart=True)
    _garble_frames(source)
    tight = limits.model_copy(update={"max_input_seconds": 4.0})

    with pytest.raises(ClipWrongLength, match=r"5 s long; soracast reads clips up to 4 s"):
        await media.probe(source, tight)


async def test_a_file_over_the_byte_cap_is_refused_before_it_is_opened(
    make_mp4: Mp4Factory, limits: media.ClipLimits
) -> None:
    source = make_mp4("big.mp4", faststart=True)
    _garble_frames(source)
    tight = limits.model_copy(update={"max_bytes": source.stat().st_size - 1})

    with pytest.raises(ClipTooLarge, match="the limit is"):
        await media.probe(source, tight)


async def test_probe_describes_an_ordinary_clip(make_mp4: Mp4Factory, limits: media.ClipLimits) -> None:
    source = make_mp4("clip.mov", width=640, height=360, seconds=3.0, fps=24, audio=True)

    info = await media.probe(source, limits)

    assert info.model_dump() == {
        "container": "mov",
        "duration": pytest.approx(3.0, abs=1 / 24),
        "width": 640,
        "height": 360,
        "fps": 24.0,
        "video_codec": "h264",
        "has_audio": True,
        "size_bytes": source.stat().st_size,
        "rotation": 0,
    }


# --- the pre-download check ----------------------------------------------------------------------------------


def test_an_oversized_upload_is_refused_before_download(limits: media.ClipLimits) -> None:
    with pytest.raises(ClipTooLarge) as caught:
        media.check_upload("wedding.mp4", "video/mp4", 150 * MB, limits)

    assert caught.value.message == "That file is 150.0 MB; the limit is 100 MB."
    assert caught.value.hint is not None and caught.value.hint.startswith("Upload an MP4 under 100 MB")


@pytest.mark.parametrize(
    ("filename", "content_type"),
    [
        pytest.param("cat.png", "image/png", id="an-image"),
        pytest.param("notes.mp4", "text/plain", id="text-whatever-its-name"),
        pytest.param("song.mp3", "audio/mpeg", id="audio"),
        pytest.param("notes.txt", None, id="a-txt-with-no-type"),
        pytest.param("cat.gif", "application/octet-stream", id="a-gif-with-a-generic-type"),
    ],
)
def test_an_upload_that_is_not_a_video_is_refused_before_download(
    limits: media.ClipLimits, filename: str, content_type: str | None
) -> None:
    with pytest.raises(NotAVideo) as caught:
        media.check_upload(filename, content_type, 1 * MB, limits)

    assert "Send an MP4" in caught.value.user_text()


@pytest.mark.parametrize(
    ("filename", "content_type"),
    [
        pytest.param("clip.mp4", "video/mp4", id="mp4"),
        pytest.param("IMG_0042.MOV", "video/quicktime", id="iphone-mov"),
        pytest.param("clip.webm", "video/webm; codecs=vp9", id="webm-with-parameters"),
        pytest.param("clip.mp4", "application/octet-stream", id="generic-type-trusts-the-extension"),
        pytest.param("clip.m4v", None, id="no-type"),
        pytest.param(None, None, id="nothing-known-the-probe-decides"),
    ],
)
def test_an_ordinary_video_upload_passes_the_pre_check(
    limits: media.ClipLimits, filename: str | None, content_type: str | None
) -> None:
    media.check_upload(filename, content_type, 5 * MB, limits)
    media.check_upload(filename, content_type, None, limits)  # size unknown


def test_an_empty_upload_is_refused_before_download(limits: media.ClipLimits) -> None:
    with pytest.raises(NotAVideo, match="empty"):
        media.check_upload("clip.mp4", "video/mp4", 0, limits)


# --- shrinking a finished video for a chat upload limit ------------------------------------------------------


def write_busy_video(path: Path, seconds: float = 3.0, fps: int = 24) -> Path:
    """A video with sound whose every frame is noise, so its size is all picture — like a detailed generation."""
    rng = np.random.default_rng(7)
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=fps, options={"preset": "ultrafast", "crf": "12"})
        video.width, video.height, video.pix_fmt = 192, 108, "yuv420p"
        sound = container.add_stream("aac", rate=16000, layout="mono")
        for index in range(round(seconds * fps)):
            frame = av.VideoFrame.from_ndarray(rng.integers(0, 256, (108, 192, 3), np.uint8), format="rgb24")
            frame.pts = index
            container.mux(video.encode(frame))
        container.mux(video.encode())
        samples = round(seconds * 16000) // 1024 * 1024
        tone = (0.1 * np.sin(np.arange(samples, dtype=np.float32) / 8)).astype(np.float32)
        for offset in range(0, samples, 1024):
            chunk = av.AudioFrame.from_ndarray(tone[None, offset : offset + 1024], format="fltp", layout="mono")
            chunk.sample_rate, chunk.pts = 16000, offset
            container.mux(sound.encode(chunk))
        container.mux(sound.encode())
    return path


async def test_shrink_to_fit_brings_a_video_under_the_limit(tmp_path: Path) -> None:
    source = write_busy_video(tmp_path / "generation.mp4", seconds=3.0)
    limit = source.stat().st_size // 4

    result = await media.shrink_to_fit(source, tmp_path / "small.mp4", limit)

    assert result == tmp_path / "small.mp4"
    assert result.stat().st_size <= limit
    video = open_video(result)
    assert video.codec == "h264"
    assert abs(video.duration - 3.0) <= 1 / video.fps
    assert video.audio_streams == 1  # the sound stays when the limit leaves room for it


async def test_shrink_to_fit_copies_a_video_that_already_fits(make_mp4: Mp4Factory, tmp_path: Path) -> None:
    source = make_mp4("generation.mp4")

    result = await media.shrink_to_fit(source, tmp_path / "same.mp4", source.stat().st_size)

    assert result is not None and result.read_bytes() == source.read_bytes()


async def test_shrink_to_fit_gives_up_when_nothing_can_fit(make_mp4: Mp4Factory, tmp_path: Path) -> None:
    source = make_mp4("generation.mp4", seconds=4.0)

    assert await media.shrink_to_fit(source, tmp_path / "tiny.mp4", 2_000) is None
    assert files_in(tmp_path) == ["generation.mp4"]  # no partial file left behind


# --- the event loop stays free -------------------------------------------------------------------------------


class GatedExecutor(ThreadPoolExecutor):
    """Runs each job only after the event loop proves it is still running, and records which thread ran it."""

    def __init__(self, loop_ran: threading.Event) -> None:
        super().__init__(max_workers=1, thread_name_prefix="media-test")
        self.loop_ran = loop_ran
        self.ran_in: list[str] = []

    def submit(self, fn, /, *args, **kwargs):  # type: ignore[no-untyped-def, override]
        def gated():  # type: ignore[no-untyped-def]
            # If the job blocked the loop, the loop could never set this; the timeout only bounds a failing run.
            if not self.loop_ran.wait(timeout=30):
                raise AssertionError("the event loop did not run while the probe was in progress")
            self.ran_in.append(threading.current_thread().name)
            return fn(*args, **kwargs)

        return super().submit(gated)


async def test_probe_runs_off_the_event_loop(make_mp4: Mp4Factory, limits: media.ClipLimits) -> None:
    source = make_mp4()
    loop_ran = threading.Event()
    executor = GatedExecutor(loop_ran)
    asyncio.get_running_loop().set_default_executor(executor)

    async def loop_is_free() -> None:
        loop_ran.set()

    info, _ = await asyncio.gather(media.probe(source, limits), loop_is_free())

    assert info.width == 320
    assert executor.ran_in and executor.ran_in[0].startswith("media-test")
    assert threading.current_thread().name not in executor.ran_in
