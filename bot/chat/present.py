"""Platform-neutral wording of a generation's state, so every adapter says the same thing."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from bot.backends.base import ModelCapabilities, VideoBackend
from bot.chat.notify import VideoNotice
from bot.errors import (
    APIAuthError,
    APIUnavailable,
    HumanLikenessRefused,
    ModerationBlocked,
    QuotaExhausted,
    SoracastError,
)
from bot.models import (
    AccessRequest,
    AccessRequestStatus,
    BudgetKind,
    Character,
    Generation,
    GenerationKind,
    GenerationStatus,
    Sharing,
    utcnow,
)

if TYPE_CHECKING:  # present is imported by the services it describes
    from bot.videos.budgets import Usage
    from bot.videos.generations import LineEntry

_FAILURE_HINTS = {
    "moderation_blocked": "The video was blocked by the video service's content rules. Rephrase the prompt and "
    "try again.",
    "human_likeness": "Use characters that are mascots, objects, pets or drawn characters, not real people.",
    "cancelled": "Make it again with /sora if you still want it.",
    "expired": "Run the command again to make a new one.",
    "not_found": "Run the command again to make a new one.",
}


#: Whose queue a waiting job is in, by the backend it was sent to.
_QUEUES = {"fal": "fal's queue", "gemini": "Gemini's queue", "openai": "the Videos API's queue"}


def ordinal(number: int) -> str:
    """1st, 2nd, 3rd, 4th, 11th, 21st."""
    suffix = "th" if 10 <= number % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(number % 10, "th")
    return f"{number}{suffix}"


def elapsed(since: datetime) -> str:
    """`40 s`, `2 min 5 s` since a moment."""
    seconds = max(0, int((utcnow() - since).total_seconds()))
    if seconds < 60:
        return f"{seconds} s"
    return f"{seconds // 60} min {seconds % 60} s"


def progress_bar(progress: int, width: int = 12) -> str:
    """A text bar such as `▰▰▰▰▱▱▱▱ 50%` that renders the same in every chat."""
    value = max(0, min(100, progress))
    filled = round(width * value / 100)
    return "▰" * filled + "▱" * (width - filled) + f" {value}%"


def status_line(generation: Generation) -> str:
    """One line: where the job is now."""
    status = generation.status
    if status is GenerationStatus.WAITING:
        if generation.line_position is None:
            return "Waiting in line…"
        wait = f", {about(generation.line_eta)}" if generation.line_eta else ""
        return f"Waiting — {ordinal(generation.line_position)} in line{wait}"
    if status in (GenerationStatus.ACCEPTED, GenerationStatus.SUBMITTING):
        return "Sending to the video model…"
    if status is GenerationStatus.QUEUED:
        if generation.queue_position is not None:
            queue = _QUEUES.get(generation.backend, "the video service's queue")
            return f"Queued — {ordinal(generation.queue_position + 1)} in {queue}"
        return "Queued " + progress_bar(generation.progress)
    if status is GenerationStatus.IN_PROGRESS:
        if generation.progress == 0 and generation.started_at is not None:
            # The backend reports no percentage: say how long it has been rendering instead.
            return f"Rendering… {elapsed(generation.started_at)} so far"
        return "Rendering " + progress_bar(generation.progress)
    if status is GenerationStatus.COMPLETED:
        return "Done"
    if status is GenerationStatus.DELETED:
        return "Deleted"
    if status is GenerationStatus.CANCELLED:
        return "Cancelled"
    return "Failed: " + failure_text(generation)


def about(seconds: float | None) -> str:
    """`about 2 min`, `about 40 s`."""
    if not seconds:
        return "soon"
    if seconds < 90:
        return f"about {max(10, round(seconds / 10) * 10)} s"
    return f"about {round(seconds / 60)} min"


def cost_text(generation: Generation) -> str | None:
    """`≈ $0.60` while it is being made, `cost $0.60` once done; None where no price is known."""
    if generation.cost_usd is None:
        return None
    amount = f"${generation.cost_usd:,.2f}"
    if generation.status is GenerationStatus.COMPLETED:
        return f"cost {amount}"
    if generation.status.finished:
        return None  # failed or cancelled videos are not charged
    return f"≈ {amount}"


def headline(generation: Generation) -> str:
    """What was asked for: `@mascot surfing…` with its kind and id."""
    kind = {GenerationKind.CREATE: "Video", GenerationKind.REMIX: "Remix", GenerationKind.EXTEND: "Extension"}[
        generation.kind
    ]
    source = f" of {generation.parent_id}" if generation.parent_id else ""
    return f"{kind}{source} `{generation.id}`: {generation.prompt}"


def details_line(generation: Generation) -> str:
    """Model, length, size, cost and characters, in one line."""
    parts = [generation.model, f"{generation.seconds}s", generation.size]
    cost = cost_text(generation)
    if cost:
        parts.append(cost)
    if generation.characters:
        parts.append("with " + ", ".join(f"@{c.handle} ({c.name})" for c in generation.characters))
    return " · ".join(parts)


def failure_text(generation: Generation) -> str:
    """Why a generation failed and what to do next."""
    message = generation.error_message or "The video could not be made."
    hint = _FAILURE_HINTS.get(generation.error_code or "", "Try again, perhaps with a different prompt.")
    return f"{message} {hint}"


def describe_backend(backend: VideoBackend, default: ModelCapabilities) -> str:
    """Where new videos come from, for banners and `/soracast` status: one sentence."""
    plays = getattr(backend, "plays", None)
    if backend.name == "offline":
        key = {"gemini": "GEMINI_API_KEY", "fal": "FAL_KEY", "openai": "OPENAI_API_KEY"}.get(plays or "", "a key")
        return (
            f"the built-in offline renderer, playing {default.label or default.model}'s rules (videos are made on "
            f"this machine; set {key} for real ones)"
        )
    return f"{backend.service} ({default.label or default.model})"


def references_line(character: Character) -> str:
    """What a character keeps for the backends: `a 3.0 s clip and 3 stills`, or what to do when it has none."""
    clip = character.clip
    if clip is None:
        return (
            "no stored clip (registered before soracast kept references): it works only on the Videos API endpoint "
            f"it was made on. To use it everywhere, `/character remove @{character.handle}` and "
            f"`/character add @{character.handle}` with its clip."
        )
    stills = len(character.stills)
    plural = "s" if stills != 1 else ""
    return f"a {clip.seconds or 0:.1f} s clip ({clip.width}x{clip.height}) and {stills} still{plural}"


def next_steps(generation: Generation, *, can_remix: bool, can_extend: bool) -> list[str]:
    """The commands that build on a finished video, only those its backend allows."""
    steps = []
    if can_remix:
        steps.append(f"/remix {generation.id} <prompt>")
    if can_extend:
        steps.append(f"/extend {generation.id} <prompt>")
    steps.append(f"/character from {generation.id} @handle")
    return steps


def character_line(character: Character) -> str:
    """`@mascot — Captain Mascot (from clip.mp4, by <owner>)`."""
    origin = "a generated video" if character.source.value == "generation" else (character.source_ref or "an upload")
    return f"@{character.handle} — {character.name} (from {origin})"


def error_title(error: SoracastError) -> str:
    """A short heading for an error message; the body is `error.user_text()`."""
    if isinstance(error, HumanLikenessRefused):
        return "Clip refused: it shows a real person"
    if isinstance(error, ModerationBlocked):
        return "Blocked by content rules"
    if isinstance(error, QuotaExhausted):
        return "Video quota used up"
    if isinstance(error, APIUnavailable):
        return "The video service is not answering"
    if isinstance(error, APIAuthError):
        return "The video service refused our key"
    return "That didn't work"


def _as_typed(text: str) -> str:
    return text


def line_summary(entries: Sequence[LineEntry]) -> str:
    """The heading of `/sora queue`: how many of this workspace's videos wait."""
    if not entries:
        return "No video of this workspace is waiting in line: new ones go out as soon as there is room."
    count = len(entries)
    return f"{count} video{'s' if count != 1 else ''} of this workspace waiting in line, next first:"


