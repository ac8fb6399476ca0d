"""Core results and errors as Slack messages and modals (Block Kit JSON); wording comes from `bot.present`.

Slack turns `<!here>`, `<!channel>`, `<!everyone>` and `<!subteam^…>` into pings in a message's `text` as much
as in its blocks: every piece of text that did not come from this module is escaped in both, and a `Message`
defuses whatever mass mention is left (`bot.mass_mentions`), so none can reach a channel.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bot import present
from bot.actions import FINISHED_ACTIONS, VideoAction, decode_action, encode_action
from bot.budgets import Usage
from bot.errors import SoracastError
from bot.generations import LineEntry
from bot.mass_mentions import defuse
from bot.models import BudgetKind, Character, Generation, GenerationStatus

Block = dict[str, Any]

#: Callback ids of the modals and the message shortcut (the manifest names the shortcut's too).
CHARACTER_VIEW = "soracast_character"
REMIX_VIEW = "soracast_remix"
EXTEND_VIEW = "soracast_extend"
MAKE_CHARACTER_SHORTCUT = "soracast_make_character"

#: Block ids of modal inputs; each input's action id is the same string.
CLIP, HANDLE, NAME, START, PROMPT, SECONDS = "clip", "handle", "name", "start", "prompt", "seconds"

#: What the file picker accepts; the core checks the file again before anything is downloaded.
CLIP_FILETYPES = ["mp4", "mov"]


@dataclass
class Message:
    """A chat message: `text` is the notification / fallback, `blocks` what Slack shows. No mass mention
    survives in either, whoever built it."""

    text: str
    blocks: list[Block] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.text = defuse(self.text)
        self.blocks = _defused(self.blocks)


def _defused(node: Any) -> Any:
    if isinstance(node, str):
        return defuse(node)
    if isinstance(node, list):
        return [_defused(item) for item in node]
    if isinstance(node, dict):
        return {key: _defused(value) for key, value in node.items()}
    return node


def escape(text: str) -> str:
    """Slack's three control characters escaped and mass mentions defused, so text that is not ours never
    turns into mentions or links."""
    return defuse(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def plain(text: str) -> str:
    """Text for fields Slack shows as typed (file titles): mass mentions defused, nothing escaped."""
    return defuse(text)


def unescape(text: str) -> str:
    """Undo Slack's escaping of user-typed text (slash command text arrives escaped)."""
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def _section(text: str) -> Block:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text[:3000]}}


def _context(text: str) -> Block:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": text[:3000]}]}


def _plain(text: str) -> dict[str, Any]:
    return {"type": "plain_text", "text": text, "emoji": True}


# --- generations -----------------------------------------------------------------------------------------


def generation_message(
    generation: Generation, note: str | None = None, actions: Sequence[VideoAction] | None = None
) -> Message:
    """The one message that follows a generation: headline, details, status, and its buttons.

    `actions` are the buttons the core offers now (`offered_actions`: Cancel while it waits in line); left out,
    a finished video gets all of them and any other video none."""
    if actions is None:
        actions = FINISHED_ACTIONS if generation.status is GenerationStatus.COMPLETED else ()
    headline = escape(present.headline(generation))
    status = present.status_line(generation)
    details = escape(present.details_line(generation)) + f" · asked by <@{generation.requester_id}>"
    blocks = [_section(f"*{headline}*"), _context(details), _section(escape(status))]
    if note:
        blocks.append(_context(f":warning: {escape(note)}"))
    if actions:
        blocks.append(video_buttons(generation, actions))
    return Message(text=f"{headline} — {escape(status)}"[:3000], blocks=blocks)


def video_buttons(generation: Generation, actions: Sequence[VideoAction] = FINISHED_ACTIONS) -> Block:
    """Remix / Extend / Make character / Delete (or Cancel, while it waits) as the core offers them, each carrying
    the generation id (they survive restarts)."""
    elements: list[Block] = []
    for action in actions:
        button: Block = {
            "type": "button",
            "text": _plain(action.label),
            "action_id": encode_action(action, generation.id),
            "value": generation.id,
        }
        if action is VideoAction.DELETE:
            button["style"] = "danger"
            button["confirm"] = {
                "title": _plain("Delete this video?"),
                "text": _plain("The video is deleted here and at the video service."),
                "confirm": _plain("Delete"),
                "deny": _plain("Keep it"),
            }
        elements.append(button)
    return {"type": "actions", "block_id": f"soracast_video_{generation.id}", "elements": elements}


def generation_id_in(blocks: Sequence[Block]) -> str | None:
    """The generation a soracast message is about, read back from its buttons (None for other messages)."""
    for block in blocks:
        if block.get("type") != "actions":
            continue
        for element in block.get("elements") or ():
            decoded = decode_action(str(element.get("action_id", "")))
            if decoded is not None:
                return decoded[1]
    return None


