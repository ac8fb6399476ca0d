"""fal's dialect, emulated: its key check (`Authorization: Key …`; the file host, the published keys and the
storage's open routes need none) and its error shapes: validation errors as 422 `{"detail": [{"loc", "msg",
"type"}]}`, platform errors as `{"detail", "error_type"}` with `X-Fal-Error-Type`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiohttp import web

from bot.backends.offline.fal_platform import OPEN_ROUTES, TOKEN_ROUTE, token_refusal
from bot.errors import APIRequestRejected


def invalid(message: str, field: str | None = None, kind: str = "value_error") -> APIRequestRejected:
    """A validation refusal, answered as fal's 422 `detail` list (`field` under `body`)."""
    return APIRequestRejected(message, status=422, api_message=message, api_code=kind, param=field)


def platform_error(status: int, message: str, error_type: str | None = None) -> APIRequestRejected:
    """A platform refusal, answered as `{"detail", "error_type"}`."""
    return APIRequestRejected(message, status=status, api_message=message, api_code=error_type)


def fal_error(
    status: int,
    message: str,
    *,
    error_type: str | None = None,
    field: str | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    """fal's error body: a `detail` list for 422 validation errors, `{detail, error_type}` otherwise."""
    sent = dict(headers or {})
    body: dict[str, Any]
    if status == 422:
        loc: list[Any] = ["body", *field.split(".")] if field else ["body"]
        body = {"detail": [{"loc": loc, "msg": message, "type": error_type or "value_error"}]}
    else:
        body = {"detail": message}
        if error_type:
            body["error_type"] = error_type
            sent["X-Fal-Error-Type"] = error_type
    return web.json_response(body, status=status, headers=sent)


@dataclass
class FalDialect:
    """fal's key check (`Authorization: Key …`) and error shapes; the file host needs no key."""

    api_key: str | None = None

    def authorize(self, request: web.Request) -> web.Response | None:
        route = request.match_info.route.name
        if route in ("file", "jwks") or route in OPEN_ROUTES:
            return None
        if route == TOKEN_ROUTE:
            refused = token_refusal(request)
            return fal_error(401, refused) if refused else None
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme != "Key" or not given:
            return fal_error(401, "Missing or malformed Authorization header: send `Key <your fal key>`.")
        if self.api_key is not None and given != self.api_key:
            return fal_error(401, "No user found for Key ID and Secret")
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
        return fal_error(status, message, error_type=type or code, field=param, headers=headers)
