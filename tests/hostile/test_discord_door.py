"""Every Discord payload in the hostile corpus, handed to discord.py's own parser the way the gateway would:
soracast answers privately or not at all, never publicly, with at most one log line and no traceback, and
stores nothing."""

from __future__ import annotations

import logging

import pytest

from tests.fakes.discord_api import AUTOCOMPLETE, EPHEMERAL, MESSAGE
from tests.fixtures.discord import ADMIN, DiscordHarness
from tests.hostile.corpus import DISCORD_CASES, MARKER, DiscordCase


@pytest.mark.parametrize("case", DISCORD_CASES, ids=[c.name for c in DISCORD_CASES])
async def test_a_hostile_interaction_is_refused_privately_or_ignored(
    discord_bot: DiscordHarness, caplog: pytest.LogCaptureFixture, case: DiscordCase
) -> None:
    h = discord_bot
    payload = case.make(h)
    with caplog.at_level(logging.INFO):
        sent = await h.run(payload)

    logged = [r for r in caplog.records if r.levelno >= logging.INFO]
    assert all(r.exc_info is None and "Traceback" not in r.getMessage() for r in logged), [
        r.getMessage() for r in logged
    ]
    assert MARKER not in caplog.text
    callbacks = h.api.callbacks(sent.token)
    messages = h.api.messages_of(sent.token)
    assert all(m["flags"] & EPHEMERAL for m in messages if m["id"] in h.api.messages), "nothing is shown publicly"
    assert len(logged) == case.logged, [r.getMessage() for r in logged]
    if case.expect == "private":
        [answer] = [m for m in messages if m["flags"] & EPHEMERAL]
        assert answer["embeds"] and answer["embeds"][0]["description"], "the refusal says what is wrong"
    elif case.expect == "autocomplete":
        [choices] = callbacks
        assert choices.json == {"type": AUTOCOMPLETE, "data": {"choices": []}}
    else:
        assert callbacks == [] and messages == []
    assert await h.core.generations.recent(h.scope) == []
    assert await h.core.registry.list(h.scope) == []
    assert not h.api.calls("GET", "/cdn/"), "nothing is downloaded"


async def test_a_role_discord_did_not_describe_is_not_saved_even_for_an_admin(discord_bot: DiscordHarness) -> None:
    h = discord_bot
    config = {"name": "config", "type": 1, "options": [{"name": "register_role", "type": 8, "value": "123"}]}
    payload = h.interaction(2, {"id": h.new_id(), "name": "soracast", "type": 1, "options": [config]}, user=ADMIN)
    sent = await h.run(payload)

    [answer] = h.api.callbacks(sent.token)
    assert answer.json["type"] == MESSAGE and answer.ephemeral
    assert "register_role" in answer.json["data"]["embeds"][0]["description"]
    assert (await h.core.registry.scope_settings(h.scope)).register_role_id is None
