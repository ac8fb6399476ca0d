"""The emulated fal queue, driven by fal-client: it answers what fal answers, and refuses what fal refuses with
fal's error shapes. If the stock client cannot follow it, the emulator is wrong."""

from __future__ import annotations

import asyncio
import base64
import io
from pathlib import Path
from typing import Any

import fal_client
import httpx
import pytest
from PIL import Image

from bot.backends.fal.errors import map_fal_error, read_error
from bot.backends.fal.queue import QueueClient, SubmitFailed, queue_http_client
from bot.backends.offline.emulator import run_emulator
from bot.config import Settings
from bot.errors import APIAuthError, APINotFound, APIRequestRejected, HumanLikenessRefused
from tests.fixtures.fal import FAL_KEY, FalEmulator

KLING_O1 = "fal-ai/kling-video/o1/standard/reference-to-video"
KLING_O3 = "fal-ai/kling-video/o3/standard/reference-to-video"
VIDU = "fal-ai/vidu/q3/reference-to-video/mix"
VEO = "fal-ai/veo3.1/reference-to-video"
#: Where a test's arguments want an image: replaced by the URL of a still uploaded through fal-client.
IMG = "<uploaded still>"


def jpeg(color: tuple[int, int, int] = (200, 40, 40), comment: str | None = None) -> bytes:
    buffer = io.BytesIO()
    options = {"comment": comment.encode()} if comment else {}
    Image.new("RGB", (48, 27), color).save(buffer, "JPEG", **options)
    return buffer.getvalue()


def image_uri(color: tuple[int, int, int] = (200, 40, 40)) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(jpeg(color)).decode()


def element(references: int = 1) -> dict[str, Any]:
    return {"frontal_image_url": IMG, "reference_image_urls": [IMG] * references}


def queue_client(emulator: FalEmulator, key: str = FAL_KEY) -> QueueClient:
    http = queue_http_client(key, timeout=10.0, queue_url=emulator.origin)
    return QueueClient(key, http, timeout=10.0, fal_url=emulator.origin)


async def with_uploads(client: QueueClient, arguments: Any) -> Any:
    """`arguments` with every IMG replaced by a still uploaded to the (emulated) CDN."""
    if arguments == IMG:
        return await client.upload(jpeg(), "image/jpeg", file_name="still.jpg")
    if isinstance(arguments, dict):
        return {k: await with_uploads(client, v) for k, v in arguments.items()}
    if isinstance(arguments, list):
        return [await with_uploads(client, v) for v in arguments]
    return arguments


async def refusal(emulator: FalEmulator, model: str, arguments: dict[str, Any], key: str = FAL_KEY) -> httpx.Response:
    """Submit through fal-client (stills uploaded first) and return fal's error answer (it must be refused)."""
    client = queue_client(emulator, key)
    try:
        sent = await with_uploads(client, arguments) if key == FAL_KEY else arguments
        with pytest.raises(SubmitFailed) as refused:
            await client.submit(model, sent)
    finally:
        await client.aclose()
    assert refused.value.response is not None
    return refused.value.response


# --- the happy path, with the stock client ------------------------------------------------------------------


