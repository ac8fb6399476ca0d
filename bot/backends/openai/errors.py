"""What an error answer of the Videos API means: its body read whatever its shape, the `bot.errors` type a user
reads (with the API's own message and a hint), and how long the server asked us to wait.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

from bot.errors import (
    APIAuthError,
    APINotFound,
    APIRequestRejected,
    APIUnavailable,
    HumanLikenessRefused,
    ModerationBlocked,
    QuotaExhausted,
    RateLimited,
    VideosAPIError,
)

__all__ = ["APIErrorInfo", "error_info", "map_api_error", "parse_retry_after"]

_MODERATION = re.compile(r"moderation|content_policy|content_filter|safety", re.IGNORECASE)
# The real API's wording for a human-likeness refusal is not documented; these words cover the ways a
# refusal of a clip showing a person can be phrased, and are matched only on character uploads.
_LIKENESS_WORDS = re.compile(
    r"likeness|\bhumans?\b|\breal[ _-]?(?:person|people|individual)s?\b|\bfaces?\b|\bpersons?\b|\bpeople\b",
    re.IGNORECASE,
)
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|us|µs|ns|h|m|s)")
_DURATION_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}


def _parse_duration(text: str) -> float | None:
    """A Go-style duration as OpenAI's `x-ratelimit-reset-*` headers write them: `20ms`, `1s`, `6m0s`."""
    text = text.strip()
    if not text:
        return None
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    pos, total = 0, 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != pos:
            return None
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        pos = match.end()
    return total if pos == len(text) else None


def parse_retry_after(
    headers: Mapping[str, str], *, now: datetime | None = None, prefer: str | None = None
) -> float | None:
    """Seconds the server asked us to wait, or None when it did not say.

    Reads `retry-after-ms`, then `Retry-After` (seconds or an HTTP date), then `x-ratelimit-reset-requests` /
    `-tokens`. `prefer` ("requests" or "tokens", the error's `type`) picks which reset header applies; without
    it the longer of the two is used, since waiting for the shorter would meet the other limit again.
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    ms = lowered.get("retry-after-ms")
    if ms:
        with contextlib.suppress(ValueError):
            return max(0.0, float(ms) / 1000)
    value = lowered.get("retry-after")
    if value:
        value = value.strip()
        try:
            return max(0.0, float(value))
        except ValueError:
            pass
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            when = None
        if when is not None:
            if when.tzinfo is None:
                when = when.replace(tzinfo=UTC)
            return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
    resets: dict[str, float] = {}
    for kind in ("requests", "tokens"):
        raw = lowered.get(f"x-ratelimit-reset-{kind}")
        parsed = _parse_duration(raw) if raw else None
        if parsed is not None:
            resets[kind] = parsed
    if prefer in resets:
        return resets[prefer]
    return max(resets.values()) if resets else None


@dataclass
class APIErrorInfo:
    """What an error answer said, whatever shape its body had."""

    message: str = ""
    type: str | None = None
    code: str | None = None
    param: str | None = None
    raw: str = ""


def error_info(body: bytes) -> APIErrorInfo:
    """The message, type, code and param of an error body (OpenAI's envelope or a gateway's own shape)."""
    text = body.decode("utf-8", "replace")
    info = APIErrorInfo(raw=text)
    try:
        data = json.loads(text)
    except ValueError:
        return info
    if not isinstance(data, dict):
        return info
    # OpenAI's envelope is {"error": {...}}; gateways also send {"error": "text"} or {"message"}/{"detail"}.
    err = data.get("error", data)
    if isinstance(err, str):
        info.message = err
        return info
    if not isinstance(err, dict):
        return info

    def text_of(key: str) -> str | None:
        value = err.get(key)
        return None if value is None or isinstance(value, dict | list) else str(value)

    info.message = text_of("message") or text_of("detail") or ""
    info.type, info.code, info.param = text_of("type"), text_of("code"), text_of("param")
    return info


def _lead(lead: str, api_message: str) -> str:
    api_message = api_message.strip()
    return f"{lead}: {api_message}" if api_message else f"{lead}."


def _about(seconds: float) -> str:
    if seconds < 1.5:
        return "a second"
    if seconds < 90:
        return f"{round(seconds)} seconds"
    return f"{round(seconds / 60)} minutes"


def map_api_error(
    status: int,
    info: APIErrorInfo,
    headers: Mapping[str, str] | None = None,
    *,
    operation: str = "",
    log_detail: str | None = None,
) -> VideosAPIError:
    """Turn an error answer of the Videos API into the SoracastError a user reads (the one mapping of them).

    The offline renderer raises through here too, so offline and online errors read the same.
    """
    headers = headers or {}
    common: dict[str, Any] = {
        "status": status,
        "api_code": info.code,
        "param": info.param,
        "api_message": info.message,
        "log_detail": log_detail,
    }
    what = f"{info.code or ''} {info.type or ''}"
    if status == 429:
        if "insufficient_quota" in what:
            return QuotaExhausted(
                _lead("The video quota of this account is used up", info.message),
                hint="Retrying will not help until the account's plan or billing changes; tell the bot's operator.",
                **common,
            )
        retry_after = parse_retry_after(headers, prefer=info.type)
        return RateLimited(
            _lead("The Videos API is rate limiting requests", info.message),
            hint=f"Try again in {_about(retry_after)}." if retry_after is not None else "Try again in a minute.",
            retry_after=retry_after,
            **common,
        )
    if status >= 500 or status == 408:
        retry_after = parse_retry_after(headers)
        return APIUnavailable(
            f"The Videos API is not answering properly right now (HTTP {status}).",
            hint="Try again in a few minutes.",
            retry_after=retry_after,
            **common,
        )
    if status == 401:
        return APIAuthError(
            _lead("The Videos API did not accept the API key", info.message),
            hint="The bot's operator should check OPENAI_API_KEY (and SORACAST_API_AUTH_STYLE for Azure-style "
            "endpoints), then restart the bot.",
            **common,
        )
    if operation == "create_character" and status in (400, 403, 422) and _is_likeness(info):
        return HumanLikenessRefused(
            _lead("The clip was refused because it appears to show a real person", info.message),
            hint="The API blocks character clips of real people unless OpenAI has approved the account for "
            "them. Use a clip of a mascot, an object, a pet or an animated character instead.",
            **common,
        )
    if _MODERATION.search(what):
        return ModerationBlocked(
            _lead("The Videos API blocked this under its content rules", info.message),
            hint="Change the prompt (or the clip or image) and try again; the same request will be blocked again.",
            **common,
        )
    if status == 403:
        return APIAuthError(
            _lead("The Videos API does not allow this for the configured account", info.message),
            hint="The model or feature may not be enabled for this OpenAI account or project; pick another "
            "model, or ask the bot's operator to request access.",
            **common,
        )
    if status == 404:
        return APINotFound(
            _lead("The Videos API does not know this video or character", info.message),
            hint="It may have expired or been deleted; make a new one.",
            **common,
        )
    if status == 413:
        hint = "The upload is too large for the API; use a shorter or smaller clip."
    elif info.param:
        hint = f"Check the `{info.param}` value and try again."
    else:
        hint = "Check the command's options and try again."
    return APIRequestRejected(_lead("The Videos API rejected the request", info.message), hint=hint, **common)


def _is_likeness(info: APIErrorInfo) -> bool:
    return any(_LIKENESS_WORDS.search(text) for text in (info.code or "", info.message) if text)