def ready_comment(generation: Generation) -> str:
    """The line posted with the uploaded video, so the requester (and only they) is notified."""
    return f"<@{escape(generation.requester_id)}> your video `{escape(generation.id)}` is ready."


def upload_title(generation: Generation) -> str:
    """The uploaded video's title: what was asked for."""
    return plain(present.headline(generation))[:250]


# --- errors and short answers --------------------------------------------------------------------------------


def error_message(error: SoracastError) -> Message:
    """A core failure: the core's title and text, shown only to the person who acted."""
    title = escape(present.error_title(error))
    body = escape(error.user_text())
    return Message(text=f"{title}: {body}", blocks=[_section(f":warning: *{title}*\n{body}")])


def unexpected_error_message() -> Message:
    text = "Something went wrong on our side; it has been logged. Please try again in a moment."
    return Message(text=text, blocks=[_section(f":warning: {text}")])


def note(text: str) -> Message:
    """A short private answer in mrkdwn that the adapter wrote itself (already escaped by the caller)."""
    return Message(text=text, blocks=[_section(text)])


def working_message(what: str) -> Message:
    return note(f":hourglass_flowing_sand: {escape(what)}")


# --- the line and budgets ------------------------------------------------------------------------------------

#: How `/soracast limits` is typed here, for the help under the limits.
LIMITS_HOW = "`/soracast limits --monthly-usd <USD> --daily-seconds <seconds>`"


def line_message(entries: Sequence[LineEntry]) -> Message:
    """`/sora queue`: this workspace's waiting videos, next first (prompts escaped: users typed them)."""
    lines = [escape(present.line_summary(entries)), *present.line_lines(entries, quote=escape)]
    return Message(text=escape(present.line_summary(entries)), blocks=[_section("\n".join(lines))])


def cancelled_message(generation: Generation) -> Message:
    return note(escape(present.cancelled_text(generation)))


def limits_message(limits: Mapping[BudgetKind, float | None], *, changed: bool) -> Message:
    """`/soracast limits`: what applies in this workspace (just set, or as it was), and how to change it."""
    first, *rest = [escape(line) for line in present.limits_lines(limits, LIMITS_HOW)]
    lead = f":white_check_mark: {first}" if changed else first
    return Message(text=first, blocks=[_section(lead), *(_context(line) for line in rest)])


def usage_message(usage: Usage) -> Message:
    """`/soracast usage`: the month's spending, per person and model (admins only)."""
    first, *rest = present.usage_lines(usage, person=lambda user: f"<@{escape(user)}>")
    first = escape(first)
    blocks = [_section(f"*{first}*")]
    if rest:
        blocks.append(_section("\n".join(rest)))
    return Message(text=first, blocks=blocks)


# --- characters ----------------------------------------------------------------------------------------------


def characters_message(characters: Sequence[Character]) -> Message:
    """`/character list`: every handle of this workspace, one line each."""
    if not characters:
        return note("No characters in this workspace yet. Add one with `/character add @handle`.")
    lines = [escape(present.character_line(c)) for c in characters]
    header = f"*{len(characters)} character{'s' if len(characters) != 1 else ''} in this workspace*"
    return Message(
        text=f"{len(characters)} characters: " + ", ".join(f"@{escape(c.handle)}" for c in characters),
        blocks=[_section(header), _section("\n".join(lines))],
    )


def character_message(character: Character, still_ids: Sequence[str] = ()) -> Message:
    """`/character info @h`: who it is, what it keeps for the video models, and its stills."""
    line = escape(present.character_line(character))
    when = character.created_at.strftime("%Y-%m-%d")
    blocks = [
        _section(f"*{line}*"),
        _section("References: " + escape(present.references_line(character))),
        _context(f"added by <@{character.owner_id}> on {when}"),
    ]
    for index, file_id in enumerate(still_ids, 1):
        blocks.append(
            {"type": "image", "slack_file": {"id": file_id}, "alt_text": f"@{character.handle}, still {index}"}
        )
    return Message(text=line, blocks=blocks)


def registered_message(character: Character) -> Message:
    text = (
        f":white_check_mark: Registered *@{escape(character.handle)}* ({escape(character.name)}). "
        f"Use it with `/sora @{escape(character.handle)} …`"
    )
    return note(text)


def removed_message(character: Character) -> Message:
    return note(f"Removed *@{escape(character.handle)}* from this workspace.")


def renamed_message(old: str, character: Character) -> Message:
    return note(f"*@{escape(old)}* is now *@{escape(character.handle)}*.")


def deleted_message(generation: Generation) -> Message:
    return note(f"Deleted video `{generation.id}`.")


