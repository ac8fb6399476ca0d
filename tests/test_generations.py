"""GenerationService: persisted first, tracked to the end, delivered exactly once — across restarts too."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import av
import pytest

from bot.app import Soracast, build_app
from bot.backends.offline.renderer import OfflineVideosAPI
from bot.config import Settings
from bot.errors import (
    APIRequestRejected,
    GenerationNotReady,
    InvalidInput,
    PermissionDenied,
    TooManyCharacters,
    UnknownGeneration,
    UnknownHandle,
)
from bot.models import (
    Actor,
    CharacterSource,
    Generation,
    GenerationKind,
    GenerationOptions,
    GenerationStatus,
    Platform,
    Scope,
)
from storage.postgres import PostgresStorage
from tests.fixtures.core import CONSOLE_SCOPE, TARGET, TESTER, RecordingNotifier, fast_settings, serving

OTHER_SCOPE = Scope(platform=Platform.CONSOLE, id="someone-else")


async def _register(core: Soracast, clip: Path, handle: str = "mascot", name: str | None = None) -> None:
    await core.registry.register(CONSOLE_SCOPE, TESTER, handle, clip, name=name, rights_confirmed=True)


def _video_facts(path: Path) -> tuple[str, int, int, float]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        duration = float(container.duration or 0) / av.time_base
        return stream.codec_context.name, stream.width, stream.height, duration


async def test_a_prompt_with_a_handle_becomes_a_posted_video(
    core: Soracast, notifier: RecordingNotifier, clip_maker, offline_api: OfflineVideosAPI
) -> None:
    await _register(core, clip_maker(seconds=3.0), name="Captain Mascot")
    generation = await core.generations.generate(
        CONSOLE_SCOPE, TESTER, "@mascot surfing at sunset", GenerationOptions(seconds="4", size="1280x720"), TARGET
    )
    assert generation.api_prompt == "Captain Mascot surfing at sunset"
    assert generation.api_video_id is not None
    final = await core.generations.wait_finished(generation.id, within=30)

    assert final.status is GenerationStatus.COMPLETED and final.delivered_at is not None
    assert [g.id for g in notifier.deliveries] == [generation.id]
    assert final.video_path is not None
    codec, width, height, duration = _video_facts(final.video_path)
    assert (codec, width, height) == ("h264", 1280, 720)
    assert duration == pytest.approx(4.0, abs=0.3)
    assert final.thumbnail_path is not None and final.thumbnail_path.stat().st_size > 0
    assert final.target.message_id == f"msg-{generation.id}"


async def test_the_request_is_stored_before_the_api_is_called(core: Soracast, offline_api: OfflineVideosAPI) -> None:
    seen: list[GenerationStatus] = []
    original = offline_api.create_video

    async def spy(*args, **kwargs):  # type: ignore[no-untyped-def]
        stored = await core.storage.recent_generations(CONSOLE_SCOPE, 1)
        seen.extend(g.status for g in stored)
        return await original(*args, **kwargs)

    offline_api.create_video = spy  # type: ignore[method-assign]
    await core.generations.generate(CONSOLE_SCOPE, TESTER, "a lighthouse", GenerationOptions(), TARGET)
    assert seen == [GenerationStatus.SUBMITTING]


async def test_an_unknown_handle_fails_before_anything_is_stored(core: Soracast, clip_maker) -> None:
    await _register(core, clip_maker())
    with pytest.raises(UnknownHandle) as caught:
        await core.generations.generate(CONSOLE_SCOPE, TESTER, "@mascott dancing", GenerationOptions(), TARGET)
    assert caught.value.suggestions == ["mascot"]
    assert await core.generations.recent(CONSOLE_SCOPE) == []


async def test_another_workspaces_handle_is_unknown_here(core: Soracast, clip_maker) -> None:
    await _register(core, clip_maker())
    with pytest.raises(UnknownHandle) as caught:
        await core.generations.generate(OTHER_SCOPE, TESTER, "@mascot dancing", GenerationOptions(), TARGET)
    assert caught.value.suggestions == []


async def test_options_outside_the_allowed_lists_are_refused(core: Soracast) -> None:
    for options, allowed in (
        (GenerationOptions(seconds="7"), "4, 8 or 12 s"),
        (GenerationOptions(size="640x480"), "1280x720 (16:9, 720p)"),
        (GenerationOptions(model="x"), "sora-2, sora-2-pro"),
    ):
        with pytest.raises(InvalidInput) as caught:
            await core.generations.generate(CONSOLE_SCOPE, TESTER, "a cat", options, TARGET)
        assert allowed in caught.value.user_text()
    assert await core.generations.recent(CONSOLE_SCOPE) == []


async def test_too_many_characters_are_refused_before_the_api(
    core: Soracast, clip_maker, offline_api: OfflineVideosAPI
) -> None:
    for handle in ("one", "two", "three"):
        await _register(core, clip_maker(), handle=handle)
    jobs_before = offline_api.job_count
    with pytest.raises(TooManyCharacters):
        await core.generations.generate(CONSOLE_SCOPE, TESTER, "@one @two @three", GenerationOptions(), TARGET)
    assert offline_api.job_count == jobs_before
    assert await core.generations.recent(CONSOLE_SCOPE) == []


async def test_a_request_the_api_rejects_is_explained_and_leaves_nothing_behind(
    tmp_path: Path, offline_api: OfflineVideosAPI
) -> None:
    # soracast's list is wider than what this endpoint accepts: the API's 400 must reach the user, mapped.
    settings = fast_settings(tmp_path / "wide", allowed_sizes=["1280x720", "1920x1080"])
    app = await build_app(settings, videos=offline_api)
    serving(app)
    try:
        with pytest.raises(APIRequestRejected) as caught:
            await app.generations.generate(CONSOLE_SCOPE, TESTER, "a cat", GenerationOptions(size="1920x1080"), TARGET)
        assert caught.value.status == 400 and caught.value.param == "size"
        assert await app.generations.recent(CONSOLE_SCOPE) == []
    finally:
        await app.aclose()


async def test_a_job_that_fails_at_the_api_is_reported_once_with_its_reason(
    core: Soracast, notifier: RecordingNotifier, offline_api: OfflineVideosAPI
) -> None:
    offline_api.fail_next(code="moderation_blocked", message="Blocked by moderation.")
    generation = await core.generations.generate(CONSOLE_SCOPE, TESTER, "a cat", GenerationOptions(), TARGET)
    final = await core.generations.wait_finished(generation.id, within=30)
    assert final.status is GenerationStatus.FAILED
    assert (final.error_code, final.error_message) == ("moderation_blocked", "Blocked by moderation.")
    assert [g.id for g in notifier.failures] == [generation.id] and notifier.deliveries == []


async def test_a_refused_delivery_is_tried_again_and_posted_once(
    core: Soracast, offline_api: OfflineVideosAPI
) -> None:
    flaky = RecordingNotifier(refuse=2)
    core.generations.register_notifier(Platform.CONSOLE, flaky)
    generation = await core.generations.generate(CONSOLE_SCOPE, TESTER, "a cat", GenerationOptions(), TARGET)
    final = await core.generations.wait_finished(generation.id, within=30)
    assert flaky.refused == 2
    assert [g.id for g in flaky.deliveries] == [generation.id]
    assert final.delivered_at is not None


async def test_webhooks_racing_the_poller_still_post_once(core: Soracast, notifier: RecordingNotifier) -> None:
    generation = await core.generations.generate(CONSOLE_SCOPE, TESTER, "a cat", GenerationOptions(), TARGET)
    assert generation.api_video_id is not None
    for _ in range(20):
        await core.generations.on_video_event(generation.api_video_id)
        await asyncio.sleep(0)
    await core.generations.wait_finished(generation.id, within=30)
    for _ in range(5):
        await core.generations.on_video_event(generation.api_video_id)
    await asyncio.sleep(0.05)
    assert [g.id for g in notifier.deliveries] == [generation.id]


async def test_a_restart_mid_generation_still_delivers_exactly_once(tmp_path: Path, start_videos_emulator) -> None:
    # The API keeps running (the emulator) while soracast stops and starts again on the same database.
    emulator = await start_videos_emulator(time_scale=10.0, job_seconds=2.0)
    settings = fast_settings(
        tmp_path / "data", offline=False, openai_api_key="sk-test-restart", api_base_url=emulator.base_url
    )
    first = await build_app(settings)
    before = RecordingNotifier()
    first.generations.register_notifier(Platform.CONSOLE, before)
    generation = await first.generations.generate(CONSOLE_SCOPE, TESTER, "a cat", GenerationOptions(), TARGET)
    await first.aclose()
    assert before.deliveries == []

    second = await build_app(settings)
    after = RecordingNotifier()
    second.generations.register_notifier(Platform.CONSOLE, after)
    assert await second.generations.resume(Platform.CONSOLE) == 1
    final = await second.generations.wait_finished(generation.id, within=30)
    await second.aclose()
    assert [g.id for g in after.deliveries] == [generation.id]
    assert final.video_path is not None and _video_facts(final.video_path)[0] == "h264"

    third = await build_app(settings)
    again = RecordingNotifier()
    third.generations.register_notifier(Platform.CONSOLE, again)
    assert await third.generations.resume(Platform.CONSOLE) == 0
    await third.aclose()
    assert again.deliveries == []


async def test_a_request_accepted_just_before_a_crash_is_submitted_on_restart(
    core_settings: Settings, offline_api: OfflineVideosAPI
) -> None:
    first = await build_app(core_settings, videos=offline_api)
    orphan = Generation(
        scope=CONSOLE_SCOPE, requester_id=TESTER.id, prompt="a cat", api_prompt="a cat", model="sora-2",
        seconds="4", size="1280x720", target=TARGET, backend="offline", status=GenerationStatus.ACCEPTED,
    )
    # Stored as accepted by an older version; the process "died" around the create. Nothing was made.
    await first.storage.save_generation(orphan)
    recorder = RecordingNotifier()
    first.generations.register_notifier(Platform.CONSOLE, recorder)
    assert await first.generations.resume(Platform.CONSOLE) == 1
    final = await first.generations.wait_finished(orphan.id, within=30)
    await first.aclose()
    assert final.api_video_id is not None and final.status is GenerationStatus.COMPLETED
    assert [g.id for g in recorder.deliveries] == [orphan.id]


async def test_a_claim_left_by_a_dead_process_does_not_block_delivery(
    core_settings: Settings, offline_api: OfflineVideosAPI
) -> None:
    first = await build_app(core_settings, videos=offline_api)
    generation = await first.generations.generate(CONSOLE_SCOPE, TESTER, "a cat", GenerationOptions(), TARGET)
    await first.aclose()
    second = await build_app(core_settings, videos=offline_api)
    from bot.models import utcnow

    assert await second.storage.claim_delivery(generation.id, utcnow())  # the dead process's claim
    recorder = RecordingNotifier()
    second.generations.register_notifier(Platform.CONSOLE, recorder)
    await second.generations.resume(Platform.CONSOLE)
    await second.generations.wait_finished(generation.id, within=30)
    await second.aclose()
    assert [g.id for g in recorder.deliveries] == [generation.id]


async def test_remix_and_extend_build_on_a_finished_video(
    core: Soracast, notifier: RecordingNotifier, clip_maker
) -> None:
    await _register(core, clip_maker())
    first = await core.generations.generate(CONSOLE_SCOPE, TESTER, "@mascot at sea", GenerationOptions(), TARGET)
    with pytest.raises(GenerationNotReady):
        await core.generations.remix(CONSOLE_SCOPE, TESTER, first.id, "at night", TARGET)
    await core.generations.wait_finished(first.id, within=30)

    remix = await core.generations.remix(CONSOLE_SCOPE, TESTER, first.id, "@mascot at night", TARGET)
    assert (remix.kind, remix.parent_id, remix.api_prompt) == (GenerationKind.REMIX, first.id, "Mascot at night")
    extension = await core.generations.extend(CONSOLE_SCOPE, TESTER, first.id, "then a storm", TARGET, seconds="4")
    done_remix = await core.generations.wait_finished(remix.id, within=30)
    done_extension = await core.generations.wait_finished(extension.id, within=30)
    assert done_remix.status is GenerationStatus.COMPLETED
    assert done_extension.video_path is not None
    assert _video_facts(done_extension.video_path)[3] == pytest.approx(8.0, abs=0.5)
    with pytest.raises(UnknownGeneration):
        await core.generations.remix(OTHER_SCOPE, TESTER, first.id, "stolen", TARGET)


async def test_a_character_can_be_cut_from_a_finished_video(core: Soracast, notifier: RecordingNotifier) -> None:
    generation = await core.generations.generate(CONSOLE_SCOPE, TESTER, "a robot", GenerationOptions(), TARGET)
    await core.generations.wait_finished(generation.id, within=30)
    character = await core.generations.character_from_generation(
        CONSOLE_SCOPE, TESTER, generation.id, "@robot", start=1.0, rights_confirmed=True
    )
    assert (character.handle, character.source, character.source_ref) == ("robot", CharacterSource.GENERATION,
                                                                          generation.id)
    assert character.clip is not None and len(character.stills) == 3
    assert [c.handle for c in await core.registry.list(CONSOLE_SCOPE)] == ["robot"]


async def test_a_character_is_cut_from_a_video_no_longer_on_this_machine(
    core: Soracast, notifier: RecordingNotifier
) -> None:
    # Posted by a process on another machine (or before a move): the file is fetched from the backend again.
    generation = await core.generations.generate(CONSOLE_SCOPE, TESTER, "a robot", GenerationOptions(), TARGET)
    done = await core.generations.wait_finished(generation.id, within=30)
    assert done.video_path is not None
    done.video_path.unlink()
    character = await core.generations.character_from_generation(
        CONSOLE_SCOPE, TESTER, generation.id, "@robot", start=1.0, rights_confirmed=True
    )
    assert character.clip is not None and len(character.stills) == 3
    assert done.video_path.exists()


async def test_only_the_requester_or_an_admin_deletes_a_video(core: Soracast, notifier: RecordingNotifier) -> None:
    generation = await core.generations.generate(CONSOLE_SCOPE, TESTER, "a cat", GenerationOptions(), TARGET)
    final = await core.generations.wait_finished(generation.id, within=30)
    stranger = Actor(id="stranger")
    with pytest.raises(PermissionDenied):
        await core.generations.delete(CONSOLE_SCOPE, stranger, generation.id)
    deleted = await core.generations.delete(CONSOLE_SCOPE, Actor(id="boss", is_admin=True), generation.id)
    assert deleted.status is GenerationStatus.DELETED
    assert final.video_path is not None and not final.video_path.exists()


async def test_a_fast_job_waits_for_the_adapters_first_message(core: Soracast, notifier: RecordingNotifier) -> None:
    generation = await core.generations.generate(
        CONSOLE_SCOPE, TESTER, "a cat", GenerationOptions(), TARGET, announce=True
    )
    # The job finishes at once, but nothing is reported until the adapter has recorded its message.
    await asyncio.sleep(0.3)
    assert notifier.deliveries == [] and notifier.progress_notes == []
    await core.generations.attach_message(generation.id, "first-message", channel="c1")
    final = await core.generations.wait_finished(generation.id, within=30)
    assert [g.target.message_id for g in notifier.deliveries] == ["first-message"]
    assert final.target.extra == {"channel": "c1"}


async def test_the_whole_core_runs_on_postgres(
    tmp_path: Path, postgres_url: str, clip_maker, offline_api: OfflineVideosAPI
) -> None:
    settings = fast_settings(tmp_path / "data", database_url=postgres_url)
    first = await build_app(settings, videos=offline_api)
    assert isinstance(first.storage, PostgresStorage)
    delivered = RecordingNotifier()
    first.generations.register_notifier(Platform.CONSOLE, delivered)
    character = await first.registry.register(
        CONSOLE_SCOPE, TESTER, "mascot", clip_maker(), name="Captain Mascot", rights_confirmed=True
    )
    generation = await first.generations.generate(
        CONSOLE_SCOPE, TESTER, "@mascot surfing at sunset", GenerationOptions(), TARGET
    )
    final = await first.generations.wait_finished(generation.id, within=30)
    await first.aclose()
    assert final.status is GenerationStatus.COMPLETED and final.api_prompt == "Captain Mascot surfing at sunset"
    assert [g.id for g in delivered.deliveries] == [generation.id]

    # Another process on the same database: the character's clip comes back byte for byte, the video is
    # delivered already, and nothing is posted twice.
    second = await build_app(settings, videos=offline_api)
    again = RecordingNotifier()
    second.generations.register_notifier(Platform.CONSOLE, again)
    try:
        assert await second.generations.resume(Platform.CONSOLE) == 0
        stored = await second.registry.get(CONSOLE_SCOPE, "mascot")
        assert stored.id == character.id and stored.native_ids == character.native_ids
        blobs = await second.storage.load_references(character.id)
        assert [b.reference for b in blobs] == character.references
        assert all(hashlib.sha256(b.data).hexdigest() == b.reference.sha256 for b in blobs)
        loaded = await second.generations.get(CONSOLE_SCOPE, generation.id)
        assert loaded.delivered_at is not None and loaded.target.message_id == f"msg-{generation.id}"
    finally:
        await second.aclose()
    assert again.deliveries == []


async def test_a_finished_video_whose_file_is_on_another_machine_is_fetched_before_it_is_posted(
    core_settings: Settings, offline_api: OfflineVideosAPI, tmp_path: Path
) -> None:
    # Another process finished it (the file is on its disk, not here) and died before posting it.
    made = await offline_api.create_video("elsewhere", model="sora-2", seconds="4", size="1280x720")
    offline_api.finish_now(made.id)
    orphan = Generation(
        scope=CONSOLE_SCOPE, requester_id=TESTER.id, prompt="elsewhere", api_prompt="elsewhere", model="sora-2",
        seconds="4", size="1280x720", target=TARGET, backend="offline", status=GenerationStatus.COMPLETED,
        api_video_id=made.id, video_path=tmp_path / "another-machine" / "video.mp4",
    )
    core = await build_app(core_settings, videos=offline_api)
    await core.storage.save_generation(orphan)
    recorder = RecordingNotifier()
    core.generations.register_notifier(Platform.CONSOLE, recorder)
    try:
        await core.generations.resume(Platform.CONSOLE)
        final = await core.generations.wait_finished(orphan.id, within=30)
    finally:
        await core.aclose()
    [posted] = recorder.deliveries
    assert posted.video_path is not None and posted.video_path.exists()
    assert posted.video_path.is_relative_to(core_settings.resolved_media_dir)
    assert final.video_path == posted.video_path
