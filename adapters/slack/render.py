"""Core results and errors as Slack messages and modals (Block Kit JSON); wording comes from `bot.chat.present`.

Slack turns `<!here>`, `<!channel>`, `<!everyone>` and `<!subteam^…>` into pings in a message's `text` as much
as in its blocks: every piece of text that did not come from this module is escaped in both, and a `Message`
defuses whatever mass mention is left (`bot.chat.mass_mentions`), so none can reach a channel.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bot.actions import FINISHED_ACTIONS, VideoAction, decode_action, encode_action
from bot.characters.access_requests import AskOutcome
from bot.characters.character_videos import CharacterVideoList
from bot.chat import present
from bot.chat.mass_mentions import defuse
from bot.chat.notify import VideoNotice
from bot.errors import SoracastError
from bot.models import AccessRequest, AccessRequestStatus, BudgetKind, Character, Generation, GenerationStatus, Sharing
from bot.videos.budgets import Usage
from bot.videos.generations import LineEntry

Block = dict[str, Any]

#: Callback ids of the modals and the message shortcut (the manifest names the shortcut's too).
CHARACTER_VIEW = "soracast_character"
REMIX_VIEW = "soracast_remix"
EXTEND_VIEW = "soracast_extend"
SHARE_VIEW = "soracast_share"
MAKE_CHARACTER_SHORTCUT = "soracast_make_character"

#: Block ids of modal inputs; each input's action id is the same string.
CLIP, HANDLE, NAME, START, PROMPT, SECONDS = "clip", "handle", "name", "start", "prompt", "seconds"
CONFIRM, SHARING, PEOPLE = "confirm", "sharing", "people"
#: The value of the box registering needs ticked (the right to use the character's subject).
CONFIRMED = "rights"

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


def mention(user_id: str) -> str:
    """A person as Slack links them."""
    return f"<@{escape(user_id)}>"


# Core wording mixes people (shown as mentions) with text users typed (escaped): people are marked while the
# text is built, the whole is escaped, then only the marks become mentions.
_MARK = "\ue000"
_MARKED = re.compile(f"{_MARK}([A-Za-z0-9]+){_MARK}")


def with_people(make: Callable[[Callable[[str], str]], str]) -> str:
    """`make(person)` escaped, with each person it named as a Slack mention."""
    marked = make(lambda user: f"{_MARK}{user}{_MARK}")
    return _MARKED.sub(lambda m: f"<@{m.group(1)}>", escape(marked))


def _people(text: str, people: Sequence[str]) -> str:
    """Escaped core text whose `<@id>` for these people become mentions again."""
    for user in people:
        text = text.replace(f"&lt;@{escape(user)}&gt;", f"<@{escape(user)}>")
    return text


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
    """A core failure: the core's title and text, shown only to the person who acted; the people it names as
    mentions, and the buttons it offers (Ask the owner of a character not shared with you)."""
    title = escape(present.error_title(error))
    body = _people(escape(error.user_text()), error.people)
    blocks = [_section(f":warning: *{title}*\n{body}")]
    if error.offers:
        elements = [
            {"type": "button", "text": _plain(label[:75]), "action_id": encode_action(action, target), "value": target}
            for action, target, label in error.offers[:25]
        ]
        blocks.append({"type": "actions", "block_id": "soracast_offers", "elements": elements})
    return Message(text=f"{title}: {body}", blocks=blocks)


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


def owner_lines(character: Character) -> list[str]:
    """Who it belongs to, who may use it, its instructions, notes and rights, as `/character info` shows them."""
    return [
        f"Who may use it: {with_people(lambda person: present.sharing_text(character, person))}",
        f"Instructions: {escape(present.instructions_text(character))}",
        f"Owner notices: {escape(present.notify_text(character))}",
        f"Right to use its subject: {with_people(lambda person: present.rights_text(character, person))}",
    ]


def character_message(character: Character, still_ids: Sequence[str] = ()) -> Message:
    """`/character info @h`: who it is, what it keeps for the video models, who may use it, and its stills."""
    line = escape(present.character_line(character))
    when = character.created_at.strftime("%Y-%m-%d")
    blocks = [
        _section(f"*{line}*"),
        _section("References: " + escape(present.references_line(character))),
        _section("\n".join(owner_lines(character))),
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


def sharing_message(character: Character) -> Message:
    return note(with_people(lambda person: present.sharing_changed_text(character, person)))


def instructions_message(character: Character) -> Message:
    return note(escape(present.instructions_changed_text(character)))


def notify_message(character: Character) -> Message:
    return note(escape(present.notify_changed_text(character)))


def taken_down_message(generation: Generation) -> Message:
    return note(escape(present.taken_down_text(generation)))


# --- asking to use a character, and its owner's notes ------------------------------------------------------


def asked_message(outcome: AskOutcome) -> Message:
    """The private answer to whoever asked."""
    request, character, new = outcome.request, outcome.character, outcome.new
    return note(with_people(lambda p: present.asked_text(request, character, new=new, person=p)))


def request_buttons(request: AccessRequest) -> Block:
    """Approve / Decline, carrying the request (they work after a restart, in any process)."""
    approve: Block = {
        "type": "button",
        "text": _plain(VideoAction.APPROVE.label),
        "action_id": encode_action(VideoAction.APPROVE, request.id),
        "value": request.id,
        "style": "primary",
    }
    decline: Block = {
        "type": "button",
        "text": _plain(VideoAction.DECLINE.label),
        "action_id": encode_action(VideoAction.DECLINE, request.id),
        "value": request.id,
        "style": "danger",
    }
    return {"type": "actions", "block_id": f"soracast_request_{request.id}", "elements": [approve, decline]}


def request_message(request: AccessRequest, character: Character) -> Message:
    """The owner's direct message about a request, with Approve / Decline; once decided, what was decided."""
    if request.status is not AccessRequestStatus.PENDING:
        return note(with_people(lambda p: present.decided_text(request, character, p)))
    text = with_people(lambda p: present.request_text(request, character, p))
    return Message(text=text, blocks=[_section(text), request_buttons(request)])


