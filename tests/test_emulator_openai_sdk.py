"""The emulator over real HTTP: the official `openai` SDK as an independent client, raw requests, faults.

If the SDK cannot parse an answer, the emulator is wrong. The SDK has `videos.create_character`; it has no
`characters` argument on `videos.create` (passed with `extra_body`, which it encodes as `characters[][id]`),
and its `extend`/`edit` only accept an uploaded file for `video`, so those go through the generic `post`.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
from collections.abc import AsyncIterator

import av
import httpx
import openai
import pytest
from openai import AsyncOpenAI
from openai.types import Video as SDKVideo
from PIL import Image

from bot.backends.offline.emulator import run_emulator
from bot.backends.offline.faults import Fault, FaultPlan
from bot.config import Settings
from tests.fixtures.videos import VideosEmulator

# The SDK marks the Sora endpoints deprecated; every call warns, which says nothing about the emulator.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

VIDEO_KEYS = {
    "id",
    "object",
    "model",
    "status",
    "progress",
    "created_at",
    "completed_at",
    "expires_at",
    "prompt",
    "size",
    "seconds",
    "remixed_from_video_id",
    "error",
}


@pytest.fixture
async def sdk(videos_emulator: VideosEmulator) -> AsyncIterator[AsyncOpenAI]:
    client = AsyncOpenAI(base_url=videos_emulator.base_url, api_key="test", max_retries=0)
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
async def http(videos_emulator: VideosEmulator) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=videos_emulator.base_url, headers={"Authorization": "Bearer test"}) as client:
        yield client


def multipart(fields: list[tuple[str, str]]) -> tuple[bytes, str]:
    """A multipart/form-data body with repeated keys kept in order (what httpx's `data=` cannot express)."""
    boundary = "soracast-test-boundary"
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n' for name, value in fields
    ]
    return ("".join(parts) + f"--{boundary}--\r\n").encode(), f"multipart/form-data; boundary={boundary}"


# --- the SDK end to end -----------------------------------------------------------------------------------


async def test_sdk_creates_a_character_and_the_upload_arrives_whole(
    sdk: AsyncOpenAI, videos_emulator: VideosEmulator, clip_maker
) -> None:
    clip = clip_maker(color=(255, 0, 0))

    character = await sdk.videos.create_character(name="Red Mascot", video=clip)

    assert character.id is not None and character.id.startswith("char_")
    assert character.name == "Red Mascot" and character.created_at > 0
    request = videos_emulator.requests.last("create_character")
    assert request.content_type == "multipart/form-data"
    assert request.form == {"name": "Red Mascot"}
    assert request.files["video"].data == clip.read_bytes()
    assert request.headers["authorization"] == "Bearer test"
    fetched = await sdk.videos.get_character(character.id)
    assert (fetched.id, fetched.name) == (character.id, "Red Mascot")


async def test_sdk_creates_polls_and_downloads_a_video(
    sdk: AsyncOpenAI, videos_emulator: VideosEmulator, clip_maker
) -> None:
    character = await sdk.videos.create_character(name="Red", video=clip_maker(color=(255, 0, 0)))

    created = await sdk.videos.create(
        prompt="Red dances in the rain",
        size="1280x720",
        seconds="4",
        extra_body={"characters": [{"id": character.id}]},
    )
    done = await sdk.videos.poll(created.id, poll_interval_ms=1)
    content = await sdk.videos.download_content(created.id)
    data = await content.aread()

    assert created.status == "queued" and created.object == "video"
    assert (done.status, done.progress, done.size, done.seconds) == ("completed", 100, "1280x720", "4")
    assert videos_emulator.requests.last("create_video").form_items[-1] == ("characters[][id]", character.id)
    assert content.response.headers["content-type"] == "video/mp4"
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.name, stream.width, stream.height) == ("h264", 1280, 720)
        assert container.duration / 1_000_000 == pytest.approx(4.0, abs=0.3)
    thumbnail = await sdk.videos.download_content(created.id, variant="thumbnail")
    assert thumbnail.response.headers["content-type"] == "image/jpeg"
    with Image.open(io.BytesIO(await thumbnail.aread())) as image:
        assert image.size == (1280, 720)


