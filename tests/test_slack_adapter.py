"""The Slack adapter end to end: real slack-bolt over HTTP with signed requests, the real core on the offline
renderer, and a fake Slack Web API that records what soracast sent it."""

from __future__ import annotations

import io
import json
import logging
import re
import time
from pathlib import Path
from typing import Any

import av
import pytest

from adapters.slack import render
from adapters.slack.app import run_socket_mode, run_web
from bot.actions import VideoAction, encode_action
from bot.app import build_app
from bot.errors import ConfigError, UnknownHandle
from bot.models import Actor, CharacterSource, Generation, GenerationKind, GenerationStatus
from tests.fakes.slack_api import FakeSlackAPI
from tests.fixtures.media import Mp4Factory
from tests.fixtures.slack import (
    ALICE,
    BOT_TOKEN,
    CHANNEL,
    SIGNING_SECRET,
    SlackHarness,
    signed_headers,
    slack_settings,
    start_harness,
    stop_harness,
)
from tests.fixtures.videos import fast_offline_api

FORM = "application/x-www-form-urlencoded"
BOB = "U0BOB"
CAROL = "U0CAROL"  # a workspace admin
WITHIN = 60.0  # a safety net for a hung test, not a timing assertion


# --- helpers ------------------------------------------------------------------------------------------------


def private_texts(slack: SlackHarness) -> list[str]:
    """Everything said to one person only: ephemeral response_url replies and chat.postEphemeral."""
    texts = [
        c.data.get("text", "") for c in slack.api.calls_to("response") if c.data.get("response_type") == "ephemeral"
    ]
    return texts + [str(c.data.get("text", "")) for c in slack.api.calls_to("chat.postEphemeral")]


def blocks_text(call_data: dict[str, Any]) -> str:
    blocks = call_data.get("blocks")
    return json.dumps(json.loads(blocks) if isinstance(blocks, str) else blocks)


def action_ids(call_data: dict[str, Any]) -> list[str]:
    blocks = call_data.get("blocks")
    blocks = json.loads(blocks) if isinstance(blocks, str) else blocks or []
    return [e["action_id"] for b in blocks if b["type"] == "actions" for e in b["elements"]]


def input_values(**values: str | None) -> dict[str, dict[str, Any]]:
    return {block: {"type": "plain_text_input", "value": value} for block, value in values.items()}


def ticked() -> dict[str, dict[str, Any]]:
    """The character form's rights box, ticked."""
    option = {"text": {"type": "plain_text", "text": "I have the right"}, "value": render.CONFIRMED}
    return {render.CONFIRM: {"type": "checkboxes", "selected_options": [option]}}


def picked(file_object: dict[str, Any]) -> dict[str, Any]:
    return {"type": "file_input", "files": [file_object]}


async def newest(slack: SlackHarness) -> Generation:
    return (await slack.core.generations.recent(slack.scope, limit=1))[0]


async def finished_video(slack: SlackHarness, text: str = "a red kite over the sea") -> tuple[Generation, dict]:
    """Run `/sora` to delivery; return the generation and the message as Slack would show it (for buttons)."""
    assert (await slack.command("/sora", text)).status == 200
    await slack.settle()
    generation = await slack.core.generations.wait_finished((await newest(slack)).id, WITHIN)
    final = slack.api.calls_to("chat.update")[-1].data
    message = {"type": "message", "ts": final["ts"], "user": slack.api.bot_user_id, "blocks": final["blocks"]}
    return generation, message


@pytest.fixture
def clip(make_mp4: Mp4Factory) -> bytes:
    """A short real MP4 a user might upload."""
    return make_mp4("upload.mp4", seconds=3.0).read_bytes()


async def register(slack: SlackHarness, clip: bytes, handle: str = "mascot", owner: str = ALICE) -> None:
    path = slack.settings.data_dir / f"{handle}.mp4"
    path.write_bytes(clip)
    await slack.core.registry.register(slack.scope, Actor(id=owner), handle, path, rights_confirmed=True)


# --- /sora ---------------------------------------------------------------------------------------------------


