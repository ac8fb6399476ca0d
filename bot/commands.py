"""Text-command grammar shared by the adapters that take free text (console, Slack): `--flags` in a prompt."""

from __future__ import annotations

import re

from bot.errors import InvalidInput
from bot.models import GenerationOptions

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


def _unquote(value: str) -> str:
    return value[1:-1] if len(value) >= 2 and value[0] == value[-1] == '"' else value