async def test_the_stock_fal_client_submits_follows_the_returned_urls_and_gets_the_video(
    fal_emulator: FalEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The stock client reaches a plain-http host only through its module constants (never done in soracast).
    for constant in ("QUEUE_URL_FORMAT", "REST_URL", "CDN_URL"):
        monkeypatch.setattr(fal_client.client, constant, fal_emulator.origin + ("/" if "FORMAT" in constant else ""))
    client = fal_client.AsyncClient(key=FAL_KEY)
    updates: list[Any] = []
    front = await client.upload(jpeg((200, 40, 40)), "image/jpeg", file_name="front.jpg")
    side = await client.upload(jpeg((0, 90, 200)), "image/jpeg", file_name="side.jpg")

    result = await client.subscribe(
        KLING_O1,
        {
            "prompt": "@Element1 waves",
            "duration": "3",
            "elements": [{"frontal_image_url": front, "reference_image_urls": [side, side]}],
        },
        with_logs=True,
        on_queue_update=updates.append,
    )

    assert result["video"]["content_type"] == "video/mp4"
    async with httpx.AsyncClient() as plain:
        video = await plain.get(result["video"]["url"])
    assert video.status_code == 200 and video.content[4:8] == b"ftyp"
    [submit] = fal_emulator.requests.for_route("submit")
    assert submit.path == f"/{KLING_O1}" and submit.headers["Authorization"] == f"Key {FAL_KEY}"
    followed = [r.path for r in fal_emulator.requests if r.route in ("status", "result")]
    assert followed and all(p.startswith("/fal-ai/kling-video/requests/") for p in followed), "sub-path dropped"
    assert isinstance(updates[-1], fal_client.Completed) and updates[-1].error is None
    assert [r.route for r in fal_emulator.requests][:4] == ["storage_token", "cdn_upload", "cdn_upload", "submit"]
    async with httpx.AsyncClient() as plain:
        assert (await plain.get(front)).content == jpeg((200, 40, 40)), "the CDN serves the uploaded bytes"


async def test_a_status_built_with_the_models_sub_path_is_not_found(fal_emulator: FalEmulator) -> None:
    client = queue_client(fal_emulator)
    try:
        handle = await client.submit(KLING_O1, {"prompt": "a fox", "duration": "5"})
        guessed = handle.status_url.replace("/fal-ai/kling-video/", f"/{KLING_O1}/")
        async with httpx.AsyncClient(headers={"Authorization": f"Key {FAL_KEY}"}) as plain:
            answer = await plain.get(guessed)
    finally:
        await client.aclose()

    assert answer.status_code == 404 and "Not Found" in answer.json()["detail"]


async def test_a_waiting_request_reports_its_place_and_a_cancelled_one_completes_with_an_error(
    start_fal_emulator_factory: Any,
) -> None:
    emulator: FalEmulator = await start_fal_emulator_factory(time_scale=1.0, job_seconds=600.0)
    client = queue_client(emulator)
    try:
        first = await client.submit(KLING_O1, {"prompt": "one"})
        second = await client.submit(KLING_O1, {"prompt": "two"})
        places = [await first.status(), await second.status()]
        await second.cancel()
        cancelled = await second.status(with_logs=True)
        with pytest.raises(fal_client.FalClientHTTPError) as already:
            await second.cancel()
    finally:
        await client.aclose()

    assert places == [fal_client.Queued(position=0), fal_client.Queued(position=1)]
    assert isinstance(cancelled, fal_client.Completed) and cancelled.error_type == "request_cancelled"
    assert cancelled.logs and "rendering" in cancelled.logs[0]["message"]
    assert already.value.status_code == 400 and "ALREADY_COMPLETED" in already.value.response.text


# --- what fal refuses ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "arguments", "field", "words"),
    [
        (KLING_O1, {"prompt": "a fox", "duration": "12"}, "duration", "Input should be"),
        (KLING_O1, {"prompt": "a fox", "duration": 5}, "duration", "Input should be"),
        (KLING_O1, {"prompt": "a fox", "aspect_ratio": "4:3"}, "aspect_ratio", "'16:9', '9:16' or '1:1'"),
        (KLING_O1, {"prompt": "", "duration": "5"}, "prompt", "at least 1 character"),
        (KLING_O1, {"prompt": "x" * 2501}, "prompt", "at most 2500 characters"),
        (KLING_O1, {"prompt": "a fox", "elements": [element(1)] * 8}, "elements", "maximum 7 total inputs"),
        (
            KLING_O1,
            {"prompt": "a fox", "elements": [element(1)] * 6, "image_urls": [IMG], "start_image_url": IMG},
            "elements",
            "got 8",
        ),
        (
            KLING_O3,
            {"prompt": "a fox", "elements": [{"video_url": "https://x/v.mp4"}, *[element(1)] * 4]},
            "elements",
            "maximum 4 total inputs when using video",
        ),
        (KLING_O1, {"prompt": "a fox", "elements": [element(0)]}, "elements", "at least one is required"),
        (KLING_O1, {"prompt": "a fox", "elements": [element(4)]}, "elements", "1-3 reference images"),
        (KLING_O1, {"prompt": "a fox", "elements": [{"reference_image_urls": [IMG]}]}, "elements", "Field required"),
        (
            KLING_O1,
            {"prompt": "a fox", "elements": [{"frontal_image_url": image_uri(), "reference_image_urls": [IMG]}]},
            "elements",
            "takes files as URLs",
        ),
        (
            KLING_O1,
            {"prompt": "a fox", "elements": [{"frontal_image_url": "https://x/y.png", "reference_image_urls": [IMG]}]},
            "elements",
            "Failed to download",
        ),
        (VIDU, {"prompt": "a fox", "reference_image_urls": [IMG] * 5}, "reference_image_urls", "at most 4"),
        (VIDU, {"prompt": "a fox", "reference_image_urls": []}, "reference_image_urls", "at least 1"),
        (VIDU, {"prompt": "a fox", "reference_image_urls": [image_uri()]}, "reference_image_urls", "URLs"),
        (VIDU, {"prompt": "a fox", "reference_image_urls": [IMG], "duration": 17}, "duration", "Input"),
        (VEO, {"prompt": "a fox", "image_urls": [IMG], "duration": "6s"}, "duration", "'8s'"),
        (VEO, {"prompt": "a fox", "image_urls": [IMG], "resolution": "480p"}, "resolution", "'4k'"),
        (VEO, {"prompt": "a fox"}, "image_urls", "Field required"),
    ],
)
async def test_a_submit_fal_would_refuse_is_refused_with_a_validation_detail_list(
    fal_emulator: FalEmulator, model: str, arguments: dict[str, Any], field: str, words: str
) -> None:
    response = await refusal(fal_emulator, model, arguments)

    assert response.status_code == 422
    [detail] = response.json()["detail"]
    assert detail["loc"][:2] == ["body", field] and words in detail["msg"]
    mapped = map_fal_error(read_error(response))
    assert isinstance(mapped, APIRequestRejected) and mapped.param == field and words in mapped.message
    assert fal_emulator.offline.job_count == 0


