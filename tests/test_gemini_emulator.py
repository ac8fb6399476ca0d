"""The Interactions API emulator, driven by Google's own SDK: it answers what the SDK parses and refuses what the
real API refuses, in Google's error envelope."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
from google import genai
from google.genai import _interactions as gx
from google.genai import types

from bot.backends.offline.gemini_requests import frame_size
from tests.fixtures.gemini import GEMINI_KEY, GeminiEmulator


def _client(emulator: GeminiEmulator, key: str = GEMINI_KEY) -> genai.Client:
    options = types.HttpOptions(
        base_url=emulator.origin, api_version="v1beta", retry_options=types.HttpRetryOptions(attempts=1)
    )
    return genai.Client(api_key=key, http_options=options)


def _video(seconds: str = "4s", **changes: Any) -> dict[str, Any]:
    return {"type": "video", "aspect_ratio": "16:9", "resolution": "360p", "duration": seconds, **changes}


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


async def _create(client: genai.Client, **body: Any) -> Any:
    values: dict[str, Any] = {
        "model": "gemini-omni-1.1-flash",
        "input": "a lighthouse",
        "background": True,
        "response_format": _video(),
    }
    values.update(body)
    return await client.aio.interactions.create(**values)


async def _refusal(call: Any) -> tuple[int, dict[str, Any]]:
    with pytest.raises(gx.APIStatusError) as caught:
        await call
    body = caught.value.body
    assert isinstance(body, dict)
    return caught.value.status_code, body["error"]


async def test_a_background_job_runs_to_a_video_the_sdk_reads(gemini_emulator: GeminiEmulator) -> None:
    client = _client(gemini_emulator)
    created = await _create(client)
    assert created.status == "in_progress" and created.id.startswith("v1_")
    done = None
    for _ in range(200):
        done = await client.aio.interactions.get(created.id)
        if done.status == "completed":
            break
    assert done is not None and done.status == "completed"
    assert done.output_video is not None and done.output_video.mime_type == "video/mp4"
    assert base64.b64decode(done.output_video.data)[4:8] == b"ftyp"
    await client.aio.aclose()


async def test_a_link_delivery_downloads_through_the_files_api(gemini_emulator: GeminiEmulator, tmp_path: Path) -> None:
    client = _client(gemini_emulator)
    created = await _create(client, response_format=_video(delivery="uri"))
    gemini_emulator.offline.finish_now("video_" + created.id.removeprefix("v1_"))
    done = await client.aio.interactions.get(created.id)
    uri = done.output_video.uri
    assert uri and done.output_video.data is None
    name = "files/" + uri.rsplit("/", 1)[-1]
    info = await client.aio.files.get(name=name)
    assert str(info.state).endswith("ACTIVE")
    await client.aio.files.download(file=name, destination=str(tmp_path / "out.mp4"))
    assert (tmp_path / "out.mp4").read_bytes()[4:8] == b"ftyp"
    await client.aio.aclose()


@pytest.mark.parametrize(
    "body, status, words",
    [
        ({"response_format": _video("6")}, 400, "a duration is a string with a unit"),
        ({"response_format": _video("11s")}, 400, "3 to 10 seconds"),
        ({"response_format": _video(aspect_ratio="4:3")}, 400, "aspect_ratio"),
        ({"response_format": _video(resolution="8k")}, 400, "resolution"),
        ({"background": False}, 400, "background"),
        ({"model": "veo-3.1-generate-preview"}, 404, "is not found"),
        ({"extra_body": {"characters": [{"id": "char_1"}]}}, 400, 'Unknown name "characters"'),
        ({"generation_config": {"video_config": {"task": "extend"}}}, 400, "needs a source"),
    ],
)
async def test_what_the_api_refuses_is_refused_in_googles_envelope(
    gemini_emulator: GeminiEmulator, body: dict[str, Any], status: int, words: str
) -> None:
    client = _client(gemini_emulator)
    code, error = await _refusal(_create(client, **body))
    assert code == status and error["code"] == status and words in error["message"]
    assert error["status"] == ("NOT_FOUND" if status == 404 else "INVALID_ARGUMENT")
    assert gemini_emulator.offline.job_count == 0
    await client.aio.aclose()


async def test_references_over_the_limits_are_refused(gemini_emulator: GeminiEmulator, clip_maker) -> None:
    client = _client(gemini_emulator)
    short = _b64(clip_maker(seconds=2.0))
    long = _b64(clip_maker(seconds=4.0))
    video = {"type": "video", "mime_type": "video/mp4"}
    four = [{"type": "text", "text": "four clips"}] + [{**video, "data": short}] * 4
    code, error = await _refusal(_create(client, input=four))
    assert code == 400 and "Too many reference videos: 4" in error["message"]
    one_long = [{"type": "text", "text": "a long clip"}, {**video, "data": long}]
    code, error = await _refusal(_create(client, input=one_long))
    assert code == 400 and "at most 3 seconds" in error["message"]
    assert gemini_emulator.offline.job_count == 0
    await client.aio.aclose()


async def test_a_reference_of_a_real_person_is_blocked_at_create(gemini_emulator: GeminiEmulator, clip_maker) -> None:
    client = _client(gemini_emulator)
    person = _b64(clip_maker(seconds=2.0, title="a person"))
    parts = [{"type": "text", "text": "dance"}, {"type": "video", "mime_type": "video/mp4", "data": person}]
    code, error = await _refusal(_create(client, input=parts))
    assert code == 400 and "real person" in error["message"] and "safety" in error["message"]
    await client.aio.aclose()


async def test_keys_are_checked_like_google_checks_them(gemini_emulator: GeminiEmulator) -> None:
    wrong = _client(gemini_emulator, key="wrong")
    code, error = await _refusal(_create(wrong))
    assert code == 400 and error["details"][0]["reason"] == "API_KEY_INVALID"
    await wrong.aio.aclose()
    import httpx

    async with httpx.AsyncClient(base_url=gemini_emulator.origin) as http:
        missing = await http.post("/v1beta/interactions", json={"model": "gemini-omni-1.1-flash"})
    assert missing.status_code == 403 and missing.json()["error"]["status"] == "PERMISSION_DENIED"


async def test_cancel_ends_a_running_job_as_cancelled(gemini_emulator: GeminiEmulator) -> None:
    gemini_emulator.offline.time_scale = 0.001  # the job will not finish by itself during the test
    client = _client(gemini_emulator)
    created = await _create(client)
    cancelled = await client.aio.interactions.cancel(created.id)
    assert cancelled.status == "cancelled"
    assert (await client.aio.interactions.get(created.id)).status == "cancelled"
    await client.aio.aclose()


def test_frame_sizes_follow_aspect_and_resolution() -> None:
    assert frame_size("16:9", "720p") == "1280x720"
    assert frame_size("9:16", "1080p") == "1080x1920"
    assert frame_size("16:9", "4k") == "3840x2160"


async def _done(emulator: GeminiEmulator, client: genai.Client, **body: Any) -> Any:
    created = await _create(client, **body)
    emulator.offline.finish_now("video_" + created.id.removeprefix("v1_"))
    done = await client.aio.interactions.get(created.id)
    assert done.status == "completed"
    return done


async def test_an_edit_or_extension_of_an_earlier_interaction_is_checked_as_google_checks_it(
    gemini_emulator: GeminiEmulator,
) -> None:
    client = _client(gemini_emulator)
    source = await _done(gemini_emulator, client, model="gemini-omni-1.2-flash", response_format=_video("15s"))
    edit = {"generation_config": {"video_config": {"task": "edit"}}, "previous_interaction_id": source.id}
    extend = {"generation_config": {"video_config": {"task": "extend"}}, "previous_interaction_id": source.id}
    model = {"model": "gemini-omni-1.2-flash"}
    jobs = gemini_emulator.offline.job_count

    # An edit keeps its source's length and frame: a duration or an aspect ratio is refused.
    code, error = await _refusal(_create(client, **model, **edit, response_format=_video("4s")))
    assert code == 400 and "response_format.duration" in error["message"] and "task 'edit'" in error["message"]
    code, error = await _refusal(
        _create(client, **model, **edit, response_format={"type": "video", "aspect_ratio": "9:16"})
    )
    assert code == 400 and "response_format.aspect_ratio" in error["message"]
    # An extension adds 3–10 s, and 1.2 extends to 30 s in all: 15 + 16 is refused, so is 15 + 10 + 10.
    sixteen = {"type": "video", "duration": "16s"}
    code, error = await _refusal(_create(client, **model, **extend, response_format=sixteen))
    assert code == 400 and "An extension adds 3 to 10 seconds" in error["message"]
    assert gemini_emulator.offline.job_count == jobs

    edited = await _create(client, **model, **edit, response_format={"type": "video"})
    longer = await _create(client, **model, **extend, response_format={"type": "video", "duration": "10s"})
    gemini_emulator.offline.finish_now("video_" + longer.id.removeprefix("v1_"))
    assert (await client.aio.interactions.get(longer.id)).status == "completed"
    again = {"generation_config": {"video_config": {"task": "extend"}}, "previous_interaction_id": longer.id}
    ten = {"type": "video", "duration": "10s"}
    code, error = await _refusal(_create(client, **model, **again, response_format=ten))
    assert code == 400 and "at most 30 seconds" in error["message"] and "25 + 10" in error["message"]
    assert edited.status == "in_progress"
    await client.aio.aclose()


async def test_an_unknown_interaction_is_googles_400_invalid_interaction_name(gemini_emulator: GeminiEmulator) -> None:
    client = _client(gemini_emulator)
    for call in (
        client.aio.interactions.get("v1_doesnotexist0000"),
        client.aio.interactions.get("not-an-id"),
        client.aio.interactions.cancel("v1_doesnotexist0000"),
        _create(
            client,
            generation_config={"video_config": {"task": "edit"}},
            previous_interaction_id="v1_doesnotexist0000",
            response_format={"type": "video"},
        ),
    ):
        code, error = await _refusal(call)
        assert code == 400 and error["status"] == "INVALID_ARGUMENT"
        assert error["message"].startswith("Invalid interaction name")
    await client.aio.aclose()


async def test_a_webhook_config_is_checked_and_kept_with_the_interaction(gemini_emulator: GeminiEmulator) -> None:
    client = _client(gemini_emulator)
    code, error = await _refusal(_create(client, webhook_config={"uris": ["ftp://not-a-web-address"]}))
    assert code == 400 and "webhook_config.uris" in error["message"]
    config = {"user_metadata": {"soracast_generation": "gabcdefgh"}}
    created = await _create(client, webhook_config=config)
    read = await client.aio.interactions.get(created.id)
    assert read.webhook_config is not None and read.webhook_config.user_metadata == config["user_metadata"]
    await client.aio.aclose()


@pytest.mark.parametrize("marker, status", [("[[requires_action]]", "requires_action"), ("[[idle]]", "idle")])
async def test_a_marked_prompt_leaves_the_interaction_waiting_in_that_state(
    gemini_emulator: GeminiEmulator, marker: str, status: str
) -> None:
    client = _client(gemini_emulator)
    created = await _create(client, input=f"a lighthouse {marker}")
    gemini_emulator.offline.finish_now("video_" + created.id.removeprefix("v1_"))
    assert (await client.aio.interactions.get(created.id)).status == status
    assert (await client.aio.interactions.cancel(created.id)).status == "cancelled"
    await client.aio.aclose()