def line_lines(
    entries: Sequence[LineEntry],
    *,
    person: Callable[[str], str] | None = None,
    quote: Callable[[str], str] = _as_typed,
) -> list[str]:
    """`/sora queue`: one line per waiting video of the workspace, next first; empty means nothing waits.

    `person` shows a requester (a chat mention by default); `quote` makes the prompt, which a user typed, safe
    for the platform (Slack escapes it)."""
    who = person or mention
    return [
        f"{ordinal(e.place.position)} of {e.ahead_total} · `{e.generation.id}` by {who(e.generation.requester_id)}"
        f" · {about(e.place.eta_seconds)} · {quote(' '.join(e.generation.prompt.split())[:80])}"
        for e in entries
    ]


def cancelled_text(generation: Generation) -> str:
    """The private answer to whoever cancelled a video."""
    return f"Cancelled video `{generation.id}`: it will not be made, and nothing is charged for it."


def mention(user_id: str) -> str:
    """A person as the chats link them (`<@U123>`); the console shows the id."""
    return f"<@{user_id}>"


def limits_line(limits: Mapping[BudgetKind, float | None]) -> str:
    """`monthly budget $50.00 · 60 s of video per person a day` (or `no limits`)."""
    parts = []
    monthly = limits.get(BudgetKind.MONTHLY_USD)
    daily = limits.get(BudgetKind.DAILY_SECONDS)
    if monthly is not None:
        parts.append(f"monthly budget ${monthly:,.2f}")
    if daily is not None:
        parts.append(f"{int(daily)} s of video per person a day")
    return " · ".join(parts) if parts else "no limits"


