"""The offline Videos API: real MP4s that use their inputs, simulated job progress, and the real API's refusals."""

from __future__ import annotations

import asyncio
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from bot.backends.offline.renderer import OfflineVideosAPI
from bot.backends.offline.spec import MODERATION_TRIGGER
from bot.backends.openai.schemas import ContentVariant, ImageReference, VideoStatus
from bot.errors import APINotFound, APIRequestRejected, HumanLikenessRefused, VideosAPIError
from tests.fixtures.videos import TEST_FPS, fast_offline_api


class FakeClock:
    """A clock tests move by hand, so progress is checked without waiting."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def probe(path: Path) -> tuple[str, str, int, int, float, int]:
    """(codec, pix_fmt, width, height, duration in seconds, decoded frame count)."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        duration = container.duration / 1_000_000 if container.duration else 0.0
        return stream.codec_context.name, stream.codec_context.pix_fmt, stream.width, stream.height, duration, frames


def frame_at(path: Path, index: int) -> np.ndarray:
    with av.open(str(path)) as container:
        for position, frame in enumerate(container.decode(video=0)):
            if position == index:
                return frame.to_ndarray(format="rgb24")
    raise AssertionError(f"{path} has no frame {index}")


def red_share(image: np.ndarray) -> float:
    red = (image[:, :, 0] > 200) & (image[:, :, 1] < 60) & (image[:, :, 2] < 60)
    return float(red.mean())


async def finished(api: OfflineVideosAPI, video_id: str) -> None:
    api.finish_now(video_id)
    assert (await api.retrieve_video(video_id)).status is VideoStatus.COMPLETED


# --- the file is a real video -----------------------------------------------------------------------------


@pytest.mark.parametrize(("size", "seconds"), [("1280x720", "4"), ("720x1280", "8")])
async def test_the_video_is_h264_of_the_requested_size_and_duration(
    offline_api: OfflineVideosAPI, tmp_path: Path, size: str, seconds: str
) -> None:
    video = await offline_api.create_video("a lighthouse in a storm", size=size, seconds=seconds)
    await finished(offline_api, video.id)

    path = await offline_api.download_content(video.id, tmp_path / "out.mp4")

    codec, pix_fmt, width, height, duration, frames = probe(path)
    assert (codec, pix_fmt) == ("h264", "yuv420p")
    assert f"{width}x{height}" == size
    assert duration == pytest.approx(int(seconds), abs=1 / TEST_FPS)
    assert frames == int(seconds) * TEST_FPS


async def test_thumbnail_and_spritesheet_are_images(offline_api: OfflineVideosAPI, tmp_path: Path) -> None:
    video = await offline_api.create_video("a lighthouse", size="1280x720", seconds="4")
    await finished(offline_api, video.id)

    thumb = await offline_api.download_content(video.id, tmp_path / "t.jpg", ContentVariant.THUMBNAIL)
    sheet = await offline_api.download_content(video.id, tmp_path / "s.jpg", ContentVariant.SPRITESHEET)

    with Image.open(thumb) as image:
        image.load()
        assert (image.format, image.size) == ("JPEG", (1280, 720))
    with Image.open(sheet) as image:
        image.load()
        # A grid of 160-px-wide tiles: 16 frames at TEST_FPS make a 5-wide, 4-high sheet.
        assert image.format == "JPEG"
        assert image.size == (5 * 160, 4 * 90)


async def test_the_background_moves(offline_api: OfflineVideosAPI, tmp_path: Path) -> None:
    video = await offline_api.create_video("waves", size="1280x720", seconds="4")
    await finished(offline_api, video.id)
    path = await offline_api.download_content(video.id, tmp_path / "v.mp4")

    first, later = frame_at(path, 0), frame_at(path, 1)

    # Above the caption band, the stripes have scrolled between two consecutive frames.
    changed = np.abs(first[:400].astype(int) - later[:400].astype(int)).max(axis=2) > 10
    assert changed.mean() > 0.2


