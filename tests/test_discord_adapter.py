"""The Discord adapter end to end: real discord.py dispatching real interaction payloads, the real core on the
offline renderer, and a fake Discord API that records what soracast sent it."""

from __future__ import annotations

import asyncio
import io
import logging
from pathlib import Path
from typing import Any

import av
import discord
import pytest

from adapters.discord.app import prepare_bot
from bot.actions import FINISHED_ACTIONS, VideoAction, encode_action
from bot.backends.openai.client import HTTPVideosAPI
from bot.characters import media
from bot.chat import present
from bot.errors import (
    ClipWrongLength,
    HandleTaken,
    HumanLikenessRefused,
    ModerationBlocked,
    NotAVideo,
    PermissionDenied,
    QuotaExhausted,
    SoracastError,
    UnknownHandle,
)
from bot.models import Actor, Character, CharacterSource, Generation, GenerationKind, GenerationStatus
from tests.fakes.discord_api import DEFERRED_MESSAGE, EPHEMERAL, MODAL, Received
from tests.fixtures.discord import ADMIN, ALICE, BOB, BOT_TOKEN, GUILD, DiscordBots, DiscordHarness, Member, Sent
from tests.fixtures.videos import VideosEmulator

WITHIN = 60.0  # a safety net for a hung test, not a timing assertion


# --- helpers ------------------------------------------------------------------------------------------------


def callback(h: DiscordHarness, sent: Sent) -> Received:
    """The one interaction callback (the acknowledgement) soracast sent for `sent`."""
    found = h.api.callbacks(sent.token)
    assert len(found) == 1, f"expected exactly one acknowledgement, got {len(found)}"
    return found[0]


def private_embeds(h: DiscordHarness, sent: Sent) -> list[dict[str, Any]]:
    """Embeds of the messages this interaction showed to the user only (ephemeral)."""
    return [e for m in h.api.messages_of(sent.token) if m["flags"] & EPHEMERAL for e in m["embeds"]]


def public_messages(h: DiscordHarness, sent: Sent) -> list[dict[str, Any]]:
    """Messages of this interaction everyone can see and that still exist."""
    return [m for m in h.api.messages_of(sent.token) if not m["flags"] & EPHEMERAL and m["id"] in h.api.messages]


def custom_ids(message: dict[str, Any]) -> list[str]:
    return [c["custom_id"] for row in message.get("components", []) for c in row.get("components", [])]


def assert_private_error(h: DiscordHarness, sent: Sent, error: SoracastError) -> None:
    """The interaction's only answer is private and says exactly what the core's error says."""
    embeds = private_embeds(h, sent)
    assert embeds, "no private answer"
    assert embeds[-1]["title"] == present.error_title(error)
    assert embeds[-1]["description"] == error.user_text()
    assert not public_messages(h, sent), "an error was shown publicly"


def clip_attachment(h: DiscordHarness, clip: Path) -> dict[str, Any]:
    return h.attachment(clip.name, clip.read_bytes())


async def add_character(
    h: DiscordHarness, clip: Path, handle: str = "mascot", *, user: Member = ALICE, confirm: bool = True, **options: str
) -> Sent:
    attachment = clip_attachment(h, clip)
    payload = h.slash(
        "character",
        {"handle": handle, "clip": "", "confirm": confirm, **options},
        subcommand="add",
        attachments={"clip": attachment},
        user=user,
    )
    return await h.run(payload)


async def sora(
    h: DiscordHarness, prompt: str, *, user: Member = ALICE, limit: int | None = None, **options: str
) -> tuple[Sent, Generation]:
    """Run `/sora` (options as typed; `limit` is the server's upload limit) and return the generation it started."""
    before = {g.id for g in await h.core.generations.recent(h.scope, 100)}
    extra: dict[str, Any] = {"attachment_size_limit": limit} if limit is not None else {}
    sent = await h.run(h.slash("sora", {"prompt": prompt, **options}, user=user, **extra))
    started = [g for g in await h.core.generations.recent(h.scope, 100) if g.id not in before]
    assert len(started) == 1, private_embeds(h, sent)
    return sent, started[0]


def result_message(h: DiscordHarness, generation: Generation) -> dict[str, Any]:
    assert generation.target.message_id is not None
    return h.api.messages[generation.target.message_id]


def uploaded_video(h: DiscordHarness, message: dict[str, Any]) -> bytes:
    """The bytes of the file attached to a message, as uploaded to the fake (multipart `files[n]`)."""
    assert message["attachments"], "no file is attached"
    url = message["attachments"][0]["url"]
    data, _ = h.api.hosted[url.split("/cdn/", 1)[1]]
    uploads = [f.data for r in h.api.requests for f in r.files]
    assert data in uploads, "the attachment did not come from an upload"
    return data


