"""Sent exactly once: a create whose answer was lost (a 5xx after the job was made, a dropped connection) is looked
up before anything is sent again, and transient faults never reach people."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from bot.app import Soracast, build_app
from bot.backends.openai.client import HTTPVideosAPI
from bot.models import Generation, GenerationOptions, GenerationStatus, Platform, utcnow
from tests.fixtures.core import CONSOLE_SCOPE, TARGET, TESTER, RecordingNotifier, fast_settings
from tests.fixtures.gemini import GeminiEmulator, gemini_settings, open_gemini_core
from tests.fixtures.videos import VideosEmulator

WITHIN = 60


async def _core(tmp_path: Path, emulator: VideosEmulator) -> tuple[Soracast, RecordingNotifier]:
    settings = fast_settings(tmp_path / "data")
    core = await build_app(settings, videos=HTTPVideosAPI(emulator.base_url, "sk-test", max_retries=0))
    recorder = RecordingNotifier()
    core.generations.register_notifier(Platform.CONSOLE, recorder)
    await core.generations.resume(Platform.CONSOLE)
    return core, recorder


@pytest.mark.parametrize(
    "fault",
    [
        {"status": 502, "after_handling": True},
        {"status": None, "drop_connection": True, "after_handling": True},
    ],
    ids=["5xx-after-the-job-was-made", "connection-dropped-after-the-job-was-made"],
)
async def test_a_job_made_but_unanswered_is_found_and_adopted_not_made_twice(
    tmp_path: Path, videos_emulator: VideosEmulator, fault: dict
) -> None:
    core, recorder = await _core(tmp_path, videos_emulator)
    try:
        videos_emulator.faults.push("create_video", **fault)
        options = GenerationOptions()
        generation = await core.generations.generate(CONSOLE_SCOPE, TESTER, "a lost answer", options, TARGET)
        final = await core.generations.wait_finished(generation.id, within=WITHIN)
    finally:
        await core.aclose()

    assert videos_emulator.offline.job_count == 1, "the create was not repeated"
    assert len(videos_emulator.requests.for_route("create_video")) == 1
    assert videos_emulator.requests.count("list_videos") >= 1
    assert final.status is GenerationStatus.COMPLETED and final.api_video_id in videos_emulator.offline._jobs
    assert [g.id for g in recorder.deliveries] == [generation.id] and recorder.failures == []


async def test_an_adopted_job_that_had_already_finished_is_downloaded_before_it_is_delivered(
    tmp_path: Path, videos_emulator: VideosEmulator
) -> None:
    core, recorder = await _core(tmp_path, videos_emulator)
    try:
        videos_emulator.faults.push("create_video", status=502, after_handling=True)
        generation = await core.generations.generate(CONSOLE_SCOPE, TESTER, "done before asked", GenerationOptions(),
                                                     TARGET)
        # The job finishes before the tracker asks whether the unanswered create made it.
        [made] = videos_emulator.offline._jobs
        await videos_emulator.wait_until_done(made)
        final = await core.generations.wait_finished(generation.id, within=WITHIN)
    finally:
        await core.aclose()

    assert final.api_video_id == made and final.status is GenerationStatus.COMPLETED
    assert final.video_path is not None and final.video_path.stat().st_size > 0
    assert [g.video_path for g in recorder.deliveries] == [final.video_path], "delivered with its video"
    assert videos_emulator.requests.count("download_content") >= 1


async def test_a_create_that_made_nothing_is_sent_again_once(tmp_path: Path, videos_emulator: VideosEmulator) -> None:
    core, recorder = await _core(tmp_path, videos_emulator)
    try:
        videos_emulator.faults.push("create_video", status=503)  # answered before any job was made
        generation = await core.generations.generate(CONSOLE_SCOPE, TESTER, "try again", GenerationOptions(), TARGET)
        final = await core.generations.wait_finished(generation.id, within=WITHIN)
    finally:
        await core.aclose()

    assert [r.status for r in videos_emulator.requests.for_route("create_video")] == [503, 200]
    assert videos_emulator.offline.job_count == 1 and final.submit_attempts == 2
    assert [g.id for g in recorder.deliveries] == [generation.id]


async def test_the_same_words_twice_never_adopt_each_others_job(
    tmp_path: Path, videos_emulator: VideosEmulator
) -> None:
    core, _ = await _core(tmp_path, videos_emulator)
    try:
        first = await core.generations.generate(CONSOLE_SCOPE, TESTER, "the same words", GenerationOptions(), TARGET)
        await core.generations.wait_finished(first.id, within=WITHIN)
        videos_emulator.faults.push("create_video", status=500)  # this one made nothing
        second = await core.generations.generate(CONSOLE_SCOPE, TESTER, "the same words", GenerationOptions(), TARGET)
        final = await core.generations.wait_finished(second.id, within=WITHIN)
    finally:
        await core.aclose()

    done_first = await _stored(tmp_path, first.id)
    assert final.api_video_id != done_first.api_video_id and videos_emulator.offline.job_count == 2


async def _stored(tmp_path: Path, generation_id: str) -> Generation:
    from storage.sqlite import SQLiteStorage

    storage = SQLiteStorage(tmp_path / "data" / "soracast.db")
    await storage.open()
    try:
        found = await storage.get_generation(generation_id)
    finally:
        await storage.close()
    assert found is not None
    return found


async def test_a_process_that_died_mid_create_is_finished_without_a_second_job(
    tmp_path: Path, videos_emulator: VideosEmulator
) -> None:
    # The previous process stored its claim, sent the create, and died before recording the answer.
    made = await videos_emulator.offline.create_video("died mid create", model="sora-2", seconds="4", size="1280x720")
    settings = fast_settings(tmp_path / "data")
    core = await build_app(settings, videos=HTTPVideosAPI(videos_emulator.base_url, "sk-test", max_retries=0))
    orphan = Generation(
        scope=CONSOLE_SCOPE, requester_id=TESTER.id, prompt="died mid create", api_prompt="died mid create",
        model="sora-2", seconds="4", size="1280x720", target=TARGET, backend="openai",
        status=GenerationStatus.SUBMITTING, submitted_at=utcnow(), submit_attempts=1,
    )
    await core.storage.save_generation(orphan)
    recorder = RecordingNotifier()
    core.generations.register_notifier(Platform.CONSOLE, recorder)
    try:
        assert await core.generations.resume(Platform.CONSOLE) == 1
        final = await core.generations.wait_finished(orphan.id, within=WITHIN)
    finally:
        await core.aclose()
    assert final.api_video_id == made.id and videos_emulator.offline.job_count == 1
    assert videos_emulator.requests.count("create_video") == 0


async def test_gemini_cannot_be_asked_so_an_unanswered_create_is_sent_again_and_said_so(
    tmp_path: Path, gemini_emulator: GeminiEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    core = await open_gemini_core(gemini_settings(tmp_path / "data"), gemini_emulator)
    recorder = RecordingNotifier()
    core.generations.register_notifier(Platform.CONSOLE, recorder)
    try:
        gemini_emulator.faults.push("create_interaction", status=500)
        with caplog.at_level(logging.WARNING, logger="bot.videos.jobs"):
            generation = await core.generations.generate(CONSOLE_SCOPE, TESTER, "a cat", GenerationOptions(), TARGET)
            final = await core.generations.wait_finished(generation.id, within=WITHIN)
    finally:
        await core.aclose()
    assert [r.status for r in gemini_emulator.requests.for_route("create_interaction")] == [500, 200]
    assert final.status is GenerationStatus.COMPLETED and recorder.failures == []
    assert any("cannot say whether the unanswered create" in r.getMessage() for r in caplog.records)


async def test_an_adopted_job_is_counted_as_spent(tmp_path: Path, videos_emulator: VideosEmulator) -> None:
    settings = fast_settings(tmp_path / "data", prices={"sora-2": 0.10})
    core = await build_app(settings, videos=HTTPVideosAPI(videos_emulator.base_url, "sk-test", max_retries=0))
    core.generations.register_notifier(Platform.CONSOLE, RecordingNotifier())
    try:
        videos_emulator.faults.push("create_video", status=502, after_handling=True)
        generation = await core.generations.generate(CONSOLE_SCOPE, TESTER, "adopted", GenerationOptions(), TARGET)
        await core.generations.wait_finished(generation.id, within=WITHIN)
        async with core.storage.db.execute(  # type: ignore[attr-defined]
            "SELECT state FROM spend WHERE generation_id = ?", (generation.id,)
        ) as cursor:
            assert (await cursor.fetchone())[0] == "spent"
    finally:
        await core.aclose()
