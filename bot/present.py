"""Platform-neutral wording of a generation's state, so every adapter says the same thing."""

from __future__ import annotations

from bot.errors import (
    APIAuthError,
    APIUnavailable,
    HumanLikenessRefused,
    ModerationBlocked,
    QuotaExhausted,
    SoracastError,
)
from bot.models import Character, Generation, GenerationKind, GenerationStatus

_FAILURE_HINTS = {
    "moderation_blocked": "The video was blocked by the API's content rules. Rephrase the prompt and try again.",
    "expired": "Run the command again to make a new one.",
    "not_found": "Run the command again to make a new one.",
}


def progress_bar(progress: int, width: int = 12) -> str:
    """A text bar such as `▰▰▰▰▱▱▱▱ 50%` that renders the same in every chat."""
    value = max(0, min(100, progress))
    filled = round(width * value / 100)
    return "▰" * filled + "▱" * (width - filled) + f" {value}%"


def status_line(generation: Generation) -> str:
    """One line: where the job is now."""
    status = generation.status
    if status is GenerationStatus.ACCEPTED:
        return "Accepted, sending to the video model…"
    if status is GenerationStatus.QUEUED:
        return "Queued " + progress_bar(generation.progress)
    if status is GenerationStatus.IN_PROGRESS:
        return "Rendering " + progress_bar(generation.progress)
    if status is GenerationStatus.COMPLETED:
        return "Done"
    if status is GenerationStatus.DELETED:
        return "Deleted"
    return "Failed: " + failure_text(generation)


def headline(generation: Generation) -> str:
    """What was asked for: `@mascot surfing…` with its kind and id."""
    kind = {GenerationKind.CREATE: "Video", GenerationKind.REMIX: "Remix", GenerationKind.EXTEND: "Extension"}[
        generation.kind
    ]
    source = f" of {generation.parent_id}" if generation.parent_id else ""
    return f"{kind}{source} `{generation.id}`: {generation.prompt}"


def details_line(generation: Generation) -> str:
    """Model, length, size and characters, in one line."""
    parts = [generation.model, f"{generation.seconds}s", generation.size]
    if generation.characters:
        parts.append("with " + ", ".join(f"@{c.handle} ({c.name})" for c in generation.characters))
    return " · ".join(parts)


def failure_text(generation: Generation) -> str:
    """Why a generation failed and what to do next."""
    message = generation.error_message or "The video could not be made."
    hint = _FAILURE_HINTS.get(generation.error_code or "", "Try again, perhaps with a different prompt.")
    return f"{message} {hint}"


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
