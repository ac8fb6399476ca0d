"""Mentions that notify a whole channel, workspace or group: refused in what people ask for, defused in what
soracast shows.

One rule for every platform: `@everyone`, `@here` and `@channel` as typed, Slack's `<!everyone>`, `<!here>`,
`<!channel>`, `<!group>` and user groups (`<!subteam^S123>`), and Discord role pings (`<@&123>`). A mention of
one person (`<@U123>`, `<@123>`) is not one of them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bot.errors import MassMention

#: Inserted after the opening character of a mass mention: it still reads the same, and no platform parses it.
_ZERO_WIDTH_SPACE = "\u200b"

# `@everyone` as typed, but not inside an e-mail address or another mention.
_BARE = r"(?<![\w.@<!&])@(?P<bare>everyone|here|channel)(?!\w)"
# Slack's special mentions, with or without a `|label`; user groups carry an id and maybe a label.
_SLACK = r"<!(?P<special>everyone|here|channel|group)(?:\|[^>]*)?>|<!subteam\^[^>]*>"
_DISCORD_ROLE = r"<@&\d*>"
_MASS = re.compile(f"{_BARE}|{_SLACK}|{_DISCORD_ROLE}", re.IGNORECASE)


@dataclass(frozen=True)
class Found:
    """A mass mention in a text: where it stands, and how to name it to the person who wrote it."""

    start: int
    end: int
    shown: str


def find_mass_mentions(text: str) -> list[Found]:
    """Every mass mention in `text`, in order."""
    found = []
    for match in _MASS.finditer(text):
        word = match.group("bare") or match.group("special")
        if word:
            shown = f"@{word.lower()}"
        elif match.group(0).startswith("<!"):
            shown = "a user-group mention"
        else:
            shown = "a role mention"
        found.append(Found(match.start(), match.end(), shown))
    return found


def refuse_mass_mentions(text: str, what: str) -> None:
    """Raise `MassMention` when `text` (named `what` to the user, e.g. "The prompt") would ping a crowd."""
    found = find_mass_mentions(text)
    if not found:
        return
    names = sorted({f.shown for f in found})
    raise MassMention(
        f"{what} contains {' and '.join(names)}, which would notify everyone in the channel.",
        hint="soracast never pings a whole channel, workspace or group: take it out and try again "
        "(@handles of characters are fine).",
    )


def defuse(text: str) -> str:
    """`text` with every mass mention made inert but still readable (a zero-width space after its first
    character); anything else is unchanged, and defusing twice changes nothing more."""
    pieces: list[str] = []
    cursor = 0
    for found in find_mass_mentions(text):
        pieces.append(text[cursor : found.start + 1])
        pieces.append(_ZERO_WIDTH_SPACE)
        cursor = found.start + 1
    pieces.append(text[cursor:])
    return "".join(pieces)