def limits_lines(limits: Mapping[BudgetKind, float | None], how: str) -> list[str]:
    """`/soracast limits`: the limits that apply here, then how an admin changes them (`how`: the platform's
    command, e.g. `/soracast limits monthly_usd:50`)."""
    return [
        f"Limits here: {limits_line(limits)}.",
        f"Admins change them with {how}: a number sets a limit, `none` lifts it, `default` goes back to the bot's "
        "default. The monthly budget resets on the 1st and daily seconds at midnight (UTC).",
    ]


def usage_lines(usage: Usage, *, person: Callable[[str], str] | None = None) -> list[str]:
    """`/soracast usage`: the month's total against its limit, then one line per person and model."""
    who = person or mention
    monthly = usage.limits.get(BudgetKind.MONTHLY_USD)
    total = f"${usage.total_usd:,.2f}" + (f" of ${monthly:,.2f}" if monthly is not None else "")
    videos = sum(r.videos for r in usage.rows)
    lines = [f"{usage.month}: {total} spent on {videos} video(s) ({limits_line(usage.limits)})"]
    for row in usage.rows:
        cost = "price unknown" if row.usd is None else f"${row.usd:,.2f}"
        lines.append(f"{who(row.person)} · {row.model} · {row.videos} video(s), {row.seconds} s · {cost}")
    if usage.unpriced_videos:
        lines.append(f"{usage.unpriced_videos} video(s) used a model with no known price (set SORACAST_PRICES).")
    return lines


# --- a character belongs to someone ------------------------------------------------------------------------


def day(moment: datetime) -> str:
    """`2026-12-05` (UTC)."""
    return moment.strftime("%Y-%m-%d")


def people_list(ids: Sequence[str], person: Callable[[str], str] = mention) -> str:
    """`A, B and C`."""
    shown = [person(i) for i in ids]
    if len(shown) <= 1:
        return "".join(shown)
    return ", ".join(shown[:-1]) + " and " + shown[-1]


