"""With no key, the offline renderer plays a live backend's rules by running that backend's own client against a
local emulator: a newcomer meets the limits and messages they will see live."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from bot.app import build_app
from bot.chat import present
from bot.config import BackendChoice
from bot.errors import InvalidInput
from bot.models import GenerationOptions, GenerationStatus, Platform
from tests.fixtures.core import CONSOLE_SCOPE, TARGET, TESTER, RecordingNotifier, fast_settings


async def test_with_no_key_the_offline_renderer_plays_gemini_by_default(tmp_path: Path, clip_maker) -> None:
    settings = fast_settings(tmp_path / "data", offline=False)
    assert settings.active_backend is BackendChoice.OFFLINE and settings.offline_as is BackendChoice.GEMINI
    core = await build_app(settings)
    origin = core.backend.inner._client._api_client._http_options.base_url  # type: ignore[attr-defined]
    try:
        core.generations.register_notifier(Platform.CONSOLE, RecordingNotifier())
        assert core.backend.name == "offline" and core.catalog.default_model().model == "gemini-omni-1.2-flash"
        described = present.describe_backend(core.backend, core.catalog.default_model())
        assert "playing Gemini Omni 1.2 Flash's rules" in described and "GEMINI_API_KEY" in described
        with pytest.raises(InvalidInput) as caught:
            await core.generations.generate(CONSOLE_SCOPE, TESTER, "a cat", GenerationOptions(seconds="20"), TARGET)
        assert "gemini-omni-1.2-flash makes videos of 3–15 s" in caught.value.user_text()

        await core.registry.register(CONSOLE_SCOPE, TESTER, "mascot", clip_maker(seconds=3.0), rights_confirmed=True)
        generation = await core.generations.generate(
            CONSOLE_SCOPE, TESTER, "@mascot on a boat", GenerationOptions(), TARGET
        )
        assert "<VIDEO_REF_0>" in generation.api_prompt
        final = await core.generations.wait_finished(generation.id, within=60)
        assert final.status is GenerationStatus.COMPLETED and final.backend == "offline" and final.seconds == "6"
    finally:
        await core.aclose()
    # Closing the core stops the local emulator: nothing is left listening.
    async with httpx.AsyncClient() as http:
        with pytest.raises(httpx.ConnectError):
            await http.get(str(origin) + "/v1beta/interactions/x")


async def test_the_offline_renderer_can_play_the_openai_shape(tmp_path: Path, clip_maker) -> None:
    core = await build_app(fast_settings(tmp_path / "data", offline_as="openai"))
    try:
        assert core.catalog.default_model().model == "sora-2"
        character = await core.registry.register(
            CONSOLE_SCOPE, TESTER, "mascot", clip_maker(seconds=3.0), rights_confirmed=True
        )
        # This shape keeps characters by id: it was made at once, so a refusal would have been told now.
        assert character.native_ids["offline"].startswith("char_")
    finally:
        await core.aclose()
