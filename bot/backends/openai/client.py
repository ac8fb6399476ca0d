"""`HTTPVideosAPI`: the `VideosAPI` protocol over HTTP, for OpenAI's Videos API and compatible endpoints.

One shared `httpx.AsyncClient` carries the base URL, the auth header (`Authorization: Bearer …` or Azure's
`api-key: …`), timeouts and connection limits. Every call goes through one retry loop that maps answers to
`bot.errors` types, keeping the API's own message and adding a hint that says what to do next.

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

Uploads are streamed from disk and re-opened for every attempt; downloads are streamed into a temporary file
beside the destination and renamed into place only when complete.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import mimetypes
import os
import random
import re
import tempfile
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import IO, Any, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ValidationError

from bot.backends.openai.api import PolledVideo
from bot.backends.openai.schemas import (
    ContentVariant,
    DeletedVideo,
    ImageReference,
    Video,
    VideoCharacter,
    VideoList,
)
from bot.config import AuthStyle, Settings
from bot.errors import (
    APIAuthError,
    APINotFound,
    APIRequestRejected,
    APIUnavailable,
    ConfigError,
    HumanLikenessRefused,
    InvalidClip,
    InvalidInput,
    ModerationBlocked,
    QuotaExhausted,
    RateLimited,
    VideosAPIError,
)

__all__ = ["HTTPVideosAPI", "parse_retry_after"]

log = logging.getLogger(__name__)

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

#: Error bodies are small JSON documents; a gateway's HTML page is read only this far.
MAX_ERROR_BODY = 64 * 1024
#: How much of an error body goes into `log_detail`.
LOG_BODY_CHARS = 2000
DOWNLOAD_CHUNK = 256 * 1024

_IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "DELETE", "PUT", "OPTIONS"})
# These never put a byte of the request on the wire, so even a create can be sent again.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)

_MODERATION = re.compile(r"moderation|content_policy|content_filter|safety", re.IGNORECASE)
# The real API's wording for a human-likeness refusal is not documented; these words cover the ways a
# refusal of a clip showing a person can be phrased, and are matched only on character uploads.
_LIKENESS_WORDS = re.compile(
    r"likeness|\bhumans?\b|\breal[ _-]?(?:person|people|individual)s?\b|\bfaces?\b|\bpersons?\b|\bpeople\b",
    re.IGNORECASE,
)
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|us|µs|ns|h|m|s)")
_DURATION_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}


# --- parsing helpers -------------------------------------------------------------------------------------


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


def _error_info(body: bytes) -> APIErrorInfo:
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


# --- the client ------------------------------------------------------------------------------------------


@dataclass
class _Call:
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
class _Success:
    """An attempt's parsed result (a wrapper, so a result is never mistaken for an error)."""

    value: Any