def decision_message(request: AccessRequest, character: Character) -> Message:
    """The requester's direct message once the owner (or an admin) decided."""
    return note(with_people(lambda p: present.decision_text(request, character, p)))


def requests_message(waiting: Sequence[tuple[AccessRequest, Character]]) -> Message:
    """`/character requests`: those waiting for this person's answer, each with Approve / Decline."""
    summary = escape(present.requests_summary(len(waiting)))
    blocks: list[Block] = [_section(f"*{summary}*")]
    for request, character in waiting[:REQUESTS_SHOWN]:
        blocks.append(_section(with_people(lambda p, r=request, c=character: present.request_line(r, c, p))))
        blocks.append(request_buttons(request))
    if len(waiting) > REQUESTS_SHOWN:
        blocks.append(_context(f"…and {len(waiting) - REQUESTS_SHOWN} more: answer these first, then look again."))
    return Message(text=summary, blocks=blocks)


#: Requests `/character requests` shows with their buttons (two blocks each; a message holds 50 blocks).
REQUESTS_SHOWN = 20


def owner_notice_message(notices: Sequence[VideoNotice], links: Mapping[str, str | None]) -> Message:
    """An owner's direct message about videos other people made with their characters, each with its link."""
    title = escape(present.owner_notice_title(len(notices)))
    # Only the prompts are people's own words: they are quoted (escaped); mentions and links are soracast's.
    lines = present.owner_notice_lines(notices, links, person=mention, quote=escape, link=_link)
    return Message(text=title, blocks=[_section(f"*{title}*"), _section("\n".join(lines))])


def _link(url: str, label: str) -> str:
    return f"<{url}|{label}>"


#: Videos `/character videos` shows, each with its Delete button (a message holds 50 blocks).
VIDEOS_SHOWN = 40


