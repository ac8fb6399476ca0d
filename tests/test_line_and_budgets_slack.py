"""The line and budgets on Slack: a waiting video's message shows its place and a Cancel button, `/sora queue`,
`/sora cancel <id>`, `/soracast limits | usage`, and costs on the video's message — real slack-bolt over signed
HTTP through soracast's door, against the fake Web API."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.actions import FINISHED_ACTIONS, VideoAction, encode_action
from bot.app import build_app
from bot.backends.offline.renderer import OfflineVideosAPI
from bot.chat import present
from bot.models import BudgetKind, Generation, GenerationStatus
from tests.fakes.slack_api import Call, FakeSlackAPI
from tests.fixtures.line import eventually, finish, sent, slow_offline_api
from tests.fixtures.slack import ALICE, SlackHarness, slack_settings, start_harness, stop_harness
from tests.test_slack_adapter import BOB, CAROL, action_ids

PRICES = {"sora-2": 0.10}


@pytest.fixture
def slow_api(tmp_path: Path) -> OfflineVideosAPI:
    return slow_offline_api(tmp_path / "slow")


@pytest.fixture
async def team(tmp_path: Path, slack_api: FakeSlackAPI, slow_api: OfflineVideosAPI) -> AsyncIterator[SlackHarness]:
    """One video in flight at most, jobs that finish when the test says, a price for sora-2, Carol an admin."""
    settings = slack_settings(tmp_path / "data", max_in_flight=1, prices=PRICES)
    core = await build_app(settings, videos=slow_api)
    harness = await start_harness(slack_api, settings, core)
    slack_api.add_user(CAROL, "carol", is_admin=True)
    yield harness
    await stop_harness(harness)
    await core.aclose()


def blocks_text(call_data: dict[str, Any]) -> str:
    """A message's blocks as text, as it reads (no JSON escapes of `·` or `≈`)."""
    blocks = call_data.get("blocks")
    return json.dumps(json.loads(blocks) if isinstance(blocks, str) else blocks, ensure_ascii=False)


def private_replies(slack: SlackHarness) -> list[str]:
    """Each private answer (text and blocks) as one string, oldest first."""
    calls = [c for c in slack.api.calls_to("response") if c.data.get("response_type") == "ephemeral"]
    return [f"{c.data.get('text', '')}\n{blocks_text(c.data)}" for c in calls]


def shown(slack: SlackHarness, generation: Generation) -> Call:
    """The latest post or edit of a generation's message."""
    ts = generation.target.message_id
    calls = [c for c in slack.api.calls if c.method in ("chat.postMessage", "chat.update")]
    posted = [c for c in calls if c.method == "chat.update" and c.data.get("ts") == ts]
    return posted[-1] if posted else next(c for c in calls if generation.id in blocks_text(c.data))


async def command(slack: SlackHarness, name: str, text: str, *, user: str = ALICE) -> None:
    assert (await slack.command(name, text, user=user)).status == 200
    await slack.settle()


async def newest(slack: SlackHarness) -> Generation:
    return (await slack.core.generations.recent(slack.scope, limit=1))[0]


async def waiting_video(slack: SlackHarness, prompt: str = "a fox waiting its turn") -> tuple[Generation, Generation]:
    """Bob's video takes the only slot; Alice's then waits until the line tells her she is 1st."""
    await command(slack, "/sora", "bob's video takes the slot --seconds 4", user=BOB)
    first = await newest(slack)
    await command(slack, "/sora", f"{prompt} --seconds 4")
    waiting = await newest(slack)
    assert waiting.status is GenerationStatus.WAITING and waiting.requester_id == ALICE
    await eventually(lambda: "Waiting — 1st in line" in blocks_text(shown(slack, waiting).data))
    return first, waiting


def message_of(call: Call) -> dict[str, Any]:
    """A posted message as a click on it carries it."""
    blocks = call.data["blocks"]
    parsed = json.loads(blocks) if isinstance(blocks, str) else blocks
    return {"type": "message", "ts": call.data.get("ts"), "blocks": parsed}


async def test_a_waiting_video_shows_its_place_and_cancel_then_loses_the_button_and_ends_as_the_video(
    team: SlackHarness, slow_api: OfflineVideosAPI
) -> None:
    first, waiting = await waiting_video(team)
    [posted] = [c for c in team.api.calls_to("chat.postMessage") if waiting.id in blocks_text(c.data)]
    assert "Waiting in line" in blocks_text(posted.data)
    assert action_ids(posted.data) == [encode_action(VideoAction.CANCEL, waiting.id)]
    assert action_ids(shown(team, waiting).data) == [encode_action(VideoAction.CANCEL, waiting.id)]

    await finish(team.core, slow_api, first.id)
    await sent(team.core, waiting.id)
    # It left the line: the place and the Cancel button go, although the backend reports nothing new yet.
    await eventually(lambda: "Queued" in blocks_text(shown(team, waiting).data))
    assert action_ids(shown(team, waiting).data) == []

    done = await finish(team.core, slow_api, waiting.id)
    final = shown(team, done).data
    assert "Done" in blocks_text(final)
    assert action_ids(final) == [encode_action(a, done.id) for a in FINISHED_ACTIONS]
    assert len(team.api.calls_to("files.completeUploadExternal")) == 2


