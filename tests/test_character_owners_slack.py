"""A character belongs to someone, on Slack: real slack-bolt over signed HTTP against the fake Web API —
refusals with an Ask button, direct messages (`conversations.open` + `chat.postMessage`) with Approve / Decline
that work after a restart, the owner's notes with permalinks, the share form, `/character videos` with Delete,
instructions and the rights box."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from adapters.slack import render
from adapters.slack.origin import ModalState, Origin
from bot.actions import VideoAction, encode_action
from bot.app import build_app
from bot.models import AccessRequestStatus, GenerationStatus, Sharing
from tests.fakes.slack_api import Call, FakeSlackAPI
from tests.fixtures.media import Mp4Factory
from tests.fixtures.slack import ALICE, CHANNEL, SlackHarness, slack_settings, start_harness, stop_harness
from tests.fixtures.videos import fast_offline_api
from tests.test_slack_adapter import (
    BOB,
    CAROL,
    WITHIN,
    action_ids,
    input_values,
    newest,
    picked,
    private_texts,
    register,
    ticked,
)


@pytest.fixture
def clip(make_mp4: Mp4Factory) -> bytes:
    """A short real MP4 a user might upload."""
    return make_mp4("upload.mp4", seconds=3.0).read_bytes()


def private_answers(slack: SlackHarness) -> list[dict[str, Any]]:
    """The ephemeral answers sent through response URLs, with their blocks."""
    return [c.data for c in slack.api.calls_to("response") if c.data.get("response_type") == "ephemeral"]


def blocks_of(data: dict[str, Any]) -> list[dict[str, Any]]:
    blocks = data.get("blocks")
    return json.loads(blocks) if isinstance(blocks, str) else blocks or []


def text_of(data: dict[str, Any]) -> str:
    """Every text a message shows (its blocks' sections and contexts)."""
    found = []
    for block in blocks_of(data):
        if block.get("type") == "section":
            found.append(block["text"]["text"])
        for element in block.get("elements") or ():
            if isinstance(element, dict) and element.get("type") == "mrkdwn":
                found.append(element["text"])
    return "\n".join(found)


def shown_message(call: Call) -> dict[str, Any]:
    """A message soracast posted, as Slack hands it back in a button click."""
    assert call.answer is not None
    return {"type": "message", "ts": call.answer["ts"], "user": "U0BOT", "blocks": blocks_of(call.data)}


async def run(slack: SlackHarness, command: str, text: str, user: str = ALICE) -> None:
    assert (await slack.command(command, text, user=user)).status == 200
    await slack.settle()


async def kept_to_alice(slack: SlackHarness, clip: bytes) -> None:
    await register(slack, clip)
    await run(slack, "/character", "share @mascot only-me")
    assert "may now be used by only <@U0ALICE> (and admins)" in private_texts(slack)[-1]


async def test_sora_with_a_character_not_shared_with_you_is_refused_privately_with_an_ask_button(
    slack: SlackHarness, clip: bytes
) -> None:
    await kept_to_alice(slack, clip)
    mascot = await slack.core.registry.get(slack.scope, "mascot")
    await run(slack, "/sora", "@mascot surfing", user=BOB)

    answer = private_answers(slack)[-1]
    assert "@mascot belongs to <@U0ALICE>, who has not shared it with you." in text_of(answer)
    assert action_ids(answer) == [encode_action(VideoAction.ASK, mascot.id)]
    assert slack.api.calls_to("chat.postMessage") == [], "no progress message, nothing public"
    assert await slack.core.generations.recent(slack.scope) == []


async def test_remix_and_cuts_of_a_video_with_someone_elses_character_are_refused(
    slack: SlackHarness, clip: bytes
) -> None:
    await kept_to_alice(slack, clip)
    await run(slack, "/sora", "@mascot surfing")
    video = await slack.core.generations.wait_finished((await newest(slack)).id, WITHIN)

    await run(slack, "/character", f"from {video.id} @copycat --confirm", user=BOB)
    assert "@mascot belongs to <@U0ALICE>" in text_of(private_answers(slack)[-1])
    message = {"type": "message", "ts": video.target.message_id, "blocks": []}
    for action in (VideoAction.REMIX, VideoAction.EXTEND, VideoAction.CHARACTER):
        await slack.interaction(slack.button(encode_action(action, video.id), message, user=BOB))
        await slack.settle()
        assert "@mascot belongs to <@U0ALICE>" in private_texts(slack)[-1]
    assert slack.api.calls_to("views.open") == [], "refused before any form opens"
    # A form opened earlier (before the owner kept it to herself) is refused when it comes back.
    state = ModalState(origin=Origin(team_id=slack.team_id, user_id=BOB, channel_id=CHANNEL), generation_id=video.id)
    view = render.remix_modal(state.encode(), video)
    await slack.interaction(slack.submission(view, input_values(prompt="at night"), user=BOB))
    await slack.settle()
    assert "@mascot belongs to <@U0ALICE>" in private_texts(slack)[-1]
    assert [g.id for g in await slack.core.generations.recent(slack.scope)] == [video.id]


async def test_the_share_form_picks_people_and_only_the_owner_gets_it(slack: SlackHarness, clip: bytes) -> None:
    await register(slack, clip)
    await run(slack, "/character", "share @mascot", user=BOB)
    assert slack.api.calls_to("views.open") == [], "refused before the form"
    assert "Only the owner of @mascot (<@U0ALICE>)" in text_of(private_answers(slack)[-1])

    await run(slack, "/character", "share @mascot")
    view = slack.opened_view()
    assert view["callback_id"] == render.SHARE_VIEW
    values = {
        render.SHARING: {"type": "radio_buttons", "selected_option": {"value": Sharing.APPROVED.value}},
        render.PEOPLE: {"type": "multi_users_select", "selected_users": [BOB]},
    }
    reply = await slack.interaction(slack.submission(view, values))
    assert reply.status == 200 and reply.text == ""
    await slack.settle()
    mascot = await slack.core.registry.get(slack.scope, "mascot")
    assert (mascot.sharing, mascot.approved) == (Sharing.APPROVED, [BOB])
    assert "may now be used by <@U0ALICE>, admins and <@U0BOB>." in private_texts(slack)[-1]

    empty = values | {render.PEOPLE: {"type": "multi_users_select", "selected_users": []}}
    refused = (await slack.interaction(slack.submission(view, empty))).json()
    assert refused["response_action"] == "errors" and set(refused["errors"]) == {render.PEOPLE}

    await run(slack, "/character", "unshare @mascot <@U0BOB|bob>")
    assert (await slack.core.registry.get(slack.scope, "mascot")).approved == []
    await run(slack, "/character", "share @mascot everyone")
    assert (await slack.core.registry.get(slack.scope, "mascot")).sharing is Sharing.EVERYONE


async def test_ask_direct_messages_the_owner_whose_approve_works_after_a_restart_and_only_once(
    tmp_path: Path, slack_api: FakeSlackAPI, clip: bytes
) -> None:
    settings = slack_settings(tmp_path / "data")
    slack_api.add_user(CAROL, "carol", is_admin=True)
    core = await build_app(settings, videos=fast_offline_api(tmp_path / "videos"))
    first = await start_harness(slack_api, settings, core)
    try:
        await kept_to_alice(first, clip)
        await run(first, "/sora", "@mascot surfing", user=BOB)
        refusal = private_answers(first)[-1]
        [ask] = action_ids(refusal)
        await first.interaction(first.button(ask, {"type": "message", "blocks": blocks_of(refusal)}, user=BOB))
        await first.settle()
        assert "Asked <@U0ALICE> to let you use @mascot." in private_texts(first)[-1]
        [opened] = slack_api.calls_to("conversations.open")
        assert opened.data["users"] == ALICE
        [dm] = slack_api.dms_to(ALICE)
        [request] = await core.storage.pending_access_requests(first.scope)
        assert "<@U0BOB> asks to use @mascot (Mascot) in their videos." in text_of(dm.data)
        assert action_ids(dm.data) == [
            encode_action(VideoAction.APPROVE, request.id), encode_action(VideoAction.DECLINE, request.id)
        ]
        await run(first, "/character", "ask @mascot", user=BOB)
        assert "have not decided yet" in private_texts(first)[-1]
        assert len(slack_api.dms_to(ALICE)) == 1, "the owner is asked once"
        await run(first, "/character", "requests", user=CAROL)
        admins_list = private_answers(first)[-1]  # an admin looks too, and will click later
    finally:
        await stop_harness(first)
        await core.aclose()

    core = await build_app(settings, videos=fast_offline_api(tmp_path / "videos"))  # a new process
    h = await start_harness(slack_api, settings, core)
    try:
        channel = dm.data["channel"]
        click = h.button(encode_action(VideoAction.APPROVE, request.id), shown_message(dm), user=ALICE, channel=channel)
        await h.interaction(click)
        await h.settle()
        [shown] = [c for c in slack_api.calls_to("chat.update") if c.data["channel"] == channel]
        assert shown.data["ts"] == dm.answer["ts"]  # type: ignore[index]
        assert "Approved by <@U0ALICE>: <@U0BOB> may now use @mascot." in text_of(shown.data)
        assert action_ids(shown.data) == [], "a decided request has no buttons left"
        [told] = slack_api.dms_to(BOB)
        assert "<@U0ALICE> approved your request" in text_of(told.data)
        stored = await core.storage.get_access_request(request.id)
        assert stored is not None and stored.status is AccessRequestStatus.APPROVED

        decline = encode_action(VideoAction.DECLINE, request.id)
        await h.interaction(h.button(decline, {"type": "message", "blocks": blocks_of(admins_list)}, user=CAROL))
        await h.settle()
        assert "already approved by <@U0ALICE>" in text_of(private_answers(h)[-1])
        await run(h, "/sora", "@mascot surfing at last", user=BOB)
        assert (await newest(h)).requester_id == BOB
    finally:
        await stop_harness(h)
        await core.aclose()


async def test_an_owner_who_cannot_be_messaged_finds_the_request_in_character_requests(
    slack: SlackHarness, clip: bytes
) -> None:
    slack.api.dm_closed.add(ALICE)
    await kept_to_alice(slack, clip)
    await run(slack, "/character", "ask @mascot", user=BOB)
    assert "could not be sent a private message" in private_texts(slack)[-1]
    await run(slack, "/character", "requests")
    listing = private_answers(slack)[-1]
    [request] = await slack.core.storage.pending_access_requests(slack.scope)
    assert f"`{request.id}` · <@U0BOB> asks to use @mascot" in text_of(listing)
    await run(slack, "/character", f"approve {request.id}", user=BOB)
    assert "Only <@U0ALICE>, who owns @mascot, or an admin can decide" in text_of(private_answers(slack)[-1])
    await run(slack, "/character", f"decline {request.id}")
    assert "Declined by <@U0ALICE>: <@U0BOB> may not use @mascot." in text_of(private_answers(slack)[-1])


async def test_the_owner_gets_a_direct_message_with_a_permalink_for_someone_elses_video_only(
    slack: SlackHarness, clip: bytes
) -> None:
    await register(slack, clip)
    await run(slack, "/sora", "@mascot alone")
    await run(slack, "/sora", "@mascot with <bob>", user=BOB)
    for generation in await slack.core.generations.recent(slack.scope):
        await slack.core.generations.wait_finished(generation.id, WITHIN)
    await slack.core.generations.notices.flush()

    [note] = slack.api.dms_to(ALICE)
    bobs = await newest(slack)
    link = f"https://fake.slack.test/archives/{CHANNEL}/p{bobs.target.message_id.replace('.', '')}"  # type: ignore[union-attr]
    shown = text_of(note.data)
    assert "*A video was made with your character*" in shown
    assert f"<@U0BOB> used @mascot · `{bobs.id}` · @mascot with &lt;bob&gt; · <{link}|see the post>" in shown
    assert slack.api.calls_to("chat.getPermalink")[-1].data["message_ts"] == bobs.target.message_id
    assert slack.api.dms_to(BOB) == [], "nobody else is told"

    await run(slack, "/character", "notify @mascot off")
    await run(slack, "/sora", "@mascot unannounced", user=BOB)
    await slack.core.generations.wait_finished((await newest(slack)).id, WITHIN)
    await slack.core.generations.notices.flush()
    assert len(slack.api.dms_to(ALICE)) == 1


async def test_character_videos_lists_them_for_the_owner_whose_delete_removes_post_and_file(
    slack: SlackHarness, clip: bytes
) -> None:
    await register(slack, clip)
    await run(slack, "/sora", "@mascot with bob", user=BOB)
    video = await slack.core.generations.wait_finished((await newest(slack)).id, WITHIN)

    await run(slack, "/character", "videos @mascot", user=CAROL)
    assert "can list its videos" in text_of(private_answers(slack)[-1])
    await run(slack, "/character", f"takedown {video.id}", user=CAROL)
    assert "Only the person who asked for this video" in private_texts(slack)[-1]
    assert slack.api.calls_to("chat.delete") == []
    await run(slack, "/character", "videos @mascot")
    listing = private_answers(slack)[-1]
    blocks = blocks_of(listing)
    assert blocks[0]["text"]["text"] == "*1 video feature @mascot, newest first:*"
    assert f"`{video.id}` · <@U0BOB> · " in blocks[1]["text"]["text"] and f"<#{CHANNEL}>" in blocks[1]["text"]["text"]
    assert blocks[1]["accessory"]["action_id"] == encode_action(VideoAction.DELETE, video.id)

    await slack.interaction(slack.button(blocks[1]["accessory"]["action_id"], {"type": "message", "blocks": blocks}))
    await slack.settle()
    [deleted] = slack.api.calls_to("chat.delete")
    assert (deleted.data["channel"], deleted.data["ts"]) == (CHANNEL, video.target.message_id)
    assert len(slack.api.calls_to("files.delete")) == 1
    assert (await slack.core.generations.get(slack.scope, video.id)).status is GenerationStatus.DELETED


async def test_instructions_are_set_shown_and_sent_without_the_handle(slack: SlackHarness, clip: bytes) -> None:
    await register(slack, clip)
    await run(slack, "/character", "instructions @mascot wave at <!here>")
    assert "The instructions" in private_texts(slack)[-1]
    await run(slack, "/character", 'instructions @mascot "@mascot always wears the <red> scarf"')
    await run(slack, "/character", "info @mascot", user=BOB)
    assert "Instructions: @mascot always wears the &lt;red&gt; scarf" in text_of(private_answers(slack)[-1])
    await run(slack, "/sora", "@mascot surfing", user=BOB)
    generation = await newest(slack)
    assert generation.api_prompt.endswith("Standing instructions for Mascot: Mascot always wears the <red> scarf.")
    assert "@mascot" not in generation.api_prompt


async def test_registering_needs_the_box_ticked_or_the_confirm_word(slack: SlackHarness, clip: bytes) -> None:
    await run(slack, "/character", "add @mascot")
    view = slack.opened_view()
    [box] = [b for b in view["blocks"] if b.get("block_id") == render.CONFIRM]
    assert box["element"]["type"] == "checkboxes" and not box.get("optional")
    hosted = slack.api.host_file("mascot.mp4", clip)
    values = {render.CLIP: picked(hosted.file_object())} | input_values(handle="@mascot", name=None, start=None)
    answer = (await slack.interaction(slack.submission(view, values))).json()
    assert answer["response_action"] == "errors" and set(answer["errors"]) == {render.CONFIRM}

    await slack.event(
        {
            "type": "app_mention",
            "user": ALICE,
            "text": f"<@{slack.api.bot_user_id}> character add @pet",
            "ts": "1700000002.000100",
            "channel": CHANNEL,
            "event_ts": "1700000002.000100",
            "files": [hosted.file_object()],
        }
    )
    await slack.settle()
    assert "needs your confirmation" in private_texts(slack)[-1]
    assert slack.api.calls_to("download") == [], "nothing is downloaded"
    assert await slack.core.registry.list(slack.scope) == []

    await slack.interaction(slack.submission(view, values | ticked()))
    await slack.settle()
    character = await slack.core.registry.get(slack.scope, "mascot")
    assert character.rights_confirmed_by == ALICE


def test_the_manifest_asks_for_direct_messages() -> None:
    manifest = (Path(render.__file__).parent / "manifest.yml").read_text(encoding="utf-8")
    assert "- im:write " in manifest
