"""The @handle grammar, and resolving the handles in a prompt to the characters of one scope."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from bot.backends.base import Mention
from bot.chat.mass_mentions import refuse_mass_mentions
from bot.errors import InvalidHandle, TooManyCharacters, UnknownHandle
from bot.models import Character, CharacterRef

HANDLE_MIN = 2
HANDLE_MAX = 32

#: Words a chat platform gives meaning to, or that would read as the bot itself.
RESERVED_HANDLES = frozenset(
    {"everyone", "here", "channel", "all", "group", "sora", "soracast", "admin", "admins", "mod", "mods",
     "moderator", "moderators", "bot", "system", "null", "none", "me", "you"}
)

_HANDLE_RE = re.compile(r"[a-z0-9](?:[a-z0-9_.]*[a-z0-9_])?")

# A mention is `@` + handle characters, where the `@` is not glued to a word (an e-mail address) and not
# inside platform mention syntax (`<@123>`, `<@!123>`, `<@&123>`, Slack's `<@U123|name>`).
_MENTION_RE = re.compile(r"(?<![\w.@<!&])@([A-Za-z0-9_.]+)")


def normalize_handle(raw: str) -> str:
    """Lower-case a handle and drop one leading `@`; does not validate."""
    text = raw.strip()
    if text.startswith("@"):
        text = text[1:]
    return text.lower()


def validate_handle(raw: str) -> str:
    """Return the canonical handle or raise `InvalidHandle` saying exactly what is wrong."""
    handle = normalize_handle(raw)
    shown = f"@{handle}" if handle else "That handle"
    rules = "Handles use 2–32 lowercase letters, digits, `_` or `.`, e.g. `@mascot` or `@team_cat`."
    if not handle:
        raise InvalidHandle("A handle is required.", hint=rules)
    if len(handle) < HANDLE_MIN:
        raise InvalidHandle(f"{shown} is too short.", hint=rules)
    if len(handle) > HANDLE_MAX:
        raise InvalidHandle(f"{shown[:40]}… is too long ({len(handle)} characters).", hint=rules)
    if not _HANDLE_RE.fullmatch(handle) or ".." in handle:
        raise InvalidHandle(
            f"{shown} is not a valid handle.",
            hint=rules + " It must start with a letter or digit and not end with a dot.",
        )
    if handle in RESERVED_HANDLES:
        raise InvalidHandle(f"@{handle} is reserved by the chat platform or by soracast.", hint="Pick another.")
    return handle


def find_mentions(prompt: str) -> list[tuple[int, int, str]]:
    """Every @mention in a prompt as (start, end, raw handle text), trailing sentence dots excluded.

    Platform-reserved words (`@everyone`, `@here`, …) are not mentions of a character and are skipped.
    """
    found: list[tuple[int, int, str]] = []
    for match in _MENTION_RE.finditer(prompt):
        raw = match.group(1)
        stripped = raw.rstrip(".")
        if not stripped:
            continue
        if stripped.lower() in ("everyone", "here", "channel"):
            continue
        start = match.start()
        found.append((start, start + 1 + len(stripped), stripped))
    return found


def mentions_of(prompt: str) -> list[Mention]:
    """The prompt's well-formed mentions with their canonical handles (malformed ones are left out)."""
    found = []
    for start, end, raw in find_mentions(prompt):
        handle = normalize_handle(raw)
        if _HANDLE_RE.fullmatch(handle):
            found.append(Mention(start=start, end=end, handle=handle))
    return found


def suggest_handles(handle: str, known: Iterable[str], limit: int = 3) -> list[str]:
    """The known handles closest to a mistyped one, best first."""
    pool = sorted(set(known))
    close = difflib.get_close_matches(handle, pool, n=limit, cutoff=0.5)
    for candidate in pool:
        if len(close) >= limit:
            break
        if candidate not in close and (candidate.startswith(handle) or handle.startswith(candidate)):
            close.append(candidate)
    return close[:limit]


@dataclass(frozen=True)
class ResolvedPrompt:
    """A prompt's handles resolved: the characters it uses (in order of first mention) and where each
    mention stands, plus the prompt with every handle replaced by its character's name."""

    text: str
    characters: list[CharacterRef]
    mentions: list[Mention]


def resolve_prompt(
    prompt: str, characters: Mapping[str, Character], max_characters: int, model: str | None = None
) -> ResolvedPrompt:
    """Replace each @handle with its character's name verbatim; unknown handles fail with suggestions.

    A prompt that would ping a whole channel is refused here, so every way a prompt comes in (/sora, remix,
    extend, on every platform) is refused the same way, before anything is stored or sent.
    """
    refuse_mass_mentions(prompt, "The prompt")
    used: dict[str, CharacterRef] = {}
    mentions: list[Mention] = []
    pieces: list[str] = []
    cursor = 0
    for start, end, raw in find_mentions(prompt):
        handle = validate_handle(raw)
        character = characters.get(handle)
        if character is None:
            raise UnknownHandle(handle, suggest_handles(handle, characters.keys()))
        if handle not in used:
            used[handle] = CharacterRef(handle=handle, name=character.name, character_id=character.id)
        mentions.append(Mention(start=start, end=end, handle=handle))
        pieces.append(prompt[cursor:start])
        pieces.append(character.name)
        cursor = end
    pieces.append(prompt[cursor:])
    if len(used) > max_characters:
        raise TooManyCharacters(
            f"This prompt uses {len(used)} characters; "
            + (f"{model} can feature at most {max_characters} in one video." if model else
               f"a video can feature at most {max_characters}."),
            hint="Remove some @handles and try again.",
        )
    return ResolvedPrompt(text="".join(pieces).strip(), characters=list(used.values()), mentions=mentions)