def video_stream(data: bytes) -> tuple[int, int, float]:
    """Width, height and duration of an MP4 given as bytes (fails if it is not one)."""
    with av.open(io.BytesIO(data), format="mp4") as container:
        stream = container.streams.video[0]
        duration = float(container.duration or 0) / av.time_base
        return stream.codec_context.width, stream.codec_context.height, duration


# --- /character ---------------------------------------------------------------------------------------------


async def test_character_add_acknowledges_privately_then_downloads_and_registers_in_this_server(
    discord_bot: DiscordHarness, make_mp4: Any
) -> None:
    h = discord_bot
    clip = make_mp4("mascot.mp4", seconds=3.0)
    sent = await add_character(h, clip, "Mascot", name="Captain Mascot")

    ack = callback(h, sent)
    assert ack.json["type"] == DEFERRED_MESSAGE and ack.ephemeral
    download = h.api.calls("GET", "/cdn/attachments/")
    assert len(download) == 1 and download[0].at > ack.at, "the clip must be fetched after the acknowledgement"
    character = await h.core.registry.get(h.scope, "mascot")
    assert character.name == "Captain Mascot" and character.owner_id == ALICE.id
    assert character.source is CharacterSource.UPLOAD and character.source_ref == "mascot.mp4"
    assert private_embeds(h, sent)[-1]["title"] == "Registered @mascot"


async def test_a_file_that_is_not_an_mp4_is_refused_before_anything_is_downloaded(
    discord_bot: DiscordHarness,
) -> None:
    h = discord_bot
    notes = b"my holiday notes, not a video\n" * 10
    attachment = h.attachment("notes.txt", notes, "text/plain")
    sent = await h.run(
        h.slash(
            "character",
            {"handle": "notes", "clip": "", "confirm": True},
            subcommand="add",
            attachments={"clip": attachment},
        )
    )

    with pytest.raises(NotAVideo) as expected:
        media.check_upload("notes.txt", "text/plain", len(notes), h.core.registry.limits)
    assert_private_error(h, sent, expected.value)
    assert not h.api.calls("GET", "/cdn/"), "a refused file must not be downloaded"


@pytest.mark.parametrize(("seconds", "settings"), [(0.5, {}), (4.0, {"max_clip_input_seconds": 2.0})])
async def test_a_clip_of_the_wrong_length_is_refused_privately(
    discord_bots: DiscordBots, make_mp4: Any, seconds: float, settings: dict[str, Any]
) -> None:
    h = await discord_bots.start(**settings)
    clip = make_mp4("wrong.mp4", seconds=seconds)
    sent = await add_character(h, clip, "wrong")

    with pytest.raises(ClipWrongLength) as expected:
        await h.core.registry.register(h.scope, Actor(id=ALICE.id), "wrong", clip, rights_confirmed=True)
    assert_private_error(h, sent, expected.value)


async def test_a_handle_already_taken_is_refused_privately(discord_bot: DiscordHarness, make_mp4: Any) -> None:
    h = discord_bot
    clip = make_mp4("mascot.mp4")
    await add_character(h, clip)
    again = await add_character(h, clip, user=BOB)

    with pytest.raises(HandleTaken) as expected:
        await h.core.registry.register(h.scope, Actor(id=BOB.id), "mascot", clip, rights_confirmed=True)
    assert_private_error(h, again, expected.value)
    assert (await h.core.registry.get(h.scope, "mascot")).owner_id == ALICE.id


async def test_a_clip_showing_a_real_person_is_refused_with_the_human_likeness_title(
    discord_bot: DiscordHarness, make_mp4: Any
) -> None:
    h = discord_bot
    sent = await add_character(h, make_mp4("selfie.mp4", title="a person waving"), "me_irl")

    embeds = private_embeds(h, sent)
    assert embeds and embeds[-1]["title"] == present.error_title(HumanLikenessRefused("x"))
    assert not public_messages(h, sent)
    assert await h.core.registry.list(h.scope) == []


async def test_an_unknown_handle_is_answered_privately_with_the_closest_handles(
    discord_bot: DiscordHarness, make_mp4: Any
) -> None:
    h = discord_bot
    await add_character(h, make_mp4("mascot.mp4"))
    sent = await h.run(h.slash("character", {"handle": "mascat"}, subcommand="info"))

    assert_private_error(h, sent, UnknownHandle("mascat", ["mascot"]))