async def test_sdk_remix_extend_edit_list_delete(sdk: AsyncOpenAI, videos_emulator: VideosEmulator) -> None:
    source = await sdk.videos.create(prompt="a boat", size="720x1280")
    await videos_emulator.wait_until_done(source.id)

    remix = await sdk.videos.remix(source.id, prompt="a faster boat")
    extension = await sdk.post(
        "/videos/extensions",
        body={"video": {"id": source.id}, "prompt": "it sails on", "seconds": "4"},
        cast_to=SDKVideo,
    )
    edit = await sdk.post("/videos/edits", body={"video": {"id": source.id}, "prompt": "at night"}, cast_to=SDKVideo)
    listed = [video.id async for video in sdk.videos.list(limit=2)]  # the SDK follows `after` itself
    deleted = await sdk.videos.delete(source.id)

    assert remix.remixed_from_video_id == source.id
    assert (extension.seconds, edit.seconds) == ("8", "4")
    assert listed == [edit.id, extension.id, remix.id, source.id]
    assert (deleted.id, deleted.deleted, deleted.object) == (source.id, True, "video.deleted")
    with pytest.raises(openai.NotFoundError):
        await sdk.videos.retrieve(source.id)


async def test_sdk_sees_the_api_errors(sdk: AsyncOpenAI, clip_maker) -> None:
    with pytest.raises(openai.BadRequestError) as bad_size:
        await sdk.videos.create(prompt="x", size="640x480")  # type: ignore[arg-type]
    with pytest.raises(openai.BadRequestError) as person:
        await sdk.videos.create_character(name="Someone", video=clip_maker(title="a person"))
    with pytest.raises(openai.NotFoundError):
        await sdk.videos.get_character("char_missing")

    assert (bad_size.value.status_code, bad_size.value.param, bad_size.value.code) == (400, "size", "invalid_value")
    assert bad_size.value.type == "invalid_request_error"
    assert (person.value.param, person.value.code) == ("video", "human_likeness_not_allowed")


async def test_a_failed_job_reports_its_error(sdk: AsyncOpenAI, videos_emulator: VideosEmulator) -> None:
    created = await sdk.videos.create(prompt="a fox [[moderation]]")

    done = await sdk.videos.poll(created.id, poll_interval_ms=1)

    assert done.status == "failed"
    assert done.error is not None and done.error.code == "moderation_blocked"


async def test_sdk_retries_injected_faults(videos_emulator: VideosEmulator) -> None:
    faults = videos_emulator.faults
    faults.push("create_video", status=500, code="server_error")
    faults.push("create_video", status=429, code="rate_limit_exceeded", retry_after=0.01)
    client = AsyncOpenAI(base_url=videos_emulator.base_url, api_key="test", max_retries=2)
    try:
        video = await client.videos.create(prompt="eventually")
    finally:
        await client.close()

    attempts = videos_emulator.requests.for_route("create_video")
    assert [r.status for r in attempts] == [500, 429, 200]
    assert [r.form["prompt"] for r in attempts] == ["eventually"] * 3
    assert attempts[0].fault and attempts[2].fault is None
    assert video.status == "queued"


# --- response shapes and headers --------------------------------------------------------------------------


async def test_every_required_key_is_present(http: httpx.AsyncClient, videos_emulator: VideosEmulator) -> None:
    created = (await http.post("/videos", json={"prompt": "shape check"})).json()
    listed = (await http.get("/videos", params={"limit": 1})).json()
    deleted = (await http.delete(f"/videos/{created['id']}")).json()

    assert set(created) == VIDEO_KEYS
    assert created["completed_at"] is None and created["error"] is None and created["remixed_from_video_id"] is None
    assert set(listed) == {"object", "data", "first_id", "last_id", "has_more"} and listed["object"] == "list"
    assert set(listed["data"][0]) == VIDEO_KEYS
    assert deleted == {"id": created["id"], "object": "video.deleted", "deleted": True}


async def test_retrieve_sends_poll_after_while_pending(start_videos_emulator) -> None:
    emulator = await start_videos_emulator(time_scale=1.0, job_seconds=60.0, poll_after_ms=750)
    async with httpx.AsyncClient(base_url=emulator.base_url, headers={"api-key": "azure-style"}) as http:
        created = (await http.post("/videos", json={"prompt": "slow"})).json()
        response = await http.get(f"/videos/{created['id']}")

    assert response.status_code == 200
    assert response.headers["openai-poll-after-ms"] == "750"
    assert response.json()["status"] in ("queued", "in_progress")


async def test_content_of_an_unfinished_video_is_a_400(start_videos_emulator) -> None:
    emulator = await start_videos_emulator(time_scale=1.0, job_seconds=60.0)
    async with httpx.AsyncClient(base_url=emulator.base_url, headers={"Authorization": "Bearer k"}) as http:
        created = (await http.post("/videos", json={"prompt": "slow"})).json()
        response = await http.get(f"/videos/{created['id']}/content")

    assert response.status_code == 400
    assert response.json()["error"]["param"] == "video_id"


