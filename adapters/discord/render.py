"""Core results and errors as Discord embeds; all wording of a generation or an error comes from `bot.chat.present`."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import discord

from adapters.discord.origin import EXTRA_GUILD
from bot.characters.access_requests import AskOutcome
from bot.characters.character_videos import CharacterVideoList
from bot.chat import present
from bot.chat.notify import VideoNotice
from bot.errors import SoracastError
from bot.models import (
    AccessRequest,
    AccessRequestStatus,
    BudgetKind,
    Character,
    Generation,
    GenerationStatus,
    ScopeSettings,
)
from bot.videos.budgets import Usage
from bot.videos.generations import LineEntry

#: Characters per page of `/character list`.
PAGE_SIZE = 10

_DESCRIPTION_MAX = 4096
_FIELD_MAX = 1024
_FOOTER_MAX = 2048
_TITLE_MAX = 256

_COLOURS = {
    GenerationStatus.COMPLETED: discord.Colour.green(),
    GenerationStatus.FAILED: discord.Colour.red(),
    GenerationStatus.DELETED: discord.Colour.dark_grey(),
    GenerationStatus.CANCELLED: discord.Colour.dark_grey(),
}

#: How `/soracast limits` is typed here, for the help under the limits.
LIMITS_HOW = "`/soracast limits monthly_usd:<USD> daily_seconds:<seconds>`"


def clip(text: str, limit: int) -> str:
    """Fit text into a Discord length limit, marking the cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --- generations -----------------------------------------------------------------------------------------


def generation_embed(generation: Generation, note: str | None = None) -> discord.Embed:
    """The one message of a generation: what was asked, with which characters, and where it is now."""
    embed = discord.Embed(
        description=clip(present.headline(generation), _DESCRIPTION_MAX),
        colour=_COLOURS.get(generation.status, discord.Colour.blurple()),
    )
    embed.add_field(name="Status", value=clip(present.status_line(generation), _FIELD_MAX), inline=False)
    if note:
        embed.add_field(name="Video", value=clip(note, _FIELD_MAX), inline=False)
    embed.set_footer(text=clip(present.details_line(generation), _FOOTER_MAX))
    return embed


def video_filename(generation: Generation) -> str:
    return f"soracast-{generation.id}.mp4"


def too_large_note(size: int, limit: int) -> str:
    """Why a finished video is not attached: Discord's per-server upload limit."""
    return (
        f"The video is {_megabytes(size)}, over this server's {_megabytes(limit)} upload limit, and could not be "
        "made small enough to attach. Ask for a shorter or smaller video (seconds / size), or boost the server "
        "for a higher limit."
    )


def missing_file_note() -> str:
    return "The finished video file was not found here, so it could not be attached."


def shrunk_note(original: int, shrunk: int) -> str:
    return f"Re-encoded from {_megabytes(original)} to {_megabytes(shrunk)} to fit this server's upload limit."


