"""Gemini API errors as the `SoracastError`s a user reads (the one mapping of them).

Google's envelope is `{"error": {"code", "message", "status", "details"}}`; request validation of the
Interactions API also answers `{"error": {"code": "invalid_request", "message"}}`, and some answers wrap the
envelope in a JSON array (`[{"error": {…}}]`). All are read. Google's own message is kept, and a hint says what to
do next. An unknown or expired interaction id is a 400 "Invalid interaction name": that video is gone, which is
not the same as a request Gemini refused.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bot.backends.refusals import content_refusal, lead, retry_after
from bot.errors import (
    APIAuthError,
    APINotFound,
    APIRequestRejected,
    APIUnavailable,
    QuotaExhausted,
    RateLimited,
    VideosAPIError,
)

_SAFETY = re.compile(r"safety|blocked|prohibited|policy|responsible ai|harm", re.IGNORECASE)
_LIKENESS = re.compile(
    r"likeness|real (?:person|people)|\bperson\b|\bpeople\b|\bfaces?\b|celebrit|minor", re.IGNORECASE
)
_KEY = re.compile(r"api[ _-]?key", re.IGNORECASE)
_GONE = re.compile(r"invalid interaction name", re.IGNORECASE)
_REGION = re.compile(
    r"(location|region|country|territor)\w*\b.{0,60}\bnot (supported|available|offered)"
    r"|not (supported|available|offered)\b.{0,60}\b(location|region|country|territor)",
    re.IGNORECASE,
)

LIKENESS_HINT = (
    "Gemini will not make videos of real people from reference pictures. Use a character that is a mascot, an "
    "object, a pet or a drawn character."
)


@dataclass
class GoogleError:
    """What an error answer said, whatever shape its body had."""

    message: str = ""
    status: str | None = None
    code: str | None = None
    reasons: tuple[str, ...] = ()


def read_error(body: Any) -> GoogleError:
    """The fields of a Google error body (an object, an array of them, JSON text, or anything else)."""
    if isinstance(body, bytes | str):
        try:
            body = json.loads(body)
        except ValueError:
            return GoogleError(message=str(body)[:500] if isinstance(body, str) else "")
    if isinstance(body, list):
        body = next((item for item in body if isinstance(item, dict)), None)
    if not isinstance(body, dict):
        return GoogleError()
    error = body.get("error", body)
    if isinstance(error, str):
        return GoogleError(message=error)
    if not isinstance(error, dict):
        return GoogleError()
    reasons = tuple(
        str(detail.get("reason"))
        for detail in error.get("details") or []
        if isinstance(detail, dict) and detail.get("reason")
    )
    code = error.get("code")
    return GoogleError(
        message=str(error.get("message") or ""),
        status=str(error["status"]) if error.get("status") else None,
        code=str(code) if code is not None else None,
        reasons=reasons,
    )


def map_gemini_error(
    status: int, error: GoogleError, headers: Mapping[str, str] | None = None, *, log_detail: str | None = None
) -> VideosAPIError:
    """Turn a Gemini API error answer into the error a user reads."""
    common: dict[str, Any] = {
        "status": status,
        "api_code": error.status or error.code,
        "api_message": error.message,
        "log_detail": log_detail,
    }
    text = error.message
    if status == 429:
        wait = retry_after(headers)
        if "billing" in text.lower():
            return QuotaExhausted(
                lead("Gemini's quota for this key is used up", text),
                hint="Retrying will not help until the key's billing or quota changes; tell the bot's operator.",
                **common,
            )
        return RateLimited(
            lead("Gemini is rate limiting requests", text),
            hint="soracast waits and tries again by itself.",
            retry_after=wait,
            **common,
        )
    if status >= 500 or status == 408:
        return APIUnavailable(
            f"Gemini is not answering properly right now (HTTP {status}).",
            hint="soracast tries again by itself; if it keeps happening, try again later.",
            retry_after=retry_after(headers),
            **common,
        )
    if status in (401, 403) or "API_KEY_INVALID" in error.reasons or (status == 400 and _KEY.search(text)):
        if status == 403 and not _KEY.search(text) and "API_KEY_INVALID" not in error.reasons:
            return APIAuthError(
                lead("Gemini does not allow this for the configured key", text),
                hint="The key's project may lack billing or access to this model; the bot's operator should check "
                "it in Google AI Studio.",
                **common,
            )
        return APIAuthError(
            lead("Gemini did not accept the API key", text),
            hint="The bot's operator should check GEMINI_API_KEY, then restart the bot.",
            **common,
        )
    if status == 404 or (status == 400 and _GONE.search(text)):
        return APINotFound(
            lead("Gemini does not know this video", text),
            hint="It may have expired or been deleted; make a new one.",
            **common,
        )
    if _SAFETY.search(text):
        return content_refusal(
            "Gemini",
            "the character's references",
            text,
            likeness=bool(_LIKENESS.search(text)),
            likeness_hint=LIKENESS_HINT,
            **common,
        )
    return APIRequestRejected(
        lead("Gemini rejected the request", text),
        hint="Check the command's options and try again.",
        **common,
    )


def is_region_refusal(text: str) -> bool:
    """Whether Google refused because of where the caller is (a feature not offered in its region)."""
    return bool(_REGION.search(text))


def classify_refusal_text(text: str) -> tuple[str, str]:
    """A completed interaction that answered with text and no video: (error code, what to tell the user)."""
    message = text.strip() or "Gemini finished without a video and gave no reason."
    if _LIKENESS.search(message):
        return "human_likeness", message
    return "moderation_blocked", message


def classify_failure(message: str, default: str) -> tuple[str, str]:
    """A failed interaction's reported error: a safety block or likeness refusal gets its own code."""
    if _SAFETY.search(message):
        return ("human_likeness" if _LIKENESS.search(message) else "moderation_blocked"), message
    return default, message