def sharing_text(character: Character, person: Callable[[str], str] = mention) -> str:
    """Who may use a character: `everyone in this workspace`, `only <@owner> (and admins)`, or the approved."""
    if character.sharing is Sharing.EVERYONE:
        return "everyone in this workspace"
    owner = person(character.owner_id)
    if character.sharing is Sharing.ONLY_ME or not character.approved:
        return f"only {owner} (and admins)"
    return f"{owner}, admins and {people_list(character.approved, person)}"


def instructions_text(character: Character) -> str:
    """A character's standing instructions, or that it has none."""
    return character.instructions or "none (its owner sets them with `/character instructions`)"


def notify_text(character: Character) -> str:
    if character.notify_owner:
        return "on: its owner is told privately about each video someone else makes with it"
    return "off"


def rights_text(character: Character, person: Callable[[str], str] = mention) -> str:
    """Who confirmed having the right to use the character's subject, and when."""
    if character.rights_confirmed_by is None or character.rights_confirmed_at is None:
        return "not confirmed (registered before soracast asked)"
    return f"confirmed by {person(character.rights_confirmed_by)} on {day(character.rights_confirmed_at)}"


#: What registering a character asks the registrant to confirm (forms show it next to the box).
RIGHTS_QUESTION = (
    "I have the right to use this character's subject: the person (their consent), pet, mascot or product the clip "
    "shows"
)


def owner_settings_lines(character: Character, person: Callable[[str], str] = mention) -> list[str]:
    """What `/character info` adds about who the character belongs to: use, instructions, notices, rights."""
    return [
        f"Owner: {person(character.owner_id)}",
        f"Who may use it: {sharing_text(character, person)}",
        f"Instructions: {instructions_text(character)}",
        f"Owner notices: {notify_text(character)}",
        f"Right to use its subject: {rights_text(character, person)}",
    ]


def sharing_changed_text(character: Character, person: Callable[[str], str] = mention) -> str:
    """The owner's answer to `/character share | unshare`."""
    return f"@{character.handle} may now be used by {sharing_text(character, person)}."


def instructions_changed_text(character: Character) -> str:
    if not character.instructions:
        return f"@{character.handle} has no standing instructions now."
    return f"Every video with @{character.handle} now follows: {character.instructions}"


def notify_changed_text(character: Character) -> str:
    if character.notify_owner:
        return f"You will be told privately about each video someone else makes with @{character.handle}."
    return f"You will no longer be told about other people's videos with @{character.handle}."


def request_text(request: AccessRequest, character: Character, person: Callable[[str], str] = mention) -> str:
    """The owner's private message about a request to use their character."""
    return (
        f"{person(request.requester_id)} asks to use @{character.handle} ({character.name}) in their videos. "
        f"Approve adds them to the people who may use it (take them off again with "
        f"`/character unshare @{character.handle}`); Decline tells them no."
    )


def asked_text(
    request: AccessRequest, character: Character, *, new: bool, person: Callable[[str], str] = mention
) -> str:
    """The private answer to whoever asked."""
    owner = person(character.owner_id)
    if not new:
        return (
            f"You asked {owner} on {day(request.created_at)} to use @{character.handle}; they have not decided yet. "
            "You will be told privately when they do."
        )
    if request.owner_told:
        return f"Asked {owner} to let you use @{character.handle}. You will be told privately when they decide."
    return (
        f"Your request to use @{character.handle} is saved, but {owner} could not be sent a private message (their "
        "direct messages are closed to soracast). They see it with `/character requests`, and you are told when "
        "they decide."
    )


def decision_text(request: AccessRequest, character: Character, person: Callable[[str], str] = mention) -> str:
    """The requester's private message once the owner (or an admin) decided."""
    who = person(request.decided_by or character.owner_id)
    if request.status is AccessRequestStatus.APPROVED:
        return f"{who} approved your request: you may now use @{character.handle}. Try `/sora @{character.handle} …`."
    return f"{who} declined your request to use @{character.handle}."


