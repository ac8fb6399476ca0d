"""The Videos API webhook over real HTTP: a signed `video.completed` wakes the tracker at once."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from aiohttp import web

from bot.app import Soracast, build_app
from bot.models import GenerationOptions, GenerationStatus, Platform
from bot.signing import sign
from bot.web.webhooks import WEBHOOK_PATH, webhook_route
from tests.fixtures.core import CONSOLE_SCOPE, TARGET, TESTER, RecordingNotifier, fast_settings

SECRET = "whsec_" + base64.b64encode(b"webhook-secret-for-the-tests-32b").decode()


@pytest.fixture
async def slow_polling_core(tmp_path: Path, start_videos_emulator) -> AsyncIterator[tuple[Soracast, object]]:
    # Polls every minute and the API gives no advice: only a webhook can make delivery quick.
    emulator = await start_videos_emulator(time_scale=1.0, job_seconds=600.0, poll_after_ms=None)
    settings = fast_settings(
        tmp_path / "data", offline=False, openai_api_key="sk-test-webhooks", api_base_url=emulator.base_url,
        poll_interval=60.0,
    )
    core = await build_app(settings)
    yield core, emulator
    await core.aclose()


async def _serve(core: Soracast, secret: str | None) -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.add_routes([webhook_route(secret, core.storage, core.generations)])
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}{WEBHOOK_PATH}"


def _signed(video_id: str, webhook_id: str, *, secret: str = SECRET) -> tuple[dict[str, str], bytes]:
    body = json.dumps({"id": "evt_1", "type": "video.completed", "data": {"id": video_id}}).encode()
    ts = int(time.time())
    headers = {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": sign(secret, webhook_id, ts, body),
        "content-type": "application/json",
    }
    return headers, body


async def test_a_signed_completion_webhook_delivers_without_waiting_for_the_poll(slow_polling_core) -> None:
    core, emulator = slow_polling_core
    notifier = RecordingNotifier()
    core.generations.register_notifier(Platform.CONSOLE, notifier)
    generation = await core.generations.generate(CONSOLE_SCOPE, TESTER, "a cat", GenerationOptions(), TARGET)
    emulator.offline.finish_now(generation.api_video_id)
    runner, url = await _serve(core, SECRET)
    try:
        async with httpx.AsyncClient() as client:
            headers, body = _signed(generation.api_video_id, "msg_1")
            assert (await client.post(url, content=body, headers=headers)).status_code == 200
            final = await core.generations.wait_finished(generation.id, within=20)
            # Redelivery of the same webhook is acknowledged and changes nothing.
            assert (await client.post(url, content=body, headers=headers)).status_code == 200
    finally:
        await runner.cleanup()
    assert final.status is GenerationStatus.COMPLETED
    assert [g.id for g in notifier.deliveries] == [generation.id]


async def test_a_forged_webhook_is_refused_and_changes_nothing(slow_polling_core) -> None:
    core, emulator = slow_polling_core
    generation = await core.generations.generate(CONSOLE_SCOPE, TESTER, "a cat", GenerationOptions(), TARGET)
    runner, url = await _serve(core, SECRET)
    try:
        async with httpx.AsyncClient() as client:
            other = "whsec_" + base64.b64encode(b"not-the-secret-not-the-secret-32").decode()
            headers, body = _signed(generation.api_video_id, "msg_2", secret=other)
            assert (await client.post(url, content=body, headers=headers)).status_code == 401
    finally:
        await runner.cleanup()
    assert await core.storage.remember_webhook("msg_2")  # the forged id was never recorded
    assert emulator.requests.count("retrieve_video") == 0


async def test_without_a_secret_the_route_is_off(slow_polling_core) -> None:
    core, _ = slow_polling_core
    runner, url = await _serve(core, None)
    try:
        async with httpx.AsyncClient() as client:
            headers, body = _signed("video_x", "msg_3")
            assert (await client.post(url, content=body, headers=headers)).status_code == 404
    finally:
        await runner.cleanup()
