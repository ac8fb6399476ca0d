"""fal's webhooks over real HTTP, end to end: soracast submits through fal-client with
`webhook_url=<public>/webhooks/fal/<generation id>`, the emulator announces the request there once it ends, signed
with Ed25519 as docs.fal.ai describes, and `/webhooks/fal/…` checks it against the emulator's published keys:

- a submit whose answer was lost is not submitted again: the webhook ties the request to its generation, and the
  video is posted once;
- a finished video is posted on the webhook, not at the next poll;
- a forged or stale webhook is refused and changes nothing.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.app import Soracast, build_app
from bot.backends.offline.fal_jobs import SIGNER_KEY, WEBHOOKS_KEY, request_id_of
from bot.backends.offline.fal_webhooks import WebhookSigner
from bot.models import GenerationOptions, GenerationStatus, Platform
from tests.fixtures.core import CONSOLE_SCOPE, TARGET, TESTER, RecordingNotifier
from tests.fixtures.fal import FalEmulator, fal_settings
from tests.fixtures.webhooks import WebhookDoor

WITHIN = 30  # a safety net for a hung test; with a poll a minute apart, only a webhook delivers this fast
MODEL = "kling-o3"


class FalSoracast:
    """A core on fal behind the webhook door, polling a minute apart."""

    def __init__(self, tmp_path: Path, emulator: FalEmulator, **settings: Any) -> None:
        self.door = WebhookDoor.reserve()
        values = {"public_url": self.door.public, "fal_jwks_url": f"{emulator.origin}/.well-known/jwks.json",
                  "poll_interval": 60.0, **settings}
        self.settings = fal_settings(tmp_path / "data", emulator, **values)
        self.core: Soracast | None = None
        self.notifier = RecordingNotifier()

    async def open(self) -> Soracast:
        self.core = await build_app(self.settings)
        self.core.generations.register_notifier(Platform.CONSOLE, self.notifier)
        await self.door.serve(self.core)
        return self.core

    async def close(self) -> None:
        await self.door.close()
        if self.core is not None:
            await self.core.aclose()


@pytest.fixture
async def slow_fal(start_fal_emulator_factory) -> FalEmulator:
    """fal with jobs that finish only when a test says (`offline.finish_now`)."""
    return await start_fal_emulator_factory(time_scale=1.0, job_seconds=600.0)


@pytest.fixture
async def fal_soracast(tmp_path: Path, slow_fal: FalEmulator) -> AsyncIterator[FalSoracast]:
    harness = FalSoracast(tmp_path, slow_fal)
    await harness.open()
    yield harness
    await harness.close()


async def _generate(core: Soracast) -> Any:
    return await core.generations.generate(CONSOLE_SCOPE, TESTER, "a lighthouse", GenerationOptions(model=MODEL),
                                           TARGET)


def _only_video(emulator: FalEmulator) -> str:
    [video_id] = list(emulator.offline._order)  # type: ignore[attr-defined]
    return video_id


async def test_a_submit_whose_answer_was_lost_is_adopted_from_its_webhook_and_posted_once(
    fal_soracast: FalSoracast, slow_fal: FalEmulator
) -> None:
    core = fal_soracast.core
    assert core is not None
    slow_fal.faults.push("submit", after_handling=True, status=503, body="<html><center>nginx</center></html>")
    generation = await _generate(core)
    assert generation.status is GenerationStatus.SUBMITTING and generation.api_video_id is None
    submit = slow_fal.requests.last("submit")
    assert submit.query["fal_webhook"] == f"{fal_soracast.door.public}/webhooks/fal/{generation.id}"
    await asyncio.sleep(0.3)
    assert slow_fal.requests.count("submit") == 1, "a lost answer is waited for, not submitted again"

    video_id = _only_video(slow_fal)
    slow_fal.offline.finish_now(video_id)
    final = await core.generations.wait_finished(generation.id, within=WITHIN)

    assert final.status is GenerationStatus.COMPLETED and slow_fal.requests.count("submit") == 1
    assert [g.id for g in fal_soracast.notifier.deliveries] == [generation.id]
    [delivered] = slow_fal.app[WEBHOOKS_KEY].delivered("/webhooks/fal/")
    assert delivered.json["request_id"] == request_id_of(video_id) and delivered.json["status"] == "OK"


async def test_a_finished_video_is_posted_on_its_webhook_without_waiting_for_a_poll(
    fal_soracast: FalSoracast, slow_fal: FalEmulator
) -> None:
    core = fal_soracast.core
    assert core is not None
    generation = await _generate(core)
    assert generation.api_video_id is not None
    slow_fal.offline.finish_now(_only_video(slow_fal))
    final = await core.generations.wait_finished(generation.id, within=WITHIN)
    assert final.status is GenerationStatus.COMPLETED
    assert [g.id for g in fal_soracast.notifier.deliveries] == [generation.id]
    assert slow_fal.requests.count("submit") == 1


async def test_a_forged_or_stale_fal_webhook_is_refused_and_changes_nothing(
    fal_soracast: FalSoracast, slow_fal: FalEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    core = fal_soracast.core
    assert core is not None
    slow_fal.faults.push("submit", after_handling=True, status=503, body="<html>gateway</html>")
    generation = await _generate(core)
    request_id = request_id_of(_only_video(slow_fal))
    url = f"{fal_soracast.door.public}/webhooks/fal/{generation.id}"
    body = json.dumps({"request_id": request_id, "gateway_request_id": request_id, "status": "OK",
                       "payload": {"video": {"url": "https://example.com/v.mp4"}}}).encode()
    genuine: WebhookSigner = slow_fal.app[SIGNER_KEY]
    impostor = WebhookSigner()
    tampered = genuine.headers(request_id, body)
    cases = [
        ("another key", impostor.headers(request_id, body)),
        ("a stale timestamp", genuine.headers(request_id, body, timestamp=int(time.time()) - 3600)),
        ("another body", genuine.headers(request_id, body + b" ")),
        ("a signature that is not hex", {**tampered, "X-Fal-Webhook-Signature": "not-hex"}),
        ("no signature", {"Content-Type": "application/json"}),
    ]
    caplog.clear()
    async with httpx.AsyncClient() as client:
        for name, headers in cases:
            answer = await client.post(url, content=body, headers=headers)
            assert answer.status_code == 401, name
    refusals = [r for r in caplog.records if "refused POST '/webhooks/fal/" in r.getMessage()]
    assert len(refusals) == len(cases) and all(r.exc_info is None for r in refusals)

    stored = await core.storage.get_generation(generation.id)
    assert stored is not None and stored.api_video_id is None and stored.status is GenerationStatus.SUBMITTING
    assert slow_fal.requests.count("status") == 0 and slow_fal.requests.count("submit") == 1
    assert await core.storage.remember_webhook(f"fal:{request_id}")  # never recorded


async def test_without_a_public_url_fal_is_submitted_without_a_webhook(
    tmp_path: Path, fal_emulator: FalEmulator
) -> None:
    core = await build_app(fal_settings(tmp_path / "data", fal_emulator))
    core.generations.register_notifier(Platform.CONSOLE, RecordingNotifier())
    try:
        generation = await _generate(core)
        assert "fal_webhook" not in fal_emulator.requests.last("submit").query
        assert not core.catalog.backend("fal").announces_jobs  # type: ignore[union-attr]
        await core.generations.wait_finished(generation.id, within=WITHIN)
    finally:
        await core.aclose()
