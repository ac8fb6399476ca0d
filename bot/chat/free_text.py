"""Words people give soracast to keep and show again (a character's display name, its standing instructions):
one check, so each kind of text is refused for the same reasons in the same words."""

from __future__ import annotations

import unicodedata

from bot.chat.mass_mentions import refuse_mass_mentions
from bot.errors import InvalidInput


def checked_text(
    cleaned: str, what: str, limit: int, *, control_hint: str, length_hint: str, plural: bool = False
) -> str:
    """`cleaned` (spacing already tidied) if it is fit to keep; otherwise a refusal naming `what` ("The display
    name"): a control character (never meant; Postgres cannot store a NUL), more than `limit` characters, or a
    mass mention (the text reaches every post and prompt with the character). `plural` words the refusal for a
    plural `what` ("The instructions are …")."""
    verb, pronoun = ("are", "them") if plural else ("is", "it")
    if any(unicodedata.category(ch) == "Cc" for ch in cleaned):
        have = "have" if plural else "has"
        raise InvalidInput(f"{what} {have} a control character in {pronoun}.", hint=control_hint)
    if len(cleaned) > limit:
        raise InvalidInput(f"{what} {verb} {len(cleaned)} characters long; the limit is {limit}.", hint=length_hint)
    refuse_mass_mentions(cleaned, what)
    return cleaned
