"""A character belongs to someone, on Discord: real discord.py against the fake API — refusals with an Ask
button, direct messages with Approve / Decline that work after a restart (and the private fallback when direct
messages are closed), the owner's notes with jump links, `/character videos` with Delete buttons, instructions
and the rights confirmation."""

from __future__ import annotations

from typing import Any

from bot.actions import VideoAction, encode_action
from bot.chat import present
from bot.models import AccessRequestStatus, Actor, GenerationStatus, Sharing
from tests.fakes.discord_api import EPHEMERAL
from tests.fixtures.discord import ADMIN, ALICE, BOB, CHANNEL, GUILD, DiscordBots, DiscordHarness, Member, Sent
from tests.test_discord_adapter import (
    WITHIN,
    add_character,
    custom_ids,
    private_embeds,
    public_messages,
    result_message,
    sora,
)

CAROL = Member("800000000000000005", "carol")


async def owned_by_alice(h: DiscordHarness, make_mp4: Any, to: str = "only-me") -> None:
    """Alice registers @mascot and shares it `to` everyone or only herself."""
    await add_character(h, make_mp4("mascot.mp4"), "mascot", user=ALICE)
    shared = await h.run(h.slash("character", {"handle": "mascot", "to": to}, subcommand="share", user=ALICE))
    assert "@mascot may now be used by" in private_embeds(h, shared)[-1]["description"]


async def refused_sora(h: DiscordHarness, prompt: str, user: Member = BOB) -> Sent:
    sent = await h.run(h.slash("sora", {"prompt": prompt}, user=user))
    assert not public_messages(h, sent), "a refusal is private"
    return sent


def last_private(h: DiscordHarness, sent: Sent) -> dict[str, Any]:
    """The last private message the interaction produced (its embeds and buttons)."""
    found = [m for m in h.api.messages_of(sent.token) if m["flags"] & EPHEMERAL]
    assert found, "no private answer"
    return found[-1]


async def test_sora_with_a_character_kept_to_its_owner_is_refused_privately_with_an_ask_button(
    discord_bot: DiscordHarness, make_mp4: Any
) -> None:
    h = discord_bot
    await owned_by_alice(h, make_mp4)
    mascot = await h.core.registry.get(h.scope, "mascot")

    sent = await refused_sora(h, "@mascot surfing")

    answer = last_private(h, sent)
    embed = answer["embeds"][-1]
    assert embed["title"] == "That didn't work"
    assert embed["description"].startswith(f"@mascot belongs to <@{ALICE.id}>, who has not shared it with you.")
    assert custom_ids(answer) == [encode_action(VideoAction.ASK, mascot.id)]
    assert await h.core.generations.recent(h.scope) == [], "nothing stored, sent or reserved"
    usage = await h.core.budgets.usage(h.scope, Actor(id=ADMIN.id, is_admin=True))
    assert usage.rows == [], "nothing reserved"
    # Admins always may.
    _, generation = await sora(h, "@mascot waving", user=ADMIN)
    assert generation.requester_id == ADMIN.id


async def test_remix_and_make_character_of_a_video_with_someone_elses_character_are_refused(
    discord_bot: DiscordHarness, make_mp4: Any
) -> None:
    h = discord_bot
    await owned_by_alice(h, make_mp4)
    _, parent = await sora(h, "@mascot surfing", user=ALICE)
    done = await h.core.generations.wait_finished(parent.id, WITHIN)

    message = result_message(h, done)
    for action in (VideoAction.REMIX, VideoAction.EXTEND, VideoAction.CHARACTER):
        clicked = await h.run(h.button(encode_action(action, done.id), message, user=BOB))
        assert "@mascot belongs to" in private_embeds(h, clicked)[-1]["description"], "refused before the form"
    menu = await h.run(h.message_command("Make character", message, user=BOB))
    assert "@mascot belongs to" in private_embeds(h, menu)[-1]["description"]
    # A form opened earlier (before the owner kept it to herself) is refused when it comes back.
    remix = await h.run(h.modal_submit(encode_action(VideoAction.REMIX, done.id), {"prompt": "at night"}, user=BOB))
    assert "@mascot belongs to" in private_embeds(h, remix)[-1]["description"]
    cut = await h.run(
        h.modal_submit(
            encode_action(VideoAction.CHARACTER, done.id), {"handle": "copycat", "start": "", "confirm": ["yes"]},
            user=BOB,
        )
    )
    assert "@mascot belongs to" in private_embeds(h, cut)[-1]["description"]
    assert [g.id for g in await h.core.generations.recent(h.scope)] == [done.id]
    assert [c.handle for c in await h.core.registry.list(h.scope)] == ["mascot"]


