"""The request loop under `HTTPVideosAPI`: one shared `httpx.AsyncClient` and the retries around every call.

The client carries the base URL, the auth header (`Authorization: Bearer …` or Azure's `api-key: …`), timeouts
and connection limits. Every call goes through one retry loop that maps answers to `bot.errors` types (through
`bot.backends.openai.errors`), keeping the API's own message and adding a hint that says what to do next.

Retry policy (what is retried, and why):

- GET and DELETE are retried on rate limits (429, not `insufficient_quota`), 5xx, 408, timeouts and broken
  connections: repeating them changes nothing at the API.
- POST is retried on rate limits (a 429 means the request was turned away before any work was done) and
  when the request never left this machine (connection refused, connect or pool timeout).
- POST is *not* retried, by default, after a 5xx, a read timeout or a connection dropped mid-request: the
  job may already exist, and a second create is a second billed video. Every POST carries one
  `Idempotency-Key` that stays the same across its retries, so an endpoint that honours the header can
  drop duplicates, but OpenAI does not document the header for this API and its official SDK leaves its
  idempotency header unset, so nothing says the key is honoured. `retry_unsafe_posts=True` opts in for
  endpoints known to deduplicate. An `x-should-retry` answer header from the server overrides either way.
- Waits use exponential backoff with full jitter, capped at `backoff_max`. When the server says how long to
  wait (`retry-after-ms`, `Retry-After` in seconds or as an HTTP date, or for 429s `x-ratelimit-reset-*`)
  that wait is used instead; one longer than `max_retry_after` raises at once (with `retry_after` set) so
  the caller can reschedule instead of holding a task asleep.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Self, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from bot.backends.openai.errors import error_info, map_api_error
from bot.config import AuthStyle
from bot.errors import APIUnavailable, ConfigError, RateLimited, VideosAPIError

__all__ = ["Call", "Success", "VideosTransport", "validate"]

log = logging.getLogger(__name__)

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

#: Error bodies are small JSON documents; a gateway's HTML page is read only this far.
MAX_ERROR_BODY = 64 * 1024
#: How much of an error body goes into `log_detail`.
LOG_BODY_CHARS = 2000

_IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "DELETE", "PUT", "OPTIONS"})
# These never put a byte of the request on the wire, so even a create can be sent again.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


@dataclass
class Call:
    """One logical request; `attempt` builds a fresh request each try (files re-opened every time)."""

    method: str
    path: str
    operation: str
    params: dict[str, Any] | None = None
    json: Any = None
    form: dict[str, str] | None = None
    files: dict[str, tuple[Path, str]] = field(default_factory=dict)  # field -> (path, content type)
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Success:
    """An attempt's parsed result (a wrapper, so a result is never mistaken for an error)."""

    value: Any


