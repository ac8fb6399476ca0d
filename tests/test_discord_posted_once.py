"""Posted exactly once on Discord: a delivery tried again (after a lost answer or a restart) edits the one message
of its generation; where a new message had to be posted, its nonce (stored first) and a search of the channel
find it, so it is never posted twice. The "Make character" form on a member's message survives a restart.

The notifier keeps nothing in memory between attempts, so a lost answer followed by the core's next attempt
walks the same path as a restart: what was stored before each risky step is what the next attempt reads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bot.backends.offline.renderer import OfflineVideosAPI
from bot.models import Generation, GenerationStatus
from tests.fakes.discord_api import MODAL, Received
from tests.fixtures.discord import ALICE, BOB, DiscordBots, DiscordHarness
from tests.fixtures.videos import fast_offline_api

WITHIN = 60.0  # a safety net for a hung test, not a timing assertion


async def slow_bot(discord_bots: DiscordBots, tmp_path: Path) -> tuple[DiscordHarness, OfflineVideosAPI]:
    """A bot whose videos take an hour until the test finishes them (`offline.finish_now`)."""
    offline = fast_offline_api(tmp_path / "slow-offline", time_scale=1.0, job_seconds=3600.0)
    return await discord_bots.start(videos=offline), offline


async def sora(h: DiscordHarness, prompt: str) -> Generation:
    await h.run(h.slash("sora", {"prompt": prompt}, user=ALICE))
    [generation] = await h.core.generations.recent(h.scope, 1)
    assert generation.api_video_id is not None and generation.target.message_id is not None
    return generation


async def finish(h: DiscordHarness, offline: OfflineVideosAPI, generation: Generation) -> Generation:
    assert generation.api_video_id is not None
    offline.finish_now(generation.api_video_id)
    h.core.generations.runner.wake(generation.id)
    return await h.core.generations.wait_finished(generation.id, WITHIN)


def showing(h: DiscordHarness, generation: Generation) -> list[dict[str, Any]]:
    """The messages now in the channel that show this generation."""
    marker = f"`{generation.id}`"
    found = h.api.channel_messages(h.channel_id)
    return [m for m in found if any(marker in (e.get("description") or "") for e in m["embeds"])]


def is_upload(method: str) -> Any:
    def match(received: Received) -> bool:
        return received.method == method and "/channels/" in received.path and bool(received.files)

    return match


async def test_a_delivery_whose_answer_was_lost_edits_the_same_message_again(
    discord_bots: DiscordBots, tmp_path: Path
) -> None:
    h, offline = await slow_bot(discord_bots, tmp_path)
    generation = await sora(h, "a kite over the dunes")
    h.api.lost_answers.append(is_upload("PATCH"))
    done = await finish(h, offline, generation)

    [message] = showing(h, done)
    assert message["id"] == generation.target.message_id == done.target.message_id
    assert len(message["attachments"]) == 1 and message["components"]
    assert len([r for r in h.api.calls("PATCH", f"/messages/{message['id']}") if r.files]) == 2
    assert not h.api.calls("POST", f"/channels/{h.channel_id}/messages")
    assert done.status is GenerationStatus.COMPLETED and done.delivered_at is not None


async def test_a_post_whose_answer_was_lost_is_found_in_the_channel_and_edited_not_posted_again(
    discord_bots: DiscordBots, tmp_path: Path
) -> None:
    h, offline = await slow_bot(discord_bots, tmp_path)
    generation = await sora(h, "a lantern in the fog")
    assert generation.target.message_id is not None
    h.api.delete_message(generation.target.message_id)  # a member removed the progress message
    h.api.nonce_window = 0.0  # long after the post: Discord no longer holds to its nonce
    h.api.lost_answers.append(is_upload("POST"))
    done = await finish(h, offline, generation)

    [message] = showing(h, done)
    [post] = h.api.calls("POST", f"/channels/{h.channel_id}/messages")
    assert post.json["nonce"] == done.target.extra["post_nonce"] and post.json["enforce_nonce"] is True
    assert h.api.calls("GET", f"/channels/{h.channel_id}/messages"), "the channel was searched"
    assert done.target.message_id == message["id"] != generation.target.message_id
    assert len(message["attachments"]) == 1 and message["components"]


async def test_without_history_a_lost_post_is_sent_again_with_its_nonce_and_discord_keeps_one(
    discord_bots: DiscordBots, tmp_path: Path
) -> None:
    h, offline = await slow_bot(discord_bots, tmp_path)
    h.api.faults[("GET", f"/channels/{h.channel_id}/messages")] = (403, 50001)  # no Read Message History
    generation = await sora(h, "a heron at dawn")
    assert generation.target.message_id is not None
    h.api.delete_message(generation.target.message_id)
    h.api.lost_answers.append(is_upload("POST"))
    done = await finish(h, offline, generation)

    first, again = h.api.calls("POST", f"/channels/{h.channel_id}/messages")
    assert first.json["nonce"] == again.json["nonce"]
    [message] = showing(h, done)
    assert done.target.message_id == message["id"] and len(message["attachments"]) == 1


async def test_a_deleted_message_is_posted_once_and_recorded_at_once(
    discord_bots: DiscordBots, tmp_path: Path
) -> None:
    h, offline = await slow_bot(discord_bots, tmp_path)
    generation = await sora(h, "a fox in the snow")
    assert generation.target.message_id is not None
    h.api.delete_message(generation.target.message_id)
    done = await finish(h, offline, generation)

    [message] = showing(h, done)
    assert len(h.api.calls("POST", f"/channels/{h.channel_id}/messages")) == 1
    assert done.target.message_id == message["id"]
    assert done.target.extra["post_nonce_for"] == generation.target.message_id


async def test_the_make_character_form_opened_before_a_restart_works_after_it(
    discord_bots: DiscordBots, make_mp4: Any
) -> None:
    before = await discord_bots.start()
    clip = make_mp4("dog.mp4", seconds=3.0)
    post = before.user_message(BOB, [before.attachment(clip.name, clip.read_bytes())])
    opened = await before.run(before.message_command("Make character", post))
    [modal] = before.api.callbacks(opened.token)
    assert modal.json["type"] == MODAL
    await discord_bots.stop(before)

    after = await discord_bots.start()  # a new process: new client, new core, the same database
    form = modal.json["data"]["custom_id"]
    await after.run(after.modal_submit(form, {"handle": "rex", "name": "Rex", "start": "", "confirm": ["yes"]}))
    character = await after.core.registry.get(after.scope, "rex")
    assert character.name == "Rex" and character.source_ref == "dog.mp4"
    assert len(after.api.calls("GET", "/cdn/attachments/")) == 1

    again = await after.run(after.modal_submit(form, {"handle": "rex2", "name": "", "start": "", "confirm": ["yes"]}))
    notices = [e["description"] for m in after.api.messages_of(again.token) for e in m["embeds"]]
    assert any("expired" in text for text in notices), "a form is used once"