async def test_a_characters_frames_appear_in_the_video(
    offline_api: OfflineVideosAPI, clip_maker, tmp_path: Path
) -> None:
    red = await offline_api.create_character("Red Box", clip_maker(color=(255, 0, 0), seconds=2.0))
    with_char = await offline_api.create_video("Red Box on a hill", size="1280x720", character_ids=[red.id])
    without = await offline_api.create_video("Red Box on a hill", size="1280x720")
    for video in (with_char, without):
        await finished(offline_api, video.id)

    shown = frame_at(await offline_api.download_content(with_char.id, tmp_path / "a.mp4"), 8)
    control = frame_at(await offline_api.download_content(without.id, tmp_path / "b.mp4"), 8)

    # Same prompt, same background: the red pixels can only come from the character clip.
    assert red_share(shown) > 0.10
    assert red_share(control) < 0.01


async def test_two_characters_both_appear(offline_api: OfflineVideosAPI, clip_maker, tmp_path: Path) -> None:
    red = await offline_api.create_character("Red", clip_maker(color=(255, 0, 0)))
    blue = await offline_api.create_character("Blue", clip_maker(color=(0, 0, 255)))
    video = await offline_api.create_video("Red and Blue", size="1280x720", character_ids=[red.id, blue.id])
    await finished(offline_api, video.id)

    image = frame_at(await offline_api.download_content(video.id, tmp_path / "v.mp4"), 4)

    left, right = image[:, :640], image[:, 640:]
    blue_mask = (right[:, :, 2] > 200) & (right[:, :, 0] < 60) & (right[:, :, 1] < 60)
    assert red_share(left) > 0.05
    assert blue_mask.mean() > 0.05


async def test_a_very_long_prompt_still_renders(offline_api: OfflineVideosAPI, tmp_path: Path) -> None:
    video = await offline_api.create_video("word " * 6400, size="1280x720")
    await finished(offline_api, video.id)

    assert probe(await offline_api.download_content(video.id, tmp_path / "v.mp4"))[2:4] == (1280, 720)


async def test_an_input_reference_image_of_the_right_size_is_used(
    offline_api: OfflineVideosAPI, tmp_path: Path
) -> None:
    image = tmp_path / "ref.png"
    Image.new("RGB", (1280, 720), (0, 255, 0)).save(image)
    video = await offline_api.create_video("a green field", size="1280x720", image=image)
    await finished(offline_api, video.id)

    frame = frame_at(await offline_api.download_content(video.id, tmp_path / "v.mp4"), 0)

    assert frame[:300, :, 1].mean() > 150  # the green reference shows through the background


# --- simulated time ---------------------------------------------------------------------------------------


async def test_status_walks_queued_in_progress_completed(tmp_path: Path) -> None:
    clock = FakeClock()
    api = OfflineVideosAPI(tmp_path / "api", time_scale=2.0, job_seconds=10.0, clock=clock, fps=TEST_FPS)
    video = await api.create_video("a slow sunrise")
    assert (video.status, video.progress) == (VideoStatus.QUEUED, 0)

    seen = []
    for _ in range(6):
        polled = await api.retrieve_video(video.id)
        seen.append((polled.status, polled.progress, polled.poll_after))
        clock.advance(1.0)  # two simulated seconds

    statuses = [status for status, _, _ in seen]
    assert statuses[0] is VideoStatus.QUEUED
    assert VideoStatus.IN_PROGRESS in statuses
    assert statuses[-1] is VideoStatus.COMPLETED
    progress = [p for s, p, _ in seen if s is VideoStatus.IN_PROGRESS]
    assert progress == sorted(progress) and all(0 < p < 100 for p in progress)
    assert all(after is not None and after > 0 for s, _, after in seen if s is not VideoStatus.COMPLETED)
    done = await api.retrieve_video(video.id)
    assert (done.progress, done.poll_after) == (100, None)
    assert done.completed_at is not None and done.expires_at is not None and done.expires_at > done.completed_at