async def test_a_still_of_a_real_person_is_refused_as_a_content_policy_violation(fal_emulator: FalEmulator) -> None:
    client = queue_client(fal_emulator)
    try:
        face = await client.upload(jpeg(comment="a real person"), "image/jpeg", file_name="face.jpg")
    finally:
        await client.aclose()
    person = {"frontal_image_url": face, "reference_image_urls": [IMG]}
    response = await refusal(fal_emulator, KLING_O1, {"prompt": "@Element1 waves", "elements": [person]})

    assert response.json()["detail"][0]["type"] == "content_policy_violation"
    assert isinstance(map_fal_error(read_error(response)), HumanLikenessRefused)


@pytest.mark.parametrize(("key", "detail"), [("wrong-key", "No user found for Key ID and Secret")])
async def test_a_wrong_key_gets_fals_401(fal_emulator: FalEmulator, key: str, detail: str) -> None:
    response = await refusal(fal_emulator, KLING_O1, {"prompt": "a fox"}, key=key)

    assert (response.status_code, response.json()) == (401, {"detail": detail})
    assert isinstance(map_fal_error(read_error(response)), APIAuthError)


async def test_an_unknown_application_and_an_unknown_request_are_not_found(fal_emulator: FalEmulator) -> None:
    response = await refusal(fal_emulator, "fal-ai/kling-video/o9/reference-to-video", {"prompt": "a fox"})
    assert response.status_code == 404 and "not found" in response.json()["detail"]

    client = queue_client(fal_emulator)
    try:
        with pytest.raises(fal_client.FalClientHTTPError) as missing:
            await client.status(KLING_O1, "00000000-0000-0000-0000-000000000000")
    finally:
        await client.aclose()
    assert missing.value.status_code == 404
    assert isinstance(map_fal_error(read_error(missing.value.response)), APINotFound)


