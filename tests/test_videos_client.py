"""HTTPVideosAPI over real HTTP against the Videos API emulator: requests on the wire, answers, errors, retries.

Every test talks to `bot.backends.offline.openai_api` on 127.0.0.1 through the `videos_emulator` fixture and asserts on
what the emulator received (path, headers, JSON or multipart fields, uploaded bytes) and on what the client
returned or raised. Backoff is made tiny; no test measures time.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from bot.backends.openai.client import HTTPVideosAPI
from bot.backends.openai.errors import parse_retry_after
from bot.backends.openai.schemas import ContentVariant, ImageReference, VideoStatus
from bot.config import AuthStyle, Settings
from bot.errors import (
    APIAuthError,
    APINotFound,
    APIRequestRejected,
    APIUnavailable,
    ConfigError,
    HumanLikenessRefused,
    ModerationBlocked,
    QuotaExhausted,
    RateLimited,
)
from tests.fixtures.videos import VideosEmulator

KEY = "sk-test-secret-0123456789"

ClientFactory = Callable[..., HTTPVideosAPI]


@pytest.fixture
async def make_client(videos_emulator: VideosEmulator) -> AsyncIterator[ClientFactory]:
    """`make_client(emulator=None, **options)`: a client on the emulator with tiny backoff, closed after the test."""
    made: list[HTTPVideosAPI] = []

    def make(emulator: VideosEmulator | None = None, **options: Any) -> HTTPVideosAPI:
        base_url = options.pop("base_url", (emulator or videos_emulator).base_url)
        settings: dict[str, Any] = {"timeout": 10.0, "max_retries": 3, "backoff_base": 0.001, "backoff_max": 0.002}
        settings.update(options)
        api_key = settings.pop("api_key", KEY)
        client = HTTPVideosAPI(base_url, api_key, **settings)
        made.append(client)
        return client

    try:
        yield make
    finally:
        for client in made:
            await client.aclose()


@pytest.fixture
def api(make_client: ClientFactory) -> HTTPVideosAPI:
    return make_client()


async def completed_video(api: HTTPVideosAPI, emu: VideosEmulator, prompt: str = "a red fox in snow") -> str:
    video = await api.create_video(prompt, size="1280x720", seconds="4")
    done = await emu.wait_until_done(video.id)
    assert done.status == VideoStatus.COMPLETED
    return video.id


def statuses(emu: VideosEmulator, route: str) -> list[int | None]:
    return [r.status for r in emu.requests.for_route(route)]


# --- routes and what reaches the server ------------------------------------------------------------------


async def test_create_character_sends_name_and_exact_clip_bytes(
    api: HTTPVideosAPI, videos_emulator: VideosEmulator, clip_maker: Callable[..., Path]
) -> None:
    clip = clip_maker("fox.mp4")

    character = await api.create_character("Captain Fox", clip)

    sent = videos_emulator.requests.last("create_character")
    assert (sent.method, sent.path) == ("POST", "/v1/videos/characters")
    assert sent.content_type == "multipart/form-data"
    assert sent.form == {"name": "Captain Fox"}
    upload = sent.files["video"]
    assert upload.data == clip.read_bytes()
    assert (upload.filename, upload.content_type) == ("fox.mp4", "video/mp4")
    assert sent.headers["Authorization"] == f"Bearer {KEY}"
    assert "api-key" not in sent.headers
    assert sent.headers["Idempotency-Key"]
    assert character.id and character.id.startswith("char_")
    assert character.name == "Captain Fox"

    fetched = await api.get_character(character.id)
    assert fetched == character
    assert videos_emulator.requests.last("get_character").path == f"/v1/videos/characters/{character.id}"


async def test_create_video_sends_json_with_characters(
    api: HTTPVideosAPI, videos_emulator: VideosEmulator, clip_maker: Callable[..., Path]
) -> None:
    fox = await api.create_character("Fox", clip_maker())
    owl = await api.create_character("Owl", clip_maker(color=(20, 20, 200)))
    assert fox.id and owl.id

    video = await api.create_video(
        "Fox and Owl share tea", model="sora-2", seconds="8", size="1280x720", character_ids=[fox.id, owl.id]
    )

    sent = videos_emulator.requests.last("create_video")
    assert (sent.method, sent.path, sent.content_type) == ("POST", "/v1/videos", "application/json")
    assert sent.json == {
        "prompt": "Fox and Owl share tea",
        "model": "sora-2",
        "seconds": "8",
        "size": "1280x720",
        "characters": [{"id": fox.id}, {"id": owl.id}],
    }
    assert video.status in (VideoStatus.QUEUED, VideoStatus.IN_PROGRESS)
    assert (video.seconds, video.size, video.prompt) == ("8", "1280x720", "Fox and Owl share tea")


async def test_create_video_sends_an_image_reference_object_as_json(
    api: HTTPVideosAPI, videos_emulator: VideosEmulator
) -> None:
    await api.create_video("a lighthouse", image=ImageReference(image_url="https://example.invalid/a.png"))

    sent = videos_emulator.requests.last("create_video")
    assert sent.json == {"prompt": "a lighthouse", "input_reference": {"image_url": "https://example.invalid/a.png"}}


async def test_create_video_with_image_file_is_multipart_with_indexed_characters(
    api: HTTPVideosAPI, videos_emulator: VideosEmulator, clip_maker: Callable[..., Path], tmp_path: Path
) -> None:
    fox = await api.create_character("Fox", clip_maker())
    owl = await api.create_character("Owl", clip_maker())
    assert fox.id and owl.id
    image = tmp_path / "first-frame.png"
    Image.new("RGB", (1280, 720), (10, 120, 40)).save(image)

    video = await api.create_video("Fox meets Owl", size="1280x720", character_ids=[fox.id, owl.id], image=image)

    sent = videos_emulator.requests.last("create_video")
    assert sent.content_type == "multipart/form-data"
    assert sent.form_items == [
        ("prompt", "Fox meets Owl"),
        ("size", "1280x720"),
        ("characters[0][id]", fox.id),
        ("characters[1][id]", owl.id),
    ]
    reference = sent.files["input_reference"]
    assert reference.data == image.read_bytes()
    assert (reference.filename, reference.content_type) == ("first-frame.png", "image/png")
    assert video.id


async def test_retrieve_reads_poll_after_from_header(
    start_videos_emulator: Callable[..., Awaitable[VideosEmulator]], make_client: ClientFactory
) -> None:
    emu = await start_videos_emulator(poll_after_ms=250, job_seconds=10_000.0)
    api = make_client(emu)
    video = await api.create_video("a slow sunrise")

    polled = await api.retrieve_video(video.id)

    assert emu.requests.last("retrieve_video").path == f"/v1/videos/{video.id}"
    assert polled.id == video.id
    assert polled.status in (VideoStatus.QUEUED, VideoStatus.IN_PROGRESS)
    assert polled.poll_after == pytest.approx(0.25)

    emu.offline.finish_now(video.id)
    finished = await api.retrieve_video(video.id)
    assert finished.status == VideoStatus.COMPLETED
    assert finished.poll_after is None  # no header once the job is done


async def test_list_videos_paginates_with_after(api: HTTPVideosAPI, videos_emulator: VideosEmulator) -> None:
    created = [(await api.create_video(f"scene {n}")).id for n in range(3)]

    first = await api.list_videos(limit=2, order="asc")
    second = await api.list_videos(limit=2, order="asc", after=first.last_id)

    assert [v.id for v in first.data] == created[:2]
    assert first.has_more is True
    assert first.last_id == created[1]
    assert [v.id for v in second.data] == created[2:]
    assert second.has_more is False
    queries = [r.query for r in videos_emulator.requests.for_route("list_videos")]
    assert queries == [{"limit": "2", "order": "asc"}, {"limit": "2", "order": "asc", "after": created[1]}]


async def test_delete_video(api: HTTPVideosAPI, videos_emulator: VideosEmulator) -> None:
    video = await api.create_video("to be deleted")

    deleted = await api.delete_video(video.id)

    sent = videos_emulator.requests.last("delete_video")
    assert (sent.method, sent.path) == ("DELETE", f"/v1/videos/{video.id}")
    assert (deleted.id, deleted.deleted) == (video.id, True)
    with pytest.raises(APINotFound):
        await api.retrieve_video(video.id)


async def test_remix_extend_and_edit_send_their_bodies(api: HTTPVideosAPI, videos_emulator: VideosEmulator) -> None:
    source = await completed_video(api, videos_emulator)

    remix = await api.remix_video(source, "the fox now wears a scarf")
    extended = await api.extend_video(source, "the fox runs off", "4")
    edited = await api.edit_video(source, "make the snow pink")

    remix_sent = videos_emulator.requests.last("remix_video")
    assert (remix_sent.path, remix_sent.json) == (f"/v1/videos/{source}/remix", {"prompt": "the fox now wears a scarf"})
    assert remix.remixed_from_video_id == source
    extend_sent = videos_emulator.requests.last("extend_video")
    assert extend_sent.path == "/v1/videos/extensions"
    assert extend_sent.json == {"video": {"id": source}, "prompt": "the fox runs off", "seconds": "4"}
    edit_sent = videos_emulator.requests.last("edit_video")
    assert edit_sent.path == "/v1/videos/edits"
    assert edit_sent.json == {"video": {"id": source}, "prompt": "make the snow pink"}
    assert len({remix.id, extended.id, edited.id, source}) == 4


async def test_download_streams_content_into_place(
    api: HTTPVideosAPI, videos_emulator: VideosEmulator, tmp_path: Path
) -> None:
    video_id = await completed_video(api, videos_emulator)
    out_dir = tmp_path / "out"
    dest = out_dir / "fox.mp4"

    result = await api.download_content(video_id, dest)
    thumb = await api.download_content(video_id, out_dir / "fox.jpg", ContentVariant.THUMBNAIL)

    expected = await videos_emulator.offline.content_path(video_id, "video")
    assert result == dest
    assert dest.read_bytes() == expected.read_bytes()
    assert thumb.read_bytes() == (await videos_emulator.offline.content_path(video_id, "thumbnail")).read_bytes()
    assert sorted(p.name for p in out_dir.iterdir()) == ["fox.jpg", "fox.mp4"]  # no temporary files left
    queries = [r.query for r in videos_emulator.requests.for_route("download_content")]
    assert queries == [{"variant": "video"}, {"variant": "thumbnail"}]


async def test_failed_download_leaves_no_file(
    make_client: ClientFactory, videos_emulator: VideosEmulator, tmp_path: Path
) -> None:
    api = make_client(max_retries=0)
    video_id = await completed_video(api, videos_emulator)
    videos_emulator.faults.push("GET /videos/*/content", status=502, body="<html><h1>502 Bad Gateway</h1></html>")
    out_dir = tmp_path / "out"
    out_dir.mkdir()

    with pytest.raises(APIUnavailable) as caught:
        await api.download_content(video_id, out_dir / "fox.mp4")

    assert list(out_dir.iterdir()) == []
    assert caught.value.status == 502
    assert caught.value.log_detail and "502 Bad Gateway" in caught.value.log_detail  # non-JSON body kept for logs


# --- errors ----------------------------------------------------------------------------------------------


async def test_400_keeps_param_and_api_message(api: HTTPVideosAPI, videos_emulator: VideosEmulator) -> None:
    with pytest.raises(APIRequestRejected) as caught:
        await api.create_video("a fox", size="999x999")

    error = caught.value
    assert type(error) is APIRequestRejected
    assert (error.status, error.param) == (400, "size")
    assert "999x999" in error.message  # the API's own words are kept
    assert error.hint and "size" in error.hint
    assert videos_emulator.requests.count("create_video") == 1


async def test_401_wrong_key(
    start_videos_emulator: Callable[..., Awaitable[VideosEmulator]], make_client: ClientFactory
) -> None:
    emu = await start_videos_emulator(api_key="sk-the-right-one")
    api = make_client(emu, api_key="sk-a-wrong-one")

    with pytest.raises(APIAuthError) as caught:
        await api.list_videos()

    assert caught.value.status == 401
    assert "OPENAI_API_KEY" in (caught.value.hint or "")
    assert "sk-a-wrong-one" not in f"{caught.value} {caught.value.log_detail}"
    assert emu.requests.count("list_videos") == 1


async def test_403_says_the_feature_may_not_be_enabled(api: HTTPVideosAPI, videos_emulator: VideosEmulator) -> None:
    videos_emulator.faults.push(
        "create_video", status=403, type="invalid_request_error", message="You do not have access to sora-2-pro."
    )

    with pytest.raises(APIAuthError) as caught:
        await api.create_video("a fox", model="sora-2-pro")

    assert caught.value.status == 403
    assert "You do not have access to sora-2-pro." in caught.value.message
    assert "enabled" in (caught.value.hint or "")


async def test_404_unknown_character(api: HTTPVideosAPI, videos_emulator: VideosEmulator) -> None:
    with pytest.raises(APINotFound) as caught:
        await api.get_character("char_missing")

    assert caught.value.status == 404
    assert videos_emulator.requests.count("get_character") == 1


async def test_human_likeness_refusal_is_explained(
    api: HTTPVideosAPI, videos_emulator: VideosEmulator, clip_maker: Callable[..., Path]
) -> None:
    clip = clip_maker(title="a person waving at the camera")

    with pytest.raises(HumanLikenessRefused) as caught:
        await api.create_character("Uncle Bob", clip)

    error = caught.value
    assert (error.status, error.param) == (400, "video")
    assert "human likeness" in error.message  # the API's wording is kept
    assert error.hint and "mascot" in error.hint and "approved" in error.hint
    assert videos_emulator.requests.count("create_character") == 1


async def test_likeness_is_recognised_by_message_text_on_character_uploads_only(
    api: HTTPVideosAPI, videos_emulator: VideosEmulator, clip_maker: Callable[..., Path]
) -> None:
    wording = "This video appears to contain a real person and cannot be used."
    videos_emulator.faults.push("create_character", status=400, message=wording, param="video")
    videos_emulator.faults.push("create_video", status=400, message=wording)

    with pytest.raises(HumanLikenessRefused):
        await api.create_character("Someone", clip_maker())
    with pytest.raises(APIRequestRejected) as caught:
        await api.create_video("someone walking")
    assert type(caught.value) is APIRequestRejected


async def test_moderation_refusal_on_create(api: HTTPVideosAPI, videos_emulator: VideosEmulator) -> None:
    videos_emulator.faults.push(
        "create_video", status=400, code="moderation_blocked", message="Your request was blocked by moderation."
    )

    with pytest.raises(ModerationBlocked) as caught:
        await api.create_video("something not allowed")

    assert caught.value.api_code == "moderation_blocked"
    assert "blocked by moderation" in caught.value.message
    assert videos_emulator.requests.count("create_video") == 1


async def test_failed_job_carries_its_error(api: HTTPVideosAPI, videos_emulator: VideosEmulator) -> None:
    videos_emulator.offline.fail_next(code="moderation_blocked", message="Blocked by our moderation system.")
    video = await api.create_video("a fox")
    await videos_emulator.wait_until_done(video.id)

    polled = await api.retrieve_video(video.id)

    assert polled.status == VideoStatus.FAILED
    assert polled.error is not None
    assert (polled.error.code, polled.error.message) == ("moderation_blocked", "Blocked by our moderation system.")


# --- retries ---------------------------------------------------------------------------------------------


async def test_429_with_retry_after_is_retried_with_one_idempotency_key(
    api: HTTPVideosAPI, videos_emulator: VideosEmulator
) -> None:
    videos_emulator.faults.push("create_video", status=429, code="rate_limit_exceeded", retry_after=0.01, times=2)

    video = await api.create_video("a fox")

    assert statuses(videos_emulator, "create_video") == [429, 429, 200]
    keys = {r.headers["Idempotency-Key"] for r in videos_emulator.requests.for_route("create_video")}
    assert len(keys) == 1
    assert video.prompt == "a fox"


async def test_429_attempts_are_bounded(make_client: ClientFactory, videos_emulator: VideosEmulator) -> None:
    api = make_client(max_retries=2)
    videos_emulator.faults.push("retrieve_video", status=429, code="rate_limit_exceeded", retry_after=0.001, times=5)

    with pytest.raises(RateLimited) as caught:
        await api.retrieve_video("video_whatever")

    assert statuses(videos_emulator, "retrieve_video") == [429, 429, 429]
    assert caught.value.retry_after == pytest.approx(0.001)
    assert caught.value.retryable


async def test_insufficient_quota_is_not_retried(api: HTTPVideosAPI, videos_emulator: VideosEmulator) -> None:
    videos_emulator.faults.push(
        "create_video",
        status=429,
        code="insufficient_quota",
        type="insufficient_quota",
        message="You exceeded your current quota.",
        retry_after=0.001,
    )

    with pytest.raises(QuotaExhausted) as caught:
        await api.create_video("a fox")

    assert videos_emulator.requests.count("create_video") == 1
    assert "exceeded your current quota" in caught.value.message
    assert not caught.value.retryable


async def test_retry_after_beyond_the_cap_raises_instead_of_sleeping(
    api: HTTPVideosAPI, videos_emulator: VideosEmulator
) -> None:
    videos_emulator.faults.push("retrieve_video", status=429, code="rate_limit_exceeded", retry_after=3600)

    with pytest.raises(RateLimited) as caught:
        await api.retrieve_video("video_whatever")

    assert caught.value.retry_after == pytest.approx(3600)
    assert videos_emulator.requests.count("retrieve_video") == 1


async def test_rate_limit_reset_header_is_used_without_retry_after(
    make_client: ClientFactory, videos_emulator: VideosEmulator
) -> None:
    api = make_client(max_retries=0)
    videos_emulator.faults.push(
        "list_videos", status=429, code="rate_limit_exceeded", headers={"x-ratelimit-reset-requests": "6m0s"}
    )

    with pytest.raises(RateLimited) as caught:
        await api.list_videos()

    assert caught.value.retry_after == pytest.approx(360.0)
    assert "6 minutes" in (caught.value.hint or "")


async def test_5xx_on_get_is_retried_until_success(api: HTTPVideosAPI, videos_emulator: VideosEmulator) -> None:
    video = await api.create_video("a fox")
    videos_emulator.faults.push("retrieve_video", status=503, times=2)

    polled = await api.retrieve_video(video.id)

    assert polled.id == video.id
    assert statuses(videos_emulator, "retrieve_video") == [503, 503, 200]


async def test_5xx_on_post_is_not_retried_by_default(api: HTTPVideosAPI, videos_emulator: VideosEmulator) -> None:
    videos_emulator.faults.push("create_video", status=500)

    with pytest.raises(APIUnavailable) as caught:
        await api.create_video("a fox")

    assert caught.value.status == 500
    assert videos_emulator.requests.count("create_video") == 1


async def test_server_may_allow_a_post_retry_with_x_should_retry(
    api: HTTPVideosAPI, videos_emulator: VideosEmulator
) -> None:
    videos_emulator.faults.push("create_video", status=503, headers={"x-should-retry": "true"})

    await api.create_video("a fox")

    assert statuses(videos_emulator, "create_video") == [503, 200]


async def test_opted_in_post_retry_reuploads_the_clip_with_the_same_key(
    make_client: ClientFactory, videos_emulator: VideosEmulator, clip_maker: Callable[..., Path]
) -> None:
    api = make_client(retry_unsafe_posts=True)
    clip = clip_maker()
    videos_emulator.faults.push("create_character", status=500, times=2)

    character = await api.create_character("Fox", clip)

    received = videos_emulator.requests.for_route("create_character")
    assert [r.status for r in received] == [500, 500, 200]
    assert all(r.files["video"].data == clip.read_bytes() for r in received)  # the file is re-read every attempt
    assert len({r.headers["Idempotency-Key"] for r in received}) == 1
    assert character.name == "Fox"


async def test_timeouts_become_api_unavailable_after_bounded_attempts(
    make_client: ClientFactory, videos_emulator: VideosEmulator
) -> None:
    api = make_client(timeout=0.2, max_retries=2)
    videos_emulator.faults.push("retrieve_video", status=None, delay=1.0, times=5)

    with pytest.raises(APIUnavailable) as caught:
        await api.retrieve_video("video_slow")

    assert "in time" in caught.value.message
    assert videos_emulator.requests.count("retrieve_video") == 3


async def test_a_timed_out_post_is_not_sent_again(make_client: ClientFactory, videos_emulator: VideosEmulator) -> None:
    api = make_client(timeout=0.2, max_retries=3)
    videos_emulator.faults.push("create_video", status=None, delay=1.0, times=5)

    with pytest.raises(APIUnavailable):
        await api.create_video("a fox")

    assert videos_emulator.requests.count("create_video") == 1


async def test_connection_refused_is_api_unavailable(make_client: ClientFactory) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    api = make_client(base_url=f"http://127.0.0.1:{port}/v1", max_retries=1)

    with pytest.raises(APIUnavailable) as caught:
        await api.create_video("a fox")

    assert "connect" in caught.value.message.lower()


# --- auth styles, settings, secrecy ----------------------------------------------------------------------


async def test_azure_api_key_header_style(
    start_videos_emulator: Callable[..., Awaitable[VideosEmulator]], make_client: ClientFactory
) -> None:
    emu = await start_videos_emulator(api_key="azure-key-123")
    api = make_client(emu, api_key="azure-key-123", auth_style=AuthStyle.API_KEY)

    await api.list_videos()

    sent = emu.requests.last("list_videos")
    assert sent.status == 200
    assert sent.headers["api-key"] == "azure-key-123"
    assert "Authorization" not in sent.headers


async def test_from_settings_uses_url_key_and_auth_style(
    start_videos_emulator: Callable[..., Awaitable[VideosEmulator]], tmp_path: Path
) -> None:
    emu = await start_videos_emulator(api_key="sk-from-settings")
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        openai_api_key="sk-from-settings",
        api_base_url=emu.base_url,
        api_auth_style=AuthStyle.API_KEY,
        api_max_retries=0,
        data_dir=tmp_path,
    )

    async with HTTPVideosAPI.from_settings(settings) as api:
        page = await api.list_videos()

    assert page.data == []
    assert emu.requests.last("list_videos").headers["api-key"] == "sk-from-settings"
    with pytest.raises(ConfigError):
        HTTPVideosAPI.from_settings(Settings(_env_file=None, openai_api_key=None, data_dir=tmp_path))  # type: ignore[call-arg]


async def test_the_key_is_never_logged_nor_kept_in_errors(
    make_client: ClientFactory, videos_emulator: VideosEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    api = make_client(max_retries=1)
    videos_emulator.faults.push("retrieve_video", status=503, times=2)
    caplog.set_level(logging.DEBUG, logger="bot.backends.openai")

    with pytest.raises(APIUnavailable) as caught:
        await api.retrieve_video("video_x")

    assert "/videos/video_x" in caplog.text  # the path is logged
    assert KEY not in caplog.text
    assert KEY not in f"{caught.value} {caught.value.log_detail} {api!r}"


# --- header parsing --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "7"}, 7.0),
        ({"Retry-After": "0.5"}, 0.5),
        ({"retry-after-ms": "1500", "Retry-After": "9"}, 1.5),
        ({"x-ratelimit-reset-requests": "1s"}, 1.0),
        ({"x-ratelimit-reset-requests": "20ms"}, 0.02),
        ({"x-ratelimit-reset-tokens": "6m0s"}, 360.0),
        ({"x-ratelimit-reset-requests": "1h2m3.5s"}, 3723.5),
        ({"x-ratelimit-reset-requests": "1s", "x-ratelimit-reset-tokens": "30s"}, 30.0),
        ({"x-ratelimit-reset-requests": "soon"}, None),
        ({"Retry-After": "whenever"}, None),
        ({}, None),
    ],
)
def test_parse_retry_after(headers: dict[str, str], expected: float | None) -> None:
    assert parse_retry_after(headers) == (pytest.approx(expected) if expected is not None else None)


def test_parse_retry_after_http_date_and_preferred_limit() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after({"Retry-After": format_datetime(now + timedelta(seconds=90), usegmt=True)}, now=now) == 90
    assert parse_retry_after({"Retry-After": format_datetime(now - timedelta(seconds=5), usegmt=True)}, now=now) == 0
    both = {"x-ratelimit-reset-requests": "2s", "x-ratelimit-reset-tokens": "40s"}
    assert parse_retry_after(both, prefer="requests") == 2.0
