"""fal's error answers as the `SoracastError`s a user reads (the one mapping of them).

fal answers errors in two shapes: model and validation errors as `{"detail": [{"loc", "msg", "type"}, …]}`,
and platform errors as `{"detail": "<text>", "error_type": "<category>"}` with the same category in the
`X-Fal-Error-Type` header. Both are read from the HTTP response itself, so an error fal-client raised and a
submit soracast refused to repeat are explained the same way. fal's own words are kept; a hint says what to
do next.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import httpx

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

_SAFETY = re.compile(r"content.?policy|safety|nsfw|moderat|prohibited|flagged|sensitive", re.IGNORECASE)
_LIKENESS = re.compile(r"likeness|real (?:person|people)|celebrit|public figure|minor", re.IGNORECASE)
_BALANCE = re.compile(r"balance|credit|billing|payment|locked", re.IGNORECASE)

LIKENESS_HINT = (
    "The model will not make videos of real people from reference pictures. Use a character that is a mascot, an "
    "object, a pet or a drawn character."
)


@dataclass
class FalError:
    """What one error answer said, whatever its shape."""

    status: int
    message: str = ""
    error_type: str | None = None
    #: The request field fal blamed (`duration`, `elements`), from a validation error's `loc`.
    param: str | None = None
    retry_after: float | None = None


def read_error(response: httpx.Response) -> FalError:
    """The fields of a fal error answer (the body must have been read)."""
    try:
        body: Any = response.json()
    except (ValueError, UnicodeDecodeError):
        body = None
    message, error_type, param = "", None, None
    if isinstance(body, dict):
        detail = body.get("detail")
        if isinstance(detail, list):
            message, error_type, param = _validation(detail)
        elif detail is not None:
            message = str(detail)
        error_type = str(body["error_type"]) if body.get("error_type") else error_type
    elif response.text:
        message = response.text.strip()[:500]
    error_type = error_type or response.headers.get("x-fal-error-type")
    return FalError(
        status=response.status_code,
        message=message,
        error_type=error_type,
        param=param,
        retry_after=retry_after(response.headers),
    )


def _validation(detail: list[Any]) -> tuple[str, str | None, str | None]:
    """`duration: Input should be '5' or '10'` from a `detail` list, with the first entry's type and field."""
    parts: list[str] = []
    first_type, first_param = None, None
    for entry in detail:
        if not isinstance(entry, dict):
            parts.append(str(entry))
            continue
        loc = [str(p) for p in entry.get("loc") or [] if p != "body"]
        field = ".".join(loc)
        text = str(entry.get("msg") or "")
        parts.append(f"{field}: {text}" if field and text else text or field)
        if first_type is None:
            first_type = str(entry["type"]) if entry.get("type") else None
            first_param = loc[0] if loc else None
    return "; ".join(p for p in parts if p), first_type, first_param


def is_content_refusal(error: FalError) -> bool:
    """Whether fal (or the model) refused the content rather than the request's form."""
    return bool(_SAFETY.search(f"{error.error_type or ''} {error.message}"))


def map_fal_error(error: FalError, *, log_detail: str | None = None) -> VideosAPIError:
    """Turn a fal error answer into the error a user reads."""
    status, text = error.status, error.message
    common: dict[str, Any] = {
        "status": status,
        "api_code": error.error_type,
        "api_message": text,
        "param": error.param,
        "log_detail": log_detail,
    }
    if status == 429:
        return RateLimited(
            lead("fal is rate limiting requests", text),
            hint="Wait a little and try again.",
            retry_after=error.retry_after,
            **common,
        )
    if status in (401, 403):
        if _BALANCE.search(f"{error.error_type or ''} {text}"):
            return QuotaExhausted(
                lead("fal refused the request because of the account's balance", text),
                hint="Retrying will not help until the fal account is topped up; tell the bot's operator.",
                **common,
            )
        return APIAuthError(
            lead("fal did not accept the API key", text),
            hint="The bot's operator should check FAL_KEY, then restart the bot.",
            **common,
        )
    if status == 404:
        return APINotFound(
            lead("fal does not know this request", text),
            hint="It may have expired; make a new video.",
            **common,
        )
    if status >= 500 or status == 408:
        return APIUnavailable(
            lead(f"fal is not answering properly right now (HTTP {status})", text),
            hint="Try again in a minute.",
            retry_after=error.retry_after,
            **common,
        )
    if is_content_refusal(error):
        return content_refusal(
            "fal",
            "the character's pictures",
            text,
            likeness=bool(_LIKENESS.search(text)),
            likeness_hint=LIKENESS_HINT,
            **common,
        )
    return APIRequestRejected(
        lead("fal rejected the request", text),
        hint="Check the command's options and try again.",
        **common,
    )


def failure_code(error_type: str | None, message: str) -> str:
    """The generation's error code for a job fal finished with an error."""
    probe = FalError(status=0, message=message, error_type=error_type)
    if is_content_refusal(probe):
        return "human_likeness" if _LIKENESS.search(message) else "moderation_blocked"
    if "cancel" in f"{error_type or ''} {message}".lower():
        return "cancelled"
    return "failed"


def describe_body(response: httpx.Response) -> str:
    """A short, secret-free record of an answer for the operator's log."""
    try:
        text = json.dumps(response.json())[:1000]
    except (ValueError, UnicodeDecodeError):
        text = response.text[:500]
    return f"HTTP {response.status_code}: {text}"
