"""A character's standing instructions ("always wears the red scarf; never speaks"): checked when set, and
rewritten for the video model so that no @handle reaches a provider — each backend places the result in its
own prompt form (`CharacterInput.instructions`)."""

from __future__ import annotations

import re

from bot.characters.handles import find_mentions, normalize_handle
from bot.chat.free_text import checked_text

#: The longest instructions a character may keep (they ride along with every prompt that uses it).
MAX_INSTRUCTIONS = 500
#: Words that clear a character's instructions.
CLEAR_WORDS = frozenset({"clear", "none", "-"})

# A stray `@` that no mention pattern took (`@@`, `@` before punctuation) is dropped too.
_LONE_AT = re.compile(r"@(?=[\w.])")


def validate_instructions(text: str) -> str:
    """The instructions as they will be kept (spacing tidied), or a specific refusal. "" means none."""
    cleaned = " ".join(text.split())
    if cleaned.strip('"“”').lower() in CLEAR_WORDS:
        return ""
    if len(cleaned) >= 2 and cleaned[0] in '"“' and cleaned[-1] in '"”':
        cleaned = cleaned[1:-1].strip()
    return checked_text(
        cleaned,
        "The instructions",
        MAX_INSTRUCTIONS,
        control_hint="Use plain words.",
        length_hint="Keep to what every video with the character must show, e.g. `always wears the red scarf`.",
        plural=True,
    )


def for_prompt(instructions: str, name: str, handles: tuple[str, ...]) -> str:
    """The instructions as a video model reads them: the character's own @handle(s) become its name, any other
    @mention loses its `@`, so no handle ever reaches a provider."""
    if not instructions:
        return ""
    own = {normalize_handle(h) for h in handles}
    pieces: list[str] = []
    cursor = 0
    for start, end, raw in find_mentions(instructions):
        pieces.append(instructions[cursor:start])
        pieces.append(name if normalize_handle(raw) in own else raw)
        cursor = end
    pieces.append(instructions[cursor:])
    return _LONE_AT.sub("", "".join(pieces)).strip()