# Slack reads `<…>` in mrkdwn as a link or mention: placeholders are written escaped.
HELP = """*soracast* — reusable @handle characters for Sora videos
• `/sora @mascot surfing a wave [--seconds 8] [--size 1280x720]` — make a video
• `/character add @mascot` — register a character from an MP4 (opens a form)
• `/character list` · `/character info @mascot`
• `/character rename @mascot @captain` · `/character remove @mascot`
• `/character from &lt;video id&gt; @handle [--start 1.5]` — a character from a finished video
• `/sora queue` — the videos waiting in line · `/sora cancel &lt;video id&gt;` — take yours out of it
• `/soracast limits [--monthly-usd 50|none|default] [--daily-seconds 120|none|default]` · `/soracast usage` — \
budgets and this month's spending (admins change and see them)
• Message shortcut *Make Sora character* on any message with an MP4
• Or mention me with an MP4 attached: `@soracast character add @mascot`"""


def help_message(prefix: str | None = None) -> Message:
    text = f"{prefix}\n{HELP}" if prefix else HELP
    return Message(text="soracast help", blocks=[_section(text)])


# --- modals --------------------------------------------------------------------------------------------------


def _input(block_id: str, label: str, element: Block, *, optional: bool = False, hint: str | None = None) -> Block:
    block: Block = {"type": "input", "block_id": block_id, "label": _plain(label), "element": element}
    if optional:
        block["optional"] = True
    if hint:
        block["hint"] = _plain(hint)
    return block


def _text_input(action_id: str, *, initial: str = "", placeholder: str = "", multiline: bool = False) -> Block:
    element: Block = {"type": "plain_text_input", "action_id": action_id, "multiline": multiline}
    if initial:
        element["initial_value"] = initial
    if placeholder:
        element["placeholder"] = _plain(placeholder)
    return element


def _modal(callback_id: str, title: str, submit: str, metadata: str, blocks: list[Block]) -> Block:
    return {
        "type": "modal",
        "callback_id": callback_id,
        "title": _plain(title[:24]),
        "submit": _plain(submit),
        "close": _plain("Cancel"),
        "private_metadata": metadata,
        "blocks": blocks,
    }


def character_modal(
    metadata: str,
    *,
    handle: str = "",
    clip_name: str | None = None,
    generation_id: str | None = None,
    max_mb: str | None = None,
) -> Block:
    """Register a character: a file picker, or the clip / video it was opened on (kept in `metadata`)."""
    blocks: list[Block] = []
    if clip_name is not None:
        blocks.append(_context(f":film_frames: Clip: *{escape(clip_name)}*"))
    elif generation_id is not None:
        blocks.append(_context(f":film_frames: From video `{escape(generation_id)}`"))
    else:
        limit = f" (up to {max_mb} MB)" if max_mb else ""
        blocks.append(
            _input(
                CLIP,
                "Clip (MP4 or MOV)",
                {"type": "file_input", "action_id": CLIP, "filetypes": CLIP_FILETYPES, "max_files": 1},
                hint=f"A short video of the character{limit}; 4 seconds of it are used.",
            )
        )
    shown = f"@{handle.lstrip('@')}" if handle else ""
    blocks += [
        _input(
            HANDLE,
            "Handle",
            _text_input(HANDLE, initial=shown, placeholder="@mascot"),
            hint="What people type in prompts: lowercase letters, digits, _ or .",
        ),
        _input(NAME, "Display name", _text_input(NAME, placeholder="Captain Mascot"), optional=True),
        _input(
            START,
            "Start at (seconds)",
            _text_input(START, placeholder="0"),
            optional=True,
            hint="Where the 4-second cut begins, e.g. 1.5 or 0:02.",
        ),
    ]
    return _modal(CHARACTER_VIEW, "New Sora character", "Register", metadata, blocks)


def remix_modal(metadata: str, generation: Generation) -> Block:
    """Remix: a prompt saying what to change."""
    blocks = [
        _context(escape(present.headline(generation))),
        _input(PROMPT, "What should change?", _text_input(PROMPT, placeholder="make it night time", multiline=True)),
    ]
    return _modal(REMIX_VIEW, "Remix video", "Remix", metadata, blocks)


def extend_modal(metadata: str, generation: Generation, seconds: Sequence[str], default: str) -> Block:
    """Extend: a prompt for what happens next, and how many seconds to add."""
    options = [{"text": _plain(f"{s} s"), "value": s} for s in seconds]
    initial = next((o for o in options if o["value"] == default), options[0] if options else None)
    select: Block = {"type": "static_select", "action_id": SECONDS, "options": options}
    if initial is not None:
        select["initial_option"] = initial
    blocks = [
        _context(escape(present.headline(generation))),
        _input(PROMPT, "What happens next?", _text_input(PROMPT, placeholder="the wave crashes", multiline=True)),
        _input(SECONDS, "Seconds to add", select),
    ]
    return _modal(EXTEND_VIEW, "Extend video", "Extend", metadata, blocks)
