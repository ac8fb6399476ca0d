"""Text-command grammar shared by the adapters that take free text (console, Slack): `--flags` in a prompt."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from bot.errors import InvalidInput
from bot.models import GenerationOptions, Sharing

# Phones and Slack turn `--` into an em or en dash; accept those as the same flag marker.
_DASHES = re.compile(r"(?<!\S)(?:--|—|–)(?=[a-z])")
# Prompts are prose ("it's a cat"), so no shell quoting: only a double-quoted run stays one token.
_TOKEN = re.compile(r'"[^"]*"|\S+')
_OPTION_NAMES = {"seconds": "seconds", "duration": "seconds", "size": "size", "model": "model"}


def split_options(text: str, allowed: set[str]) -> tuple[str, dict[str, str]]:
    """Split `text` into free words and `--name value` options (names limited to `allowed`)."""
    normalized = _DASHES.sub("--", text)
    tokens = _TOKEN.findall(normalized)
    words: list[str] = []
    options: dict[str, str] = {}
    index = 0
    while index < len(tokens):
        token = tokens[index]
        if token.startswith("--") and len(token) > 2:
            name, eq, value = token[2:].partition("=")
            name = name.lower()
            if name not in allowed:
                raise InvalidInput(
                    f"Unknown option --{name}.", hint=f"Options here: {', '.join('--' + a for a in sorted(allowed))}."
                )
            if not eq:
                if index + 1 >= len(tokens):
                    raise InvalidInput(f"--{name} needs a value.", hint=f"For example --{name} <value>.")
                index += 1
                value = tokens[index]
            options[name] = _unquote(value)
        else:
            words.append(token)
        index += 1
    return " ".join(words), options


def parse_generation_command(text: str) -> tuple[str, GenerationOptions]:
    """`@mascot surfing --seconds 8 --size 1280x720` → ("@mascot surfing", options)."""
    prompt, raw = split_options(text, set(_OPTION_NAMES))
    fields = {_OPTION_NAMES[name]: value for name, value in raw.items()}
    return prompt, GenerationOptions(**fields)


def parse_start(value: str | None) -> float:
    """A start second as typed (`1.5`, `1.5s`, `0:02`); refuses negatives and words."""
    if value is None or not value.strip():
        return 0.0
    text = value.strip().lower().removesuffix("s")
    try:
        if ":" in text:
            minutes, _, seconds = text.partition(":")
            result = int(minutes) * 60 + float(seconds)
        else:
            result = float(text)
    except ValueError:
        raise InvalidInput(f"{value!r} is not a start time.", hint="Give seconds, e.g. 1.5 or 0:02.") from None
    if result < 0 or result != result:
        raise InvalidInput("The start time cannot be negative.", hint="Give seconds from 0, e.g. 1.5.")
    return result


class LineVerb(StrEnum):
    """What `/sora queue` and `/sora cancel <video id>` ask of the line instead of making a video."""

    QUEUE = "queue"
    CANCEL = "cancel"


@dataclass(frozen=True)
class LineCommand:
    """A `/sora` text that is a line command: the verb and, for cancel, the video id."""

    verb: LineVerb
    generation_id: str | None = None


# Shaped like a video id (`g` and 8 letters or digits), loosely, so a mistyped id is answered "no such video"
# rather than made into a video; copied ids may keep their backticks.
_VIDEO_ID = re.compile(r"^`?(g[a-z0-9]{8})`?$", re.IGNORECASE)


def parse_line_command(text: str) -> LineCommand | None:
    """`queue` alone, or `cancel` followed by exactly one word shaped like a video id; None for a prompt.

    So `/sora cancel culture` and `/sora queue of people at dawn` stay prompts: no prompt is a bare video id.
    """
    words = text.split()
    if len(words) == 1 and words[0].lower() == LineVerb.QUEUE:
        return LineCommand(LineVerb.QUEUE)
    if len(words) == 2 and words[0].lower() == LineVerb.CANCEL:
        found = _VIDEO_ID.match(words[1])
        if found:
            return LineCommand(LineVerb.CANCEL, found.group(1).lower())
    return None


def video_id_arg(text: str, usage: str) -> str:
    """The one video id a command takes (`/cancel gabc12345`), without backticks; a clear error otherwise."""
    words = text.split()
    if len(words) != 1:
        raise InvalidInput("Give one video id.", hint=f"Usage: {usage}")
    return words[0].strip("`")


def _unquote(value: str) -> str:
    return value[1:-1] if len(value) >= 2 and value[0] == value[-1] == '"' else value


# --- a character belongs to someone: the words `/character share`, `notify` and registering take ---------------

#: Registering confirms the right to use the subject with this flag where there is no form (`--confirm`).
CONFIRM_FLAG = "confirm"
_SHARE_WORDS = {
    "everyone": Sharing.EVERYONE,
    "all": Sharing.EVERYONE,
    "only-me": Sharing.ONLY_ME,
    "only_me": Sharing.ONLY_ME,
    "onlyme": Sharing.ONLY_ME,
    "me": Sharing.ONLY_ME,
    "private": Sharing.ONLY_ME,
}
_SWITCH_WORDS = {"on": True, "yes": True, "true": True, "off": False, "no": False, "false": False}


def take_flag(text: str, name: str) -> tuple[str, bool]:
    """`text` without the value-less flag `--name` (as typed, or with a phone's dash), and whether it was there."""
    normalized = _DASHES.sub("--", text)
    words = normalized.split(" ")
    kept = [w for w in words if w.lower() != f"--{name}"]
    return " ".join(kept).strip(), len(kept) != len(words)


def parse_share(words: Sequence[str]) -> tuple[Sharing | None, list[str]]:
    """`everyone`, `only-me`, or the people to let use a character (as the platform wrote them: the adapter
    turns them into ids). Mixing a word and people is refused."""
    sharing = [_SHARE_WORDS[w.lower()] for w in words if w.lower() in _SHARE_WORDS]
    people = [w for w in words if w.lower() not in _SHARE_WORDS]
    if not sharing and not people:
        raise InvalidInput(
            "Say who may use it.",
            hint="`everyone`, `only-me`, or the people to share it with, e.g. `/character share @mascot @ana`.",
        )
    if len(sharing) > 1 or (sharing and people):
        raise InvalidInput(
            "Share a character with `everyone`, with `only-me`, or with named people — one of these.",
            hint="e.g. `/character share @mascot everyone` or `/character share @mascot @ana @ben`.",
        )
    return (sharing[0] if sharing else None), people


def parse_switch(word: str) -> bool:
    """`on` / `off` (also yes/no, true/false)."""
    found = _SWITCH_WORDS.get(word.strip().lower())
    if found is None:
        raise InvalidInput(f"{word!r} is neither on nor off.", hint="Say `on` or `off`.")
    return found