async def test_sharing_with_a_person_and_taking_them_off(discord_bot: DiscordHarness, make_mp4: Any) -> None:
    h = discord_bot
    await owned_by_alice(h, make_mp4)
    options = {"handle": "mascot", "person": ""}
    shared = await h.run(h.slash("character", options, subcommand="share", users={"person": BOB}, user=ALICE))
    assert private_embeds(h, shared)[-1]["description"] == (
        f"@mascot may now be used by <@{ALICE.id}>, admins and <@{BOB.id}>."
    )
    await sora(h, "@mascot dancing", user=BOB)

    refused = await h.run(h.slash("character", options, subcommand="share", users={"person": CAROL}, user=BOB))
    assert "Only the owner of @mascot" in private_embeds(h, refused)[-1]["description"]
    both = await h.run(h.slash("character", {"handle": "mascot", "to": "everyone", "person": ""}, subcommand="share",
                               users={"person": CAROL}, user=ALICE))
    assert "Choose who may use it" in private_embeds(h, both)[-1]["description"]

    await h.run(h.slash("character", options, subcommand="unshare", users={"person": BOB}, user=ALICE))
    await refused_sora(h, "@mascot dancing again")
    info = await h.run(h.slash("character", {"handle": "mascot"}, subcommand="info", user=BOB))
    fields = {f["name"]: f["value"] for f in private_embeds(h, info)[-1]["fields"]}
    assert fields["Who may use it"] == f"only <@{ALICE.id}> (and admins)"
    assert fields["Right to use its subject"].startswith(f"confirmed by <@{ALICE.id}> on ")


async def test_ask_direct_messages_the_owner_whose_approve_works_after_a_restart_and_only_once(
    discord_bots: DiscordBots, make_mp4: Any
) -> None:
    first = await discord_bots.start()
    await owned_by_alice(first, make_mp4)
    refused = await refused_sora(first, "@mascot surfing")
    ask_button = custom_ids(last_private(first, refused))[0]
    asked = await first.run(first.button(ask_button, last_private(first, refused), user=BOB))
    assert f"Asked <@{ALICE.id}> to let you use @mascot" in private_embeds(first, asked)[-1]["description"]
    [dm] = first.api.dms_to(ALICE.id)
    assert dm["embeds"][0]["title"] == "Request to use @mascot"
    assert dm["embeds"][0]["description"].startswith(f"<@{BOB.id}> asks to use @mascot (Mascot)")
    [request] = await first.core.storage.pending_access_requests(first.scope)
    assert custom_ids(dm) == [encode_action(VideoAction.APPROVE, request.id), encode_action(VideoAction.DECLINE,
                                                                                          request.id)]
    again = await first.run(first.button(ask_button, last_private(first, refused), user=BOB))
    assert "have not decided yet" in private_embeds(first, again)[-1]["description"]
    assert len(first.api.dms_to(ALICE.id)) == 1, "the owner is asked once"
    listed = await first.run(first.slash("character", None, subcommand="requests", user=ADMIN))
    admins_list = last_private(first, listed)  # an admin looks too, and will click later
    await discord_bots.stop(first)

    h = await discord_bots.start()  # a new process: new client, new core, the same database
    approve = encode_action(VideoAction.APPROVE, request.id)
    await h.run(h.dm_button(approve, dm, user=ALICE))
    decided = h.api.messages[dm["id"]]
    assert decided["embeds"][0]["description"] == f"Approved by <@{ALICE.id}>: <@{BOB.id}> may now use @mascot."
    assert custom_ids(decided) == [], "a decided request has no buttons left"
    [told] = h.api.dms_to(BOB.id)
    assert told["embeds"][0]["description"].startswith(f"<@{ALICE.id}> approved your request")
    stored = await h.core.storage.get_access_request(request.id)
    assert stored is not None and stored.status is AccessRequestStatus.APPROVED
    _, generation = await sora(h, "@mascot surfing at last", user=BOB)
    assert generation.requester_id == BOB.id

    # The admin's older list still shows the request: deciding it again is refused, nothing changes.
    twice = await h.run(h.button(encode_action(VideoAction.DECLINE, request.id), admins_list, user=ADMIN))
    assert f"already approved by <@{ALICE.id}>" in private_embeds(h, twice)[-1]["description"]
    assert (await h.core.storage.get_access_request(request.id)).status is AccessRequestStatus.APPROVED  # type: ignore[union-attr]