async def test_sora_posts_one_progress_message_then_uploads_the_real_mp4_and_adds_buttons(slack: SlackHarness):
    reply = await slack.command("/sora", "a lighthouse in a storm --seconds 8")
    assert reply.status == 200
    await slack.settle()

    generation = await newest(slack)
    assert generation.prompt == "a lighthouse in a storm" and generation.seconds == "8"
    [posted] = slack.api.calls_to("chat.postMessage")
    assert posted.data["channel"] == CHANNEL
    assert "a lighthouse in a storm" in blocks_text(posted.data) and generation.id in blocks_text(posted.data)

    final = await slack.core.generations.wait_finished(generation.id, WITHIN)
    assert final.status is GenerationStatus.COMPLETED and final.delivered_at is not None
    methods = slack.api.methods()
    upload_calls = [methods.index(m) for m in ("files.getUploadURLExternal", "upload", "files.completeUploadExternal")]
    assert upload_calls == sorted(upload_calls)
    [uploaded] = slack.api.calls_to("upload")
    assert uploaded.body == final.video_path.read_bytes()
    with av.open(io.BytesIO(uploaded.body)) as container:  # a real MP4, not placeholder bytes
        assert container.streams.video
    [completed] = slack.api.calls_to("files.completeUploadExternal")
    assert completed.data["channel_id"] == CHANNEL

    post_ts = final.target.message_id
    last_edit = slack.api.calls_to("chat.update")[-1].data
    assert last_edit["ts"] == post_ts and "Done" in blocks_text(last_edit)
    assert action_ids(last_edit) == [
        encode_action(action, generation.id)
        for action in (VideoAction.REMIX, VideoAction.EXTEND, VideoAction.CHARACTER, VideoAction.DELETE)
    ]
    # Every Web API call carried the bot token.
    api_calls = [c for c in slack.api.calls if c.path.startswith("/api/")]
    assert {c.headers["Authorization"] for c in api_calls} == {f"Bearer {BOT_TOKEN}"}


async def test_sora_with_a_handle_resolves_it_in_this_workspace(slack: SlackHarness, clip: bytes):
    await register(slack, clip)
    await slack.command("/sora", "@mascot surfing a wave")
    await slack.settle()
    generation = await newest(slack)
    assert generation.handles == ["mascot"]
    assert "@mascot" in blocks_text(slack.api.calls_to("chat.postMessage")[0].data)


async def test_an_unknown_handle_is_answered_privately_with_a_suggestion(slack: SlackHarness, clip: bytes):
    await register(slack, clip)
    await slack.command("/sora", "@mascto surfing a wave")
    await slack.settle()

    [answer] = private_texts(slack)
    assert "@mascto" in answer and "Did you mean @mascot?" in answer
    assert slack.api.calls_to("chat.postMessage") == []
    assert await slack.core.generations.recent(slack.scope) == []


async def test_a_failed_video_replaces_the_progress_bar_with_the_reason(slack: SlackHarness):
    await slack.command("/sora", "a cat juggling [[moderation]]")
    await slack.settle()
    generation = await slack.core.generations.wait_finished((await newest(slack)).id, WITHIN)

    assert generation.status is GenerationStatus.FAILED
    last_edit = slack.api.calls_to("chat.update")[-1].data
    assert last_edit["ts"] == generation.target.message_id
    assert "Failed" in blocks_text(last_edit) and "content rules" in blocks_text(last_edit)
    assert action_ids(last_edit) == []  # nothing to remix
    assert slack.api.calls_to("upload") == []


async def test_a_mention_with_sora_posts_the_video_in_the_mentions_thread(slack: SlackHarness):
    await slack.event(
        {
            "type": "app_mention",
            "user": ALICE,
            "text": f"<@{slack.api.bot_user_id}> sora a paper boat",
            "ts": "1700000001.000200",
            "thread_ts": "1700000001.000100",
            "channel": CHANNEL,
            "event_ts": "1700000001.000200",
        }
    )
    await slack.settle()
    [posted] = slack.api.calls_to("chat.postMessage")
    assert posted.data["thread_ts"] == "1700000001.000100"
    assert (await newest(slack)).target.thread_id == "1700000001.000100"


# --- /character --------------------------------------------------------------------------------------------


