"""Characters move between backends: old ones get references from their stored clip, and switching the backend
never loses or breaks one."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from bot.app import build_app
from bot.chat.present import references_line
from bot.errors import CharacterNeedsClip
from bot.models import GenerationOptions, GenerationStatus, Platform
from storage.schema import migrations
from tests.fixtures.core import CONSOLE_SCOPE, TARGET, TESTER, RecordingNotifier, fast_settings
from tests.fixtures.gemini import GeminiEmulator, gemini_settings, open_gemini_core
from tests.fixtures.videos import fast_offline_api

WITHIN = 60


def _old_database(path: Path, characters: list[tuple[str, str, str]]) -> None:
    """A database as soracast left it before references existed: migration 001 only, ids at the API."""
    path.parent.mkdir(parents=True, exist_ok=True)
    first = migrations("sqlite")[0]
    version, name, sql = first.version, first.name, first.sql
    with sqlite3.connect(path) as db:
        db.executescript(sql)
        db.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT, applied_at TEXT)")
        db.execute("INSERT INTO schema_migrations VALUES (?, ?, '2026-09-01T00:00:00+00:00')", (version, name))
        for handle, char_name, api_id in characters:
            db.execute(
                "INSERT INTO characters (scope, handle, name, api_character_id, owner_id, source, source_ref,"
                " created_at) VALUES (?, ?, ?, ?, 'tester', 'upload', ?, '2026-09-01T00:00:00+00:00')",
                (CONSOLE_SCOPE.key, handle, char_name, api_id, f"{handle}.mp4"),
            )


async def test_old_characters_get_references_from_the_clip_left_on_this_machine(
    tmp_path: Path, gemini_emulator: GeminiEmulator, clip_maker
) -> None:
    data = tmp_path / "data"
    # The old offline renderer kept every character clip it was given, under the data directory.
    old_renderer = fast_offline_api(data / "offline-videos")
    made = await old_renderer.create_character("Captain Mascot", clip_maker(seconds=3.0))
    await old_renderer.aclose()
    # Another character was made at a remote endpoint: nothing of its clip is left here.
    _old_database(data / "soracast.db", [("mascot", "Captain Mascot", made.id or ""), ("ghost", "Ghost", "char_far")])

    core = await open_gemini_core(gemini_settings(data), gemini_emulator)
    try:
        core.generations.register_notifier(Platform.CONSOLE, RecordingNotifier())
        mascot = await core.registry.get(CONSOLE_SCOPE, "mascot")
        ghost = await core.registry.get(CONSOLE_SCOPE, "ghost")
        assert mascot.clip is not None and len(mascot.stills) == 3
        assert mascot.native_ids == {"legacy": made.id}
        assert ghost.references == [] and ghost.native_ids == {"legacy": "char_far"}
        assert "/character remove @ghost" in references_line(ghost)

        generation = await core.generations.generate(
            CONSOLE_SCOPE, TESTER, "@mascot waves", GenerationOptions(), TARGET
        )
        assert (await core.generations.wait_finished(generation.id, within=WITHIN)).status is GenerationStatus.COMPLETED
        with pytest.raises(CharacterNeedsClip) as caught:
            await core.generations.generate(CONSOLE_SCOPE, TESTER, "@ghost waves", GenerationOptions(), TARGET)
        assert "/character add @ghost" in (caught.value.hint or "")
    finally:
        await core.aclose()


async def test_a_character_without_a_clip_keeps_working_where_its_id_lives(tmp_path: Path, clip_maker) -> None:
    data = tmp_path / "data"
    endpoint = fast_offline_api(tmp_path / "endpoint")  # the endpoint that made it, not on this data dir
    made = await endpoint.create_character("Ghost", clip_maker(seconds=3.0))
    _old_database(data / "soracast.db", [("ghost", "Ghost", made.id or "")])
    core = await build_app(fast_settings(data), videos=endpoint)
    try:
        core.generations.register_notifier(Platform.CONSOLE, RecordingNotifier())
        generation = await core.generations.generate(CONSOLE_SCOPE, TESTER, "@ghost waves", GenerationOptions(), TARGET)
        final = await core.generations.wait_finished(generation.id, within=WITHIN)
        assert final.status is GenerationStatus.COMPLETED
        assert endpoint._jobs[final.api_video_id or ""].scene.characters[0][0] == made.id
    finally:
        await core.aclose()


async def test_switching_backends_never_loses_or_breaks_a_character(
    tmp_path: Path, gemini_emulator: GeminiEmulator, clip_maker
) -> None:
    data = tmp_path / "data"
    renderer_root = tmp_path / "openai-endpoint"

    async def openai_core():  # an OpenAI-shape endpoint (the offline renderer in process)
        core = await build_app(fast_settings(data), videos=fast_offline_api(renderer_root))
        core.generations.register_notifier(Platform.CONSOLE, RecordingNotifier())
        return core

    async def make_video(core, prompt: str) -> GenerationStatus:
        generation = await core.generations.generate(CONSOLE_SCOPE, TESTER, prompt, GenerationOptions(), TARGET)
        return (await core.generations.wait_finished(generation.id, within=WITHIN)).status

    first = await openai_core()
    await first.registry.register(CONSOLE_SCOPE, TESTER, "mascot", clip_maker(seconds=3.0), rights_confirmed=True)
    assert await make_video(first, "@mascot on openai") is GenerationStatus.COMPLETED
    await first.aclose()

    on_gemini = await open_gemini_core(gemini_settings(data), gemini_emulator)
    on_gemini.generations.register_notifier(Platform.CONSOLE, RecordingNotifier())
    assert await make_video(on_gemini, "@mascot on gemini") is GenerationStatus.COMPLETED
    await on_gemini.aclose()

    back = await openai_core()
    try:
        assert await make_video(back, "@mascot on openai again") is GenerationStatus.COMPLETED
        # The character made at the endpoint the first time is reused, not uploaded again.
        assert len(list((renderer_root / "characters").glob("char_*.json"))) == 1
    finally:
        await back.aclose()


async def test_a_new_endpoint_gets_the_character_made_there_on_first_use(tmp_path: Path, clip_maker) -> None:
    data = tmp_path / "data"
    old = await build_app(fast_settings(data), videos=fast_offline_api(tmp_path / "old-endpoint"))
    character = await old.registry.register(
        CONSOLE_SCOPE, TESTER, "mascot", clip_maker(seconds=3.0), rights_confirmed=True
    )
    await old.aclose()
    shutil.rmtree(tmp_path / "old-endpoint")

    from bot.backends.openai.backend import OpenAIBackend

    new_endpoint = fast_offline_api(tmp_path / "new-endpoint")
    settings = fast_settings(data)
    backend = OpenAIBackend(new_endpoint, settings, name="openai", account_key="openai@https://gateway.example/v1")
    core = await build_app(settings, backends={"openai": backend})
    try:
        core.generations.register_notifier(Platform.CONSOLE, RecordingNotifier())
        generation = await core.generations.generate(CONSOLE_SCOPE, TESTER, "@mascot", GenerationOptions(), TARGET)
        assert (await core.generations.wait_finished(generation.id, within=WITHIN)).status is GenerationStatus.COMPLETED
        stored = await core.registry.get(CONSOLE_SCOPE, "mascot")
        assert set(stored.native_ids) == {"offline", "openai@https://gateway.example/v1"}
        # Made at the new endpoint from the stored clip, the old endpoint being gone.
        assert len(list((tmp_path / "new-endpoint" / "characters").glob("char_*.json"))) == 1
        assert character.native_ids.keys() == {"offline"}
    finally:
        await core.aclose()
