"""The @handle grammar and prompt resolution."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.characters.handles import find_mentions, resolve_prompt, suggest_handles, validate_handle
from bot.errors import InvalidHandle, MassMention, TooManyCharacters, UnknownHandle
from bot.models import Character, Platform, Scope

SCOPE = Scope(platform=Platform.DISCORD, id="guild-1")


def _character(handle: str, name: str, char_id: str) -> Character:
    return Character(id=char_id, scope=SCOPE, handle=handle, name=name, owner_id="u1")


KNOWN = {
    "mascot": _character("mascot", "Captain Mascot", "char_1"),
    "team_cat": _character("team_cat", "Whiskers", "char_2"),
    "bolt.bot": _character("bolt.bot", "Bolt", "char_3"),
}


@pytest.mark.parametrize("raw, expected", [("@Mascot", "mascot"), ("team_cat", "team_cat"), ("a1", "a1"),
                                           ("bolt.bot", "bolt.bot"), ("x" * 32, "x" * 32)])
def test_valid_handles_are_canonicalised(raw: str, expected: str) -> None:
    assert validate_handle(raw) == expected


@pytest.mark.parametrize("raw, fragment", [
    ("", "required"), ("@a", "too short"), ("x" * 33, "too long"), ("bad-handle", "not a valid"),
    ("_lead", "not a valid"), ("trail.", "not a valid"), ("a..b", "not a valid"), ("sp ace", "not a valid"),
    ("everyone", "reserved"), ("@here", "reserved"), ("channel", "reserved"), ("émile", "not a valid"),
])
def test_invalid_handles_say_what_is_wrong(raw: str, fragment: str) -> None:
    with pytest.raises(InvalidHandle) as caught:
        validate_handle(raw)
    assert fragment in caught.value.message


def test_a_prompt_gets_names_verbatim_and_character_ids_in_order() -> None:
    prompt = "@team_cat chases @mascot, then @mascot naps."
    resolved = resolve_prompt(prompt, KNOWN, max_characters=2)
    assert resolved.text == "Whiskers chases Captain Mascot, then Captain Mascot naps."
    assert [c.character_id for c in resolved.characters] == ["char_2", "char_1"]
    # Every mention is recorded where it stands, so each backend can rewrite the prompt its own way.
    assert [(prompt[m.start : m.end], m.handle) for m in resolved.mentions] == [
        ("@team_cat", "team_cat"), ("@mascot", "mascot"), ("@mascot", "mascot"),
    ]


def test_a_handle_with_a_dot_inside_and_a_full_stop_after() -> None:
    resolved = resolve_prompt("Meet @bolt.bot.", KNOWN, max_characters=2)
    assert resolved.text == "Meet Bolt."
    assert resolved.characters[0].handle == "bolt.bot"


@pytest.mark.parametrize("prompt", [
    "mail bob@example.com about it",
    "mail the team at crew@everyone.example",
    "discord users <@123456> and <@!42>",
    "slack user <@U024BE7LH> in <#C024BE7LR>",
    "a lone @ sign",
])
def test_things_that_look_like_mentions_are_left_alone(prompt: str) -> None:
    resolved = resolve_prompt(prompt, KNOWN, max_characters=2)
    assert resolved.text == prompt
    assert resolved.characters == []


@pytest.mark.parametrize(("prompt", "named"), [
    ("ping @everyone and @here", "@everyone and @here"),
    ("@mascot waves at @Channel.", "@channel"),
    ("slack <!here> dance party", "@here"),
    ("slack <!everyone|everyone> dance party", "@everyone"),
    ("slack <!subteam^S0614TZR7|@design> dance", "a user-group mention"),
    ("discord role <@&987> dance", "a role mention"),
])
def test_a_prompt_that_would_ping_a_crowd_is_refused_and_says_which_mention(prompt: str, named: str) -> None:
    with pytest.raises(MassMention) as caught:
        resolve_prompt(prompt, KNOWN, max_characters=2)
    assert f"contains {named}," in caught.value.message
    assert "take it out" in caught.value.user_text()


def test_an_unknown_handle_suggests_the_closest_known_ones() -> None:
    with pytest.raises(UnknownHandle) as caught:
        resolve_prompt("@mascott surfing", KNOWN, max_characters=2)
    assert caught.value.handle == "mascott"
    assert caught.value.suggestions[0] == "mascot"
    assert "@mascot" in caught.value.user_text()


def test_a_malformed_handle_in_a_prompt_is_refused() -> None:
    with pytest.raises(InvalidHandle):
        resolve_prompt("@x surfing", KNOWN, max_characters=2)


def test_the_character_cap_is_enforced_before_any_call() -> None:
    with pytest.raises(TooManyCharacters) as caught:
        resolve_prompt("@mascot @team_cat @bolt.bot dance", KNOWN, max_characters=2)
    assert "at most 2" in caught.value.message


def test_suggestions_prefer_close_matches() -> None:
    assert suggest_handles("team", ["team_cat", "mascot"]) == ["team_cat"]
    assert suggest_handles("zzz", ["mascot"]) == []


_prose = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=200)


@given(_prose)
def test_fuzz_resolution_never_crashes_and_only_replaces_known_handles(prompt: str) -> None:
    try:
        resolved = resolve_prompt(prompt, KNOWN, max_characters=3)
    except (UnknownHandle, InvalidHandle, MassMention):
        return
    # Every character used was mentioned, and no registered handle survives as a mention.
    for ref in resolved.characters:
        assert ref.handle in prompt.lower()
    for _, _, raw in find_mentions(resolved.text):
        assert raw.lower() not in KNOWN


@given(st.lists(st.sampled_from(["@mascot", "@team_cat", "x@y.z", "a@everyone.z", "<@1>", "word", ".", ","]),
                max_size=12))
def test_fuzz_mentions_of_known_handles_always_resolve(words: list[str]) -> None:
    prompt = " ".join(words)
    resolved = resolve_prompt(prompt, KNOWN, max_characters=3)
    expected = [h for h in ("mascot", "team_cat") if f"@{h}" in words]
    assert sorted(c.handle for c in resolved.characters) == sorted(expected)
    assert "@mascot" not in resolved.text and "@team_cat" not in resolved.text