async def test_character_add_opens_a_form_whose_submit_registers_the_clip_fetched_with_the_bot_token(
    slack: SlackHarness, clip: bytes
):
    assert (await slack.command("/character", "add @mascot")).status == 200
    await slack.settle()

    [opened] = slack.api.calls_to("views.open")
    assert opened.data["trigger_id"].startswith("trigger.")
    view = slack.opened_view()
    [picker] = [b["element"] for b in view["blocks"] if b.get("element", {}).get("type") == "file_input"]
    assert picker["filetypes"] == ["mp4", "mov"]
    [handle_input] = [b["element"] for b in view["blocks"] if b.get("block_id") == render.HANDLE]
    assert handle_input["initial_value"] == "@mascot"

    hosted = slack.api.host_file("mascot.mp4", clip)
    values = {render.CLIP: picked(hosted.file_object())} | input_values(
        handle="@mascot", name="Captain Mascot", start=None
    ) | ticked()
    reply = await slack.interaction(slack.submission(view, values))
    assert reply.status == 200 and reply.text == ""  # the form closes
    await slack.settle()

    [download] = slack.api.calls_to("download")
    assert download.headers["Authorization"] == f"Bearer {BOT_TOKEN}"
    character = await slack.core.registry.get(slack.scope, "mascot")
    assert character.name == "Captain Mascot" and character.owner_id == ALICE
    assert character.source_ref == "mascot.mp4"
    assert any("Registered" in text and "@mascot" in text for text in private_texts(slack))


async def test_a_file_that_is_not_a_video_is_refused_on_the_form_field_before_any_download(slack: SlackHarness):
    await slack.command("/character", "add @notes")
    await slack.settle()
    hosted = slack.api.host_file("notes.txt", b"just words", mimetype="text/plain", filetype="text")
    values = {render.CLIP: picked(hosted.file_object())} | input_values(handle="@notes", name=None, start=None)
    values |= ticked()

    reply = await slack.interaction(slack.submission(slack.opened_view(), values))

    assert reply.status == 200
    answer = reply.json()
    assert answer["response_action"] == "errors" and set(answer["errors"]) == {render.CLIP}
    await slack.settle()
    assert slack.api.calls_to("download") == []
    with pytest.raises(UnknownHandle):
        await slack.core.registry.get(slack.scope, "notes")


async def test_an_invalid_handle_and_start_are_shown_on_their_fields(slack: SlackHarness, clip: bytes):
    await slack.command("/character", "add")
    await slack.settle()
    hosted = slack.api.host_file("clip.mp4", clip)
    values = {render.CLIP: picked(hosted.file_object())} | input_values(handle="@No Spaces!", name=None, start="-2")
    values |= ticked()

    answer = (await slack.interaction(slack.submission(slack.opened_view(), values))).json()

    assert answer["response_action"] == "errors"
    assert set(answer["errors"]) == {render.HANDLE, render.START}
    assert "negative" in answer["errors"][render.START]


async def test_list_info_rename_and_remove_answer_privately(slack: SlackHarness, clip: bytes):
    await register(slack, clip)
    for text in ("list", "info @mascot", "rename @mascot @captain", "list"):
        await slack.command("/character", text)
        await slack.settle()
    answers = private_texts(slack)
    assert "@mascot" in answers[0] and "Mascot" in answers[1]
    assert "@captain" in answers[3] and "@mascot" not in answers[3]

    await slack.command("/character", "remove @captain", user=BOB)  # neither owner nor admin
    await slack.settle()
    assert "Only the owner of @captain" in private_texts(slack)[-1]

    slack.api.add_user(CAROL, "carol", is_admin=True)
    await slack.command("/character", "remove @captain", user=CAROL)
    await slack.settle()
    assert "Removed" in private_texts(slack)[-1]
    assert await slack.core.registry.list(slack.scope) == []
    assert slack.api.calls_to("chat.postMessage") == []  # nothing public


async def test_a_mention_with_an_mp4_attached_registers_it(slack: SlackHarness, clip: bytes):
    hosted = slack.api.host_file("pet.mp4", clip)
    reply = await slack.event(
        {
            "type": "app_mention",
            "user": ALICE,
            "text": f'<@{slack.api.bot_user_id}> character add @pet --name "Office Pet" --confirm',
            "ts": "1700000002.000100",
            "channel": CHANNEL,
            "event_ts": "1700000002.000100",
            "files": [hosted.file_object()],
        }
    )
    assert reply.status == 200
    await slack.settle()
    character = await slack.core.registry.get(slack.scope, "pet")
    assert character.name == "Office Pet"
    assert slack.api.calls_to("download")[0].headers["Authorization"] == f"Bearer {BOT_TOKEN}"
    assert slack.api.calls_to("chat.postEphemeral")[-1].data["user"] == ALICE


async def test_an_oversized_clip_is_refused_privately_without_downloading_it(slack: SlackHarness, clip: bytes):
    hosted = slack.api.host_file("huge.mp4", clip)
    described = hosted.file_object() | {"size": 5 * 1024**3}  # what Slack says about a 5 GB upload
    await slack.event(
        {
            "type": "app_mention",
            "user": ALICE,
            "text": f"<@{slack.api.bot_user_id}> character add @huge --confirm",
            "ts": "1700000003.000100",
            "channel": CHANNEL,
            "event_ts": "1700000003.000100",
            "files": [described],
        }
    )
    await slack.settle()
    assert slack.api.calls_to("download") == []
    [answer] = slack.api.calls_to("chat.postEphemeral")
    assert answer.data["user"] == ALICE and "the limit is" in answer.data["text"]
    assert await slack.core.registry.list(slack.scope) == []