async def test_sora_queue_lists_the_line_privately_with_prompts_escaped(team: SlackHarness) -> None:
    _, waiting = await waiting_video(team, "fish & chips <b>by the sea</b>")

    await command(team, "/sora", " Queue ", user=BOB)

    reply = private_replies(team)[-1]
    assert "1 video of this workspace waiting in line, next first:" in reply
    assert f"1st of 1 · `{waiting.id}` by <@{ALICE}> · about 60 s · fish &amp; chips &lt;b&gt;by the sea" in reply
    assert len(team.api.calls_to("chat.postMessage")) == 2, "nothing public"


async def test_sora_cancel_by_the_requester_others_are_refused_and_cancel_culture_is_a_prompt(
    team: SlackHarness,
) -> None:
    _, waiting = await waiting_video(team)

    await command(team, "/sora", f"cancel {waiting.id}", user=BOB)
    assert "Only the person who asked for this video or an admin can cancel it." in private_replies(team)[-1]
    assert (await team.core.storage.get_generation(waiting.id)).status is GenerationStatus.WAITING

    await command(team, "/sora", f"cancel `{waiting.id.upper()}`")
    assert present.cancelled_text(waiting) in private_replies(team)[-1]
    await eventually(lambda: "Cancelled" in blocks_text(shown(team, waiting).data))
    assert action_ids(shown(team, waiting).data) == []

    await command(team, "/sora", "cancel gnothere9")
    assert "There is no video 'gnothere9' in this workspace." in private_replies(team)[-1]
    await command(team, "/sora", "cancel culture")
    assert (await newest(team)).prompt == "cancel culture", "a prompt that is not `cancel <video id>` makes a video"


async def test_the_cancel_button_is_for_the_requester_only_and_answered_privately(team: SlackHarness) -> None:
    _, waiting = await waiting_video(team)
    message = message_of(shown(team, waiting))
    cancel = encode_action(VideoAction.CANCEL, waiting.id)

    assert (await team.interaction(team.button(cancel, message, user=BOB))).status == 200
    await team.settle()
    assert "Only the person who asked" in private_replies(team)[-1]
    assert (await team.core.storage.get_generation(waiting.id)).status is GenerationStatus.WAITING

    assert (await team.interaction(team.button(cancel, message))).status == 200
    await team.settle()
    assert present.cancelled_text(waiting) in private_replies(team)[-1]
    await eventually(lambda: "Cancelled" in blocks_text(shown(team, waiting).data))
    assert action_ids(shown(team, waiting).data) == []


async def test_limits_are_set_by_admins_and_refused_to_members_privately(team: SlackHarness) -> None:
    await command(team, "/soracast", "limits --monthly-usd 1.50")
    assert "Only workspace admins can change soracast's limits." in private_replies(team)[-1]

    await command(team, "/soracast", "limits --monthly-usd $1.50 --daily-seconds 60", user=CAROL)
    reply = private_replies(team)[-1]
    assert "Limits here: monthly budget $1.50 · 60 s of video per person a day." in reply
    assert "/soracast limits --monthly-usd &lt;USD&gt; --daily-seconds &lt;seconds&gt;" in reply
    assert await team.core.budgets.limits(team.scope) == {BudgetKind.MONTHLY_USD: 1.5, BudgetKind.DAILY_SECONDS: 60}

    await command(team, "/soracast", "limits --daily-seconds soon", user=CAROL)
    assert "'soon' is not a number of seconds." in private_replies(team)[-1]
    await command(team, "/soracast", "limits --monthly-usd none --daily-seconds default", user=CAROL)
    await command(team, "/soracast", "limits")  # anyone may look
    assert "Limits here: no limits." in private_replies(team)[-1]
    assert team.api.calls_to("chat.postMessage") == [], "nothing public"


async def test_a_budget_refusal_is_private_and_says_the_limit_what_is_used_and_when_it_resets(
    team: SlackHarness,
) -> None:
    await command(team, "/soracast", "limits --monthly-usd 0.50", user=CAROL)
    await command(team, "/sora", "the first fox fits --seconds 4")

    await command(team, "/sora", "the second fox does not --seconds 4")

    reply = private_replies(team)[-1]
    assert "about $0.40" in reply and "$0.40 of its $0.50 monthly video budget" in reply
    assert "The budget resets on 1 " in reply and "/soracast limits" in reply
    assert len(team.api.calls_to("chat.postMessage")) == 1


async def test_the_message_shows_the_estimate_then_what_the_video_cost(
    team: SlackHarness, slow_api: OfflineVideosAPI
) -> None:
    await command(team, "/sora", "a red fox in the snow --seconds 8")
    generation = await newest(team)
    [posted] = team.api.calls_to("chat.postMessage")
    assert "≈ $0.80" in blocks_text(posted.data)

    done = await finish(team.core, slow_api, generation.id)
    assert "cost $0.80" in blocks_text(shown(team, done).data)


async def test_usage_is_private_and_for_admins_only(team: SlackHarness, slow_api: OfflineVideosAPI) -> None:
    await command(team, "/sora", "a red fox in the snow --seconds 8")
    await finish(team.core, slow_api, (await newest(team)).id)

    await command(team, "/soracast", "usage")
    assert "Only workspace admins can see what the workspace has spent." in private_replies(team)[-1]

    await command(team, "/soracast", "usage", user=CAROL)
    reply = private_replies(team)[-1]
    assert ": $0.80 spent on 1 video(s) (no limits)" in reply
    assert f"<@{ALICE}> · sora-2 · 1 video(s), 8 s · $0.80" in reply
    assert len(team.api.calls_to("chat.postMessage")) == 1, "only the video's own message is public"
