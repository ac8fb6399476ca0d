"""What Gemini says about a job, read as Google's SDK 3.6.1 and API say it: `requires_action` and `idle` end the
job in words, an unknown or expired interaction is gone (400 "Invalid interaction name"), error bodies may be JSON
arrays, and a video that came inline with a poll is not fetched a second time to download it."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from bot.app import Soracast
from bot.errors import APIRequestRejected
from bot.models import GenerationOptions, GenerationStatus, Platform
from tests.fixtures.core import CONSOLE_SCOPE, TARGET, TESTER, RecordingNotifier, serving
from tests.fixtures.gemini import GeminiEmulator, gemini_settings, open_gemini_core

WITHIN = 60  # a safety net for a hung test, not a timing assertion


def _video_id(job_id: str) -> str:
    return "video_" + job_id.removeprefix("v1_")


@pytest.fixture
def recorder(gemini_core: Soracast) -> RecordingNotifier:
    return serving(gemini_core)


@pytest.mark.parametrize(
    "marker, code, words",
    [
        ("[[requires_action]]", "requires_action", "to ask for an action soracast cannot take"),
        ("[[idle]]", "idle", "left this video idle"),
    ],
)
async def test_an_interaction_waiting_for_an_action_or_idle_ends_in_words_not_at_the_deadline(
    gemini_core: Soracast, gemini_emulator: GeminiEmulator, recorder: RecordingNotifier, marker: str, code: str,
    words: str,
) -> None:
    generation = await gemini_core.generations.generate(
        CONSOLE_SCOPE, TESTER, f"a lighthouse {marker}", GenerationOptions(), TARGET
    )
    final = await gemini_core.generations.wait_finished(generation.id, within=WITHIN)
    assert final.status is GenerationStatus.FAILED and final.error_code == code
    assert words in (final.error_message or "")
    assert [g.id for g in recorder.failures] == [generation.id]
    # Nothing will move it on at Google either: it is stopped there.
    cancels = gemini_emulator.requests.for_route("cancel_interaction")
    assert [r.path.rsplit("/", 2)[-2] for r in cancels] == [final.api_video_id]


async def test_an_interaction_google_no_longer_knows_is_gone_not_refused(
    tmp_path: Path, start_gemini
) -> None:
    emulator = await start_gemini(time_scale=1.0, job_seconds=600.0)
    core = await open_gemini_core(gemini_settings(tmp_path / "data"), emulator)
    recorder = serving(core)
    try:
        generation = await core.generations.generate(CONSOLE_SCOPE, TESTER, "a cat", GenerationOptions(), TARGET)
        assert generation.api_video_id is not None
        await emulator.offline.delete_video(_video_id(generation.api_video_id))  # expired at Google
        final = await core.generations.wait_finished(generation.id, within=WITHIN)
    finally:
        await core.aclose()
    assert final.status is GenerationStatus.FAILED and final.error_code == "not_found"
    assert "no longer knows this video" in (final.error_message or "")
    polls = [r for r in emulator.requests.for_route("get_interaction") if r.status == 400]
    assert polls, "Google's answer was a 400"
    assert [g.id for g in recorder.failures] == [generation.id]


async def test_an_error_body_that_is_a_json_array_is_read(
    gemini_core: Soracast, gemini_emulator: GeminiEmulator, recorder: RecordingNotifier
) -> None:
    refusal = [{"error": {"code": 400, "message": "Request contains an invalid argument: the prompt is too long.",
                          "status": "INVALID_ARGUMENT"}}]
    gemini_emulator.faults.push(
        "create_interaction", status=400, body=json.dumps(refusal), content_type="application/json"
    )
    with pytest.raises(APIRequestRejected) as caught:
        await gemini_core.generations.generate(CONSOLE_SCOPE, TESTER, "a cat", GenerationOptions(), TARGET)
    assert "the prompt is too long" in caught.value.user_text()
    assert caught.value.api_code == "INVALID_ARGUMENT"
    assert await gemini_core.generations.recent(CONSOLE_SCOPE) == []

    # A rate limit in the same shape, on a poll, is waited out.
    busy = [{"error": {"code": 429, "message": "Resource has been exhausted.", "status": "RESOURCE_EXHAUSTED"}}]
    gemini_emulator.faults.push(
        "get_interaction", status=429, body=json.dumps(busy), content_type="application/json", retry_after=0.01
    )
    generation = await gemini_core.generations.generate(CONSOLE_SCOPE, TESTER, "a cat", GenerationOptions(), TARGET)
    final = await gemini_core.generations.wait_finished(generation.id, within=WITHIN)
    assert final.status is GenerationStatus.COMPLETED
    assert next(r.status for r in gemini_emulator.requests.for_route("get_interaction")) == 429


async def test_a_video_that_came_inline_with_a_poll_is_not_fetched_again(tmp_path: Path, start_gemini) -> None:
    emulator = await start_gemini(time_scale=1.0, job_seconds=600.0)
    core = await open_gemini_core(gemini_settings(tmp_path / "data"), emulator, spool_dir=tmp_path / "media")
    recorder = RecordingNotifier()
    core.generations.register_notifier(Platform.CONSOLE, recorder)
    try:
        generations = [
            await core.generations.generate(CONSOLE_SCOPE, TESTER, f"cat {i}", GenerationOptions(), TARGET)
            for i in range(3)
        ]
        # Polled while they render; then all three finish together.
        for _ in range(200):
            if emulator.requests.count("get_interaction") >= 6:
                break
            await asyncio.sleep(0.01)
        finished_at = time.monotonic()
        for generation in generations:
            assert generation.api_video_id is not None
            emulator.offline.finish_now(_video_id(generation.api_video_id))
        finals = [await core.generations.wait_finished(g.id, within=WITHIN) for g in generations]
    finally:
        await core.aclose()
    assert all(f.status is GenerationStatus.COMPLETED and f.video_path is not None for f in finals)
    for final in finals:
        after = [
            r for r in emulator.requests.for_route("get_interaction")
            if r.path.endswith(str(final.api_video_id)) and r.received_at >= finished_at
        ]
        # The poll that found it finished carried the video: no second read of the interaction to download it.
        assert len(after) == 1, [r.status for r in after]
        assert final.video_path.read_bytes()[4:8] == b"ftyp"  # type: ignore[union-attr]
    assert sorted(g.id for g in recorder.deliveries) == sorted(g.id for g in generations)
    # Nothing is left spooled once the videos are in place.
    assert not [p for p in (tmp_path / "media").rglob("*") if p.is_file()]