class VideosTransport:
    """Sends `Call`s to a Videos API endpoint, retrying what is safe to retry (see the module docstring).

    Use as an async context manager, or call `aclose()` when done.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        auth_style: AuthStyle = AuthStyle.BEARER,
        timeout: float = 60.0,
        connect_timeout: float = 10.0,
        max_retries: int = 4,
        backoff_base: float = 0.5,
        backoff_max: float = 20.0,
        max_retry_after: float = 60.0,
        retry_unsafe_posts: bool = False,
        retry_rate_limits: bool = True,
        max_connections: int = 20,
        transport: httpx.AsyncBaseTransport | None = None,
        rng: random.Random | None = None,
    ) -> None:
        """Point the client at `base_url` (e.g. `https://api.openai.com/v1`) with `api_key`.

        `timeout` bounds each read, write and pool wait (a download may take longer in total, as long as
        bytes keep coming); `max_retries` is the number of retries after the first attempt; `backoff_base` /
        `backoff_max` shape the jittered exponential waits; a server-requested wait above `max_retry_after`
        raises instead of sleeping. `retry_unsafe_posts` also retries POSTs after a 5xx or a read timeout,
        for endpoints known to honour `Idempotency-Key`. `retry_rate_limits=False` hands every 429 to the caller
        at once (the core's limiter then pauses the whole backend instead of each request retrying on its own).
        `transport` and `rng` are for tests.
        """
        if not api_key:
            raise ConfigError("OPENAI_API_KEY is empty: set the Videos API key.")
        if max_retries < 0:
            raise ValueError("max_retries must not be negative")
        self.base_url = base_url.rstrip("/")
        self.auth_style = AuthStyle(auth_style)
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.max_retry_after = max_retry_after
        self.retry_unsafe_posts = retry_unsafe_posts
        self.retry_rate_limits = retry_rate_limits
        self._rng = rng or random.Random()
        auth = {"Authorization": f"Bearer {api_key}"} if self.auth_style is AuthStyle.BEARER else {"api-key": api_key}
        self._slots = asyncio.Semaphore(max_connections)
        self._client = httpx.AsyncClient(
            base_url=self.base_url + "/",
            headers={**auth, "Accept": "application/json", "User-Agent": "soracast/0.1"},
            timeout=httpx.Timeout(timeout, connect=min(connect_timeout, timeout)),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            transport=transport,
            # The API answers in place; a redirect would be a misconfigured base URL, better seen than followed.
            follow_redirects=False,
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the shared connection pool."""
        await self._client.aclose()

    async def _request_model(self, call: Call, model: type[M]) -> M:
        async def parse(response: httpx.Response) -> M:
            return validate(model, await self._json(response, call.operation), call.operation)

        return await self._request(call, parse)

    async def _request(self, call: Call, on_success: Callable[[httpx.Response], Awaitable[T]]) -> T:
        attempts = self.max_retries + 1
        if call.method == "POST":
            # One key for the logical request, so an endpoint that honours it sees retries as the same POST.
            call.headers.setdefault("Idempotency-Key", f"soracast-{uuid.uuid4()}")
        attempt = 0
        while True:
            attempt += 1
            outcome, delay = await self._attempt(call, on_success, attempt, attempts)
            if isinstance(outcome, Success):
                return outcome.value
            error = outcome
            if delay is None:
                raise error
            log.warning(
                "Videos API %s %s failed (%s); retry %d/%d in %.2fs",
                call.method,
                call.path,
                error.code,
                attempt,
                self.max_retries,
                delay,
            )
            await asyncio.sleep(delay)

    async def _attempt(
        self,
        call: Call,
        on_success: Callable[[httpx.Response], Awaitable[T]],
        attempt: int,
        attempts: int,
    ) -> tuple[Success | VideosAPIError, float | None]:
        """One try: `(Success(value), None)`, or `(error, seconds to wait before retrying or None)`."""
        # Requests wait here rather than in httpcore's pool, whose hand-out of connections costs time in
        # proportion to the queue: a thousand tracked jobs would otherwise spend their CPU waiting in line.
        async with self._slots:
            return await self._attempt_now(call, on_success, attempt, attempts)

    async def _attempt_now(
        self,
        call: Call,
        on_success: Callable[[httpx.Response], Awaitable[T]],
        attempt: int,
        attempts: int,
    ) -> tuple[Success | VideosAPIError, float | None]:
        with contextlib.ExitStack() as files:
            opened: dict[str, tuple[str, IO[bytes], str]] = {}
            for name, (path, content_type) in call.files.items():
                # Re-opened per attempt: a retried upload must start from the first byte again.
                handle = files.enter_context(await asyncio.to_thread(path.open, "rb"))
                opened[name] = (path.name, handle, content_type)
            request = self._client.build_request(
                call.method,
                call.path,
                params=call.params,
                json=call.json,
                data=call.form,
                files=opened or None,
                headers=call.headers,
            )
            sent = False
            try:
                response = await self._client.send(request, stream=True)
                sent = True
                try:
                    log.debug(
                        "Videos API %s %s -> %d (attempt %d/%d)",
                        call.method,
                        call.path,
                        response.status_code,
                        attempt,
                        attempts,
                    )
                    if response.status_code < 400:
                        return Success(await on_success(response)), None
                    body = await _read_limited(response, MAX_ERROR_BODY)
                finally:
                    await response.aclose()
            except httpx.TransportError as exc:
                log.debug(
                    "Videos API %s %s -> %s (attempt %d/%d)",
                    call.method,
                    call.path,
                    type(exc).__name__,
                    attempt,
                    attempts,
                )
                error = _transport_error(exc, call)
                maybe_sent = sent or not isinstance(exc, _NOT_SENT)
                error.maybe_sent = maybe_sent
                safe = not maybe_sent or call.method in _IDEMPOTENT_METHODS or self.retry_unsafe_posts
                return error, (self._backoff(attempt) if safe and attempt < attempts else None)
        error = self._map_error(response, body, call)
        return error, self._retry_delay(error, response, call, attempt, attempts)

    def _retry_delay(
        self, error: VideosAPIError, response: httpx.Response, call: Call, attempt: int, attempts: int
    ) -> float | None:
        if attempt >= attempts or not isinstance(error, RateLimited | APIUnavailable):
            return None
        if isinstance(error, RateLimited) and not self.retry_rate_limits:
            return None
        should_retry = response.headers.get("x-should-retry", "").lower()
        if should_retry == "false":
            return None
        if isinstance(error, APIUnavailable) and call.method not in _IDEMPOTENT_METHODS:
            # The server may have acted on this POST; see the module docstring.
            if not (self.retry_unsafe_posts or should_retry == "true"):
                return None
        if error.retry_after is not None:
            # Over the cap we raise rather than sleep: the caller reschedules with error.retry_after.
            return error.retry_after if error.retry_after <= self.max_retry_after else None
        return self._backoff(attempt)

    def _backoff(self, attempt: int) -> float:
        # Full jitter spreads many clients' retries apart instead of having them return in step.
        ceiling = min(self.backoff_max, self.backoff_base * 2 ** (attempt - 1))
        return self._rng.uniform(0, ceiling)

    # --- answers ----------------------------------------------------------------------------------------

    async def _json(self, response: httpx.Response, operation: str) -> Any:
        body = await response.aread()
        try:
            return json.loads(body)
        except ValueError:
            raise VideosAPIError(
                "The Videos API sent an answer soracast could not read.",
                hint="Check that OPENAI_BASE_URL points at a Videos API endpoint (it usually ends in /v1).",
                status=response.status_code,
                log_detail=f"{operation}: non-JSON body: {body[:LOG_BODY_CHARS].decode('utf-8', 'replace')}",
            ) from None

    def _map_error(self, response: httpx.Response, body: bytes, call: Call) -> VideosAPIError:
        info = error_info(body)
        detail = f"{call.method} {call.path} -> {response.status_code}: {info.raw[:LOG_BODY_CHARS]}"
        return map_api_error(response.status_code, info, response.headers, operation=call.operation, log_detail=detail)


def validate(model: type[M], data: Any, operation: str) -> M:
    """`data` as `model`, or a `VideosAPIError` saying the endpoint's answer did not fit."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise VideosAPIError(
            "The Videos API sent an answer soracast could not understand.",
            hint="The endpoint may not be a compatible Videos API; tell the bot's operator.",
            log_detail=f"{operation}: {exc.error_count()} validation errors: {str(exc)[:LOG_BODY_CHARS]}",
        ) from None


async def _read_limited(response: httpx.Response, limit: int) -> bytes:
    buffer = bytearray()
    async for chunk in response.aiter_bytes():
        buffer += chunk
        if len(buffer) >= limit:
            break
    return bytes(buffer[:limit])


def _transport_error(exc: httpx.TransportError, call: Call) -> APIUnavailable:
    if isinstance(exc, httpx.TimeoutException):
        message = "The Videos API did not answer in time."
    elif isinstance(exc, httpx.ConnectError):
        message = "Could not connect to the Videos API."
    else:
        message = "The connection to the Videos API broke off."
    return APIUnavailable(
        message,
        hint="Try again in a few minutes; if it keeps happening, the bot's operator should check OPENAI_BASE_URL "
        "and the network.",
        # The exception text names host and port at most; no headers are ever part of it.
        log_detail=f"{call.method} {call.path}: {type(exc).__name__}: {exc}",
    )