async def test_random_job_durations_stay_in_their_range(tmp_path: Path) -> None:
    clock = FakeClock()
    api = OfflineVideosAPI(tmp_path / "api", job_seconds=(5.0, 60.0), seed=7, clock=clock, persist=False)
    ids = [(await api.create_video(f"job {i}")).id for i in range(40)]

    clock.advance(4.9)
    assert {(await api.retrieve_video(i)).status for i in ids} <= {VideoStatus.QUEUED, VideoStatus.IN_PROGRESS}
    clock.advance(30.0)
    middle = {(await api.retrieve_video(i)).status for i in ids}
    assert VideoStatus.COMPLETED in middle and VideoStatus.IN_PROGRESS in middle
    clock.advance(30.0)
    assert {(await api.retrieve_video(i)).status for i in ids} == {VideoStatus.COMPLETED}


async def test_a_thousand_jobs_need_no_background_tasks(tmp_path: Path) -> None:
    api = OfflineVideosAPI(tmp_path / "api", job_seconds=(5.0, 60.0), seed=1, persist=False)
    tasks_before = len(asyncio.all_tasks())

    ids = [(await api.create_video(f"job {i}")).id for i in range(1000)]
    polled = [await api.retrieve_video(i) for i in ids]

    assert len(asyncio.all_tasks()) == tasks_before
    assert len(polled) == api.job_count == 1000


async def test_a_fixed_poll_after_is_reported(tmp_path: Path) -> None:
    api = OfflineVideosAPI(tmp_path / "api", job_seconds=30.0, poll_after_ms=250)

    video = await api.create_video("x")

    assert (await api.retrieve_video(video.id)).poll_after == 0.25


# --- failures after acceptance ----------------------------------------------------------------------------


async def test_the_moderation_trigger_fails_the_job(offline_api: OfflineVideosAPI, tmp_path: Path) -> None:
    video = await offline_api.create_video(f"a fox {MODERATION_TRIGGER}")
    assert video.status is VideoStatus.QUEUED  # accepted first, like the real API

    offline_api.finish_now(video.id)
    failed = await offline_api.retrieve_video(video.id)

    assert failed.status is VideoStatus.FAILED
    assert failed.error is not None and failed.error.code == "moderation_blocked"
    with pytest.raises(APIRequestRejected):
        await offline_api.download_content(video.id, tmp_path / "v.mp4")


async def test_injected_failures(offline_api: OfflineVideosAPI) -> None:
    offline_api.fail_next(code="internal_error", message="GPU on fire")
    first = await offline_api.create_video("one")
    second = await offline_api.create_video("two")
    offline_api.fail_video(second.id, code="moderation_blocked")

    for video in (first, second):
        offline_api.finish_now(video.id)
    one, two = await offline_api.retrieve_video(first.id), await offline_api.retrieve_video(second.id)

    assert (one.status, one.error.code, one.error.message) == (VideoStatus.FAILED, "internal_error", "GPU on fire")
    assert (two.status, two.error.code) == (VideoStatus.FAILED, "moderation_blocked")


# --- refusals ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "param", "code"),
    [
        ({"size": "640x480"}, "size", "invalid_value"),
        ({"seconds": "5"}, "seconds", "invalid_value"),
        ({"seconds": 4}, "seconds", "invalid_type"),
        ({"model": "sora-3"}, "model", "invalid_value"),
        ({"prompt": ""}, "prompt", "empty_string"),
        ({"prompt": "   "}, "prompt", "empty_string"),
        ({"prompt": "x" * 32001}, "prompt", "string_above_max_length"),
        ({"character_ids": ["char_nope"]}, "characters[0].id", "invalid_value"),
        ({"image": ImageReference()}, "input_reference", "invalid_value"),
    ],
)
async def test_create_refuses_what_the_api_refuses(
    offline_api: OfflineVideosAPI, kwargs: dict, param: str, code: str
) -> None:
    prompt = kwargs.pop("prompt", "a valid prompt")

    with pytest.raises(APIRequestRejected) as caught:
        await offline_api.create_video(prompt, **kwargs)

    assert (caught.value.status, caught.value.param, caught.value.api_code) == (400, param, code)
    assert offline_api.job_count == 0


async def test_too_many_characters_are_refused(tmp_path: Path, clip_maker) -> None:
    api = fast_offline_api(tmp_path / "api", max_characters=2)
    ids = [(await api.create_character(f"c{i}", clip_maker())).id for i in range(3)]

    with pytest.raises(APIRequestRejected) as caught:
        await api.create_video("three of them", character_ids=ids)

    assert (caught.value.status, caught.value.param, caught.value.api_code) == (
        400,
        "characters",
        "array_above_max_length",
    )
    assert (await api.create_video("two of them", character_ids=ids[:2])).status is VideoStatus.QUEUED