def decided_text(request: AccessRequest, character: Character, person: Callable[[str], str] = mention) -> str:
    """What the decider sees (and what the owner's message turns into once decided)."""
    requester = person(request.requester_id)
    when = f" by {person(request.decided_by)}" if request.decided_by else ""
    if request.status is AccessRequestStatus.APPROVED:
        return f"Approved{when}: {requester} may now use @{character.handle}."
    if request.status is AccessRequestStatus.DECLINED:
        return f"Declined{when}: {requester} may not use @{character.handle}."
    return request_text(request, character, person)


def requests_summary(count: int) -> str:
    if not count:
        return "Nobody is waiting for your answer about your characters."
    return f"{count} request{'s' if count != 1 else ''} to use your characters waiting for an answer:"


def request_line(request: AccessRequest, character: Character, person: Callable[[str], str] = mention) -> str:
    """One waiting request in `/character requests`."""
    who = person(request.requester_id)
    return f"`{request.id}` · {who} asks to use @{character.handle} · {day(request.created_at)}"


def owner_notice_title(count: int) -> str:
    if count == 1:
        return "A video was made with your character"
    return f"{count} videos were made with your characters"


def owner_notice_lines(
    notices: Sequence[VideoNotice],
    links: Mapping[str, str | None],
    *,
    person: Callable[[str], str] = mention,
    quote: Callable[[str], str] = _as_typed,
    link: Callable[[str, str], str] | None = None,
) -> list[str]:
    """An owner's private note: one line per video (who, which of their characters, the prompt, the post), then
    how to see them all and how to stop the notes. `link(url, label)` makes a platform link."""
    linked = link or (lambda url, label: f"{label}: {url}")
    lines = []
    for notice in notices:
        generation = notice.generation
        handles = ", ".join(f"@{h}" for h in notice.handles)
        url = links.get(generation.id)
        where = linked(url, "see the post") if url else "posted"
        prompt = quote(" ".join(generation.prompt.split())[:120])
        lines.append(f"{person(generation.requester_id)} used {handles} · `{generation.id}` · {prompt} · {where}")
    handles = sorted({h for n in notices for h in n.handles})
    first = handles[0] if handles else "handle"
    lines.append(
        f"See every video with a character: `/character videos @{first}` (you can delete any of them there). "
        f"Stop these notes: `/character notify @{first} off`."
    )
    return lines


def video_lines(
    generations: Sequence[Generation],
    *,
    person: Callable[[str], str] = mention,
    where: Callable[[Generation], str] | None = None,
    quote: Callable[[str], str] = _as_typed,
) -> list[str]:
    """`/character videos @h`: who made each video, when, where it was posted and its id, newest first."""
    posted = where or (lambda g: f"channel {g.target.channel_id}")
    return [
        f"`{g.id}` · {person(g.requester_id)} · {day(g.created_at)} · {posted(g)} · "
        f"{status_word(g)} · {quote(' '.join(g.prompt.split())[:80])}"
        for g in generations
    ]


def status_word(generation: Generation) -> str:
    """`posted`, `being made`."""
    return "posted" if generation.status is GenerationStatus.COMPLETED else "being made"


def videos_summary(character: Character, count: int, shown: int) -> str:
    if not count:
        return f"No video features @{character.handle} yet."
    head = f"{count} video{'s' if count != 1 else ''} feature @{character.handle}, newest first"
    if shown < count:
        head += f" ({shown} shown; delete any by id with `/character takedown <video id>`)"
    return head + ":"


def taken_down_text(generation: Generation) -> str:
    return (
        f"Deleted video `{generation.id}`: its post, its file here and, where the video service keeps one, its "
        "copy there."
    )