async def test_characters_are_private_to_their_server(discord_bot: DiscordHarness, make_mp4: Any) -> None:
    h = discord_bot
    await add_character(h, make_mp4("mascot.mp4"))
    h.guild_id = "900000000000000099"
    sent = await h.run(h.slash("character", {"handle": "mascot"}, subcommand="info"))

    assert_private_error(h, sent, UnknownHandle("mascot", []))


async def test_only_the_owner_or_an_admin_may_remove_a_character(discord_bot: DiscordHarness, make_mp4: Any) -> None:
    h = discord_bot
    await add_character(h, make_mp4("mascot.mp4"))
    refused = await h.run(h.slash("character", {"handle": "mascot"}, subcommand="remove", user=BOB))
    with pytest.raises(PermissionDenied) as expected:
        await h.core.registry.remove(h.scope, Actor(id=BOB.id), "mascot")
    assert_private_error(h, refused, expected.value)

    removed = await h.run(h.slash("character", {"handle": "mascot"}, subcommand="remove", user=ADMIN))
    assert "Removed @mascot" in private_embeds(h, removed)[-1]["description"]
    assert await h.core.registry.list(h.scope) == []


async def test_rename_and_info_show_the_new_handle(discord_bot: DiscordHarness, make_mp4: Any) -> None:
    h = discord_bot
    await add_character(h, make_mp4("mascot.mp4"))
    await h.run(h.slash("character", {"handle": "mascot", "new_handle": "captain"}, subcommand="rename"))
    info = await h.run(h.slash("character", {"handle": "@captain"}, subcommand="info"))

    assert private_embeds(h, info)[-1]["title"] == "@captain"


async def seed_characters(h: DiscordHarness, count: int) -> None:
    """Characters stored directly (the list does not care how they were made)."""
    for index in range(count):
        await h.core.storage.add_character(
            Character(
                scope=h.scope,
                handle=f"hero{index:02d}",
                name=f"Hero {index}",
                api_character_id=f"char_{index}",
                owner_id=ALICE.id,
            )
        )


async def test_a_long_character_list_pages_with_prev_and_next(discord_bot: DiscordHarness) -> None:
    h = discord_bot
    await seed_characters(h, 13)
    listed = await h.run(h.slash("character", None, subcommand="list"))

    first = h.api.messages_of(listed.token)[-1]
    assert first["flags"] & EPHEMERAL
    assert "hero00" in first["embeds"][0]["description"] and "hero12" not in first["embeds"][0]["description"]
    assert custom_ids(first) == ["soracast-list:prev:0", "soracast-list:next:1"]

    clicked = await h.run(h.button("soracast-list:next:1", first))
    assert callback(h, clicked).json["type"] == 6  # a deferred update: no new message
    page = h.api.archive[first["id"]]
    assert "hero12" in page["embeds"][0]["description"] and "hero00" not in page["embeds"][0]["description"]
    assert page["embeds"][0]["footer"]["text"] == "Page 2 of 2"


async def test_a_short_list_has_no_paging_buttons(discord_bot: DiscordHarness) -> None:
    h = discord_bot
    await seed_characters(h, 3)
    listed = await h.run(h.slash("character", None, subcommand="list"))

    assert custom_ids(h.api.messages_of(listed.token)[-1]) == []


async def test_handle_options_autocomplete_with_this_servers_handles(discord_bot: DiscordHarness) -> None:
    h = discord_bot
    await seed_characters(h, 3)
    sent = await h.run(h.slash("character", {"handle": "hero0"}, subcommand="info", focused="handle"))

    answer = callback(h, sent).json
    assert answer["type"] == 8
    assert [c["value"] for c in answer["data"]["choices"]] == ["hero00", "hero01", "hero02"]


async def test_the_prompt_autocompletes_the_handle_being_typed(discord_bot: DiscordHarness) -> None:
    h = discord_bot
    await seed_characters(h, 2)
    sent = await h.run(h.slash("sora", {"prompt": "a duel between @hero00 and @hero"}, focused="prompt"))

    choices = callback(h, sent).json["data"]["choices"]
    assert [c["value"] for c in choices] == ["a duel between @hero00 and @hero00", "a duel between @hero00 and @hero01"]