# --- request encodings ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "encoding",
    ["json", "multipart-indexed", "multipart-brackets", "multipart-json-string", "multipart-plain"],
)
async def test_characters_are_read_in_every_encoding(
    http: httpx.AsyncClient, videos_emulator: VideosEmulator, clip_maker, encoding: str
) -> None:
    a = await videos_emulator.offline.create_character("A", clip_maker())
    b = await videos_emulator.offline.create_character("B", clip_maker())
    ids = [a.id, b.id]
    if encoding == "json":
        response = await http.post("/videos", json={"prompt": "A and B", "characters": [{"id": i} for i in ids]})
    else:
        fields = {
            "multipart-indexed": [(f"characters[{n}][id]", i) for n, i in enumerate(ids)],
            "multipart-brackets": [("characters[][id]", i) for i in ids],
            "multipart-json-string": [("characters", json.dumps([{"id": i} for i in ids]))],
            "multipart-plain": [("characters", i) for i in ids],
        }[encoding]
        body, content_type = multipart([("prompt", "A and B"), *fields])
        response = await http.post("/videos", content=body, headers={"Content-Type": content_type})
        assert videos_emulator.requests.last().content_type == "multipart/form-data"

    assert response.status_code == 200, response.text
    job = videos_emulator.offline._jobs[response.json()["id"]]
    assert [c[0] for c in job.scene.characters] == ids


async def test_too_many_characters_over_http(
    http: httpx.AsyncClient, videos_emulator: VideosEmulator, clip_maker
) -> None:
    ids = [(await videos_emulator.offline.create_character(f"c{n}", clip_maker())).id for n in range(3)]

    response = await http.post("/videos", json={"prompt": "crowd", "characters": [{"id": i} for i in ids]})

    assert response.status_code == 400
    assert response.json() == {
        "error": {
            "message": response.json()["error"]["message"],
            "type": "invalid_request_error",
            "param": "characters",
            "code": "array_above_max_length",
        }
    }


async def test_multipart_extend_with_a_video_id_field(http: httpx.AsyncClient, videos_emulator: VideosEmulator) -> None:
    source = (await http.post("/videos", json={"prompt": "start", "seconds": "4"})).json()
    await videos_emulator.wait_until_done(source["id"])

    body, content_type = multipart([("video[id]", source["id"]), ("prompt", "and on"), ("seconds", "8")])
    response = await http.post("/videos/extensions", content=body, headers={"Content-Type": content_type})

    assert response.status_code == 200, response.text
    assert response.json()["seconds"] == "12"


@pytest.mark.parametrize(
    ("body", "status", "param", "code"),
    [
        ({"prompt": "x", "quality": "hd"}, 400, "quality", "unknown_parameter"),
        ({"model": "sora-2"}, 400, "prompt", "missing_required_parameter"),
        ({"prompt": "x", "seconds": 4}, 400, "seconds", "invalid_type"),
        ({"prompt": "x", "characters": "char_1"}, 400, "characters", "invalid_type"),
    ],
)
async def test_bad_json_bodies(http: httpx.AsyncClient, body: dict, status: int, param: str, code: str) -> None:
    response = await http.post("/videos", json=body)

    assert response.status_code == status
    assert (response.json()["error"]["param"], response.json()["error"]["code"]) == (param, code)


async def test_an_unparsable_json_body_is_a_400(http: httpx.AsyncClient) -> None:
    response = await http.post("/videos", content=b"{not json", headers={"Content-Type": "application/json"})

    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


async def test_unknown_routes_answer_with_an_error_body(http: httpx.AsyncClient) -> None:
    response = await http.get("/videos/video_1/nothing")

    assert response.status_code == 404
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}


# --- auth -------------------------------------------------------------------------------------------------


async def test_a_key_is_required(videos_emulator: VideosEmulator) -> None:
    async with httpx.AsyncClient(base_url=videos_emulator.base_url) as http:
        response = await http.get("/videos")

    assert response.status_code == 401
    assert videos_emulator.requests.last().status == 401


async def test_a_configured_key_must_match(start_videos_emulator) -> None:
    emulator = await start_videos_emulator(api_key="sk-right")
    wrong = AsyncOpenAI(base_url=emulator.base_url, api_key="sk-wrong", max_retries=0)
    right = AsyncOpenAI(base_url=emulator.base_url, api_key="sk-right", max_retries=0)
    try:
        with pytest.raises(openai.AuthenticationError) as caught:
            await wrong.videos.list()
        page = await right.videos.list()
    finally:
        await wrong.close()
        await right.close()

    assert caught.value.code == "invalid_api_key"
    assert page.data == []


# --- fault injection --------------------------------------------------------------------------------------


async def test_a_raw_non_json_fault_body(http: httpx.AsyncClient, videos_emulator: VideosEmulator) -> None:
    videos_emulator.faults.push("GET /videos", status=502, body="<html><h1>502 Bad Gateway</h1></html>")

    response = await http.get("/videos")

    assert response.status_code == 502
    assert response.headers["content-type"].startswith("text/html")
    assert response.text.startswith("<html>")
    assert (await http.get("/videos")).status_code == 200  # one-shot


