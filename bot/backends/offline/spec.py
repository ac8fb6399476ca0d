"""What the offline Videos API accepts: its limits, and its refusals, shaped like the real API's (the client's
own error mapping raises them, so an offline refusal reads exactly like a real one)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Literal

from bot.backends.openai.errors import APIErrorInfo, map_api_error
from bot.backends.openai.schemas import (
    ContentVariant,
)
from bot.config import Settings
from bot.errors import (
    VideosAPIError,
)

if TYPE_CHECKING:  # the records' module raises this module's refusals
    from bot.backends.offline.job_table import CharacterRecord

#: A prompt containing this ends its job `failed` with `moderation_blocked` (after the job's duration).
MODERATION_TRIGGER = "[[moderation]]"
#: A character clip whose metadata title or comment contains this word is refused as human likeness.
HUMAN_LIKENESS_MARKER = "person"
HUMAN_LIKENESS_CODE = "human_likeness_not_allowed"
#: The spec's limit on prompt length (the bot's own limit is lower and configurable).
MAX_PROMPT_CHARS = 32000
MAX_NAME_CHARS = 80

RenderMode = Literal["full", "shared", "stub"]

_VIDEO_CONTENT_TYPES = {
    ContentVariant.VIDEO: "video/mp4",
    ContentVariant.THUMBNAIL: "image/jpeg",
    ContentVariant.SPRITESHEET: "image/jpeg",
}
FILE_NAMES = {
    ContentVariant.VIDEO: "video.mp4",
    ContentVariant.THUMBNAIL: "thumbnail.jpg",
    ContentVariant.SPRITESHEET: "spritesheet.jpg",
}


def settings_default(name: str) -> list[str]:
    return list(Settings.model_fields[name].default)


def content_type_for(variant: ContentVariant | str) -> str:
    """The `Content-Type` of a downloaded variant."""
    return _VIDEO_CONTENT_TYPES[ContentVariant(variant)]


# --- errors shaped like the real API's ------------------------------------------------------------------


def _refusal(status: int, message: str, *, param: str | None, code: str | None, operation: str = "") -> VideosAPIError:
    # Raised through the client's mapping, so an offline refusal reads exactly like the real API's.
    info = APIErrorInfo(message=message, code=code, param=param, type="invalid_request_error")
    return map_api_error(status, info, operation=operation)


def invalid(message: str, *, param: str | None, code: str | None, operation: str = "") -> VideosAPIError:
    return _refusal(400, message, param=param, code=code, operation=operation)


def not_found(message: str, *, param: str | None) -> VideosAPIError:
    return _refusal(404, message, param=param, code="not_found")


def check_text(value: object, *, param: str, max_length: int) -> str:
    """Validate a required string parameter the way the API does (type, empty, too long)."""
    if value is None:
        raise invalid(f"Missing required parameter: '{param}'.", param=param, code="missing_required_parameter")
    if not isinstance(value, str):
        raise invalid(
            f"Invalid type for '{param}': expected a string, but got {type(value).__name__} instead.",
            param=param,
            code="invalid_type",
        )
    if not value.strip():
        raise invalid(
            f"Invalid '{param}': empty string. Expected a string with minimum length 1.",
            param=param,
            code="empty_string",
        )
    if len(value) > max_length:
        raise invalid(
            f"Invalid '{param}': string too long. Expected a string with maximum length {max_length}, "
            f"but got a string with length {len(value)} instead.",
            param=param,
            code="string_above_max_length",
        )
    return value


def check_choice(value: str, allowed: Sequence[str], *, param: str) -> str:
    if value not in allowed:
        supported = ", ".join(f"'{v}'" for v in allowed)
        raise invalid(
            f"Invalid value: '{value}'. Supported values are: {supported}.", param=param, code="invalid_value"
        )
    return value


# --- the parameters every create checks -----------------------------------------------------------------


def check_model(model: str | None, allowed: Sequence[str], default: str) -> str:
    """The model to use: `default` when none is given, else one of `allowed` (or a dated snapshot of one)."""
    if model is None:
        return default
    if not isinstance(model, str):
        raise invalid("Invalid type for 'model': expected a string.", param="model", code="invalid_type")
    # Dated snapshots (`sora-2-2025-10-06`) of an allowed model are accepted, as the real API does.
    base = re.sub(r"-\d{4}-\d{2}-\d{2}$", "", model)
    if model in allowed or base in allowed:
        return model
    return check_choice(model, allowed, param="model")


def check_seconds(seconds: object, allowed: Sequence[str]) -> str:
    """A length the API offers, sent as a string as the spec requires."""
    if not isinstance(seconds, str):
        raise invalid(
            f"Invalid type for 'seconds': expected one of {', '.join(allowed)} as a string, "
            f"but got {type(seconds).__name__} instead.",
            param="seconds",
            code="invalid_type",
        )
    return check_choice(seconds, allowed, param="seconds")


def check_characters(
    character_ids: Sequence[str], characters: Mapping[str, CharacterRecord], max_characters: int
) -> list[CharacterRecord]:
    """The registered characters a create names, at most `max_characters` of them."""
    ids = list(character_ids)
    if len(ids) > max_characters:
        raise invalid(
            f"Invalid 'characters': array too long. Expected an array with maximum length "
            f"{max_characters}, but got an array with length {len(ids)} instead.",
            param="characters",
            code="array_above_max_length",
        )
    found = []
    for index, character_id in enumerate(ids):
        character = characters.get(character_id) if isinstance(character_id, str) else None
        if character is None:
            raise invalid(
                f"Character '{character_id}' not found.", param=f"characters[{index}].id", code="invalid_value"
            )
        found.append(character)
    return found