async def test_register_role_restricts_who_may_add_characters(discord_bot: DiscordHarness, make_mp4: Any) -> None:
    h = discord_bot
    role = h.role("artists")
    config = {"register_role": ""}
    refused = await h.run(h.slash("soracast", config, subcommand="config", roles={"register_role": role}))
    with pytest.raises(PermissionDenied) as not_admin:
        await h.core.registry.configure(h.scope, Actor(id=ALICE.id), register_role_id=role["id"])
    assert_private_error(h, refused, not_admin.value)

    await h.run(h.slash("soracast", config, subcommand="config", roles={"register_role": role}, user=ADMIN))
    assert (await h.core.registry.scope_settings(h.scope)).register_role_id == role["id"]

    sent = await add_character(h, make_mp4("mascot.mp4"))
    assert private_embeds(h, sent)[-1]["title"] == present.error_title(PermissionDenied("x"))
    assert not h.api.calls("GET", "/cdn/"), "a member without the role must not cause a download"
    artist = Member("800000000000000004", "artist", roles=(role["id"],))
    await add_character(h, make_mp4("mascot.mp4"), user=artist)
    assert (await h.core.registry.get(h.scope, "mascot")).owner_id == artist.id


# --- /sora --------------------------------------------------------------------------------------------------


async def test_sora_posts_one_public_message_that_ends_with_the_mp4_and_its_buttons(
    discord_bot: DiscordHarness, make_mp4: Any
) -> None:
    h = discord_bot
    await add_character(h, make_mp4("mascot.mp4"))
    sent, generation = await sora(h, "@mascot surfing at sunset")

    ack = callback(h, sent)
    assert ack.json["type"] == DEFERRED_MESSAGE and not ack.ephemeral, "/sora thinks publicly"
    first_edit = h.api.calls("PATCH", f"/webhooks/{h.api.application_id}/{sent.token}/messages/@original")
    assert first_edit and first_edit[0].at > ack.at
    shown = first_edit[0].json["embeds"][0]
    assert "@mascot surfing at sunset" in shown["description"] and "@mascot (Mascot)" in shown["footer"]["text"]
    assert "%" in shown["fields"][0]["value"], "the progress bar is shown from the start"

    done = await h.core.generations.wait_finished(generation.id, WITHIN)
    assert done.status is GenerationStatus.COMPLETED and done.delivered_at is not None
    message = result_message(h, done)
    assert public_messages(h, sent) == [message], "one public message per generation"
    width, height, duration = video_stream(uploaded_video(h, message))
    assert (width, height) == tuple(int(x) for x in done.size.split("x")) and duration > 3.0
    assert message["attachments"][0]["filename"] == f"soracast-{done.id}.mp4"
    assert custom_ids(message) == [encode_action(a, done.id) for a in FINISHED_ACTIONS]
    assert message["embeds"][0]["fields"][0]["value"] == present.status_line(done)


async def test_a_video_done_before_its_first_message_is_shown_still_ends_as_the_video(
    discord_bots: DiscordBots,
) -> None:
    # The job finishes at once while Discord is slow to take the first edit: delivery must wait for it.
    h = await discord_bots.start(offline={"time_scale": 1e6, "render": "stub"})
    h.api.delays[("PATCH", "/messages/@original")] = 0.5
    _, generation = await sora(h, "a quick flash of lightning")
    done = await h.core.generations.wait_finished(generation.id, WITHIN)

    message = result_message(h, done)
    assert message["embeds"][0]["fields"][0]["value"] == "Done"
    assert message["attachments"] and custom_ids(message) == [encode_action(a, done.id) for a in FINISHED_ACTIONS]
    first_edit = h.api.calls("PATCH", "/messages/@original")[0]
    upload = next(r for r in h.api.requests if r.files)
    assert upload.at > first_edit.at


async def test_in_a_burst_no_command_starts_its_work_before_every_acknowledgement_is_done(
    discord_bots: DiscordBots,
) -> None:
    h = await discord_bots.start(offline={"time_scale": 1.0, "job_seconds": 3600.0})  # nothing renders meanwhile
    payloads = [h.slash("sora", {"prompt": f"fox number {i}"}) for i in range(20)]
    # One acknowledgement is slow to reach Discord; the others' work must not run ahead of it.
    h.api.delays[("POST", f"{payloads[-1]['token']}/callback")] = 0.3
    tasks = [task for payload in payloads for task in h.dispatch(payload)]  # all at once, as a gateway burst
    await asyncio.wait_for(asyncio.gather(*tasks), WITHIN)

    acks = [callback(h, Sent(p["id"], p["token"], p)) for p in payloads]
    first_messages = h.api.calls("PATCH", "/messages/@original")
    assert len(first_messages) == 20
    assert max(a.answered_at or 0.0 for a in acks) < min(m.at for m in first_messages)


