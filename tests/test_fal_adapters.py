"""`/sora @a @b …` end to end through each adapter on the fal backend: the terminal, Discord and Slack talk to
the real core, which sends Kling elements through fal-client to the emulated queue. Users read their own
words; only fal reads `@Element1`."""

from __future__ import annotations

import io
import json
from pathlib import Path

import av

from adapters.console.app import console_identity
from bot.actions import VideoAction, encode_action
from bot.app import build_app
from bot.models import Actor, GenerationStatus
from tests.fakes.slack_api import FakeSlackAPI
from tests.fixtures.console import run_script
from tests.fixtures.discord import ALICE, DiscordBots
from tests.fixtures.fal import FalEmulator, fal_backends, fal_overrides, fal_settings
from tests.fixtures.media import make_mp4
from tests.fixtures.slack import ALICE as SLACK_ALICE
from tests.fixtures.slack import slack_settings, start_harness, stop_harness

KLING_O1 = "fal-ai/kling-video/o1/standard/reference-to-video"
TYPED = "@mascot and @cat share a pizza, then @mascot laughs"
SENT = "@Element1 and @Element2 share a pizza, then @Element1 laughs"
WITHIN = 60.0  # a safety net for a hung test, not a timing assertion


def clips(folder: Path) -> tuple[Path, Path]:
    return (
        make_mp4(folder / "mascot.mp4", seconds=3.0, color=(220, 40, 40)),
        make_mp4(folder / "cat.mp4", seconds=3.0, color=(40, 180, 60)),
    )


def assert_fal_got_two_elements(emulator: FalEmulator) -> None:
    [submit] = emulator.requests.for_route("submit")
    assert submit.path == f"/{KLING_O1}"
    body = submit.json
    assert (body["prompt"], body["duration"]) == (SENT, "3")
    assert [1 + len(e["reference_image_urls"]) for e in body["elements"]] == [3, 3]


def video_size(data: bytes) -> tuple[int, int]:
    with av.open(io.BytesIO(data), format="mp4") as container:
        stream = container.streams.video[0]
        return stream.codec_context.width, stream.codec_context.height


async def test_the_terminal_sends_two_characters_to_kling_as_elements_and_prints_the_users_words(
    tmp_path: Path, fal_emulator: FalEmulator
) -> None:
    settings = fal_settings(tmp_path / "data", fal_emulator)
    core = await build_app(settings)
    mascot, cat = clips(tmp_path)
    try:
        run = await run_script(
            settings,
            core,
            tmp_path / "script.txt",
            f"/character add @mascot {mascot} --confirm",
            f"/character add @cat {cat} --confirm",
            f"/sora {TYPED} --model kling-o1 --seconds 3",
        )
        scope, _ = console_identity()
        [generation] = await core.generations.recent(scope)
    finally:
        await core.aclose()

    assert run.code == 0, run.output
    assert TYPED in run.output and "@Element" not in run.output
    assert_fal_got_two_elements(fal_emulator)
    assert generation.status is GenerationStatus.COMPLETED and generation.delivered_at is not None
    assert (generation.prompt, generation.api_prompt, generation.handles) == (TYPED, SENT, ["mascot", "cat"])
    assert generation.video_path is not None and video_size(generation.video_path.read_bytes()) == (1280, 720)


async def test_discord_sends_two_characters_to_kling_as_elements_and_posts_the_users_words(
    discord_bots: DiscordBots, fal_emulator: FalEmulator, tmp_path: Path
) -> None:
    h = await discord_bots.start(backends=fal_backends(fal_emulator), **fal_overrides(fal_emulator))
    for handle, clip in zip(("mascot", "cat"), clips(tmp_path), strict=True):
        attachment = h.attachment(clip.name, clip.read_bytes())
        options = {"handle": handle, "clip": "", "confirm": True}
        await h.run(h.slash("character", options, subcommand="add", attachments={"clip": attachment}, user=ALICE))

    await h.run(h.slash("sora", {"prompt": TYPED, "model": KLING_O1, "seconds": "3"}, user=ALICE))

    [started] = await h.core.generations.recent(h.scope)
    done = await h.core.generations.wait_finished(started.id, WITHIN)
    assert done.status is GenerationStatus.COMPLETED and done.backend == "fal"
    assert_fal_got_two_elements(fal_emulator)
    assert done.target.message_id is not None
    message = h.api.messages[done.target.message_id]
    assert TYPED in message["embeds"][0]["description"]
    shown = json.dumps([r.json for r in h.api.requests])
    assert "@Element" not in shown, "a user saw the prompt fal reads"
    uploaded = [f.data for r in h.api.requests for f in r.files if f.data == done.video_path.read_bytes()]
    assert uploaded and video_size(uploaded[0]) == (1280, 720)
    buttons = [c["custom_id"] for row in message["components"] for c in row["components"]]
    assert buttons == [encode_action(a, done.id) for a in (VideoAction.CHARACTER, VideoAction.DELETE)], (
        "fal's reference models cannot remix or extend"
    )


async def test_slack_sends_two_characters_to_kling_as_elements_and_posts_the_users_words(
    tmp_path: Path, slack_api: FakeSlackAPI, fal_emulator: FalEmulator
) -> None:
    settings = slack_settings(tmp_path / "data", **fal_overrides(fal_emulator))
    core = await build_app(settings)
    slack = await start_harness(slack_api, settings, core)
    try:
        for handle, clip in zip(("mascot", "cat"), clips(tmp_path), strict=True):
            await core.registry.register(slack.scope, Actor(id=SLACK_ALICE), handle, clip, rights_confirmed=True)

        reply = await slack.command("/sora", f"{TYPED} --model kling-o1 --seconds 3")
        assert reply.status == 200
        await slack.settle()
        [started] = await core.generations.recent(slack.scope)
        done = await core.generations.wait_finished(started.id, WITHIN)
    finally:
        await stop_harness(slack)
        await core.aclose()

    assert done.status is GenerationStatus.COMPLETED and done.backend == "fal"
    assert_fal_got_two_elements(fal_emulator)
    [posted] = slack_api.calls_to("chat.postMessage")
    assert TYPED in json.dumps(posted.data)
    assert "@Element" not in json.dumps([c.data for c in slack_api.calls]), "a user saw the prompt fal reads"
    [uploaded] = slack_api.calls_to("upload")
    assert done.video_path is not None and uploaded.body == done.video_path.read_bytes()
    assert video_size(uploaded.body) == (1280, 720)