async def test_fault_headers_and_error_fields(http: httpx.AsyncClient, videos_emulator: VideosEmulator) -> None:
    videos_emulator.faults.push(
        "retrieve_video", status=429, code="insufficient_quota", type="insufficient_quota", retry_after=2.5
    )

    response = await http.get("/videos/video_anything")

    assert response.status_code == 429
    assert response.headers["retry-after"] == "2.5" and response.headers["retry-after-ms"] == "2500"
    assert response.json()["error"]["code"] == "insufficient_quota"
    assert response.json()["error"]["type"] == "insufficient_quota"


async def test_a_delay_fault_makes_the_sdk_time_out(videos_emulator: VideosEmulator) -> None:
    videos_emulator.faults.push("list_videos", status=None, delay=1.0)
    client = AsyncOpenAI(base_url=videos_emulator.base_url, api_key="test", max_retries=0, timeout=0.05)
    try:
        with pytest.raises(openai.APITimeoutError):
            await client.videos.list()
    finally:
        await client.close()


async def test_faults_match_by_path_glob_and_count(http: httpx.AsyncClient, videos_emulator: VideosEmulator) -> None:
    faults = videos_emulator.faults
    faults.push("GET /videos/*/content", status=503, times=2)

    statuses = [(await http.get("/videos/video_x/content")).status_code for _ in range(3)]
    other = await http.get("/videos/video_x")

    assert statuses == [503, 503, 404]
    assert other.status_code == 404 and faults.pending() == 0


def test_fault_patterns_are_checked(videos_emulator: VideosEmulator) -> None:
    with pytest.raises(ValueError):
        videos_emulator.faults.push("create_vidoe", status=500)
    with pytest.raises(ValueError):
        FaultPlan(routes=("create_video",)).push("create_vidoe", status=500)


async def test_fail_rate_one_fails_everything(start_videos_emulator) -> None:
    emulator = await start_videos_emulator(fail_rate=1.0)
    async with httpx.AsyncClient(base_url=emulator.base_url, headers={"Authorization": "Bearer k"}) as http:
        statuses = {(await http.get("/videos")).status_code for _ in range(5)}

    assert statuses <= {500, 502, 503}
    assert emulator.requests.last().fault is not None


def test_the_rate_limit_is_a_token_bucket() -> None:
    now = [0.0]
    plan = FaultPlan(rate_limit=2.0, clock=lambda: now[0])

    first = [plan.random_fault() for _ in range(3)]
    now[0] += 0.5  # one token back
    later = plan.random_fault()

    assert first[:2] == [None, None]
    limited = first[2]
    assert isinstance(limited, Fault) and limited.status == 429 and limited.code == "rate_limit_exceeded"
    assert limited.retry_after == pytest.approx(0.5)
    assert later is None


async def test_the_rate_limit_over_http(start_videos_emulator) -> None:
    emulator = await start_videos_emulator(rate_limit=0.5)  # a burst of one, then one every 2 s
    async with httpx.AsyncClient(base_url=emulator.base_url, headers={"Authorization": "Bearer k"}) as http:
        first, second = await http.get("/videos"), await http.get("/videos")

    assert first.status_code == 200
    assert second.status_code == 429
    assert float(second.headers["retry-after"]) > 0
    assert second.json()["error"]["code"] == "rate_limit_exceeded"


# --- `soracast emulate` -----------------------------------------------------------------------------------


async def test_run_emulator_serves_until_cancelled(tmp_path) -> None:
    settings = Settings(_env_file=None, openai_api_key=None, data_dir=tmp_path / "data")  # type: ignore[call-arg]
    ready: asyncio.Queue[str] = asyncio.Queue()
    task = asyncio.create_task(run_emulator(settings, port=0, time_scale=1000.0, fps=2, on_ready=ready.put_nowait))
    try:
        base_url = await asyncio.wait_for(ready.get(), 10)
        client = AsyncOpenAI(base_url=base_url, api_key="anything", max_retries=0)
        try:
            video = await client.videos.create(prompt="from the CLI")
            done = await client.videos.poll(video.id, poll_interval_ms=1)
        finally:
            await client.close()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    assert base_url.startswith("http://127.0.0.1:") and base_url.endswith("/v1")
    assert done.status == "completed"
    assert (tmp_path / "data" / "emulator" / "videos" / video.id / "job.json").exists()


async def test_an_emulator_bug_is_a_json_500(
    http: httpx.AsyncClient, videos_emulator: VideosEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(**_: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(videos_emulator.offline, "list_videos", broken)

    response = await http.get("/videos")

    assert response.status_code == 500
    assert response.json()["error"]["type"] == "server_error"
