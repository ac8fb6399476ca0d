"""What every HTTP route soracast serves shares: bodies read under a cap before anything looks at them, and
refusals answered with one 4xx status and one log line — never a traceback, never the body itself.

Anyone on the internet can reach `soracast web`; a malformed request must cost one line of log, not a stack
trace, and must be refused before it costs a database read or a call to a platform.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

log = logging.getLogger(__name__)

#: How much of a request path a log line quotes.
_PATH_SHOWN = 120


class Refused(Exception):
    """A request turned away at the door: `status` is answered, `reason` is logged for the operator."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def _where(request: web.BaseRequest) -> str:
    # repr() keeps a hostile path (newlines, escapes) on one line of log.
    path = request.raw_path
    shown = path if len(path) <= _PATH_SHOWN else path[:_PATH_SHOWN] + "…"
    return f"{request.method} {shown!r} from {request.remote or '?'}"


def log_refusal(request: web.BaseRequest, status: int, reason: str) -> None:
    """The one line a refused request leaves in the log."""
    log.warning("refused %s: %d %s", _where(request), status, reason)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _answer(request: web.Request, refused: Refused) -> web.Response:
    log_refusal(request, refused.status, refused.reason)
    # The reason is the operator's; the client only learns the status (nothing about the configuration).
    phrase = HTTPStatus(refused.status).phrase
    return web.Response(status=refused.status, text=f"{refused.status} {phrase}\n")


def refusing(handler: Handler) -> Handler:
    """A route handler whose `Refused` becomes its answer and one log line, in whatever app it is mounted."""

    async def handle(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except Refused as refused:
            return _answer(request, refused)

    return handle


@web.middleware
async def refusals(request: web.Request, handler: Handler) -> web.StreamResponse:
    """aiohttp middleware: aiohttp's own 4xx (no such route, wrong method, body too large) and any `Refused`
    become a plain answer and one log line."""
    try:
        return await handler(request)
    except Refused as refused:
        return _answer(request, refused)
    except web.HTTPException as exc:
        if 400 <= exc.status < 500:
            log_refusal(request, exc.status, exc.reason)
        raise


async def read_body(request: web.Request, limit: int) -> bytes:
    """The raw body, refused with 413 as soon as it is known to be larger than `limit` bytes."""
    declared = request.content_length
    if declared is not None and declared > limit:
        raise Refused(413, f"body of {declared} bytes is over the {limit}-byte limit")
    received = bytearray()
    async for chunk in request.content.iter_chunked(64 * 1024):
        received += chunk
        if len(received) > limit:
            raise Refused(413, f"body is over the {limit}-byte limit")
    return bytes(received)


class ServerLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """aiohttp's server logger, minus the traceback for requests that are not HTTP at all (a bad header, a
    broken chunk): those are the client's fault and get one line. Failures of soracast's own handlers keep
    their traceback — that is a bug the operator needs to see."""

    def exception(self, msg: object, *args: Any, exc_info: Any = True, **kwargs: Any) -> None:
        if isinstance(exc_info, HttpProcessingError):
            detail = " ".join(str(exc_info.message or type(exc_info).__name__).split())[:200]
            self.warning("refused a malformed HTTP request (%s): %s", type(exc_info).__name__, detail)
            return
        super().exception(msg, *args, exc_info=exc_info, **kwargs)


def app_runner(app: web.Application) -> web.AppRunner:
    """An AppRunner for soracast's web app: no access log, malformed HTTP logged in one line."""
    return web.AppRunner(app, access_log=None, logger=ServerLog(logging.getLogger("aiohttp.server"), {}))