def character_videos_message(found: CharacterVideoList, links: Mapping[str, str | None]) -> Message:
    """`/character videos @h`: every video featuring it — who, when, where, its id — each with Delete."""
    shown = found.videos[:VIDEOS_SHOWN]
    summary = escape(present.videos_summary(found.character, len(found.videos), len(shown)))
    blocks: list[Block] = [_section(f"*{summary}*")]
    def where(generation: Generation) -> str:
        url = links.get(generation.id)
        return f"<#{escape(generation.target.channel_id)}>" + (f" {_link(url, 'post')}" if url else "")

    for generation, line in zip(
        shown, present.video_lines(shown, person=mention, where=where, quote=escape), strict=True
    ):
        block = _section(line)
        block["accessory"] = {
            "type": "button",
            "text": _plain("Delete"),
            "style": "danger",
            "action_id": encode_action(VideoAction.DELETE, generation.id),
            "value": generation.id,
            "confirm": {
                "title": _plain("Delete this video?"),
                "text": _plain("Its post, its file and its copy at the video service are deleted."),
                "confirm": _plain("Delete"),
                "deny": _plain("Keep it"),
            },
        }
        blocks.append(block)
    return Message(text=summary, blocks=blocks)


# Slack reads `<…>` in mrkdwn as a link or mention: placeholders are written escaped.
HELP = """*soracast* — reusable @handle characters for AI videos
• `/sora @mascot surfing a wave [--seconds 8] [--size 1280x720]` — make a video
• `/character add @mascot` — register a character from an MP4 (opens a form)
• `/character list` · `/character info @mascot`
• `/character rename @mascot @captain` · `/character remove @mascot`
• `/character from &lt;video id&gt; @handle [--start 1.5] --confirm` — a character from a finished video
• `/character share @mascot everyone|only-me` (or alone: a form to pick people) · `/character unshare @mascot @person`
• `/character ask @mascot` — ask its owner to let you use it · `/character requests` — those waiting for you
• `/character videos @mascot` — every video with your character · `/character takedown &lt;video id&gt;`
• `/character instructions @mascot "always wears the red scarf"` (or `clear`) · `/character notify @mascot on|off`
• `/sora queue` — the videos waiting in line · `/sora cancel &lt;video id&gt;` — take yours out of it
• `/soracast limits [--monthly-usd 50|none|default] [--daily-seconds 120|none|default]` · `/soracast usage` — \
budgets and this month's spending (admins change and see them)
• Message shortcut *Make Sora character* on any message with an MP4
• Or mention me with an MP4 attached: `@soracast character add @mascot --confirm` (you have the right to use its \
subject)"""


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
        # Required (an input block is, unless marked optional): Slack will not submit the form unticked.
        _input(
            CONFIRM,
            "Rights",
            {
                "type": "checkboxes",
                "action_id": CONFIRM,
                "options": [{"text": _plain(present.RIGHTS_QUESTION[:150]), "value": CONFIRMED}],
            },
        ),
    ]
    return _modal(CHARACTER_VIEW, "New Sora character", "Register", metadata, blocks)


_SHARING_LABELS = {
    Sharing.EVERYONE: "Everyone in this workspace",
    Sharing.APPROVED: "Only the people below (and admins)",
    Sharing.ONLY_ME: "Only me (and admins)",
}


def share_modal(metadata: str, character: Character) -> Block:
    """Who may use a character: a choice of everyone / the people picked / only its owner, and the people."""
    options = [{"text": _plain(label), "value": sharing.value} for sharing, label in _SHARING_LABELS.items()]
    radio: Block = {
        "type": "radio_buttons",
        "action_id": SHARING,
        "options": options,
        "initial_option": next(o for o in options if o["value"] == character.sharing.value),
    }
    people: Block = {"type": "multi_users_select", "action_id": PEOPLE, "placeholder": _plain("Pick people")}
    if character.approved:
        people["initial_users"] = list(character.approved)
    blocks = [
        _context(f"Who may use *@{escape(character.handle)}* ({escape(character.name)}) in their videos"),
        _input(SHARING, "Who may use it", radio),
        _input(PEOPLE, "People", people, optional=True, hint="Used when only the people picked may use it."),
    ]
    return _modal(SHARE_VIEW, f"Share @{character.handle}", "Save", metadata, blocks)


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