# --- the message shortcut ----------------------------------------------------------------------------------


async def test_the_shortcut_opens_the_form_prefilled_with_the_messages_mp4(slack: SlackHarness, clip: bytes):
    hosted = slack.api.host_file("dog.mp4", clip)
    message = {"type": "message", "ts": "1700000004.000100", "user": BOB, "text": "", "files": [hosted.file_object()]}
    assert (await slack.interaction(slack.shortcut(message))).status == 200
    await slack.settle()

    view = slack.opened_view()
    assert view["callback_id"] == render.CHARACTER_VIEW
    assert not [b for b in view["blocks"] if b.get("block_id") == render.CLIP]  # no picker: the clip is known
    assert hosted.id in view["private_metadata"]

    await slack.interaction(slack.submission(view, input_values(handle="dog", name=None, start="0.5") | ticked()))
    await slack.settle()
    assert (await slack.core.registry.get(slack.scope, "dog")).source_ref == "dog.mp4"
    assert slack.api.calls_to("download")[0].headers["Authorization"] == f"Bearer {BOT_TOKEN}"


async def test_the_shortcut_on_a_message_without_a_video_says_so_privately(slack: SlackHarness):
    message = {"type": "message", "ts": "1700000005.000100", "user": BOB, "text": "hello"}
    await slack.interaction(slack.shortcut(message))
    await slack.settle()
    assert slack.api.calls_to("views.open") == []
    assert "no MP4" in private_texts(slack)[0]


# --- buttons under a finished video --------------------------------------------------------------------------


async def test_remix_button_opens_a_form_and_its_submit_remixes_the_video(slack: SlackHarness):
    generation, message = await finished_video(slack)

    reply = await slack.interaction(slack.button(encode_action(VideoAction.REMIX, generation.id), message))
    assert reply.status == 200
    await slack.settle()
    view = slack.opened_view()
    assert view["callback_id"] == render.REMIX_VIEW

    await slack.interaction(slack.submission(view, input_values(prompt="now at night")))
    await slack.settle()
    remix = await newest(slack)
    assert remix.kind is GenerationKind.REMIX and remix.parent_id == generation.id and remix.prompt == "now at night"
    assert len(slack.api.calls_to("chat.postMessage")) == 2
    done = await slack.core.generations.wait_finished(remix.id, WITHIN)
    assert done.delivered_at is not None and len(slack.api.calls_to("upload")) == 2


async def test_extend_button_passes_the_chosen_seconds(slack: SlackHarness):
    generation, message = await finished_video(slack)
    await slack.interaction(slack.button(encode_action(VideoAction.EXTEND, generation.id), message))
    await slack.settle()
    view = slack.opened_view()
    values = input_values(prompt="the kite lands") | {
        render.SECONDS: {"type": "static_select", "selected_option": {"value": "8"}}
    }
    await slack.interaction(slack.submission(view, values))
    await slack.settle()
    extension = await newest(slack)
    assert extension.kind is GenerationKind.EXTEND and extension.seconds == "8"


async def test_make_character_button_registers_a_character_cut_from_the_video(slack: SlackHarness):
    generation, message = await finished_video(slack)
    await slack.interaction(slack.button(encode_action(VideoAction.CHARACTER, generation.id), message))
    await slack.settle()
    view = slack.opened_view()
    assert generation.id in view["private_metadata"]

    values = input_values(handle="@kite", name="Red Kite", start=None) | ticked()
    await slack.interaction(slack.submission(view, values))
    await slack.settle()
    character = await slack.core.registry.get(slack.scope, "kite")
    assert character.source is CharacterSource.GENERATION and character.source_ref == generation.id


async def test_delete_is_refused_to_others_and_done_for_the_requester(slack: SlackHarness):
    generation, message = await finished_video(slack)
    delete = encode_action(VideoAction.DELETE, generation.id)

    await slack.interaction(slack.button(delete, message, user=BOB))
    await slack.settle()
    assert "Only the person who asked" in private_texts(slack)[-1]
    assert slack.api.calls_to("chat.delete") == []

    await slack.interaction(slack.button(delete, message))
    await slack.settle()
    [deleted] = slack.api.calls_to("chat.delete")
    assert deleted.data["ts"] == generation.target.message_id and deleted.data["channel"] == CHANNEL
    assert len(slack.api.calls_to("files.delete")) == 1
    stored = await slack.core.generations.get(slack.scope, generation.id)
    assert stored.status is GenerationStatus.DELETED


