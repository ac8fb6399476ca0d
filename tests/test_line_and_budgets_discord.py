"""The line and budgets on Discord: a waiting video's message shows its place and a Cancel button, `/soracast
queue | cancel | limits | usage`, and costs on the video's message — real discord.py against the fake API."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bot.actions import FINISHED_ACTIONS, VideoAction, encode_action
from bot.backends.offline.renderer import OfflineVideosAPI
from bot.chat import present
from bot.errors import InvalidInput, PermissionDenied
from bot.models import Actor, BudgetKind, GenerationStatus
from tests.fakes.discord_api import AUTOCOMPLETE, EPHEMERAL
from tests.fixtures.discord import ADMIN, ALICE, BOB, DiscordBots, DiscordHarness, Member, Sent
from tests.fixtures.line import WITHIN, finish, sent, slow_offline_api
from tests.test_discord_adapter import (
    assert_private_error,
    callback,
    custom_ids,
    private_embeds,
    public_messages,
    result_message,
    sora,
    uploaded_video,
)

PRICES = {"sora-2": 0.10}


@pytest.fixture
def slow_api(tmp_path: Path) -> OfflineVideosAPI:
    return slow_offline_api(tmp_path / "slow")


@pytest.fixture
async def h(discord_bots: DiscordBots, slow_api: OfflineVideosAPI) -> DiscordHarness:
    """One video in flight at most, jobs that finish when the test says, and a price for sora-2."""
    return await discord_bots.start(videos=slow_api, max_in_flight=1, prices=PRICES)


def status_of(message: dict[str, Any]) -> str:
    return message["embeds"][0]["fields"][0]["value"]


async def waiting_video(h: DiscordHarness, prompt: str = "a fox waiting its turn", *, user: Member = ALICE) -> tuple:
    """Bob's video takes the only slot; `user`'s then waits. Returns (Bob's, the waiting one, its message)."""
    _, first = await sora(h, "bob's video takes the slot", user=BOB, seconds="4")
    _, waiting = await sora(h, prompt, user=user, seconds="4")
    assert waiting.status is GenerationStatus.WAITING
    message = result_message(h, waiting)
    await h.api.wait_for(lambda: status_of(message).startswith("Waiting — 1st in line"), WITHIN)
    return first, waiting, message


async def test_a_waiting_video_shows_its_place_and_cancel_then_loses_the_button_and_ends_as_the_video(
    h: DiscordHarness, slow_api: OfflineVideosAPI
) -> None:
    first, waiting, message = await waiting_video(h)

    assert status_of(message) == "Waiting — 1st in line, about 60 s"
    assert custom_ids(message) == [encode_action(VideoAction.CANCEL, waiting.id)]
    await finish(h.core, slow_api, first.id)
    await sent(h.core, waiting.id)
    # It left the line: the place and the Cancel button go, although the backend reports nothing new yet.
    await h.api.wait_for(lambda: not status_of(message).startswith("Waiting"), WITHIN)
    assert custom_ids(message) == []
    assert status_of(message).startswith("Queued")

    done = await finish(h.core, slow_api, waiting.id)
    assert status_of(message) == "Done" and uploaded_video(h, message)
    assert custom_ids(message) == [encode_action(a, done.id) for a in FINISHED_ACTIONS]
    edits = [r for r in h.api.requests if r.method in ("POST", "PATCH") and "/messages" in r.path]
    assert edits and all(r.json["allowed_mentions"]["parse"] == [] for r in edits)


async def test_the_queue_lists_the_waiting_videos_privately(h: DiscordHarness) -> None:
    _, waiting, _ = await waiting_video(h, "a lighthouse in the fog")

    listed = await h.run(h.slash("soracast", None, subcommand="queue", user=BOB))

    [embed] = private_embeds(h, listed)
    assert embed["description"].splitlines() == [
        "1 video of this workspace waiting in line, next first:",
        f"1st of 1 · `{waiting.id}` by <@{ALICE.id}> · about 60 s · a lighthouse in the fog",
    ]
    assert not public_messages(h, listed)


async def test_the_requester_cancels_with_the_command_others_are_refused_privately(h: DiscordHarness) -> None:
    _, waiting, message = await waiting_video(h)

    refused = await h.run(h.slash("soracast", {"video": waiting.id}, subcommand="cancel", user=BOB))
    with pytest.raises(PermissionDenied) as not_theirs:
        await h.core.generations.cancel(h.scope, _actor(BOB), waiting.id)
    assert_private_error(h, refused, not_theirs.value)
    assert (await h.core.storage.get_generation(waiting.id)).status is GenerationStatus.WAITING

    cancelled = await h.run(h.slash("soracast", {"video": f"`{waiting.id}`"}, subcommand="cancel"))
    assert private_embeds(h, cancelled)[-1]["description"] == present.cancelled_text(waiting)
    assert not public_messages(h, cancelled)
    await h.api.wait_for(lambda: status_of(message) == "Cancelled", WITHIN)
    assert custom_ids(message) == []
    assert await h.core.generations.line(h.scope) == []


async def test_cancel_autocompletes_the_videos_a_member_may_cancel(h: DiscordHarness) -> None:
    _, waiting, _ = await waiting_video(h, "a kite over the dunes")

    def choices(user: Member) -> list[str]:
        return [c["value"] for c in callback(h, sent_by[user.id]).json["data"]["choices"]]

    sent_by: dict[str, Sent] = {}
    for user in (ALICE, BOB, ADMIN):
        payload = h.slash("soracast", {"video": "kite"}, subcommand="cancel", focused="video", user=user)
        sent_by[user.id] = await h.run(payload)
    assert callback(h, sent_by[ALICE.id]).json["type"] == AUTOCOMPLETE
    assert choices(ALICE) == [waiting.id] and choices(ADMIN) == [waiting.id]
    assert choices(BOB) == [], "Bob may not cancel Alice's video"


async def test_the_cancel_button_is_for_the_requester_and_works_after_a_restart(
    discord_bots: DiscordBots, h: DiscordHarness, slow_api: OfflineVideosAPI
) -> None:
    _, waiting, message = await waiting_video(h)
    await discord_bots.stop(h)
    restarted = await discord_bots.start(videos=slow_api, max_in_flight=1, prices=PRICES)
    cancel = encode_action(VideoAction.CANCEL, waiting.id)

    refused = await restarted.run(restarted.button(cancel, message, user=BOB))
    [answer] = private_embeds(restarted, refused)
    assert answer["title"] == present.error_title(PermissionDenied("x"))
    assert "Only the person who asked" in answer["description"]
    assert (await restarted.core.storage.get_generation(waiting.id)).status is GenerationStatus.WAITING

    clicked = await restarted.run(restarted.button(cancel, message, user=ALICE))
    assert private_embeds(restarted, clicked)[-1]["description"] == present.cancelled_text(waiting)
    assert all(m["flags"] & EPHEMERAL for m in restarted.api.messages_of(clicked.token))
    await restarted.api.wait_for(lambda: status_of(message) == "Cancelled", WITHIN)
    assert custom_ids(message) == []


async def test_limits_are_set_by_admins_and_refused_to_members_privately(h: DiscordHarness) -> None:
    refused = await h.run(h.slash("soracast", {"monthly_usd": "5"}, subcommand="limits"))
    assert private_embeds(h, refused)[-1]["title"] == present.error_title(PermissionDenied("x"))
    assert await h.core.budgets.limits(h.scope) == {BudgetKind.MONTHLY_USD: None, BudgetKind.DAILY_SECONDS: None}

    changed = await h.run(
        h.slash("soracast", {"monthly_usd": "$1.50", "daily_seconds": "60"}, subcommand="limits", user=ADMIN)
    )
    [embed] = private_embeds(h, changed)
    assert embed["title"] == "Limits changed"
    assert embed["description"].startswith("Limits here: monthly budget $1.50 · 60 s of video per person a day.")
    assert "`/soracast limits monthly_usd:<USD> daily_seconds:<seconds>`" in embed["description"]
    assert await h.core.budgets.limits(h.scope) == {BudgetKind.MONTHLY_USD: 1.5, BudgetKind.DAILY_SECONDS: 60}

    bad = await h.run(h.slash("soracast", {"monthly_usd": "lots"}, subcommand="limits", user=ADMIN))
    assert private_embeds(h, bad)[-1]["title"] == present.error_title(InvalidInput("x"))
    assert "'lots' is not a monthly budget" in private_embeds(h, bad)[-1]["description"]

    lift = {"monthly_usd": "none", "daily_seconds": "default"}
    await h.run(h.slash("soracast", lift, subcommand="limits", user=ADMIN))
    shown = await h.run(h.slash("soracast", None, subcommand="limits"))  # anyone may look
    assert private_embeds(h, shown)[-1]["description"].startswith("Limits here: no limits.")
    # Settings of another kind leave the limits alone.
    await h.core.budgets.set_limits(h.scope, _actor(ADMIN), {BudgetKind.DAILY_SECONDS: 30})
    await h.run(h.slash("soracast", None, subcommand="config", user=ADMIN))
    assert (await h.core.budgets.limits(h.scope))[BudgetKind.DAILY_SECONDS] == 30


async def test_a_budget_refusal_is_private_and_says_the_limit_what_is_used_and_when_it_resets(
    h: DiscordHarness,
) -> None:
    await h.run(h.slash("soracast", {"monthly_usd": "0.50"}, subcommand="limits", user=ADMIN))
    await sora(h, "the first fox fits", seconds="4")

    refused = await h.run(h.slash("sora", {"prompt": "the second fox does not", "seconds": "4"}))

    [embed] = private_embeds(h, refused)
    assert "about $0.40" in embed["description"] and "$0.40 of its $0.50 monthly video budget" in embed["description"]
    assert "The budget resets on 1 " in embed["description"] and "/soracast limits" in embed["description"]
    assert not public_messages(h, refused)
    assert len(await h.core.generations.recent(h.scope)) == 1


async def test_the_message_shows_the_estimate_then_what_the_video_cost(
    h: DiscordHarness, slow_api: OfflineVideosAPI
) -> None:
    _, generation = await sora(h, "a red fox in the snow", seconds="8")
    message = result_message(h, generation)
    assert message["embeds"][0]["footer"]["text"].endswith("· ≈ $0.80")

    await finish(h.core, slow_api, generation.id)
    assert message["embeds"][0]["footer"]["text"].endswith("· cost $0.80")


async def test_usage_is_private_and_for_admins_only(h: DiscordHarness, slow_api: OfflineVideosAPI) -> None:
    _, generation = await sora(h, "a red fox in the snow", seconds="8")
    await finish(h.core, slow_api, generation.id)

    refused = await h.run(h.slash("soracast", None, subcommand="usage"))
    assert "Only workspace admins can see" in private_embeds(h, refused)[-1]["description"]

    shown = await h.run(h.slash("soracast", None, subcommand="usage", user=ADMIN))
    [embed] = private_embeds(h, shown)
    assert embed["title"].endswith(": $0.80 spent on 1 video(s) (no limits)")
    assert embed["description"] == f"<@{ALICE.id}> · sora-2 · 1 video(s), 8 s · $0.80"
    assert not public_messages(h, shown)


def _actor(member: Member) -> Actor:
    return Actor(id=member.id, is_admin=member.manage_guild)