async def test_every_post_and_edit_mentions_nobody(discord_bot: DiscordHarness, make_mp4: Any) -> None:
    h = discord_bot
    await add_character(h, make_mp4("mascot.mp4"))
    # A member named in a prompt is shown, never pinged (mass mentions are refused before this; see below).
    _, generation = await sora(h, "@mascot waves at <@800000000000000002> and <@!800000000000000001>")
    await h.core.generations.wait_finished(generation.id, WITHIN)

    writes = [
        r
        for r in h.api.requests
        if (r.method in ("POST", "PATCH") and "/messages" in r.path)
        or (r.method == "POST" and r.path.startswith("/api/v10/webhooks/"))
    ]
    assert len(writes) >= 3
    for request in writes:
        assert request.json["allowed_mentions"]["parse"] == [], request.path


async def test_progress_edits_use_the_channel_endpoint_not_the_interaction_token(
    discord_bot: DiscordHarness,
) -> None:
    h = discord_bot
    sent, generation = await sora(h, "a lighthouse in a storm")
    done = await h.core.generations.wait_finished(generation.id, WITHIN)

    later = [r for r in h.api.requests if r.at > h.api.calls("PATCH", "/messages/@original")[0].at]
    assert later and all(sent.token not in r.path for r in later), "edits after the first must not need the token"
    assert h.api.calls("PATCH", f"/channels/{h.channel_id}/messages/{done.target.message_id}")


async def test_sora_with_an_unknown_handle_answers_privately_and_leaves_no_public_message(
    discord_bot: DiscordHarness,
) -> None:
    h = discord_bot
    sent = await h.run(h.slash("sora", {"prompt": "@nobody dancing"}))

    assert_private_error(h, sent, UnknownHandle("nobody", []))
    assert await h.core.generations.recent(h.scope) == []


async def test_options_are_the_offered_models_lengths_and_sizes(discord_bot: DiscordHarness) -> None:
    h = discord_bot
    _, generation = await sora(h, "a red fox in snow", seconds="8", size="720x1280", model="sora-2-pro")

    assert (generation.seconds, generation.size, generation.model) == ("8", "720x1280", "sora-2-pro")
    command = next(c for c in h.client.tree.get_commands() if c.name == "sora")
    choices = {p.name: [c.value for c in p.choices] for p in command.parameters}  # type: ignore[union-attr]
    assert set(choices["size"]) == set(h.settings.allowed_sizes)
    assert choices["seconds"] == h.settings.allowed_seconds
    assert choices["model"] == h.settings.allowed_models
    labels = {p.name: [c.name for c in p.choices] for p in command.parameters}  # type: ignore[union-attr]
    assert "1280x720 (16:9, 720p)" in labels["size"] and "8 s" in labels["seconds"]


async def test_a_moderated_video_turns_its_message_into_the_failure(discord_bot: DiscordHarness) -> None:
    h = discord_bot
    _, generation = await sora(h, "something [[moderation]] would block")
    done = await h.core.generations.wait_finished(generation.id, WITHIN)

    assert done.status is GenerationStatus.FAILED
    message = result_message(h, done)
    assert message["embeds"][0]["fields"][0]["value"] == present.status_line(done)
    assert present.failure_text(done) in message["embeds"][0]["fields"][0]["value"]
    assert message["attachments"] == [] and custom_ids(message) == []


@pytest.mark.parametrize(
    ("fault", "error_type"),
    [
        ({"status": 429, "code": "insufficient_quota", "type": "insufficient_quota"}, QuotaExhausted),
        ({"status": 400, "code": "moderation_blocked", "type": "invalid_request_error"}, ModerationBlocked),
    ],
    ids=["quota-exhausted", "moderation-refusal"],
)
async def test_a_refusal_by_the_videos_api_is_shown_privately_with_its_title(
    discord_bots: DiscordBots, videos_emulator: VideosEmulator, fault: dict[str, Any], error_type: type
) -> None:
    # The Videos API over real HTTP (the emulator), refusing the create with the injected answer.
    h = await discord_bots.start(videos=HTTPVideosAPI(videos_emulator.base_url, "sk-test", max_retries=0))
    videos_emulator.faults.push("create_video", **fault)
    sent = await h.run(h.slash("sora", {"prompt": "a red fox in the snow"}))

    videos_emulator.faults.push("create_video", **fault)
    async with HTTPVideosAPI(videos_emulator.base_url, "sk-test", max_retries=0) as client:
        with pytest.raises(error_type) as expected:
            await client.create_video("a red fox in the snow")
    assert_private_error(h, sent, expected.value)
    assert h.api.calls("DELETE", f"/{sent.token}/messages/@original"), "the public thinking message is removed"
    followups = h.api.calls("POST", f"/webhooks/{h.api.application_id}/{sent.token}")
    assert len(followups) == 1 and followups[0].ephemeral
    assert await h.core.generations.recent(h.scope) == []