async def test_dated_snapshots_of_allowed_models_are_accepted(offline_api: OfflineVideosAPI) -> None:
    assert (await offline_api.create_video("x", model="sora-2-2025-10-06")).model == "sora-2-2025-10-06"


async def test_a_mismatched_input_reference_is_refused(offline_api: OfflineVideosAPI, tmp_path: Path) -> None:
    image = tmp_path / "small.png"
    Image.new("RGB", (640, 360)).save(image)

    with pytest.raises(APIRequestRejected) as caught:
        await offline_api.create_video("x", size="1280x720", image=image)

    assert caught.value.param == "input_reference"


@pytest.mark.parametrize(("name", "code"), [("", "empty_string"), ("n" * 81, "string_above_max_length")])
async def test_character_names_must_be_1_to_80_characters(
    offline_api: OfflineVideosAPI, clip_maker, name: str, code: str
) -> None:
    with pytest.raises(APIRequestRejected) as caught:
        await offline_api.create_character(name, clip_maker())

    assert (caught.value.status, caught.value.param, caught.value.api_code) == (400, "name", code)


def _broken_clips(tmp_path: Path, clip: Path) -> dict[str, Path]:
    data = clip.read_bytes()
    files = {
        "empty": b"",
        "text": b"this is not a video\n" * 50,
        "truncated": data[: len(data) // 3],
    }
    paths = {}
    for label, content in files.items():
        paths[label] = tmp_path / f"{label}.mp4"
        paths[label].write_bytes(content)
    return paths


@pytest.mark.parametrize("kind", ["empty", "text", "truncated"])
async def test_a_clip_that_is_not_a_video_is_refused(
    offline_api: OfflineVideosAPI, clip_maker, tmp_path: Path, kind: str
) -> None:
    broken = _broken_clips(tmp_path, clip_maker())[kind]

    with pytest.raises(APIRequestRejected) as caught:
        await offline_api.create_character("Broken", broken)

    assert (caught.value.status, caught.value.param, caught.value.api_code) == (400, "video", "invalid_video")


@pytest.mark.parametrize("seconds", [0.5, 11.0])
async def test_a_clip_outside_the_duration_window_is_refused(
    offline_api: OfflineVideosAPI, clip_maker, seconds: float
) -> None:
    with pytest.raises(APIRequestRejected) as caught:
        await offline_api.create_character("Odd length", clip_maker(seconds=seconds, fps=4))

    assert (caught.value.param, caught.value.api_code) == ("video", "invalid_video_duration")


@pytest.mark.parametrize("metadata", [{"title": "A Person waving"}, {"comment": "shows a real person"}])
async def test_a_clip_marked_as_a_person_is_refused_as_human_likeness(
    offline_api: OfflineVideosAPI, clip_maker, metadata: dict[str, str]
) -> None:
    with pytest.raises(HumanLikenessRefused) as caught:
        await offline_api.create_character("Someone", clip_maker(**metadata))

    assert (caught.value.status, caught.value.param, caught.value.api_code) == (
        400,
        "video",
        "human_likeness_not_allowed",
    )


async def test_a_clip_with_harmless_metadata_is_accepted(offline_api: OfflineVideosAPI, clip_maker) -> None:
    character = await offline_api.create_character("Mascot", clip_maker(title="our mascot", comment="orange cat"))

    assert character.id is not None and character.id.startswith("char_")
    assert (await offline_api.get_character(character.id)).name == "Mascot"


@pytest.mark.parametrize(
    "call",
    [
        lambda api, tmp: api.retrieve_video("video_nope"),
        lambda api, tmp: api.delete_video("video_nope"),
        lambda api, tmp: api.download_content("video_nope", tmp / "x.mp4"),
        lambda api, tmp: api.remix_video("video_nope", "again"),
        lambda api, tmp: api.extend_video("video_nope", "more", "4"),
        lambda api, tmp: api.edit_video("video_nope", "bluer"),
        lambda api, tmp: api.get_character("char_nope"),
    ],
)
async def test_unknown_ids_are_404(offline_api: OfflineVideosAPI, tmp_path: Path, call) -> None:
    with pytest.raises(APINotFound) as caught:
        await call(offline_api, tmp_path)

    assert caught.value.status == 404


@pytest.mark.parametrize(
    "call",
    [
        lambda api, vid: api.remix_video(vid, "again"),
        lambda api, vid: api.extend_video(vid, "more", "4"),
        lambda api, vid: api.edit_video(vid, "bluer"),
    ],
)
async def test_only_completed_videos_can_be_a_source(tmp_path: Path, call) -> None:
    api = fast_offline_api(tmp_path / "api", time_scale=1.0, job_seconds=60.0)
    pending = await api.create_video("not yet")

    with pytest.raises(APIRequestRejected) as caught:
        await call(api, pending.id)

    assert caught.value.status == 400 and caught.value.api_code == "invalid_video_status"


async def test_content_of_an_unfinished_video_is_refused(tmp_path: Path) -> None:
    api = fast_offline_api(tmp_path / "api", time_scale=1.0, job_seconds=60.0)
    pending = await api.create_video("not yet")

    with pytest.raises(APIRequestRejected) as caught:
        await api.download_content(pending.id, tmp_path / "v.mp4")

    assert caught.value.param == "video_id"


# --- remix, extend, edit ----------------------------------------------------------------------------------


async def test_remix_extend_and_edit(offline_api: OfflineVideosAPI, clip_maker, tmp_path: Path) -> None:
    red = await offline_api.create_character("Red", clip_maker(color=(255, 0, 0)))
    source = await offline_api.create_video("Red walks", size="1280x720", seconds="4", character_ids=[red.id])
    await finished(offline_api, source.id)

    remix = await offline_api.remix_video(source.id, "Red runs")
    extension = await offline_api.extend_video(source.id, "Red keeps walking", "4")
    edit = await offline_api.edit_video(source.id, "make it night")
    for video in (remix, extension, edit):
        await finished(offline_api, video.id)

    assert (remix.remixed_from_video_id, remix.size, remix.seconds) == (source.id, "1280x720", "4")
    assert extension.seconds == "8" and extension.remixed_from_video_id is None
    assert edit.seconds == "4"
    remix_file = await offline_api.download_content(remix.id, tmp_path / "r.mp4")
    assert red_share(frame_at(remix_file, 4)) > 0.05  # the remix keeps the source's characters
    assert probe(await offline_api.download_content(extension.id, tmp_path / "e.mp4"))[4] == pytest.approx(
        8.0, abs=1 / TEST_FPS
    )
    assert probe(await offline_api.download_content(edit.id, tmp_path / "d.mp4"))[4] == pytest.approx(
        4.0, abs=1 / TEST_FPS
    )


async def test_extension_seconds_must_be_allowed(offline_api: OfflineVideosAPI) -> None:
    source = await offline_api.create_video("x")
    offline_api.finish_now(source.id)

    with pytest.raises(APIRequestRejected) as caught:
        await offline_api.extend_video(source.id, "more", "3")

    assert caught.value.param == "seconds"


# --- listing and deleting ---------------------------------------------------------------------------------


async def test_list_pages_with_a_cursor(offline_api: OfflineVideosAPI) -> None:
    ids = [(await offline_api.create_video(f"video {i}")).id for i in range(5)]

    seen: list[str] = []
    after = None
    pages = 0
    while True:
        page = await offline_api.list_videos(limit=2, after=after)
        pages += 1
        seen += [video.id for video in page.data]
        assert page.first_id == page.data[0].id and page.last_id == page.data[-1].id
        if not page.has_more:
            break
        after = page.last_id

    assert seen == list(reversed(ids)) and pages == 3
    ascending = await offline_api.list_videos(limit=100, order="asc")
    assert [video.id for video in ascending.data] == ids and not ascending.has_more


@pytest.mark.parametrize(("kwargs", "param"), [({"limit": 101}, "limit"), ({"order": "up"}, "order")])
async def test_list_refuses_bad_parameters(offline_api: OfflineVideosAPI, kwargs: dict, param: str) -> None:
    with pytest.raises(APIRequestRejected) as caught:
        await offline_api.list_videos(**kwargs)

    assert caught.value.param == param


async def test_delete_removes_the_video_and_its_files(offline_api: OfflineVideosAPI, tmp_path: Path) -> None:
    video = await offline_api.create_video("gone soon")
    await finished(offline_api, video.id)
    await offline_api.download_content(video.id, tmp_path / "v.mp4")

    deleted = await offline_api.delete_video(video.id)

    assert (deleted.id, deleted.object, deleted.deleted) == (video.id, "video.deleted", True)
    assert not (offline_api.root / "videos" / video.id / "video.mp4").exists()
    with pytest.raises(APINotFound):
        await offline_api.retrieve_video(video.id)
    assert video.id not in [v.id for v in (await offline_api.list_videos()).data]


# --- rendering modes and caching --------------------------------------------------------------------------


async def test_concurrent_downloads_render_once(
    offline_api: OfflineVideosAPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []
    original = offline_api._renderer.render
    monkeypatch.setattr(offline_api._renderer, "render", lambda *a: (calls.append(a), original(*a))[1])
    video = await offline_api.create_video("once")
    await finished(offline_api, video.id)

    paths = await asyncio.gather(
        *(offline_api.download_content(video.id, tmp_path / f"{i}.mp4") for i in range(3)),
        offline_api.download_content(video.id, tmp_path / "t.jpg", ContentVariant.THUMBNAIL),
    )

    assert len(calls) == 1
    assert len({p.read_bytes() for p in paths[:3]}) == 1


async def test_shared_mode_renders_once_per_shape(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    api = fast_offline_api(tmp_path / "api", render="shared")
    calls = []
    original = api._renderer.render
    monkeypatch.setattr(api._renderer, "render", lambda *a: (calls.append(a), original(*a))[1])
    first = await api.create_video("one", size="1280x720")
    second = await api.create_video("two", size="1280x720")
    other = await api.create_video("three", size="720x1280")
    for video in (first, second, other):
        await finished(api, video.id)

    files = [await api.download_content(v.id, tmp_path / f"{v.id}.mp4") for v in (first, second, other)]

    assert len(calls) == 2
    assert files[0].read_bytes() == files[1].read_bytes()
    assert probe(files[2])[2:4] == (720, 1280)


async def test_stub_mode_makes_a_small_valid_mp4_of_the_right_length(tmp_path: Path) -> None:
    api = fast_offline_api(tmp_path / "api", render="stub")
    video = await api.create_video("cheap", size="1280x720", seconds="8")
    await finished(api, video.id)

    codec, _, width, height, duration, _ = probe(await api.download_content(video.id, tmp_path / "v.mp4"))

    assert codec == "h264" and max(width, height) == 160 and width > height
    assert duration == pytest.approx(8.0, abs=0.5)


# --- persistence ------------------------------------------------------------------------------------------


async def test_state_survives_a_restart(tmp_path: Path, clip_maker) -> None:
    root = tmp_path / "api"
    first = fast_offline_api(root)
    character = await first.create_character("Keeper", clip_maker())
    video = await first.create_video("kept", character_ids=[character.id])
    first.finish_now(video.id)

    second = fast_offline_api(root)

    assert (await second.get_character(character.id)).name == "Keeper"
    assert (await second.retrieve_video(video.id)).status is VideoStatus.COMPLETED
    again = await second.create_video("again", character_ids=[character.id])
    assert again.status is VideoStatus.QUEUED
    assert again.id != video.id  # the same seed must not hand out a stored id again
    assert [v.id for v in (await second.list_videos(order="asc")).data] == [video.id, again.id]


async def test_errors_are_videos_api_errors_with_a_status(offline_api: OfflineVideosAPI) -> None:
    # The emulator turns exactly these attributes into the `{"error": {...}}` body.
    with pytest.raises(VideosAPIError) as caught:
        await offline_api.create_video("x", size="1x1")

    error = caught.value
    assert (error.status, error.param, error.api_code) == (400, "size", "invalid_value")
    assert "1x1" in error.message
