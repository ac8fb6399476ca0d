"""`/sora @a @b …` end to end on the Gemini backend, through the terminal, Discord and Slack: the same commands a
team used with Sora, the characters carried as references, and each character's stills shown by `/character info`."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import Any

from adapters.console.app import console_identity
from bot.app import build_app
from bot.models import Actor, GenerationStatus, ReferenceKind
from tests.fakes.slack_api import FakeSlackAPI
from tests.fixtures.console import ConsoleRun, run_script
from tests.fixtures.discord import DiscordBots
from tests.fixtures.gemini import GeminiEmulator, gemini_settings
from tests.fixtures.media import make_mp4
from tests.fixtures.slack import ALICE, slack_settings, start_harness, stop_harness
from tests.test_discord_adapter import add_character, private_embeds, result_message, sora, uploaded_video

WITHIN = 60.0


def _sent_media(emulator: GeminiEmulator) -> tuple[str, list[bytes], list[bytes]]:
    """The text, the video parts and the image parts of the last create the emulator received."""
    [step] = emulator.requests.last("create_interaction").json["input"]
    parts = step["content"]
    videos = [base64.b64decode(p["data"]) for p in parts if p["type"] == "video"]
    images = [base64.b64decode(p["data"]) for p in parts if p["type"] == "image"]
    return parts[0]["text"], videos, images


async def test_the_terminal_makes_a_two_character_video_on_gemini_and_lists_the_stills(
    tmp_path: Path, gemini_emulator: GeminiEmulator
) -> None:
    settings = gemini_settings(tmp_path / "data")
    core = await build_app(settings, backends={"gemini": gemini_emulator.backend()})
    red = make_mp4(tmp_path / "red.mp4", 320, 180, 3.0, 12, (220, 30, 30), None)
    blue = make_mp4(tmp_path / "blue.mp4", 320, 180, 3.0, 12, (30, 60, 220), None)
    try:
        run: ConsoleRun = await run_script(
            settings,
            core,
            tmp_path / "script.txt",
            f"/character add @mascot {red} --name \"Captain Mascot\" --confirm",
            f"/character add @rex {blue} --confirm",
            "/sora @mascot and @rex surfing at sunset --seconds 5",
            "/character info @mascot",
        )
        assert run.code == 0, run.output
        assert "Gemini (Gemini Omni 1.2 Flash)" in run.output
        [generation] = await core.generations.recent(console_identity()[0])
        assert generation.status is GenerationStatus.COMPLETED
        assert generation.prompt == "@mascot and @rex surfing at sunset"
        text, videos, images = _sent_media(gemini_emulator)
        assert text.endswith("Captain Mascot and Rex surfing at sunset") and (len(videos), len(images)) == (2, 6)
        info = run.output.split("> /character info @mascot", 1)[1]
        assert "a 3.0 s clip" in info and "3 stills" in info
        still_paths = [line.split()[-1] for line in info.splitlines() if line.strip().startswith("still ")]
        heads = [await asyncio.to_thread(Path(p).read_bytes) for p in still_paths]
        assert len(heads) == 3 and all(head[:2] == b"\xff\xd8" for head in heads)
    finally:
        await core.aclose()


async def test_discord_sora_with_two_handles_posts_the_gemini_video_and_info_attaches_the_stills(
    discord_bots: DiscordBots, gemini_emulator: GeminiEmulator, make_mp4: Any
) -> None:
    h = await discord_bots.start(
        backends={"gemini": gemini_emulator.backend()}, offline=False, gemini_api_key="gemini-test-key"
    )
    await add_character(h, make_mp4("mascot.mp4", seconds=3.0, color=(220, 30, 30)), "mascot", name="Captain Mascot")
    await add_character(h, make_mp4("rex.mp4", seconds=3.0, color=(30, 60, 220)), "rex")

    _, generation = await sora(h, "@mascot chases @rex through a market", seconds="4")
    final = await h.core.generations.wait_finished(generation.id, WITHIN)

    assert final.status is GenerationStatus.COMPLETED and final.backend == "gemini"
    text, videos, images = _sent_media(gemini_emulator)
    assert text.endswith("Captain Mascot chases Rex through a market") and (len(videos), len(images)) == (2, 6)
    message = result_message(h, final)
    assert uploaded_video(h, message) == final.video_path.read_bytes()  # type: ignore[union-attr]
    assert "@mascot chases @rex through a market" in message["embeds"][0]["description"]

    info = await h.run(h.slash("character", {"handle": "mascot"}, subcommand="info"))
    embed = private_embeds(h, info)[-1]
    assert "3 stills" in json.dumps(embed) and embed["image"]["url"] == "attachment://mascot-still-1.jpg"
    mascot = await h.core.registry.get(h.scope, "mascot")
    stored = await h.core.storage.load_references(mascot.id)
    stills = [b.data for b in stored if b.reference.kind is ReferenceKind.STILL]
    uploads = [f for call in h.api.requests if call.files for f in call.files if f.filename.startswith("mascot-still")]
    assert [f.data for f in uploads] == stills


async def test_slack_sora_with_two_handles_posts_the_gemini_video_and_info_shows_the_stills(
    tmp_path: Path, slack_api: FakeSlackAPI, gemini_emulator: GeminiEmulator, make_mp4: Any
) -> None:
    settings = slack_settings(tmp_path / "data", offline=False, gemini_api_key="gemini-test-key")
    core = await build_app(settings, backends={"gemini": gemini_emulator.backend()})
    slack = await start_harness(slack_api, settings, core)
    try:
        for handle, colour in (("mascot", (220, 30, 30)), ("rex", (30, 60, 220))):
            clip = make_mp4(f"{handle}.mp4", seconds=3.0, color=colour)
            await core.registry.register(slack.scope, Actor(id=ALICE), handle, clip, rights_confirmed=True)
        assert (await slack.command("/sora", "@mascot and @rex dance --seconds 4")).status == 200
        await slack.settle()
        [generation] = await core.generations.recent(slack.scope)
        final = await core.generations.wait_finished(generation.id, WITHIN)

        assert final.status is GenerationStatus.COMPLETED
        text, videos, images = _sent_media(gemini_emulator)
        assert text.endswith("Mascot and Rex dance") and (len(videos), len(images)) == (2, 6)
        [uploaded] = [c for c in slack_api.calls_to("upload") if c.body == final.video_path.read_bytes()]  # type: ignore[union-attr]
        assert uploaded is not None

        await slack.command("/character", "info @mascot")
        await slack.settle()
        answer = [c for c in slack_api.calls_to("response") if c.data.get("response_type") == "ephemeral"][-1].data
        blocks = answer["blocks"] if isinstance(answer["blocks"], list) else json.loads(answer["blocks"])
        images_shown = [b["slack_file"]["id"] for b in blocks if b["type"] == "image"]
        assert len(images_shown) == 3
        still_uploads = [c for c in slack_api.calls_to("files.completeUploadExternal") if "channel_id" not in c.data]
        assert len(still_uploads) == 3
    finally:
        await stop_harness(slack)
        await core.aclose()
