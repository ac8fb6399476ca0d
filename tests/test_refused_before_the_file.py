"""Checks that need no file come before the file: a reserved, malformed or taken handle, a member without the
register role and a full workspace are refused before a form asking for the clip opens, before Slack is asked
about a file and before anything is downloaded — on Slack, Discord and the terminal."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bot.actions import VideoAction, encode_action
from bot.app import Soracast, build_app
from bot.backends.offline.renderer import OfflineVideosAPI
from bot.errors import WorkspaceFull
from bot.models import Actor, Platform, Scope
from tests.fakes.discord_api import EPHEMERAL, MODAL
from tests.fakes.slack_api import FakeSlackAPI
from tests.fixtures.console import ConsoleRunner
from tests.fixtures.discord import ADMIN, ALICE, BOB, DiscordHarness, Member
from tests.fixtures.media import Mp4Factory
from tests.fixtures.slack import CHANNEL, SlackHarness, slack_settings, start_harness, stop_harness

SLACK_ADMIN = "U0ADMIN"
SLACK_MEMBER = "U0BOB"


def slack_private_texts(slack: SlackHarness) -> list[str]:
    replies = [c.data.get("text", "") for c in slack.api.calls_to("response")]
    return replies + [str(c.data.get("text", "")) for c in slack.api.calls_to("chat.postEphemeral")]


async def register(core: Soracast, scope: Scope, clip: Path, handle: str = "mascot") -> None:
    await core.registry.register(scope, Actor(id="owner"), handle, clip, rights_confirmed=True)


async def restrict_registering(core: Soracast, scope: Scope, role: str = "artists") -> None:
    await core.registry.configure(scope, Actor(id="admin", is_admin=True), register_role_id=role)


# --- the core ----------------------------------------------------------------------------------------------


async def test_a_full_workspace_is_refused_before_a_handle_is_known(
    tmp_path: Path, offline_api: OfflineVideosAPI, make_mp4: Mp4Factory
) -> None:
    settings = slack_settings(tmp_path / "data", max_characters_per_workspace=1)
    core = await build_app(settings, videos=offline_api)
    scope = Scope(platform=Platform.SLACK, id="T1")
    try:
        await register(core, scope, make_mp4("one.mp4"))
        with pytest.raises(WorkspaceFull) as caught:
            await core.registry.check_can_register(scope, Actor(id="someone"))
        assert "SORACAST_MAX_CHARACTERS_PER_WORKSPACE" in caught.value.user_text()
        with pytest.raises(WorkspaceFull):
            await core.registry.precheck(scope, Actor(id="someone"), "two")
        # Other workspaces have room of their own.
        await core.registry.check_can_register(Scope(platform=Platform.SLACK, id="T2"), Actor(id="someone"))
    finally:
        await core.aclose()


# --- Slack -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "said"), [
    ("add @everyone", "reserved"),
    ("add @no-dashes", "not a valid handle"),
    ("add @mascot", "already registered"),
    ('add @newbie --name "<!here> crew"', "would notify everyone"),
])
async def test_slack_character_add_refuses_a_bad_handle_without_opening_the_form(
    slack: SlackHarness, make_mp4: Mp4Factory, text: str, said: str
) -> None:
    await register(slack.core, slack.scope, make_mp4("mascot.mp4"))
    assert (await slack.command("/character", text)).status == 200
    await slack.settle()

    assert slack.api.calls_to("views.open") == []
    [answer] = slack_private_texts(slack)
    assert said in answer


async def test_slack_character_add_refuses_a_member_without_the_role_without_opening_the_form(
    slack: SlackHarness,
) -> None:
    await restrict_registering(slack.core, slack.scope)
    await slack.command("/character", "add", user=SLACK_MEMBER)
    await slack.command("/character", "add @newbie", user=SLACK_MEMBER)
    await slack.settle()

    assert slack.api.calls_to("views.open") == []
    answers = slack_private_texts(slack)
    assert len(answers) == 2 and all("limited to a role" in a for a in answers)

    slack.api.add_user(SLACK_ADMIN, "admin", is_admin=True)  # admins may always register
    await slack.command("/character", "add @newbie", user=SLACK_ADMIN)
    await slack.settle()
    assert len(slack.api.calls_to("views.open")) == 1


async def test_slack_character_add_refuses_when_the_workspace_is_full_without_opening_the_form(
    tmp_path: Path, slack_api: FakeSlackAPI, offline_api: OfflineVideosAPI, make_mp4: Mp4Factory
) -> None:
    settings = slack_settings(tmp_path / "data", max_characters_per_workspace=1)
    core = await build_app(settings, videos=offline_api)
    slack = await start_harness(slack_api, settings, core)
    try:
        await register(core, slack.scope, make_mp4("one.mp4"))
        await slack.command("/character", "add @two")
        await slack.settle()
        assert slack.api.calls_to("views.open") == []
        assert "already has 1 characters" in slack_private_texts(slack)[0]
    finally:
        await stop_harness(slack)
        await core.aclose()


async def test_slack_make_character_shortcut_refuses_a_member_without_the_role_before_the_form(
    slack: SlackHarness, make_mp4: Mp4Factory
) -> None:
    await restrict_registering(slack.core, slack.scope)
    hosted = slack.api.host_file("dog.mp4", make_mp4("dog.mp4").read_bytes())
    described = hosted.file_object()
    del described["size"]  # a file Slack would have to be asked about
    message = {"type": "message", "ts": "1700000004.000100", "user": "U0ALICE", "files": [described]}
    await slack.interaction(slack.shortcut(message, user=SLACK_MEMBER))
    await slack.settle()

    assert slack.api.calls_to("views.open") == []
    assert slack.api.calls_to("files.info") == [] and slack.api.calls_to("download") == []
    assert "limited to a role" in slack_private_texts(slack)[0]


async def test_slack_make_character_button_refuses_a_member_without_the_role_before_the_form(
    slack: SlackHarness,
) -> None:
    await slack.command("/sora", "a red kite")
    await slack.settle()
    [generation] = await slack.core.generations.recent(slack.scope)
    generation = await slack.core.generations.wait_finished(generation.id, 60)
    await restrict_registering(slack.core, slack.scope)
    message = {"type": "message", "ts": generation.target.message_id, "channel": CHANNEL}

    await slack.interaction(slack.button(encode_action(VideoAction.CHARACTER, generation.id), message, user="U0BOB"))
    await slack.settle()

    assert slack.api.calls_to("views.open") == []
    assert "limited to a role" in slack_private_texts(slack)[-1]


# --- Discord -----------------------------------------------------------------------------------------------


def _answer(h: DiscordHarness, token: str) -> dict[str, Any]:
    [callback] = h.api.callbacks(token)
    return callback.json


async def test_discord_make_character_menu_refuses_a_member_without_the_role_before_the_form(
    discord_bot: DiscordHarness, make_mp4: Mp4Factory
) -> None:
    h = discord_bot
    role = "900000000000000077"
    await restrict_registering(h.core, h.scope, role)
    clip = make_mp4("dog.mp4")
    post = h.user_message(BOB, [h.attachment(clip.name, clip.read_bytes())])

    refused = await h.run(h.message_command("Make character", post, user=ALICE))
    answer = _answer(h, refused.token)
    assert answer["type"] != MODAL and answer["data"]["flags"] & EPHEMERAL
    assert "limited to a role" in answer["data"]["embeds"][0]["description"]
    assert not h.api.calls("GET", "/cdn/")

    artist = Member("800000000000000004", "artist", roles=(role,))
    for allowed in (artist, ADMIN):
        opened = await h.run(h.message_command("Make character", post, user=allowed))
        assert _answer(h, opened.token)["type"] == MODAL


async def test_discord_make_character_button_refuses_a_member_without_the_role_before_the_form(
    discord_bot: DiscordHarness,
) -> None:
    h = discord_bot
    await h.run(h.slash("sora", {"prompt": "a red fox"}))
    [generation] = await h.core.generations.recent(h.scope)
    done = await h.core.generations.wait_finished(generation.id, 60)
    await restrict_registering(h.core, h.scope, "900000000000000077")

    message = h.api.messages[done.target.message_id]
    clicked = await h.run(h.button(encode_action(VideoAction.CHARACTER, done.id), message))
    answer = _answer(h, clicked.token)
    assert answer["type"] != MODAL and "limited to a role" in answer["data"]["embeds"][0]["description"]


async def test_discord_character_add_refuses_a_reserved_handle_before_downloading(
    discord_bot: DiscordHarness, make_mp4: Mp4Factory
) -> None:
    h = discord_bot
    clip = make_mp4("everyone.mp4")
    attachment = h.attachment(clip.name, clip.read_bytes())
    options = {"handle": "everyone", "clip": "", "confirm": True}
    sent = await h.run(h.slash("character", options, subcommand="add", attachments={"clip": attachment}))

    description = h.api.messages_of(sent.token)[-1]["embeds"][0]["description"]
    assert "reserved" in description
    assert not h.api.calls("GET", "/cdn/")


# --- the terminal --------------------------------------------------------------------------------------------


async def test_the_console_refuses_a_reserved_handle_before_looking_at_the_file(
    run_console_script: ConsoleRunner,
) -> None:
    run = await run_console_script("/character add @everyone /no/such/clip.mp4")

    assert run.code == 1
    assert "reserved" in run.output and "There is no file" not in run.output