class HTTPVideosAPI:
    """The Videos API over HTTP (OpenAI, Azure OpenAI's v1 surface, or any compatible gateway).

    Errors are `bot.errors.VideosAPIError` subclasses; see the module docstring for the retry policy.
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

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> HTTPVideosAPI:
        """The client the app uses: base URL, key, auth style, timeout and retries from the settings."""
        if settings.openai_api_key is None:
            raise ConfigError("OPENAI_API_KEY is not set: the HTTP Videos API client needs a key.")
        options: dict[str, Any] = {
            "auth_style": settings.api_auth_style,
            "timeout": settings.api_timeout,
            "max_retries": settings.api_max_retries,
        }
        options.update(overrides)
        return cls(settings.api_base_url, settings.openai_api_key.get_secret_value(), **options)

    def __repr__(self) -> str:
        return f"HTTPVideosAPI(base_url={self.base_url!r}, auth_style={self.auth_style.value!r})"

    async def __aenter__(self) -> HTTPVideosAPI:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the shared connection pool."""
        await self._client.aclose()

    # --- characters -------------------------------------------------------------------------------------

    async def create_character(self, name: str, clip: Path) -> VideoCharacter:
        """Upload `clip` (an MP4) as a character called `name` (multipart `name` + `video`)."""
        clip = Path(clip)
        await self._check_file(clip, InvalidClip, "clip")
        call = _Call("POST", "/videos/characters", "create_character", form={"name": name})
        call.files["video"] = (clip, "video/mp4")
        return await self._request_model(call, VideoCharacter)

    async def get_character(self, character_id: str) -> VideoCharacter:
        """A character by id (`char_…`)."""
        return await self._request_model(
            _Call("GET", f"/videos/characters/{_segment(character_id)}", "get_character"), VideoCharacter
        )

    # --- videos -----------------------------------------------------------------------------------------

    async def create_video(
        self,
        prompt: str,
        *,
        model: str | None = None,
        seconds: str | None = None,
        size: str | None = None,
        character_ids: Sequence[str] = (),
        image: Path | ImageReference | None = None,
    ) -> Video:
        """Queue a video. JSON body, or multipart when `image` is a local file to upload as `input_reference`."""
        scalars = {"prompt": prompt, "model": model, "seconds": seconds, "size": size}
        scalars = {k: v for k, v in scalars.items() if v is not None}
        if isinstance(image, Path):
            await self._check_file(image, InvalidInput, "image")
            form = dict(scalars)
            # Explicit indices: the SDK-style `characters[][id]` is ambiguous once an item has more than one
            # key, and an account of real use reports the API refusing that flattening while accepting
            # `characters[0][id]`; a JSON string in one field is a guess no public client was seen making.
            for index, character_id in enumerate(character_ids):
                form[f"characters[{index}][id]"] = character_id
            call = _Call("POST", "/videos", "create_video", form=form)
            call.files["input_reference"] = (image, mimetypes.guess_type(image.name)[0] or "application/octet-stream")
        else:
            body: dict[str, Any] = dict(scalars)
            if character_ids:
                body["characters"] = [{"id": character_id} for character_id in character_ids]
            if isinstance(image, ImageReference):
                body["input_reference"] = _reference_json(image)
            call = _Call("POST", "/videos", "create_video", json=body)
        return await self._request_model(call, Video)

    async def retrieve_video(self, video_id: str) -> PolledVideo:
        """The video's current state, with `poll_after` from `openai-poll-after-ms` (None when absent)."""

        async def parse(response: httpx.Response) -> PolledVideo:
            data = await self._json(response, "retrieve_video")
            video = _validate(PolledVideo, data, "retrieve_video")
            return video.model_copy(update={"poll_after": _poll_after(response.headers)})

        # A `Deprecation` header on this answer is informational; nothing here depends on it.
        return await self._request(_Call("GET", f"/videos/{_segment(video_id)}", "retrieve_video"), parse)

    async def list_videos(self, *, limit: int = 20, after: str | None = None, order: str = "desc") -> VideoList:
        """One page of videos; pass the page's `last_id` as `after` while `has_more`."""
        params: dict[str, Any] = {"limit": limit, "order": order}
        if after:
            params["after"] = after
        return await self._request_model(_Call("GET", "/videos", "list_videos", params=params), VideoList)

    async def list_models(self) -> list[str]:
        """The model ids `GET /models` lists, asked once without retries (`soracast check` wants a quick answer)."""
        call = _Call("GET", "/models", "list_models")

        async def parse(response: httpx.Response) -> list[str]:
            body = await self._json(response, call.operation)
            data = body.get("data") if isinstance(body, dict) else None
            if not isinstance(data, list):
                raise APIUnavailable(
                    "The endpoint's /models answer is not an OpenAI-shape model list.",
                    hint="Check OPENAI_BASE_URL: it should end in /v1 (or the gateway's equivalent).",
                )
            return [str(m["id"]) for m in data if isinstance(m, dict) and "id" in m]

        outcome, _ = await self._attempt(call, parse, 1, 1)
        if isinstance(outcome, _Success):
            return list(outcome.value)
        raise outcome

    async def delete_video(self, video_id: str) -> DeletedVideo:
        """Delete a video and its assets at the API."""
        return await self._request_model(_Call("DELETE", f"/videos/{_segment(video_id)}", "delete_video"), DeletedVideo)

    async def remix_video(self, video_id: str, prompt: str) -> Video:
        """A new video from a completed one with a new prompt."""
        call = _Call("POST", f"/videos/{_segment(video_id)}/remix", "remix_video", json={"prompt": prompt})
        return await self._request_model(call, Video)

    async def extend_video(self, video_id: str, prompt: str, seconds: str) -> Video:
        """Continue a completed video by `seconds` more (`POST /videos/extensions`)."""
        body = {"video": {"id": video_id}, "prompt": prompt, "seconds": seconds}
        return await self._request_model(_Call("POST", "/videos/extensions", "extend_video", json=body), Video)

    async def edit_video(self, video_id: str, prompt: str) -> Video:
        """A targeted edit of a completed video (`POST /videos/edits`)."""
        body = {"video": {"id": video_id}, "prompt": prompt}
        return await self._request_model(_Call("POST", "/videos/edits", "edit_video", json=body), Video)

    async def download_content(self, video_id: str, dest: Path, variant: ContentVariant = ContentVariant.VIDEO) -> Path:
        """Stream an asset to `dest`: written to a temporary file beside it, renamed into place when complete."""
        dest = Path(dest)
        call = _Call(
            "GET",
            f"/videos/{_segment(video_id)}/content",
            "download_content",
            params={"variant": ContentVariant(variant).value},
            headers={"Accept": "*/*"},
        )

        async def save(response: httpx.Response) -> Path:
            await asyncio.to_thread(dest.parent.mkdir, parents=True, exist_ok=True)
            # Same directory as dest, so the final rename stays on one filesystem and is atomic.
            fd, tmp_name = await asyncio.to_thread(
                tempfile.mkstemp, prefix=f".{dest.name}.", suffix=".part", dir=dest.parent
            )
            tmp = Path(tmp_name)
            try:
                with os.fdopen(fd, "wb") as out:
                    async for chunk in response.aiter_bytes(DOWNLOAD_CHUNK):
                        await asyncio.to_thread(out.write, chunk)
                    await asyncio.to_thread(out.flush)
                    await asyncio.to_thread(os.fsync, out.fileno())
                await asyncio.to_thread(os.replace, tmp, dest)
            except BaseException:
                # Synchronous on purpose: a second cancellation must not leave the partial file behind.
                _discard(tmp)
                raise
            return dest

        return await self._request(call, save)

    # --- the request loop -------------------------------------------------------------------------------

    async def _request_model(self, call: _Call, model: type[M]) -> M:
        async def parse(response: httpx.Response) -> M:
            return _validate(model, await self._json(response, call.operation), call.operation)

        return await self._request(call, parse)

    async def _request(self, call: _Call, on_success: Callable[[httpx.Response], Awaitable[T]]) -> T:
        attempts = self.max_retries + 1
        if call.method == "POST":
            # One key for the logical request, so an endpoint that honours it sees retries as the same POST.
            call.headers.setdefault("Idempotency-Key", f"soracast-{uuid.uuid4()}")
        attempt = 0
        while True:
            attempt += 1
            outcome, delay = await self._attempt(call, on_success, attempt, attempts)
            if isinstance(outcome, _Success):
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
        call: _Call,
        on_success: Callable[[httpx.Response], Awaitable[T]],
        attempt: int,
        attempts: int,
    ) -> tuple[_Success | VideosAPIError, float | None]:
        """One try: `(_Success(value), None)`, or `(error, seconds to wait before retrying or None)`."""
        # Requests wait here rather than in httpcore's pool, whose hand-out of connections costs time in
        # proportion to the queue: a thousand tracked jobs would otherwise spend their CPU waiting in line.
        async with self._slots:
            return await self._attempt_now(call, on_success, attempt, attempts)

    async def _attempt_now(
        self,
        call: _Call,
        on_success: Callable[[httpx.Response], Awaitable[T]],
        attempt: int,
        attempts: int,
    ) -> tuple[_Success | VideosAPIError, float | None]:
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
                        return _Success(await on_success(response)), None
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
        self, error: VideosAPIError, response: httpx.Response, call: _Call, attempt: int, attempts: int
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

    def _map_error(self, response: httpx.Response, body: bytes, call: _Call) -> VideosAPIError:
        info = _error_info(body)
        detail = f"{call.method} {call.path} -> {response.status_code}: {info.raw[:LOG_BODY_CHARS]}"
        return map_api_error(response.status_code, info, response.headers, operation=call.operation, log_detail=detail)

    async def _check_file(self, path: Path, error: type[InvalidInput], what: str) -> None:
        if not await asyncio.to_thread(path.is_file):
            raise error(f"The {what} file {path.name!r} could not be found.", hint="Upload it again.")


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