async def test_only_the_owner_or_an_admin_decides_a_request(discord_bot: DiscordHarness, make_mp4: Any) -> None:
    h = discord_bot
    await owned_by_alice(h, make_mp4)
    await h.run(h.slash("character", {"handle": "mascot"}, subcommand="ask", user=BOB))
    [request] = await h.core.storage.pending_access_requests(h.scope)
    [dm] = h.api.dms_to(ALICE.id)

    stranger = await h.run(h.dm_button(encode_action(VideoAction.APPROVE, request.id), dm, user=CAROL))
    assert f"Only <@{ALICE.id}>, who owns @mascot, or an admin" in private_embeds(h, stranger)[-1]["description"]
    listed = await h.run(h.slash("character", None, subcommand="requests", user=CAROL))
    assert private_embeds(h, listed)[-1]["title"] == present.requests_summary(0)

    mine = await h.run(h.slash("character", None, subcommand="requests", user=ADMIN))
    assert custom_ids(last_private(h, mine)) == [
        encode_action(VideoAction.APPROVE, request.id), encode_action(VideoAction.DECLINE, request.id)
    ]
    declined = await h.run(h.button(encode_action(VideoAction.DECLINE, request.id), last_private(h, mine), user=ADMIN))
    assert private_embeds(h, declined)[-1]["description"] == (
        f"Declined by <@{ADMIN.id}>: <@{BOB.id}> may not use @mascot."
    )
    [told] = h.api.dms_to(BOB.id)
    assert f"<@{ADMIN.id}> declined your request" in told["embeds"][0]["description"]


async def test_an_owner_with_closed_direct_messages_sees_the_request_privately_at_their_next_command(
    discord_bot: DiscordHarness, make_mp4: Any
) -> None:
    h = discord_bot
    h.api.dm_closed.add(ALICE.id)
    await owned_by_alice(h, make_mp4)
    asked = await h.run(h.slash("character", {"handle": "mascot"}, subcommand="ask", user=BOB))
    assert "could not be sent a private message" in private_embeds(h, asked)[-1]["description"]
    assert h.api.dms_to(ALICE.id) == []
    [request] = await h.core.storage.pending_access_requests(h.scope)

    listed = await h.run(h.slash("character", None, subcommand="list", user=ALICE))
    shown = last_private(h, listed)
    assert shown["embeds"][0]["title"] == present.requests_summary(1)
    assert custom_ids(shown)[0] == encode_action(VideoAction.APPROVE, request.id)
    approved = await h.run(h.button(custom_ids(shown)[0], shown, user=ALICE))
    assert "Approved by" in private_embeds(h, approved)[-1]["description"]
    again = await h.run(h.slash("character", None, subcommand="list", user=ALICE))
    assert len([m for m in h.api.messages_of(again.token) if m["flags"] & EPHEMERAL]) == 1, "shown once"


async def test_the_owner_gets_a_direct_message_with_a_jump_link_for_someone_elses_video_only(
    discord_bot: DiscordHarness, make_mp4: Any
) -> None:
    h = discord_bot
    await owned_by_alice(h, make_mp4, to="everyone")
    _, own = await sora(h, "@mascot alone", user=ALICE)
    _, bobs = await sora(h, "@mascot with bob", user=BOB)
    for generation in (own, bobs):
        await h.core.generations.wait_finished(generation.id, WITHIN)
    await h.core.generations.notices.flush()

    [note] = h.api.dms_to(ALICE.id)
    bobs = await h.core.generations.get(h.scope, bobs.id)
    jump = f"https://discord.com/channels/{GUILD}/{CHANNEL}/{bobs.target.message_id}"
    assert note["embeds"][0]["title"] == "A video was made with your character"
    assert f"<@{BOB.id}> used @mascot · `{bobs.id}`" in note["embeds"][0]["description"]
    assert f"[see the post]({jump})" in note["embeds"][0]["description"]
    assert h.api.dms_to(BOB.id) == [], "nobody else is told"

    off = await h.run(h.slash("character", {"handle": "mascot", "on": False}, subcommand="notify", user=ALICE))
    assert "no longer be told" in private_embeds(h, off)[-1]["description"]
    _, quiet = await sora(h, "@mascot unannounced", user=BOB)
    await h.core.generations.wait_finished(quiet.id, WITHIN)
    await h.core.generations.notices.flush()
    assert len(h.api.dms_to(ALICE.id)) == 1


async def test_character_videos_lists_them_for_the_owner_whose_delete_removes_the_post(
    discord_bot: DiscordHarness, make_mp4: Any
) -> None:
    h = discord_bot
    await owned_by_alice(h, make_mp4, to="everyone")
    _, bobs = await sora(h, "@mascot with bob", user=BOB)
    bobs = await h.core.generations.wait_finished(bobs.id, WITHIN)
    post = result_message(h, bobs)

    refused = await h.run(h.slash("character", {"handle": "mascot"}, subcommand="videos", user=CAROL))
    assert "can list its videos" in private_embeds(h, refused)[-1]["description"]
    listed = await h.run(h.slash("character", {"handle": "mascot"}, subcommand="videos", user=ALICE))
    listing = last_private(h, listed)
    assert listing["embeds"][0]["title"] == "1 video feature @mascot, newest first:"
    assert f"`{bobs.id}` · <@{BOB.id}> · " in listing["embeds"][0]["description"]
    assert f"<#{CHANNEL}>" in listing["embeds"][0]["description"]
    assert custom_ids(listing) == [encode_action(VideoAction.DELETE, bobs.id)]

    stranger = await h.run(h.slash("character", {"video": bobs.id}, subcommand="takedown", user=CAROL))
    assert "Only the person who asked" in private_embeds(h, stranger)[-1]["description"]
    deleted = await h.run(h.button(custom_ids(listing)[0], listing, user=ALICE))
    assert "Deleted video" in private_embeds(h, deleted)[-1]["description"]
    assert post["id"] not in h.api.messages, "the video's post is gone from the channel"
    assert listing["id"] in h.api.messages, "the list itself stays"
    assert (await h.core.generations.get(h.scope, bobs.id)).status is GenerationStatus.DELETED
    assert bobs.video_path is not None and not bobs.video_path.exists()


