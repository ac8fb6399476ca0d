"""A character's standing instructions ("always wears the red scarf; never speaks"): checked when set, and
rewritten for the video model so that no @handle reaches a provider — each backend places the result in its
own prompt form (`CharacterInput.instructions`)."""

from __future__ import annotations

import re
import unicodedata

from bot.errors import InvalidInput
from bot.handles import find_mentions, normalize_handle
from bot.mass_mentions import refuse_mass_mentions

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
    if any(unicodedata.category(ch) == "Cc" for ch in cleaned):
        raise InvalidInput("The instructions have a control character in them.", hint="Use plain words.")
    if len(cleaned) > MAX_INSTRUCTIONS:
        raise InvalidInput(
            f"The instructions are {len(cleaned)} characters long; the limit is {MAX_INSTRUCTIONS}.",
            hint="Keep to what every video with the character must show, e.g. `always wears the red scarf`.",
        )
    # They reach every video with the character and are shown in /character info.
    refuse_mass_mentions(cleaned, "The instructions")
    return cleaned


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
