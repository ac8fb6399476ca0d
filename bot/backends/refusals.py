"""Wording and header reading every provider's error mapping shares (each keeps its own patterns and hints)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bot.errors import HumanLikenessRefused, ModerationBlocked, VideosAPIError


def lead(lead_text: str, message: str) -> str:
    """`Gemini rejected the request: <the provider's own words>` (or just the lead, when it said nothing)."""
    message = message.strip()
    return f"{lead_text}: {message}" if message else f"{lead_text}."


def retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds from `retry-after-ms` or `Retry-After` (seconds), when the server said."""
    if not headers:
        return None
    lowered = {k.lower(): v for k, v in headers.items()}
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = lowered.get(name)
        if value:
            try:
                return max(0.0, float(value) / scale)
            except ValueError:
                continue
    return None


def content_refusal(
    service: str, what: str, text: str, *, likeness: bool, likeness_hint: str, **common: Any
) -> VideosAPIError:
    """A request refused under the provider's content rules: a real person's likeness, or anything else.

    `what` names what showed the person ("the character's references", "the character's pictures").
    """
    if likeness:
        return HumanLikenessRefused(
            lead(f"{service} refused {what} because they appear to show a real person", text),
            hint=likeness_hint,
            **common,
        )
    return ModerationBlocked(
        lead(f"{service} blocked this under its content rules", text),
        hint="Change the prompt and try again; the same request will be blocked again.",
        **common,
    )
