"""No live mass mention, ever: prompts and names that would ping a crowd are refused in the core, and every
piece of text soracast sends to Slack — messages, blocks, file titles, upload comments, errors, progress — is
checked at the fake Slack API for a live `<!everyone>`, `<!here>`, `<!channel>`, user group or bare `@here`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.characters.registry import validate_name
from bot.chat.mass_mentions import defuse, find_mass_mentions, refuse_mass_mentions
from bot.errors import MassMention
from bot.models import (
    Actor,
    CharacterRef,
    DeliveryTarget,
    Generation,
    GenerationStatus,
)
from tests.fakes.discord_api import EPHEMERAL
from tests.fakes.slack_api import FakeSlackAPI
from tests.fixtures.discord import DiscordHarness
from tests.fixtures.media import Mp4Factory
from tests.fixtures.slack import ALICE, CHANNEL, SlackHarness

#: Every kind at once: Slack's special mentions and user groups, a bare @here, a Discord role ping.
HOSTILE = "<!channel> party with @here, <!everyone|everyone>, <!subteam^S0614TZR7|@design> and <@&42>"

# --- the core rule -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", [
    "@everyone", "hi @here!", "(@channel)", "<!here>", "<!here|here>", "<!channel>", "<!everyone>", "<!group>",
    "<!subteam^S0614TZR7>", "<!subteam^S0614TZR7|@design>", "<@&987654321>", "@EVERYONE",
])
def test_every_kind_of_mass_mention_is_found(text: str) -> None:
    assert find_mass_mentions(text)
    assert not find_mass_mentions(defuse(text))


@pytest.mark.parametrize("text", [
    "mail bob@example.com", "crew@everyone.example", "<@U024BE7LH>", "<@123456>", "<@!42>", "<#C024BE7LR>",
    "@mascot waves", "<!date^1392734382^{date}|Feb 18>", "here and everyone", "@heretic",
])
def test_a_single_person_an_address_or_a_plain_word_is_not_a_mass_mention(text: str) -> None:
    assert not find_mass_mentions(text)
    assert defuse(text) == text


@given(st.lists(st.sampled_from(["@everyone", "@here", "<!channel>", "<!subteam^S1|@x>", "<@&1>", "@mascot",
                                 "a@here.b", "<@U1>", "<", ">", "!", "@", " ", "word"]), max_size=15))
def test_defusing_leaves_no_mass_mention_and_changes_nothing_else(words: list[str]) -> None:
    text = "".join(words)
    defused = defuse(text)
    assert not find_mass_mentions(defused)
    assert defused.replace("\u200b", "") == text.replace("\u200b", "")
    assert defuse(defused) == defused


def test_a_refusal_names_the_mentions_and_says_what_to_do() -> None:
    with pytest.raises(MassMention) as caught:
        refuse_mass_mentions("dance <!here> @everyone", "The prompt")
    expected = "The prompt contains @everyone and @here, which would notify everyone in the channel."
    assert caught.value.message == expected
    assert "take it out and try again" in caught.value.user_text()


def test_a_display_name_that_would_ping_a_crowd_is_refused() -> None:
    with pytest.raises(MassMention):
        validate_name("Captain @here")
    assert validate_name("Captain <@U024BE7LH>") == "Captain <@U024BE7LH>"


# --- Slack: what reached the fake Web API ----------------------------------------------------------------


def every_string(value: Any) -> Iterator[str]:
    """Every string in a recorded call, JSON-encoded fields (blocks, files) opened up."""
    if isinstance(value, str):
        yield value
        if value.strip()[:1] in ("[", "{"):
            try:
                yield from every_string(json.loads(value))
            except ValueError:
                pass
    elif isinstance(value, dict):
        for item in value.values():
            yield from every_string(item)
    elif isinstance(value, list):
        for item in value:
            yield from every_string(item)


def live_mass_mentions(api: FakeSlackAPI) -> list[tuple[str, str]]:
    """(method, text) of every string that reached the fake carrying a live mass mention."""
    return [(call.method, text) for call in api.calls for text in every_string(call.data) if find_mass_mentions(text)]


def private_texts(slack: SlackHarness) -> list[str]:
    replies = [c.data.get("text", "") for c in slack.api.calls_to("response")]
    return replies + [str(c.data.get("text", "")) for c in slack.api.calls_to("chat.postEphemeral")]


@pytest.mark.parametrize("prompt", [
    "<!everyone> dance party", "<!here> dance party", "@channel dance party", "<!subteam^S0614TZR7|@design> dance",
])
async def test_a_slack_prompt_that_would_ping_a_crowd_is_refused_privately_and_nothing_is_posted(
    slack: SlackHarness, prompt: str
) -> None:
    assert (await slack.command("/sora", prompt)).status == 200
    await slack.settle()

    [answer] = private_texts(slack)
    assert "would notify everyone in the channel" in answer
    assert slack.api.calls_to("chat.postMessage") == []
    assert await slack.core.generations.recent(slack.scope) == []
    assert live_mass_mentions(slack.api) == []


async def test_remix_and_extend_prompts_are_refused_the_same_way(slack: SlackHarness) -> None:
    await slack.command("/sora", "a red kite")
    await slack.settle()
    [parent] = await slack.core.generations.recent(slack.scope)
    parent = await slack.core.generations.wait_finished(parent.id, 60)
    with pytest.raises(MassMention):
        await slack.core.generations.remix(slack.scope, Actor(id=ALICE), parent.id, "<!here> again", parent.target)
    with pytest.raises(MassMention):
        await slack.core.generations.extend(slack.scope, Actor(id=ALICE), parent.id, "@everyone", parent.target)
    assert len(await slack.core.generations.recent(slack.scope)) == 1


async def test_every_text_slack_is_sent_about_a_generation_is_defused(
    slack: SlackHarness, make_mp4: Mp4Factory
) -> None:
    # A generation stored before this rule (or text from any other source) with every kind of mass mention in
    # the prompt, a character name and the failure reason: posted, edited, uploaded and failed for real.
    notifier = slack.adapter.services.notifier
    done = Generation(
        scope=slack.scope,
        requester_id=ALICE,
        prompt=HOSTILE,
        api_prompt=HOSTILE,
        characters=[CharacterRef(handle="mascot", name="<!everyone> Mascot", character_id="c1")],
        backend="offline",
        model="sora-2",
        seconds="4",
        size="1280x720",
        target=DeliveryTarget(channel_id=CHANNEL),
    )
    await slack.core.storage.save_generation(done)
    done.target.message_id = await notifier.post(done)
    done.status, done.progress = GenerationStatus.IN_PROGRESS, 50
    await notifier.progress(done)
    done.status, done.video_path = GenerationStatus.COMPLETED, make_mp4("done.mp4", seconds=1.0)
    receipt = await notifier.completed(done)
    assert receipt.attached

    failed = done.model_copy(update={"id": "gfailedxx", "status": GenerationStatus.FAILED, "error_code": "x"})
    failed.error_message = "The model refused <!here> and @channel."
    failed.target = DeliveryTarget(channel_id=CHANNEL)
    await notifier.failed(failed)

    methods = set(slack.api.methods())
    assert {"chat.postMessage", "chat.update", "files.completeUploadExternal"} <= methods
    [completed] = slack.api.calls_to("files.completeUploadExternal")
    assert "party" in completed.data["files"] and "is ready" in completed.data["initial_comment"]
    assert live_mass_mentions(slack.api) == []
    # Defused, not hidden: people still see what was asked for.
    first = slack.api.calls_to("chat.postMessage")[0].data
    assert "channel" in first["text"] and "party" in first["text"]


async def test_errors_and_answers_that_echo_what_someone_typed_are_defused(
    slack: SlackHarness, clip: bytes
) -> None:
    hosted = slack.api.host_file("<!here> party.mp4", clip)
    await slack.event(
        {
            "type": "app_mention",
            "user": ALICE,
            "text": f"<@{slack.api.bot_user_id}> character add @pet --confirm",
            "ts": "1700000002.000100",
            "channel": CHANNEL,
            "event_ts": "1700000002.000100",
            "files": [hosted.file_object()],
        }
    )
    await slack.settle()
    for text in ("info @pet", "list", "from <!everyone> @kite", "<!here>"):
        await slack.command("/character", text)
        await slack.settle()

    answers = private_texts(slack)
    assert any("There is no video" in a and "everyone" in a for a in answers)
    assert any("party.mp4" in a for a in answers), "the file name is shown, defused"
    assert live_mass_mentions(slack.api) == []


@pytest.fixture
def clip(make_mp4: Mp4Factory) -> bytes:
    return make_mp4("upload.mp4", seconds=3.0).read_bytes()


# --- Discord -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("prompt", ["@everyone dance party", "@here dance", "<@&900000000000000005> dance"])
async def test_a_discord_prompt_that_would_ping_a_crowd_is_refused_privately(
    discord_bot: DiscordHarness, prompt: str
) -> None:
    h = discord_bot
    sent = await h.run(h.slash("sora", {"prompt": prompt}))

    messages = h.api.messages_of(sent.token)
    live = [m for m in messages if m["id"] in h.api.messages]
    assert live and all(m["flags"] & EPHEMERAL for m in live), "only the requester sees the refusal"
    assert "would notify everyone in the channel" in live[-1]["embeds"][0]["description"]
    assert await h.core.generations.recent(h.scope) == []