async def test_a_video_service_hiccup_on_create_never_reaches_the_channel(
    discord_bots: DiscordBots, videos_emulator: VideosEmulator
) -> None:
    # A 503 on create: soracast finds out that no job was made and sends it again; the person only sees the video.
    h = await discord_bots.start(videos=HTTPVideosAPI(videos_emulator.base_url, "sk-test", max_retries=0))
    videos_emulator.faults.push("create_video", status=503)
    sent, generation = await sora(h, "a red fox in the snow")
    final = await h.core.generations.wait_finished(generation.id, WITHIN)

    assert final.status is GenerationStatus.COMPLETED and not private_embeds(h, sent)
    assert [r.status for r in videos_emulator.requests.for_route("create_video")] == [503, 200]
    assert videos_emulator.requests.count("list_videos") >= 1  # it looked before sending again
    assert uploaded_video(h, result_message(h, final)) == final.video_path.read_bytes()  # type: ignore[union-attr]


# --- oversized results -----------------------------------------------------------------------------------


async def test_a_video_over_the_servers_upload_limit_is_shrunk_to_fit(discord_bot: DiscordHarness) -> None:
    h = discord_bot
    _, roomy = await sora(h, "a busy city street at night", seconds="8")
    full = await h.core.generations.wait_finished(roomy.id, WITHIN)
    full_size = len(uploaded_video(h, result_message(h, full)))

    limit = full_size * 2 // 3  # the same video on a server that allows a third less
    _, tight = await sora(h, "a busy city street at night", seconds="8", limit=limit)
    assert tight.target.extra["upload_limit"] == str(limit)
    done = await h.core.generations.wait_finished(tight.id, WITHIN)

    message = result_message(h, done)
    shrunk = uploaded_video(h, message)
    assert len(shrunk) <= limit
    assert video_stream(shrunk)[2] > 7.0, "shrinking keeps the whole video"
    assert done.delivered_at is not None


async def test_a_video_that_cannot_fit_is_posted_with_the_reason(discord_bot: DiscordHarness) -> None:
    h = discord_bot
    _, generation = await sora(h, "a tiny limit", limit=2_000)
    done = await h.core.generations.wait_finished(generation.id, WITHIN)

    message = result_message(h, done)
    assert message["attachments"] == []
    note = message["embeds"][0]["fields"][1]
    assert note["name"] == "Video" and "upload limit" in note["value"]
    assert custom_ids(message) == [encode_action(a, done.id) for a in FINISHED_ACTIONS]


# --- buttons and forms ---------------------------------------------------------------------------------------


async def finished_video(h: DiscordHarness, prompt: str = "a red fox in the snow") -> tuple[Generation, dict]:
    _, generation = await sora(h, prompt)
    done = await h.core.generations.wait_finished(generation.id, WITHIN)
    return done, result_message(h, done)


async def test_remix_after_a_restart_opens_the_form_and_starts_a_remix(discord_bots: DiscordBots) -> None:
    first = await discord_bots.start()
    parent, message = await finished_video(first)
    await discord_bots.stop(first)

    h = await discord_bots.start()  # a new process: new client, new core, same database
    custom_id = encode_action(VideoAction.REMIX, parent.id)
    clicked = await h.run(h.button(custom_id, message, user=BOB))
    modal = callback(h, clicked).json
    assert modal["type"] == MODAL and modal["data"]["custom_id"] == custom_id
    fields = [row["component"]["custom_id"] for row in modal["data"]["components"]]
    assert fields == ["prompt"]

    submitted = await h.run(h.modal_submit(custom_id, {"prompt": "the same fox, at night"}, user=BOB))
    assert callback(h, submitted).json["type"] == DEFERRED_MESSAGE and not callback(h, submitted).ephemeral
    remixes = [g for g in await h.core.generations.recent(h.scope) if g.kind is GenerationKind.REMIX]
    assert len(remixes) == 1 and remixes[0].parent_id == parent.id and remixes[0].requester_id == BOB.id
    done = await h.core.generations.wait_finished(remixes[0].id, WITHIN)
    assert done.status is GenerationStatus.COMPLETED
    assert public_messages(h, submitted) == [result_message(h, done)]


async def test_extend_asks_for_a_prompt_and_seconds(discord_bot: DiscordHarness) -> None:
    h = discord_bot
    parent, message = await finished_video(h)
    custom_id = encode_action(VideoAction.EXTEND, parent.id)
    clicked = await h.run(h.button(custom_id, message))
    fields = [row["component"]["custom_id"] for row in callback(h, clicked).json["data"]["components"]]
    assert fields == ["prompt", "seconds"]

    await h.run(h.modal_submit(custom_id, {"prompt": "the fox jumps", "seconds": "8"}))
    extensions = [g for g in await h.core.generations.recent(h.scope) if g.kind is GenerationKind.EXTEND]
    assert len(extensions) == 1 and extensions[0].seconds == "8" and extensions[0].parent_id == parent.id