def _megabytes(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MB"


def deleted_embed(generation: Generation) -> discord.Embed:
    return discord.Embed(description=f"Deleted video `{generation.id}`.", colour=discord.Colour.dark_grey())


# --- the line and budgets --------------------------------------------------------------------------------


def line_embed(entries: Sequence[LineEntry]) -> discord.Embed:
    """`/soracast queue`: this server's waiting videos, next first."""
    text = "\n".join([present.line_summary(entries), *present.line_lines(entries)])
    return discord.Embed(title="The line", description=clip(text, _DESCRIPTION_MAX), colour=discord.Colour.blurple())


def cancelled_embed(generation: Generation) -> discord.Embed:
    return discord.Embed(description=present.cancelled_text(generation), colour=discord.Colour.dark_grey())


def limits_embed(limits: Mapping[BudgetKind, float | None], *, changed: bool) -> discord.Embed:
    """`/soracast limits`: what applies in this server (just set, or as it was), and how to change it."""
    return discord.Embed(
        title="Limits changed" if changed else "Limits",
        description=clip("\n".join(present.limits_lines(limits, LIMITS_HOW)), _DESCRIPTION_MAX),
        colour=discord.Colour.green() if changed else discord.Colour.blurple(),
    )


def usage_embed(usage: Usage) -> discord.Embed:
    """`/soracast usage`: the month's spending, per person and model (admins only)."""
    first, *rest = present.usage_lines(usage)
    return discord.Embed(
        title=clip(first, _TITLE_MAX),
        description=clip("\n".join(rest), _DESCRIPTION_MAX) if rest else "No videos this month yet.",
        colour=discord.Colour.blurple(),
    )


# --- characters ------------------------------------------------------------------------------------------


def character_embed(
    character: Character, title: str | None = None, *, still: str | None = None
) -> discord.Embed:
    """One character: handle, name, its references, where it came from, who registered it; `still` names an
    attached still to show."""
    embed = discord.Embed(
        title=clip(title or f"@{character.handle}", _TITLE_MAX),
        description=clip(present.character_line(character), _DESCRIPTION_MAX),
        colour=discord.Colour.blurple(),
    )
    embed.add_field(name="References", value=clip(present.references_line(character), _FIELD_MAX), inline=False)
    embed.add_field(name="Registered by", value=f"<@{character.owner_id}>")
    embed.add_field(name="Since", value=discord.utils.format_dt(character.created_at, "D"))
    # Owner, who may use it, instructions, notes, rights: the same lines every platform shows.
    for line in present.owner_settings_lines(character)[1:]:
        name, _, value = line.partition(": ")
        embed.add_field(name=name, value=clip(value, _FIELD_MAX), inline=False)
    if still is not None:
        embed.set_image(url=f"attachment://{still}")
    return embed


def still_filename(character: Character, index: int) -> str:
    return f"{character.handle}-still-{index}.jpg"


def page_count(total: int) -> int:
    return max(1, math.ceil(total / PAGE_SIZE))


def character_page(characters: Sequence[Character], page: int) -> discord.Embed:
    """One page of `/character list` (page numbers from 0, clamped)."""
    pages = page_count(len(characters))
    page = min(max(page, 0), pages - 1)
    shown = characters[page * PAGE_SIZE : (page + 1) * PAGE_SIZE]
    lines = [present.character_line(c) for c in shown]
    embed = discord.Embed(
        title=f"Characters in this server ({len(characters)})",
        description=clip("\n".join(lines), _DESCRIPTION_MAX)
        if lines
        else "No characters yet. Register one with `/character add`.",
        colour=discord.Colour.blurple(),
    )
    if pages > 1:
        embed.set_footer(text=f"Page {page + 1} of {pages}")
    return embed


def removed_embed(character: Character) -> discord.Embed:
    return discord.Embed(description=f"Removed @{character.handle} ({character.name}).", colour=discord.Colour.green())


def settings_embed(settings: ScopeSettings) -> discord.Embed:
    role = settings.register_role_id
    text = (
        f"Registering characters is now limited to <@&{role}> (and admins)."
        if role
        else "Everyone in this server can register characters."
    )
    return discord.Embed(description=text, colour=discord.Colour.green())


def sharing_embed(character: Character) -> discord.Embed:
    return discord.Embed(description=present.sharing_changed_text(character), colour=discord.Colour.green())


def instructions_embed(character: Character) -> discord.Embed:
    return discord.Embed(
        description=clip(present.instructions_changed_text(character), _DESCRIPTION_MAX), colour=discord.Colour.green()
    )


def notify_embed(character: Character) -> discord.Embed:
    return discord.Embed(description=present.notify_changed_text(character), colour=discord.Colour.green())


# --- asking to use a character, and its owner's notes ------------------------------------------------------


def asked_embed(outcome: AskOutcome) -> discord.Embed:
    """The private answer to whoever asked."""
    text = present.asked_text(outcome.request, outcome.character, new=outcome.new)
    return discord.Embed(description=text, colour=discord.Colour.green() if outcome.new else discord.Colour.orange())


def request_embed(request: AccessRequest, character: Character) -> discord.Embed:
    """The owner's message about a request (Approve / Decline go with it); once decided, what was decided."""
    decided = request.status is not AccessRequestStatus.PENDING
    return discord.Embed(
        title=f"Request to use @{character.handle}",
        description=present.decided_text(request, character) if decided else present.request_text(request, character),
        colour=discord.Colour.dark_grey() if decided else discord.Colour.blurple(),
    )


def decision_embed(request: AccessRequest, character: Character) -> discord.Embed:
    """The requester's message once the request was decided."""
    approved = request.status is AccessRequestStatus.APPROVED
    return discord.Embed(
        description=present.decision_text(request, character),
        colour=discord.Colour.green() if approved else discord.Colour.dark_grey(),
    )


#: Requests shown at once by `/character requests`: each takes a row of two buttons, a message holds five rows.
REQUESTS_SHOWN = 5


def requests_embed(waiting: Sequence[tuple[AccessRequest, Character]]) -> discord.Embed:
    """`/character requests`: those waiting for this member's answer (the first few, with their buttons)."""
    lines = [present.request_line(r, c) for r, c in waiting[:REQUESTS_SHOWN]]
    if len(waiting) > REQUESTS_SHOWN:
        lines.append(f"…and {len(waiting) - REQUESTS_SHOWN} more: answer these first, then look again.")
    return discord.Embed(
        title=clip(present.requests_summary(len(waiting)), _TITLE_MAX),
        description=clip("\n".join(lines), _DESCRIPTION_MAX) if lines else None,
        colour=discord.Colour.blurple(),
    )


def jump_url(generation: Generation) -> str | None:
    """The link Discord shows a message at: `https://discord.com/channels/<server>/<channel>/<message>`."""
    if generation.target.message_id is None:
        return None
    guild = generation.target.extra.get(EXTRA_GUILD) or generation.scope.id
    return f"https://discord.com/channels/{guild}/{generation.target.channel_id}/{generation.target.message_id}"


def owner_notice_embed(notices: Sequence[VideoNotice]) -> discord.Embed:
    """An owner's private note about videos other members made with their characters, each with its link."""
    links = {n.generation.id: jump_url(n.generation) for n in notices}
    lines = present.owner_notice_lines(notices, links, link=lambda url, label: f"[{label}]({url})")
    return discord.Embed(
        title=present.owner_notice_title(len(notices)),
        description=clip("\n".join(lines), _DESCRIPTION_MAX),
        colour=discord.Colour.blurple(),
    )


#: Videos `/character videos` shows with a Delete button each (four rows of five; a message holds 25 buttons).
VIDEOS_SHOWN = 20


def character_videos_embed(found: CharacterVideoList) -> discord.Embed:
    """`/character videos @h`: every video featuring it — who, when, where, its id — newest first."""
    shown = found.videos[:VIDEOS_SHOWN]
    lines = present.video_lines(shown, where=lambda g: f"<#{g.target.channel_id}>" + _jump(g))
    return discord.Embed(
        title=clip(present.videos_summary(found.character, len(found.videos), len(shown)), _TITLE_MAX),
        description=clip("\n".join(lines), _DESCRIPTION_MAX) if lines else None,
        colour=discord.Colour.blurple(),
    )


def _jump(generation: Generation) -> str:
    url = jump_url(generation)
    return f" ([post]({url}))" if url else ""


def taken_down_embed(generation: Generation) -> discord.Embed:
    return discord.Embed(description=present.taken_down_text(generation), colour=discord.Colour.dark_grey())


# --- errors ----------------------------------------------------------------------------------------------


def error_embed(error: SoracastError) -> discord.Embed:
    """A core failure: its title and its message with the next step."""
    return discord.Embed(
        title=clip(present.error_title(error), _TITLE_MAX),
        description=clip(error.user_text(), _DESCRIPTION_MAX),
        colour=discord.Colour.red(),
    )


def unexpected_embed() -> discord.Embed:
    return discord.Embed(
        title="Something went wrong",
        description="Something went wrong on our side; it's been logged. Please try again in a moment.",
        colour=discord.Colour.red(),
    )


def notice_embed(text: str) -> discord.Embed:
    """A private note from the adapter that is not a core failure (an expired form, no video in a message)."""
    return discord.Embed(description=clip(text, _DESCRIPTION_MAX), colour=discord.Colour.orange())