async def test_instructions_are_set_shown_and_sent_without_the_handle(
    discord_bot: DiscordHarness, make_mp4: Any
) -> None:
    h = discord_bot
    await owned_by_alice(h, make_mp4, to="everyone")
    long = await h.run(
        h.slash("character", {"handle": "mascot", "text": "x" * 501}, subcommand="instructions", user=ALICE)
    )
    assert "the limit is 500" in private_embeds(h, long)[-1]["description"]
    ping = await h.run(
        h.slash("character", {"handle": "mascot", "text": "wave at @everyone"}, subcommand="instructions", user=ALICE)
    )
    assert "@everyone" in private_embeds(h, ping)[-1]["description"]
    text = "@mascot always wears the red scarf"
    await h.run(h.slash("character", {"handle": "mascot", "text": text}, subcommand="instructions", user=ALICE))
    info = await h.run(h.slash("character", {"handle": "mascot"}, subcommand="info", user=BOB))
    fields = {f["name"]: f["value"] for f in private_embeds(h, info)[-1]["fields"]}
    assert fields["Instructions"] == text

    _, generation = await sora(h, "@mascot surfing", user=BOB)
    assert generation.api_prompt.endswith("Standing instructions for Mascot: Mascot always wears the red scarf.")
    assert "@mascot" not in generation.api_prompt


async def test_character_add_without_the_rights_confirmation_is_refused_before_the_download(
    discord_bot: DiscordHarness, make_mp4: Any
) -> None:
    h = discord_bot
    sent = await add_character(h, make_mp4("mascot.mp4"), confirm=False)
    assert "needs your confirmation" in private_embeds(h, sent)[-1]["description"]
    assert not h.api.calls("GET", "/cdn/"), "nothing is downloaded"
    assert await h.core.registry.list(h.scope) == []
    await add_character(h, make_mp4("mascot.mp4"))
    character = await h.core.registry.get(h.scope, "mascot")
    assert character.rights_confirmed_by == ALICE.id and character.sharing is Sharing.EVERYONE


async def test_a_make_character_form_without_its_box_ticked_is_refused(
    discord_bot: DiscordHarness, make_mp4: Any
) -> None:
    h = discord_bot
    post = h.user_message(BOB, [h.attachment("dog.mp4", make_mp4("dog.mp4").read_bytes())])
    opened = await h.run(h.message_command("Make character", post))
    form = h.api.callbacks(opened.token)[0].json["data"]
    box = form["components"][-1]["component"]
    assert box["type"] == 22 and box["required"] and box["min_values"] == 1
    sent = await h.run(h.modal_submit(form["custom_id"], {"handle": "rex", "name": "", "start": "", "confirm": []}))
    assert "needs your confirmation" in private_embeds(h, sent)[-1]["description"]
    assert not h.api.calls("GET", "/cdn/attachments/")



async def test_an_owner_with_closed_direct_messages_sees_the_note_privately_at_their_next_command(
    discord_bot: DiscordHarness, make_mp4: Any
) -> None:
    h = discord_bot
    h.api.dm_closed.add(ALICE.id)
    await owned_by_alice(h, make_mp4, to="everyone")
    _, bobs = await sora(h, "@mascot with bob", user=BOB)
    bobs = await h.core.generations.wait_finished(bobs.id, WITHIN)
    await h.core.generations.notices.flush()
    assert h.api.dms_to(ALICE.id) == []

    listed = await h.run(h.slash("character", None, subcommand="list", user=ALICE))
    note = last_private(h, listed)["embeds"][0]
    assert note["title"] == "A video was made with your character"
    jump = f"https://discord.com/channels/{GUILD}/{CHANNEL}/{bobs.target.message_id}"
    assert f"[see the post]({jump})" in note["description"]
    again = await h.run(h.slash("character", None, subcommand="list", user=ALICE))
    assert len([m for m in h.api.messages_of(again.token) if m["flags"] & EPHEMERAL]) == 1, "shown once"
