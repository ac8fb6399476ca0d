"""Gemini's webhooks over real HTTP, end to end: the emulator announces each job where the create's
`webhook_config` said (an RS256 token per request, as Google's guide describes), soracast's `/webhooks/gemini`
checks it against the emulator's published keys, and

- a create whose answer was lost is not sent again: the webhook ties the job to its generation (by the
  `user_metadata` it carries), and the video is posted once — across a restart in the middle of the wait too;
- a finished video is posted on the webhook, not at the next poll;
- a forged or stale webhook is refused and changes nothing.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.app import Soracast
from bot.backends.base import VideoRequest
from bot.backends.offline.gemini_interactions import SIGNER_KEY, EmulatorOptions
from bot.backends.offline.gemini_webhooks import WebhookSigner
from bot.config import Settings
from bot.models import GenerationOptions, GenerationStatus, Platform
from bot.signing import sign
from tests.fixtures.core import CONSOLE_SCOPE, TARGET, TESTER, RecordingNotifier
from tests.fixtures.gemini import GeminiEmulator, gemini_settings, open_gemini_core
from tests.fixtures.webhooks import WebhookDoor

WITHIN = 30  # a safety net for a hung test; with a poll a minute apart, only a webhook delivers this fast
REGISTERED_SECRET = "whsec_" + "cmVnaXN0ZXJlZC13ZWJob29rLXNlY3JldC0zMmJ5dGU="


@dataclass
class Soracasts:
    """Cores on one data directory (one after another, as restarts), with the webhook door in front of them."""

    emulator: GeminiEmulator
    settings: Settings
    door: WebhookDoor
    backend_options: dict[str, Any] = field(default_factory=dict)
    opened: list[Soracast] = field(default_factory=list)

    async def open(self) -> tuple[Soracast, RecordingNotifier]:
        core = await open_gemini_core(
            self.settings,
            self.emulator,
            webhook_url=self.settings.gemini_webhook_url,
            spool_dir=self.settings.resolved_media_dir,
            **self.backend_options,
        )
        notifier = RecordingNotifier()
        core.generations.register_notifier(Platform.CONSOLE, notifier)
        await core.generations.resume(Platform.CONSOLE)
        await self.door.serve(core)
        self.opened.append(core)
        return core, notifier

    async def close(self, core: Soracast) -> None:
        await self.door.close()
        await core.aclose()
        self.opened.remove(core)


async def _soracasts(tmp_path: Path, emulator: GeminiEmulator, **settings: Any) -> Soracasts:
    door = WebhookDoor.reserve()
    values: dict[str, Any] = {
        "public_url": door.public,
        "gemini_jwks_url": emulator.jwks_url,
        # Polls a minute apart: a quick post can only come from a webhook.
        "poll_interval": 60.0,
    }
    values.update(settings)
    return Soracasts(emulator=emulator, settings=gemini_settings(tmp_path / "data", **values), door=door)


@pytest.fixture
async def slow_jobs(start_gemini) -> GeminiEmulator:
    """Jobs that finish only when a test says (`offline.finish_now`)."""
    return await start_gemini(time_scale=1.0, job_seconds=600.0)


@pytest.fixture
async def soracasts(tmp_path: Path, slow_jobs: GeminiEmulator) -> AsyncIterator[Soracasts]:
    harness = await _soracasts(tmp_path, slow_jobs)
    yield harness
    for core in list(harness.opened):
        await harness.close(core)


def _video_id(job_id: str) -> str:
    return "video_" + job_id.removeprefix("v1_")


async def _lost_create(core: Soracast, emulator: GeminiEmulator, prompt: str = "a cat") -> str:
    """A create Gemini carried out whose answer never arrived; returns the generation id."""
    emulator.faults.push("create_interaction", status=503, after_handling=True)
    generation = await core.generations.generate(CONSOLE_SCOPE, TESTER, prompt, GenerationOptions(), TARGET)
    assert generation.status is GenerationStatus.SUBMITTING and generation.api_video_id is None
    return generation.id


async def test_a_create_whose_answer_was_lost_is_adopted_from_its_webhook_and_posted_once(
    soracasts: Soracasts, slow_jobs: GeminiEmulator
) -> None:
    core, notifier = await soracasts.open()
    generation_id = await _lost_create(core, slow_jobs)
    create = slow_jobs.requests.last("create_interaction").json
    assert create["webhook_config"] == {
        "uris": [f"{soracasts.door.public}/webhooks/gemini"],
        "user_metadata": {"soracast_generation": generation_id},
    }
    # It waits for the webhook: nothing is sent again however long the answer stays lost.
    await asyncio.sleep(0.3)
    assert slow_jobs.requests.count("create_interaction") == 1

    [video_id] = list(slow_jobs.offline._order)  # type: ignore[attr-defined]
    slow_jobs.offline.finish_now(video_id)
    final = await core.generations.wait_finished(generation_id, within=WITHIN)

    assert final.status is GenerationStatus.COMPLETED and final.api_video_id == "v1_" + video_id[len("video_"):]
    assert slow_jobs.requests.count("create_interaction") == 1
    assert [g.id for g in notifier.deliveries] == [generation_id]
    [delivered] = slow_jobs.webhooks.delivered("/webhooks/gemini")
    assert delivered.json["type"] == "interaction.completed"
    assert delivered.json["data"]["user_metadata"] == {"soracast_generation": generation_id}


async def test_a_restart_in_the_middle_of_the_wait_keeps_waiting_and_posts_once(
    soracasts: Soracasts, slow_jobs: GeminiEmulator
) -> None:
    first, _ = await soracasts.open()
    generation_id = await _lost_create(first, slow_jobs)
    await soracasts.close(first)

    second, notifier = await soracasts.open()  # the next process: the wait is read from what was stored
    await asyncio.sleep(0.3)
    assert slow_jobs.requests.count("create_interaction") == 1
    [video_id] = list(slow_jobs.offline._order)  # type: ignore[attr-defined]
    slow_jobs.offline.finish_now(video_id)
    final = await second.generations.wait_finished(generation_id, within=WITHIN)
    assert final.status is GenerationStatus.COMPLETED
    assert slow_jobs.requests.count("create_interaction") == 1
    assert [g.id for g in notifier.deliveries] == [generation_id]


async def test_without_a_webhook_in_time_the_create_is_sent_again_with_a_warning(
    tmp_path: Path, slow_jobs: GeminiEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    harness = await _soracasts(tmp_path, slow_jobs, webhook_wait=0.2, poll_interval=0.05)
    core, notifier = await harness.open()
    try:
        slow_jobs.webhooks.lose_next = 1
        generation_id = await _lost_create(core, slow_jobs)
        for _ in range(400):
            if slow_jobs.requests.count("create_interaction") == 2:
                break
            await asyncio.sleep(0.01)
        assert slow_jobs.requests.count("create_interaction") == 2
        assert "no webhook from Gemini for the unanswered create" in caplog.text
        for video_id in list(slow_jobs.offline._order):  # type: ignore[attr-defined]
            slow_jobs.offline.finish_now(video_id)
        final = await core.generations.wait_finished(generation_id, within=WITHIN)
        assert final.status is GenerationStatus.COMPLETED and [g.id for g in notifier.deliveries] == [generation_id]
    finally:
        await harness.close(core)


async def test_a_finished_video_is_posted_on_its_webhook_without_waiting_for_a_poll(
    soracasts: Soracasts, slow_jobs: GeminiEmulator
) -> None:
    core, notifier = await soracasts.open()
    generation = await core.generations.generate(CONSOLE_SCOPE, TESTER, "a cat", GenerationOptions(), TARGET)
    assert generation.api_video_id is not None
    polls = slow_jobs.requests.count("get_interaction")
    slow_jobs.offline.finish_now(_video_id(generation.api_video_id))
    final = await core.generations.wait_finished(generation.id, within=WITHIN)
    assert final.status is GenerationStatus.COMPLETED and [g.id for g in notifier.deliveries] == [generation.id]
    # One poll, the one the webhook asked for (and it carried the video).
    assert slow_jobs.requests.count("get_interaction") == polls + 1


async def test_a_registered_webhooks_hmac_signature_is_accepted_too(tmp_path: Path, start_gemini) -> None:
    door = WebhookDoor.reserve()
    emulator = await start_gemini(
        time_scale=1.0,
        job_seconds=600.0,
        options=EmulatorOptions(registered_webhook=(f"{door.public}/webhooks/gemini", REGISTERED_SECRET)),
    )
    settings = gemini_settings(tmp_path / "data", gemini_webhook_secret=REGISTERED_SECRET, poll_interval=60.0)
    harness = Soracasts(emulator=emulator, settings=settings, door=door,
                        backend_options={"registered_webhook": True})
    core, notifier = await harness.open()
    try:
        generation_id = await _lost_create(core, emulator)
        # No `uris`: the registered webhook gets the event, with the generation in `user_metadata`.
        assert emulator.requests.last("create_interaction").json["webhook_config"] == {
            "user_metadata": {"soracast_generation": generation_id}
        }
        [video_id] = list(emulator.offline._order)  # type: ignore[attr-defined]
        emulator.offline.finish_now(video_id)
        final = await core.generations.wait_finished(generation_id, within=WITHIN)
        assert final.status is GenerationStatus.COMPLETED and [g.id for g in notifier.deliveries] == [generation_id]
        assert emulator.requests.count("create_interaction") == 1
        [delivered] = emulator.webhooks.delivered()
        assert delivered.headers["webhook-signature"].startswith("v1,")
    finally:
        await harness.close(core)


def _event(interaction: str, generation_id: str) -> bytes:
    return json.dumps(
        {
            "type": "interaction.completed",
            "version": "v1",
            "data": {"id": interaction, "status": "completed", "user_metadata": {"soracast_generation": generation_id}},
        }
    ).encode()


async def test_a_forged_or_stale_webhook_is_refused_and_changes_nothing(
    soracasts: Soracasts, slow_jobs: GeminiEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    core, _ = await soracasts.open()
    generation_id = await _lost_create(core, slow_jobs)
    [video_id] = list(slow_jobs.offline._order)  # type: ignore[attr-defined]
    interaction = "v1_" + video_id.removeprefix("video_")
    url = f"{soracasts.door.public}/webhooks/gemini"
    genuine: WebhookSigner = slow_jobs.app[SIGNER_KEY]
    impostor = WebhookSigner()
    impostor.kid = genuine.kid  # the same key id, another key
    body = _event(interaction, generation_id)
    now = int(time.time())

    def headers(signature: str, *, stamp: int = now, webhook_id: str = "msg_forged") -> dict[str, str]:
        return {"webhook-id": webhook_id, "webhook-timestamp": str(stamp), "webhook-signature": signature,
                "content-type": "application/json"}

    cases = [
        ("another key", headers(impostor.token(url))),
        ("another audience", headers(genuine.token("https://elsewhere.example/webhooks/gemini"))),
        ("expired token", headers(genuine.token(url, now=now - 3600))),
        ("stale delivery", headers(genuine.token(url), stamp=now - 3600)),
        ("an HMAC with no secret configured", headers(sign(REGISTERED_SECRET, "msg_forged", now, body))),
        ("no signature", {"webhook-id": "msg_forged", "webhook-timestamp": str(now)}),
    ]
    caplog.clear()
    async with httpx.AsyncClient() as client:
        for name, sent in cases:
            answer = await client.post(url, content=body, headers=sent)
            assert answer.status_code == 401, name
    refusals = [r for r in caplog.records if "refused POST '/webhooks/gemini'" in r.getMessage()]
    assert len(refusals) == len(cases) and all(r.exc_info is None for r in refusals)

    stored = await core.storage.get_generation(generation_id)
    assert stored is not None and stored.api_video_id is None and stored.status is GenerationStatus.SUBMITTING
    assert slow_jobs.requests.count("get_interaction") == 0  # nothing was even asked of Gemini
    assert await core.storage.remember_webhook("gemini:msg_forged")  # never recorded
    assert slow_jobs.requests.count("create_interaction") == 1


async def test_the_door_reads_no_more_than_it_must_and_acknowledges_other_events(
    soracasts: Soracasts, slow_jobs: GeminiEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    core, _ = await soracasts.open()
    url = f"{soracasts.door.public}/webhooks/gemini"
    genuine: WebhookSigner = slow_jobs.app[SIGNER_KEY]
    now = str(int(time.time()))
    signed = {"webhook-id": "msg_1", "webhook-timestamp": now, "webhook-signature": genuine.token(url),
              "content-type": "application/json"}
    caplog.clear()
    async with httpx.AsyncClient() as client:
        # Too large to be an event: refused before its signature is even looked at.
        big = await client.post(url, content=b"{" + b" " * (8 * 1024 * 1024) + b"}", headers=signed)
        assert big.status_code == 413
        # Signed, but not an event.
        assert (await client.post(url, content=b"[1, 2]", headers=signed)).status_code == 400
        # Signed events soracast has no use for are acknowledged, so Google does not send them again.
        batch = json.dumps({"type": "batch.succeeded", "data": {"id": "batches/1"}}).encode()
        assert (await client.post(url, content=batch, headers={**signed, "webhook-id": "msg_2"})).status_code == 200
        # An event for an interaction soracast does not track changes nothing and is acknowledged.
        stray = _event("v1_nobodys", "gabcdefgh")
        assert (await client.post(url, content=stray, headers={**signed, "webhook-id": "msg_3"})).status_code == 200
    refusals = [r for r in caplog.records if "refused POST '/webhooks/gemini'" in r.getMessage()]
    assert [r.getMessage().split(": ", 1)[1][:3] for r in refusals] == ["413", "400"]
    assert slow_jobs.requests.count("get_interaction") == 0
    assert await core.generations.recent(CONSOLE_SCOPE) == []


async def test_a_signed_event_naming_a_job_made_for_another_generation_is_not_adopted(
    soracasts: Soracasts, slow_jobs: GeminiEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    core, notifier = await soracasts.open()
    generation_id = await _lost_create(core, slow_jobs)
    [lost_job] = list(slow_jobs.offline._order)  # type: ignore[attr-defined]
    # Another interaction on the same account, made for someone else's generation.
    backend = slow_jobs.backend(registered_webhook=True)
    try:
        other = VideoRequest(prompt="a dog", model="gemini-omni-1.2-flash", seconds=4, size="640x360",
                             request_key="gsomeone0")
        stranger = (await backend.submit(other, "a dog")).id
    finally:
        await backend.aclose()
    url = f"{soracasts.door.public}/webhooks/gemini"
    genuine: WebhookSigner = slow_jobs.app[SIGNER_KEY]
    signed = {"webhook-id": "msg_mixup", "webhook-timestamp": str(int(time.time())),
              "webhook-signature": genuine.token(url), "content-type": "application/json"}
    async with httpx.AsyncClient() as client:
        answer = await client.post(url, content=_event(stranger, generation_id), headers=signed)
    assert answer.status_code == 200
    assert "was made for gsomeone0; not adopted" in caplog.text
    stored = await core.storage.get_generation(generation_id)
    assert stored is not None and stored.api_video_id is None

    slow_jobs.offline.finish_now(lost_job)
    final = await core.generations.wait_finished(generation_id, within=WITHIN)
    assert final.api_video_id == "v1_" + lost_job.removeprefix("video_")
    assert [g.id for g in notifier.deliveries] == [generation_id]


async def test_a_create_that_never_connected_goes_back_in_line_rather_than_waiting_for_a_webhook(
    tmp_path: Path, slow_jobs: GeminiEmulator
) -> None:
    harness = await _soracasts(tmp_path, slow_jobs)
    closed = slow_jobs.origin.rsplit(":", 1)[0] + ":9"  # the discard port: nothing listens there
    core = await open_gemini_core(harness.settings, slow_jobs, base_url=closed,
                                  webhook_url=harness.settings.gemini_webhook_url)
    core.generations.register_notifier(Platform.CONSOLE, RecordingNotifier())
    try:
        generation = await core.generations.generate(CONSOLE_SCOPE, TESTER, "a cat", GenerationOptions(), TARGET)
        # Nothing can have reached Gemini: it waits in line (the backend paused a moment), not for a webhook.
        assert generation.status is GenerationStatus.WAITING and generation.submitted_at is None
        assert core.generations.runner.limiter("gemini").pause_left() > 0
    finally:
        await core.aclose()
