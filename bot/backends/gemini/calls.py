"""Awaiting the `google-genai` SDK's calls, with its exceptions turned into soracast's errors: an answer's
status and body through `map_gemini_error`, a timeout or a broken connection as `APIUnavailable` that says
whether the request may have reached Google (a create that never left cannot have been paid for).
"""

from __future__ import annotations

from typing import Any

from google.genai import _interactions as gx
from google.genai import errors as genai_errors

from bot.backends.gemini.errors import GoogleError, map_gemini_error, read_error
from bot.errors import APIUnavailable


async def call_gemini(operation: str, call: Any) -> Any:
    """The result of an Interactions API call (`operation` names it in logs), or the soracast error it meant."""
    try:
        return await call
    except gx.APIStatusError as exc:
        headers = dict(exc.response.headers) if getattr(exc, "response", None) is not None else {}
        body = exc.body
        detail = f"{operation} -> {exc.status_code}: {str(body)[:2000]}"
        raise map_gemini_error(exc.status_code, read_error(body), headers, log_detail=detail) from None
    except gx.APITimeoutError as exc:
        error = APIUnavailable(
            "Gemini did not answer in time.",
            hint="soracast tries again by itself; if it keeps happening, try again later.",
            log_detail=f"{operation}: timeout",
        )
        error.maybe_sent = not _never_connected(exc)
        raise error from None
    except gx.APIConnectionError as exc:
        error = APIUnavailable(
            "Could not reach Gemini.",
            hint="soracast tries again by itself; the bot's operator should check the network.",
            log_detail=f"{operation}: {type(exc).__name__}",
        )
        # A connection that was never made carried no create: nothing to wait for or to pay twice.
        error.maybe_sent = not _never_connected(exc)
        raise error from None
    except gx.APIError as exc:
        raise APIUnavailable(
            "Gemini sent an answer soracast could not read.",
            hint="Try again later.",
            log_detail=f"{operation}: {type(exc).__name__}: {str(exc)[:500]}",
        ) from None


async def call_files(call: Any) -> Any:
    """The result of a Files API call, or the soracast error it meant."""
    try:
        return await call
    except genai_errors.APIError as exc:
        error = GoogleError(message=str(exc.message or ""), status=str(exc.status or "") or None)
        raise map_gemini_error(int(exc.code or 500), error, log_detail=f"files -> {exc.code}") from None
    except (TimeoutError, OSError) as exc:
        raise APIUnavailable(
            "The connection to Gemini broke off while downloading the video.",
            hint="soracast tries again by itself.",
            log_detail=f"files: {type(exc).__name__}",
        ) from None


def _never_connected(exc: BaseException) -> bool:
    """Whether the request failed before a connection was made (so it cannot have reached Google). The SDK's
    HTTP stack is httpx or its fork httpx2: their connect errors are recognised by name, and refused
    connections by the OS error underneath."""
    seen: BaseException | None = exc
    for _ in range(10):
        if seen is None:
            return False
        if type(seen).__name__ in ("ConnectError", "ConnectTimeout") or isinstance(seen, ConnectionRefusedError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
