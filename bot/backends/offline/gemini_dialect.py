"""The Gemini API's dialect, emulated: its key check (`x-goog-api-key` or `?key=`) and Google's error envelope
`{"error": {"code", "message", "status"}}`, in which every refusal of the emulator is answered.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiohttp import web

from bot.errors import APIRequestRejected

#: Google's status names for the HTTP statuses the emulator answers.
STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def invalid(message: str, status: int = 400) -> APIRequestRejected:
    """A refusal in Google's words, answered through the dialect."""
    return APIRequestRejected(message, status=status, api_message=message, api_code=STATUS_NAMES.get(status))


def google_error(
    status: int, message: str, *, reason: str | None = None, headers: dict[str, str] | None = None
) -> web.Response:
    """Google's error envelope."""
    error: dict[str, Any] = {"code": status, "message": message, "status": STATUS_NAMES.get(status, "UNKNOWN")}
    if reason:
        error["details"] = [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason}]
    return web.json_response({"error": error}, status=status, headers=headers)


@dataclass
class GoogleDialect:
    """The Gemini API's key check (`x-goog-api-key` or `?key=`) and error envelope."""

    api_key: str | None = None

    def authorize(self, request: web.Request) -> web.Response | None:
        if request.match_info.route.name == "jwks":
            return None  # published keys are public
        given = request.headers.get("x-goog-api-key") or request.query.get("key")
        if not given:
            return google_error(
                403, "Method doesn't allow unregistered callers. Please use an API key or other form of credentials."
            )
        if self.api_key is not None and given != self.api_key:
            return google_error(400, "API key not valid. Please pass a valid API key.", reason="API_KEY_INVALID")
        return None

    def error(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        type: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> web.Response:
        return google_error(status, message, headers=headers)
