"""Free-text command options shared by the console and Slack."""

from __future__ import annotations

import pytest

from bot.chat.commands import (
    LineCommand,
    LineVerb,
    parse_generation_command,
    parse_line_command,
    parse_start,
    split_options,
)
from bot.errors import InvalidInput


def test_options_are_split_from_the_prompt() -> None:
    prompt, options = parse_generation_command("@mascot surfing a wave --seconds 8 --size=1280x720")
    assert prompt == "@mascot surfing a wave"
    assert (options.seconds, options.size, options.model) == ("8", "1280x720", None)


def test_phone_dashes_count_as_flags_and_apostrophes_stay() -> None:
    prompt, options = parse_generation_command("@mascot's big day —seconds 12 –model sora-2-pro")
    assert prompt == "@mascot's big day"
    assert (options.seconds, options.model) == ("12", "sora-2-pro")


def test_quoted_values() -> None:
    words, options = split_options('add @mascot clip.mp4 --name "Captain Mascot"', {"name", "start"})
    assert words == "add @mascot clip.mp4"
    assert options == {"name": "Captain Mascot"}


@pytest.mark.parametrize("text, fragment", [("go --colour red", "Unknown option"), ("go --seconds", "needs a value")])
def test_bad_options_are_named(text: str, fragment: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_generation_command(text)
    assert fragment in caught.value.message


@pytest.mark.parametrize("raw, expected", [(None, 0.0), ("", 0.0), ("1.5", 1.5), ("2s", 2.0), ("0:03", 3.0)])
def test_start_times(raw: str | None, expected: float) -> None:
    assert parse_start(raw) == expected


@pytest.mark.parametrize("raw", ["-1", "soon", "nan"])
def test_bad_start_times(raw: str) -> None:
    with pytest.raises(InvalidInput):
        parse_start(raw)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("queue", LineCommand(LineVerb.QUEUE)),
        ("  Queue ", LineCommand(LineVerb.QUEUE)),
        ("cancel gabc23def", LineCommand(LineVerb.CANCEL, "gabc23def")),
        ("CANCEL `GABC23DEF`", LineCommand(LineVerb.CANCEL, "gabc23def")),
        ("cancel gnothere9", LineCommand(LineVerb.CANCEL, "gnothere9")),  # mistyped ids are "no such video"
    ],
)
def test_queue_and_cancel_with_a_video_id_are_line_commands(text: str, expected: LineCommand) -> None:
    assert parse_line_command(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "cancel culture",
        "cancel",
        "cancel gabc23def please",
        "cancel gabc23de",
        "queue of people at dawn",
        "a queue",
        "@mascot cancel gabc23def",
    ],
)
def test_anything_else_is_a_prompt(text: str) -> None:
    assert parse_line_command(text) is None