async def test_buttons_keep_working_after_a_restart(tmp_path: Path, slack_api: FakeSlackAPI):
    settings = slack_settings(tmp_path / "data")
    core = await build_app(settings, videos=fast_offline_api(tmp_path / "videos"))
    first = await start_harness(slack_api, settings, core)
    generation, message = await finished_video(first)
    await stop_harness(first)
    await core.aclose()

    # A new process: nothing in memory but what storage (and the API) holds.
    core = await build_app(settings, videos=fast_offline_api(tmp_path / "videos"))
    second = await start_harness(slack_api, settings, core)
    try:
        await second.interaction(second.button(encode_action(VideoAction.REMIX, generation.id), message))
        await second.settle()
        assert second.opened_view()["callback_id"] == render.REMIX_VIEW
    finally:
        await stop_harness(second)
        await core.aclose()


# --- requests Slack did not sign -------------------------------------------------------------------------------


async def test_a_bad_or_missing_signature_gets_401_and_nothing_happens(slack: SlackHarness):
    body = slack.command_body("/sora", "a forged request")
    forged = signed_headers(body, FORM) | {"X-Slack-Signature": "v0=" + "0" * 64}
    assert (await slack.post(body, FORM, headers=forged)).status == 401
    assert (await slack.post(body, FORM, headers={"Content-Type": FORM})).status == 401
    await slack.settle()
    assert slack.api.calls == []
    assert await slack.core.generations.recent(slack.scope) == []

    assert (await slack.post(body, FORM)).status == 200  # the same body, signed, is accepted


async def test_a_replayed_request_with_an_old_timestamp_is_refused(slack: SlackHarness):
    body = slack.command_body("/sora", "a replayed request")
    reply = await slack.post(body, FORM, timestamp=int(time.time()) - 10 * 60)
    assert reply.status == 401
    await slack.settle()
    assert slack.api.calls == []
    assert await slack.core.generations.recent(slack.scope) == []


# --- failures of our own -----------------------------------------------------------------------------------


async def test_an_unexpected_failure_is_logged_and_answered_generically(
    slack: SlackHarness, caplog: pytest.LogCaptureFixture
):
    slack.api.errors["views.open"] = "invalid_arguments"
    with caplog.at_level(logging.INFO):
        await slack.command("/character", "add @mascot")
        await slack.settle()
    assert "Something went wrong" in private_texts(slack)[0]
    assert any(r.levelno == logging.ERROR and r.exc_info for r in caplog.records)
    assert BOT_TOKEN not in caplog.text and SIGNING_SECRET not in caplog.text


async def test_healthz_answers(slack: SlackHarness):
    async with slack.session.get(f"{slack.url}/healthz") as resp:
        assert resp.status == 200 and (await resp.json())["ok"] is True


async def test_slacks_url_verification_challenge_is_answered(slack: SlackHarness):
    body = json.dumps({"token": "legacy", "challenge": "c-123", "type": "url_verification"})
    reply = await slack.post(body, "application/json")
    assert reply.status == 200 and reply.json() == {"challenge": "c-123"}


async def test_run_modes_refuse_to_start_without_their_tokens(tmp_path: Path):
    settings = slack_settings(tmp_path / "data", slack_app_token=None, slack_signing_secret=None)
    with pytest.raises(ConfigError, match="SLACK_APP_TOKEN"):
        await run_socket_mode(settings)
    with pytest.raises(ConfigError, match="SLACK_SIGNING_SECRET"):
        await run_web(settings)


def test_the_manifest_declares_what_the_listeners_answer():
    manifest = (Path(render.__file__).parent / "manifest.yml").read_text(encoding="utf-8")
    assert f"callback_id: {render.MAKE_CHARACTER_SHORTCUT}" in manifest
    assert re.findall(r"- command: (/\S+)", manifest) == ["/sora", "/character", "/soracast"]
    for line in ("- app_mention", "socket_mode_enabled: true"):
        assert line in manifest
    for scope in ("commands", "chat:write", "files:read", "files:write", "app_mentions:read", "users:read"):
        assert f"- {scope} " in manifest or manifest.rstrip().endswith(f"- {scope}")