async def test_platform_errors_carry_their_type_in_body_and_header(fal_emulator: FalEmulator) -> None:
    fal_emulator.faults.push("submit", status=503, type="runner_scheduling_failure", message="No runner available")

    response = await refusal(fal_emulator, KLING_O1, {"prompt": "a fox"})

    assert response.json() == {"detail": "No runner available", "error_type": "runner_scheduling_failure"}
    assert response.headers["x-fal-error-type"] == "runner_scheduling_failure"
    error = read_error(response)
    assert (error.status, error.error_type, error.message) == (503, "runner_scheduling_failure", "No runner available")


# --- fal's storage and CDN -----------------------------------------------------------------------------------


async def test_when_the_cdn_upload_fails_fal_client_falls_back_to_storage_and_the_file_is_served(
    fal_emulator: FalEmulator,
) -> None:
    fal_emulator.faults.push("cdn_upload", status=503, message="CDN unavailable", times=20)
    client = queue_client(fal_emulator)
    try:
        url = await client.upload(jpeg((10, 200, 90)), "image/jpeg", file_name="still.jpg")
    finally:
        await client.aclose()

    routes = [r.route for r in fal_emulator.requests]
    assert routes[-2:] == ["storage_initiate", "storage_put"] and "cdn_upload" in routes
    async with httpx.AsyncClient() as plain:
        served = await plain.get(url)
    assert served.status_code == 200 and served.content == jpeg((10, 200, 90))


async def test_a_cdn_upload_needs_a_storage_token_and_pricing_needs_the_key(fal_emulator: FalEmulator) -> None:
    async with httpx.AsyncClient(base_url=fal_emulator.origin) as plain:
        no_token = await plain.post("/files/upload", content=jpeg(), headers={"Content-Type": "image/jpeg"})
        no_key = await plain.get("/v1/models/pricing", params={"endpoint_id": KLING_O1})
        key = {"Authorization": f"Key {FAL_KEY}"}
        priced = await plain.get("/v1/models/pricing", params={"endpoint_id": f"{KLING_O1},{VEO}"}, headers=key)

    assert no_token.status_code == 401 and no_key.status_code == 401
    assert [p["endpoint_id"] for p in priced.json()["prices"]] == [KLING_O1, VEO]


# --- soracast emulate --api fal -----------------------------------------------------------------------------


async def test_soracast_emulate_serves_fals_queue_for_the_fal_backend(tmp_path: Path) -> None:
    ready: asyncio.Queue[str] = asyncio.Queue()
    settings = Settings(_env_file=None, data_dir=tmp_path / "data")  # type: ignore[call-arg]
    server = asyncio.create_task(
        run_emulator(settings, api="fal", port=0, time_scale=1000.0, api_key=FAL_KEY, on_ready=ready.put_nowait)
    )
    try:
        url = await asyncio.wait_for(ready.get(), 30)
        client = QueueClient(FAL_KEY, queue_http_client(FAL_KEY, timeout=10.0, queue_url=url), timeout=10.0)
        try:
            handle = await client.submit(KLING_O1, {"prompt": "a fox", "duration": "3"})
            result = await handle.get()
        finally:
            await client.aclose()
    finally:
        server.cancel()
        await asyncio.gather(server, return_exceptions=True)

    assert handle.status_url.startswith(url + "/fal-ai/kling-video/requests/")
    assert result["video"]["url"].startswith(url + "/files/")