async def test_make_character_button_cuts_a_character_from_the_video(discord_bot: DiscordHarness) -> None:
    h = discord_bot
    parent, message = await finished_video(h)
    custom_id = encode_action(VideoAction.CHARACTER, parent.id)
    clicked = await h.run(h.button(custom_id, message))
    fields = [row["component"]["custom_id"] for row in callback(h, clicked).json["data"]["components"]]
    assert fields == ["handle", "start", "confirm"]

    sent = await h.run(h.modal_submit(custom_id, {"handle": "fox", "start": "0.5", "confirm": ["yes"]}))
    character = await h.core.registry.get(h.scope, "fox")
    assert character.source is CharacterSource.GENERATION and character.source_ref == parent.id
    assert private_embeds(h, sent)[-1]["title"] == "Registered @fox"


async def test_delete_is_refused_to_others_and_removes_the_message_for_the_requester(
    discord_bot: DiscordHarness,
) -> None:
    h = discord_bot
    video, message = await finished_video(h)
    custom_id = encode_action(VideoAction.DELETE, video.id)

    refused = await h.run(h.button(custom_id, message, user=BOB))
    assert private_embeds(h, refused)[-1]["title"] == present.error_title(PermissionDenied("x"))
    assert message["id"] in h.api.messages

    deleted = await h.run(h.button(custom_id, message, user=ALICE))
    assert message["id"] not in h.api.messages
    assert (await h.core.generations.get(h.scope, video.id)).status is GenerationStatus.DELETED
    assert "Deleted" in private_embeds(h, deleted)[-1]["description"]


async def test_an_admin_may_delete_anyones_video(discord_bot: DiscordHarness) -> None:
    h = discord_bot
    video, message = await finished_video(h)
    await h.run(h.button(encode_action(VideoAction.DELETE, video.id), message, user=ADMIN))

    assert (await h.core.generations.get(h.scope, video.id)).status is GenerationStatus.DELETED


async def test_make_character_on_a_members_mp4_downloads_it_only_after_the_form(
    discord_bot: DiscordHarness, make_mp4: Any
) -> None:
    h = discord_bot
    clip = make_mp4("dog.mp4", seconds=3.0)
    post = h.user_message(BOB, [clip_attachment(h, clip)])
    opened = await h.run(h.message_command("Make character", post))

    modal = callback(h, opened).json
    assert modal["type"] == MODAL
    fields = [row["component"]["custom_id"] for row in modal["data"]["components"]]
    assert fields == ["handle", "name", "start", "confirm"]
    assert not h.api.calls("GET", "/cdn/"), "nothing is downloaded before the form is sent"

    values: dict[str, str | list[str]] = {"handle": "rex", "name": "Rex", "start": "", "confirm": ["yes"]}
    sent = await h.run(h.modal_submit(modal["data"]["custom_id"], values))
    character = await h.core.registry.get(h.scope, "rex")
    assert character.name == "Rex" and character.owner_id == ALICE.id and character.source_ref == "dog.mp4"
    assert len(h.api.calls("GET", "/cdn/attachments/")) == 1
    assert private_embeds(h, sent)[-1]["title"] == "Registered @rex"


async def test_make_character_on_one_of_our_videos_cuts_that_generation(discord_bot: DiscordHarness) -> None:
    h = discord_bot
    video, message = await finished_video(h)
    opened = await h.run(h.message_command("Make character", message))

    modal = callback(h, opened).json
    assert modal["data"]["custom_id"] == encode_action(VideoAction.CHARACTER, video.id)
    values: dict[str, str | list[str]] = {"handle": "snowfox", "name": "", "start": "1", "confirm": ["yes"]}
    await h.run(h.modal_submit(modal["data"]["custom_id"], values))
    character = await h.core.registry.get(h.scope, "snowfox")
    assert character.source is CharacterSource.GENERATION and character.source_ref == video.id


async def test_make_character_on_a_message_without_a_video_says_so_privately(discord_bot: DiscordHarness) -> None:
    h = discord_bot
    post = h.user_message(BOB, [], content="just words")
    sent = await h.run(h.message_command("Make character", post))

    assert callback(h, sent).ephemeral
    assert "no video" in private_embeds(h, sent)[-1]["description"]


