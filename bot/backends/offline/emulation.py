"""What every emulated API shares: the request log, fault injection, body reading and the answering middleware.

Each emulated API (`openai_api`, `gemini_api`, `fal_api`) supplies a `Dialect`: how it checks the key and how
its errors look on the wire. Tests inject faults by route name or path glob and assert on what arrived::

    faults.push("create_video", status=429, retry_after=0.05)
    faults.push("*", status=500, times=3)                            # the next three requests, any route
    assert faults.requests.last("create_video").json["prompt"] == "a fox"
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import json
import logging
import random
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

from bot.errors import VideosAPIError

log = logging.getLogger(__name__)

#: Large enough for any character clip or inline reference; the real APIs' own limits are checked by routes.
MAX_BODY_BYTES = 512 * 1024 * 1024


# --- the request log -------------------------------------------------------------------------------------


@dataclass
class UploadedFile:
    """One file part of a multipart request."""

    field: str
    filename: str | None
    content_type: str | None
    data: bytes = field(repr=False)

    @property
    def size(self) -> int:
        return len(self.data)


@dataclass
class RecordedRequest:
    """What reached the emulator, and how it answered (`status`, and `fault` when a fault answered)."""

    method: str
    path: str  # as received, with the prefix (e.g. /v1/videos)
    route: str | None  # a name from ROUTES, None for unknown paths
    query: dict[str, str]
    headers: CIMultiDict[str]
    json: Any = None
    form: dict[str, str] = field(default_factory=dict)  # last value of each text field
    form_items: list[tuple[str, str]] = field(default_factory=list)  # every text field, in order
    files: dict[str, UploadedFile] = field(default_factory=dict)
    content_type: str = ""
    body_size: int = 0
    status: int | None = None
    fault: str | None = None
    received_at: float = field(default_factory=time.monotonic)


class RequestLog(list[RecordedRequest]):
    """Every request in arrival order, with helpers for the common assertions."""

    def for_route(self, route: str) -> list[RecordedRequest]:
        """The requests a route name (see ROUTES) received."""
        return [r for r in self if r.route == route]

    def last(self, route: str | None = None) -> RecordedRequest:
        """The latest request (of a route); IndexError when there is none."""
        matching = self.for_route(route) if route else list(self)
        if not matching:
            raise IndexError(f"no request{f' to {route}' if route else ''} was received")
        return matching[-1]

    def count(self, route: str) -> int:  # type: ignore[override]
        """How many requests a route received (list.count is replaced: counting records is never wanted)."""
        return len(self.for_route(route))


# --- faults ----------------------------------------------------------------------------------------------


@dataclass
class Fault:
    """One injected answer.

    `status=None` means "delay, then answer normally". Otherwise the emulator answers `status` with an error
    body in the emulated API's shape (`message`, `type`, `param`, `code`; the type defaults from the status),
    or with `body` sent as-is (e.g. an HTML gateway page) when given. `retry_after` sets `Retry-After`
    (seconds, may be fractional) and `retry-after-ms`. `delay` waits before answering; `times` answers that
    many requests.

    The hard case of a lost answer: `after_handling=True` lets the request do its work first (the job is made)
    and then answers with the fault instead; `drop_connection=True` closes the connection without any answer
    (with `after_handling`, after the work is done).
    """

    status: int | None = 500
    code: str | None = None
    type: str | None = None
    param: str | None = None
    message: str | None = None
    retry_after: float | None = None
    delay: float = 0.0
    body: str | bytes | None = None
    content_type: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    times: int = 1
    route: str = "*"
    after_handling: bool = False
    drop_connection: bool = False

    def describe(self) -> str:
        what = "drop" if self.drop_connection else "delay" if self.status is None else str(self.status)
        if self.after_handling:
            what += " after handling"
        return f"{what}{f' {self.code}' if self.code else ''} on {self.route}"


class FaultPlan:
    """Faults to inject, random failures and a rate limit, and the log of every request received."""

    def __init__(
        self,
        *,
        fail_rate: float = 0.0,
        rate_limit: float = 0.0,
        seed: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        routes: Iterable[str] = (),
        lost_answer_rate: float = 0.0,
    ) -> None:
        """`fail_rate`: share of requests answered with a random 5xx; `rate_limit`: requests per second
        allowed (a token bucket with a burst of the same size) before 429s; 0 turns either off.
        `lost_answer_rate`: share of the random 5xx that are sent *after* the request did its work (a create
        that made its job and lost the answer). `routes`: the route names faults may name (the app sets them)."""
        if not 0.0 <= fail_rate <= 1.0:
            raise ValueError("fail_rate must be between 0 and 1")
        if rate_limit < 0:
            raise ValueError("rate_limit must not be negative")
        if not 0.0 <= lost_answer_rate <= 1.0:
            raise ValueError("lost_answer_rate must be between 0 and 1")
        self.fail_rate = fail_rate
        self.rate_limit = rate_limit
        self.lost_answer_rate = lost_answer_rate
        self.routes: tuple[str, ...] = tuple(routes)
        self.requests = RequestLog()
        self._queue: list[Fault] = []
        self._rng = random.Random(seed)
        self._clock = clock
        self._tokens = max(1.0, rate_limit)
        self._refilled = clock()

    def push(self, route: str = "*", fault: Fault | None = None, /, **options: Any) -> Fault:
        """Queue a one-shot fault for requests matching `route`.

        `route` is a route name of the emulated API (`create_video`, `retrieve_video`, …), `"*"` for any
        request, or a glob on the path below the prefix, optionally with a method: `"GET /videos/*/content"`,
        `"/videos/characters"`. Faults are used in the order pushed; each answers `times` requests.
        """
        _check_pattern(route, self.routes)
        fault = fault or Fault(**options)
        fault.route = route
        if fault.times < 1:
            raise ValueError("times must be at least 1")
        self._queue.append(fault)
        return fault

    def clear(self) -> None:
        """Drop every queued fault (the request log stays)."""
        self._queue.clear()

    def pending(self, route: str | None = None) -> int:
        """How many answers queued faults (for one pattern) still hold."""
        return sum(f.times for f in self._queue if route is None or f.route == route)

    def take(self, route: str | None, method: str, path: str) -> Fault | None:
        """The first queued fault matching this request, consuming one of its uses."""
        for fault in self._queue:
            if _matches(fault.route, route, method, path):
                fault.times -= 1
                if fault.times <= 0:
                    self._queue.remove(fault)
                return fault
        return None

    def random_fault(self) -> Fault | None:
        """A rate-limit 429 or a random 5xx, per the configured rate limit and fail rate."""
        if self.rate_limit > 0:
            now = self._clock()
            self._tokens = min(max(1.0, self.rate_limit), self._tokens + (now - self._refilled) * self.rate_limit)
            self._refilled = now
            if self._tokens < 1.0:
                wait = (1.0 - self._tokens) / self.rate_limit
                return Fault(
                    status=429,
                    code="rate_limit_exceeded",
                    type="requests",
                    message=f"Rate limit reached: {self.rate_limit:g} requests per second. Try again in {wait:.3f}s.",
                    retry_after=round(wait, 3),
                    headers={"x-ratelimit-reset-requests": f"{max(1, round(wait * 1000))}ms"},
                    route="rate_limit",
                )
            self._tokens -= 1.0
        if self.fail_rate > 0 and self._rng.random() < self.fail_rate:
            status = self._rng.choice((500, 502, 503))
            lost = self.lost_answer_rate > 0 and self._rng.random() < self.lost_answer_rate
            return Fault(
                status=status,
                message=f"The emulator injected a {status} (fail rate {self.fail_rate:g}).",
                route="fail_rate",
                after_handling=lost,
            )
        return None


def _check_pattern(pattern: str, routes: tuple[str, ...]) -> None:
    if pattern == "*" or pattern in routes or (not routes and pattern.isidentifier()):
        return
    target = pattern.split(" ", 1)[1] if " " in pattern else pattern
    if not target.startswith(("/", "*")):
        raise ValueError(f"unknown fault route {pattern!r}: use one of {', '.join(routes)}, '*', or a path glob")


def _matches(pattern: str, route: str | None, method: str, path: str) -> bool:
    if pattern == "*" or pattern == route:
        return True
    if " " in pattern:
        want_method, glob = pattern.split(" ", 1)
        if want_method != "*" and want_method.upper() != method.upper():
            return False
        return fnmatch.fnmatchcase(path, glob)
    return pattern.startswith(("/", "*")) and fnmatch.fnmatchcase(path, pattern)


def seconds_text(value: float) -> str:
    """A wait as headers write it: `2`, `0.05`."""
    return str(int(value)) if float(value).is_integer() else f"{value:.3f}".rstrip("0")


# --- request bodies --------------------------------------------------------------------------------------


class BodyError(Exception):
    """The body could not be read as its content type says (answered as a 400)."""


@dataclass
class Body:
    """A request body, whatever its encoding: JSON object, or multipart/urlencoded fields and files."""

    kind: str  # "json", "form", "raw" (a file's bytes, e.g. an upload to a CDN) or "none"
    json: Any = None
    raw: bytes = b""
    fields: list[tuple[str, str]] = field(default_factory=list)
    files: dict[str, UploadedFile] = field(default_factory=dict)
    size: int = 0

    def keys(self) -> set[str]:
        """Top-level parameter names (`characters[0][id]` counts as `characters`)."""
        if self.kind == "json":
            return set(self.json) if isinstance(self.json, dict) else set()
        names = [key for key, _ in self.fields] + list(self.files)
        return {key.split("[", 1)[0] for key in names}

    def get(self, name: str) -> Any:
        if self.kind == "json":
            return self.json.get(name) if isinstance(self.json, dict) else None
        if name in self.files:
            return self.files[name]
        value = None
        for key, text in self.fields:
            if key == name:
                value = text
        return value


# aiohttp 3.13+ wants typed request keys (and warns about strings); older 3.x versions only take strings.
BODY_KEY: Any = web.RequestKey("body", Body) if hasattr(web, "RequestKey") else "soracast_body"


async def read_body(request: web.Request) -> Body:
    if not request.body_exists:
        return Body(kind="none")
    ctype = request.content_type
    if ctype in ("multipart/form-data", "application/x-www-form-urlencoded"):
        try:
            posted = await request.post()
        except (ValueError, AssertionError) as exc:
            raise BodyError(f"The {ctype} body could not be parsed: {exc}") from None
        body = Body(kind="form")
        for key, value in posted.items():
            if isinstance(value, web.FileField):
                data = value.file.read()
                body.files[key] = UploadedFile(key, value.filename, value.content_type, data)
                body.size += len(data)
            else:
                text = value if isinstance(value, str) else bytes(value).decode("utf-8", "replace")
                body.fields.append((key, text))
                body.size += len(text)
        return body
    raw = await request.read()
    if not raw:
        return Body(kind="none")
    if ctype.startswith(("image/", "video/", "audio/")) or ctype == "application/octet-stream":
        return Body(kind="raw", raw=raw, size=len(raw))
    try:
        parsed = json.loads(raw)
    except ValueError:
        raise BodyError(
            "We could not parse the JSON body of your request. The emulator expects a JSON object or "
            "multipart/form-data."
        ) from None
    return Body(kind="json", json=parsed, size=len(raw))



def request_body(request: web.Request) -> Body:
    """The body the middleware read (and recorded) for this request."""
    return request[BODY_KEY]


# --- answering -------------------------------------------------------------------------------------------


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


# --- webhooks the emulated API sends ---------------------------------------------------------------------


@dataclass
class SentWebhook:
    """One delivery attempt of a webhook: where, what, and the answer (`status` None: no answer came)."""

    url: str
    body: bytes = field(repr=False)
    headers: dict[str, str]
    status: int | None = None
    attempt: int = 1

    @property
    def json(self) -> Any:
        return json.loads(self.body)


#: Builds a finished job's webhooks: (url, body, headers) for each, or none. Called once the job has ended.
Announce = Callable[[str], Awaitable[list[tuple[str, bytes, dict[str, str]]]]]


class WebhookSender:
    """Sends an emulator's webhooks once its jobs end, retrying as providers do, and records every attempt.

    `lose_next` drops that many of the next deliveries (every attempt of them), as a network can lose them; a
    receiver answering anything but 2xx (or nothing) gets the delivery again, up to `attempts` times.
    """

    def __init__(self, offline: Any, *, attempts: int = 5, backoff: float = 0.05, timeout: float = 10.0) -> None:
        self.offline = offline
        self.attempts = attempts
        self.backoff = backoff
        self.timeout = timeout
        self.sent: list[SentWebhook] = []
        self.lose_next = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None

    def after_job(self, video_id: str, announce: Announce) -> None:
        """Once the renderer's job `video_id` has ended, send what `announce(video_id)` builds."""
        task = asyncio.get_running_loop().create_task(self._watch(video_id, announce), name=f"webhook-{video_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def delivered(self, url_part: str = "") -> list[SentWebhook]:
        """Deliveries a receiver acknowledged (2xx), optionally only those whose URL contains `url_part`."""
        return [w for w in self.sent if w.status is not None and 200 <= w.status < 300 and url_part in w.url]

    async def _watch(self, video_id: str, announce: Announce) -> None:
        try:
            while True:
                video = await self.offline.retrieve_video(video_id)
                if str(getattr(video, "status", "")) in ("completed", "failed"):
                    break
                await asyncio.sleep(min(0.25, max(0.002, self.offline.seconds_left(video_id))))
            for url, body, headers in await announce(video_id):
                if self.lose_next > 0:
                    self.lose_next -= 1
                    log.info("emulator: lost the webhook to %s on purpose", url)
                    continue
                await self._deliver(url, body, headers)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("emulator: sending the webhook of %s failed", video_id)

    async def _deliver(self, url: str, body: bytes, headers: dict[str, str]) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        for attempt in range(1, self.attempts + 1):
            record = SentWebhook(url=url, body=body, headers=dict(headers), attempt=attempt)
            self.sent.append(record)
            try:
                async with self._session.post(url, data=body, headers=headers) as response:
                    record.status = response.status
                    await response.read()
                if 200 <= response.status < 300:
                    return
            except (aiohttp.ClientError, TimeoutError) as exc:
                log.debug("emulator: webhook to %s got no answer: %s", url, type(exc).__name__)
            await asyncio.sleep(self.backoff * 2 ** (attempt - 1))

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._session is not None:
            await self._session.close()
            self._session = None
