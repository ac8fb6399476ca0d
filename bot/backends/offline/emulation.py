"""What every emulated API shares: the answering middleware, serving an app, and the stats route.

Each emulated API (`openai_api`, `gemini_api`, `fal_api`) supplies a `Dialect`: how it checks the key and how
its errors look on the wire. Tests inject faults by route name or path glob and assert on what arrived::

    faults.push("create_video", status=429, retry_after=0.05)
    faults.push("*", status=500, times=3)                            # the next three requests, any route
    assert faults.requests.last("create_video").json["prompt"] == "a fox"

The middleware records each request (`request_log`, bodies read by `request_bodies`), injects the faults of a
`FaultPlan` (`faults`) and answers errors in the dialect's shape. Webhooks are sent by `webhook_sender`.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Protocol

from aiohttp import web
from multidict import CIMultiDict

from bot.backends.offline.faults import Fault, FaultPlan, seconds_text
from bot.backends.offline.request_bodies import BODY_KEY, Body, BodyError, read_body
from bot.backends.offline.request_log import RecordedRequest
from bot.errors import VideosAPIError

log = logging.getLogger(__name__)

#: Large enough for any character clip or inline reference; the real APIs' own limits are checked by routes.
MAX_BODY_BYTES = 512 * 1024 * 1024


class Dialect(Protocol):
    """How one emulated API checks keys and writes errors on the wire."""

    def authorize(self, request: web.Request) -> web.StreamResponse | None:
        """None when the request carries an acceptable key, otherwise the API's refusal."""

    def error(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        type: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> web.StreamResponse:
        """An error answer in the API's own shape."""


def fault_response(fault: Fault, dialect: Dialect) -> web.StreamResponse:
    """The answer an injected fault gives: the API's error shape, or a raw body (a gateway's HTML page)."""
    assert fault.status is not None
    headers = dict(fault.headers)
    if fault.retry_after is not None:
        headers["Retry-After"] = seconds_text(fault.retry_after)
        headers["retry-after-ms"] = str(round(fault.retry_after * 1000))
    if fault.body is not None:
        data = fault.body.encode() if isinstance(fault.body, str) else fault.body
        default = "text/html" if data.lstrip().startswith(b"<") else "text/plain"
        return web.Response(
            body=data,
            status=fault.status,
            content_type=None,
            headers={"Content-Type": fault.content_type or default, **headers},
        )
    message = fault.message or f"Injected fault: HTTP {fault.status}."
    return dialect.error(fault.status, message, type=fault.type, param=fault.param, code=fault.code, headers=headers)


def api_error_response(exc: VideosAPIError, dialect: Dialect) -> web.StreamResponse:
    """A refusal the offline renderer raised, answered the way the emulated API would."""
    status = exc.status or 500
    headers = {"Retry-After": seconds_text(exc.retry_after)} if exc.retry_after is not None else None
    return dialect.error(status, exc.api_message or exc.message, param=exc.param, code=exc.api_code, headers=headers)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class _DropConnection(Exception):
    """Raised to close the connection without an answer (a lost answer, as a network would lose it)."""


def make_middleware(
    faults: FaultPlan, prefix: str, dialect: Dialect
) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
    """Record every request, inject faults, check the key, and answer errors in the dialect's shape."""

    @web.middleware
    async def emulate(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith(STATS_PATH):
            return await handler(request)  # the emulator's own report: no key, no faults, not recorded
        route = request.match_info.route.name
        subpath = request.path[len(prefix) :] if request.path.startswith(prefix) else request.path
        body_error: str | None = None
        try:
            body = await read_body(request)
        except BodyError as exc:
            body, body_error = Body(kind="none"), str(exc)
        record = RecordedRequest(
            method=request.method,
            path=request.path,
            route=route,
            query=dict(request.query),
            headers=CIMultiDict(request.headers),
            json=body.json,
            form=dict(body.fields),  # last value wins, as a server reads a repeated field
            form_items=list(body.fields),
            files=dict(body.files),
            content_type=request.content_type,
            body_size=body.size,
        )
        faults.requests.append(record)
        request[BODY_KEY] = body
        response = await _answer(request, handler, record, subpath, body_error)
        response.headers.setdefault("x-request-id", f"req_{secrets.token_hex(12)}")
        record.status = response.status
        return response

    async def _answer(
        request: web.Request, handler: Handler, record: RecordedRequest, subpath: str, body_error: str | None
    ) -> web.StreamResponse:
        fault = faults.take(record.route, request.method, subpath)
        if fault is not None and not fault.after_handling:
            record.fault = fault.describe()
            log.debug("fault %s for %s %s", record.fault, request.method, request.path)
            if fault.delay > 0:
                await asyncio.sleep(fault.delay)
            if fault.drop_connection:
                _drop(request)
            if fault.status is not None:
                return fault_response(fault, dialect)
        denied = dialect.authorize(request)
        if denied is not None:
            return denied
        random_fault = faults.random_fault()
        if random_fault is not None and not random_fault.after_handling:
            record.fault = random_fault.describe()
            return fault_response(random_fault, dialect)
        if body_error is not None:
            return dialect.error(400, body_error)
        response = await _handle(request, handler)
        late = fault if fault is not None and fault.after_handling else random_fault
        if late is not None:
            # The work is done (a job exists) but its answer never reaches the client.
            record.fault = late.describe()
            if late.delay > 0:
                await asyncio.sleep(late.delay)
            if late.drop_connection:
                _drop(request)
            if late.status is not None:
                return fault_response(late, dialect)
        return response

    async def _handle(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except VideosAPIError as exc:
            return api_error_response(exc, dialect)
        except web.HTTPNotFound:
            return dialect.error(404, f"Invalid URL ({request.method} {request.path})")
        except web.HTTPMethodNotAllowed:
            return dialect.error(405, f"Invalid method for URL ({request.method} {request.path})")
        except web.HTTPException:
            raise
        except Exception:
            # A bug in the emulator still answers like the API would (a 5xx), so clients see a server error.
            log.exception("emulator error on %s %s", request.method, request.path)
            return dialect.error(500, "The emulator failed while processing the request.")

    return emulate


def _drop(request: web.Request) -> None:
    transport = request.transport
    if transport is not None:
        transport.abort()
    raise _DropConnection


async def start_app(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, str]:
    """Serve `app` on host:port (0: a free port) in the running loop; returns the runner and `http://host:port`."""
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound_host, bound_port = runner.addresses[0][:2]
    return runner, f"http://{bound_host}:{bound_port}"


#: Where an emulator reports what it received (`soracast emulate` users and the benchmarks read it).
STATS_PATH = "/_emulator/stats"


def add_stats_route(app: web.Application, faults: FaultPlan) -> None:
    """`GET /_emulator/stats`: requests received per route and per answer status, and injected faults."""

    async def stats(_: web.Request) -> web.Response:
        by_route: dict[str, int] = {}
        by_status: dict[str, int] = {}
        faulted = 0
        for record in faults.requests:
            by_route[record.route or "?"] = by_route.get(record.route or "?", 0) + 1
            by_status[str(record.status)] = by_status.get(str(record.status), 0) + 1
            faulted += record.fault is not None
        return web.json_response({"routes": by_route, "statuses": by_status, "faults": faulted})

    app.router.add_get(STATS_PATH, stats)