async def test_make_character_on_a_text_file_is_refused_before_the_form(discord_bot: DiscordHarness) -> None:
    h = discord_bot
    post = h.user_message(BOB, [h.attachment("notes.txt", b"not a video", "text/plain")])
    sent = await h.run(h.message_command("Make character", post))

    with pytest.raises(NotAVideo) as expected:
        media.check_upload("notes.txt", "text/plain", len(b"not a video"), h.core.registry.limits)
    assert_private_error(h, sent, expected.value)


# --- unexpected failures -------------------------------------------------------------------------------------


async def test_an_unexpected_failure_is_a_generic_private_message_and_logged_without_tokens(
    discord_bot: DiscordHarness, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    h = discord_bot
    payload = h.slash("character", None, subcommand="list")

    async def broken(scope: object) -> list[Character]:
        raise RuntimeError(f"storage exploded near /webhooks/{h.api.application_id}/{payload['token']}/messages")

    monkeypatch.setattr(h.core.registry, "list", broken)
    with caplog.at_level(logging.ERROR):
        sent = await h.run(payload)

    embed = private_embeds(h, sent)[-1]
    assert embed["title"] == "Something went wrong" and "logged" in embed["description"]
    assert "storage exploded" in caplog.text, "the operator sees what happened"
    assert payload["token"] not in caplog.text, "interaction tokens never reach the log"


# --- start-up -------------------------------------------------------------------------------------------------


async def test_start_up_publishes_the_commands_to_the_configured_server(discord_bots: DiscordBots) -> None:
    h = await discord_bots.start(login=False, discord_guild_id=int(GUILD))
    await prepare_bot(h.client, BOT_TOKEN)

    published = h.api.calls("PUT", f"/applications/{h.api.application_id}/guilds/{GUILD}/commands")
    assert len(published) == 1
    names = {c["name"]: c for c in published[0].json}
    assert set(names) == {"character", "sora", "soracast", "Make character"}
    assert names["Make character"]["type"] == 3
    assert {o["name"] for o in names["character"]["options"]} == {
        "add", "list", "info", "remove", "rename", "share", "unshare", "ask", "requests", "videos", "takedown",
        "instructions", "notify",
    }
    assert not h.api.calls("PUT", f"/applications/{h.api.application_id}/commands")


async def test_without_a_server_id_the_commands_are_published_globally(discord_bots: DiscordBots) -> None:
    h = await discord_bots.start(login=False)
    await prepare_bot(h.client, BOT_TOKEN)

    assert len(h.api.calls("PUT", f"/applications/{h.api.application_id}/commands")) == 1


async def test_a_sharded_process_runs_its_shards_and_only_shard_zero_publishes_the_commands(
    discord_bots: DiscordBots,
) -> None:
    others = await discord_bots.start(login=False, discord_shard_count=4, discord_shard_ids=[1, 3])
    assert isinstance(others.client, discord.AutoShardedClient)
    assert (others.client.shard_count, others.client.shard_ids) == (4, [1, 3])
    await prepare_bot(others.client, BOT_TOKEN)
    assert not others.api.calls("PUT", f"/applications/{others.api.application_id}/commands")

    first = await discord_bots.start(login=False, discord_shard_count=4, discord_shard_ids=[0, 2])
    await prepare_bot(first.client, BOT_TOKEN)
    assert len(first.api.calls("PUT", f"/applications/{first.api.application_id}/commands")) == 1
    # A sharded process answers commands like any other.
    _, generation = await sora(first, "a lighthouse")
    assert (await first.core.generations.wait_finished(generation.id, WITHIN)).delivered_at is not None


async def test_a_video_still_rendering_at_shutdown_is_delivered_after_the_restart(discord_bots: DiscordBots) -> None:
    slow = await discord_bots.start(offline={"time_scale": 1.0, "job_seconds": 3600.0})
    sent, generation = await sora(slow, "a slow sunrise over the sea")
    stored = await slow.core.storage.get_generation(generation.id)
    assert stored is not None and stored.delivered_at is None and stored.target.message_id is not None
    await discord_bots.stop(slow)

    restarted_at = len(discord_bots.api.requests)
    h = await discord_bots.start(login=False, offline={"time_scale": 1e6})
    assert await prepare_bot(h.client, BOT_TOKEN) == 1
    done = await h.core.generations.wait_finished(generation.id, WITHIN)

    assert done.status is GenerationStatus.COMPLETED and done.target.message_id == generation.target.message_id
    video_stream(uploaded_video(h, result_message(h, done)))
    assert all(sent.token not in r.path for r in h.api.requests[restarted_at:]), "the old token is never used"