def _segment(value: str) -> str:
    # Ids come from users' commands too; quoting keeps "../x" or "a/b" inside one path segment.
    return quote(value, safe="")


def _validate(model: type[M], data: Any, operation: str) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise VideosAPIError(
            "The Videos API sent an answer soracast could not understand.",
            hint="The endpoint may not be a compatible Videos API; tell the bot's operator.",
            log_detail=f"{operation}: {exc.error_count()} validation errors: {str(exc)[:LOG_BODY_CHARS]}",
        ) from None


def _reference_json(reference: ImageReference) -> dict[str, Any]:
    return reference.model_dump(exclude_none=True)


def _discard(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()


def _poll_after(headers: httpx.Headers) -> float | None:
    raw = headers.get("openai-poll-after-ms")
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        return None
    return value / 1000 if value >= 0 else None


def _is_likeness(info: APIErrorInfo) -> bool:
    return any(_LIKENESS_WORDS.search(text) for text in (info.code or "", info.message) if text)


async def _read_limited(response: httpx.Response, limit: int) -> bytes:
    buffer = bytearray()
    async for chunk in response.aiter_bytes():
        buffer += chunk
        if len(buffer) >= limit:
            break
    return bytes(buffer[:limit])


def _transport_error(exc: httpx.TransportError, call: _Call) -> APIUnavailable:
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
