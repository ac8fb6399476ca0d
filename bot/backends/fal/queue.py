"""fal-client, driven the way soracast needs: another fal host when asked, one attempt per submit, closable.

fal-client takes only a key and a timeout. Its hosts (the queue, the REST host that issues storage tokens, the
CDN uploads go to) are module constants fixed at import, its retry loop repeats any request — the submit too —
after a timeout, a broken connection, a 429 or a gateway 5xx, and its HTTP clients cannot be closed. A second
submit of the same job is a second paid video, so soracast gives fal-client the HTTP clients it would otherwise
build itself (same `Authorization: Key …` header, fal's own backup-domain transport underneath), wrapped in
`FalTransport`, which

* sends requests for fal's hosts (queue, REST, CDN, platform API) to `fal_url` instead when one is configured
  (the emulator serves them all) — for this client only, so nothing else in the process is redirected;
* ends every POST to the queue (a submit) after one attempt: an error answer, a timeout, a connection broken
  after sending — or one never made, so the user hears at once instead of after half a minute of retries — is
  raised as a `SubmitFailed`, which fal-client's retry loop does not catch. Status polls, results, cancels and
  uploads keep fal-client's retries: repeating them is harmless.

A job is resumed after a restart from its id alone (the core stores nothing else), so the id is the submit
answer's three URLs and request id, as JSON (`FalJob`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import fal_client
import httpx
from fal_client.auth import AuthCredentials
from fal_client.client import CDN_URL, QUEUE_URL_FORMAT, REST_URL, AsyncBackupDomainTransport, AsyncCDNTokenManager
from pydantic import BaseModel, ValidationError

from bot.errors import APINotFound


class SubmitFailed(Exception):
    """A submit that soracast will not repeat: `response` is fal's error answer, or None when none came.

    Deliberately not an `httpx.HTTPError` nor a `FalClientHTTPError`, which fal-client's retry loop catches.
    """

    def __init__(self, response: httpx.Response | None, cause: Exception | None = None, *, sent: bool) -> None:
        super().__init__(type(cause).__name__ if cause is not None else f"HTTP {response and response.status_code}")
        self.response = response
        self.cause = cause
        #: False only when the connection was never made (nothing can have reached fal).
        self.sent = sent


#: fal's platform API (model search, pricing); fal-client does not use it, `soracast check` does.
PLATFORM_URL = "https://api.fal.ai"
#: Every fal host a client of soracast's talks to, as URL prefixes.
FAL_HOSTS = (QUEUE_URL_FORMAT, REST_URL + "/", CDN_URL + "/", PLATFORM_URL + "/")


def fal_url_for(url: str, fal_url: str | None) -> str:
    """`url` on the configured host instead of fal's own, when one is configured (`SORACAST_FAL_QUEUE_URL`)."""
    if fal_url is None:
        return url
    for prefix in FAL_HOSTS:
        if url.startswith(prefix):
            return fal_url.rstrip("/") + "/" + url[len(prefix) :]
    return url


class FalTransport(httpx.AsyncBaseTransport):
    """fal-client's transport for one client: fal's hosts swapped when asked, every queue POST sent once."""

    def __init__(self, inner: httpx.AsyncBaseTransport, *, fal_url: str | None = None) -> None:
        self._inner = inner
        self._to = fal_url

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        is_submit = request.method == "POST" and str(request.url).startswith(QUEUE_URL_FORMAT)
        request = self._redirected(request)
        if not is_submit:
            return await self._inner.handle_async_request(request)
        try:
            response = await self._inner.handle_async_request(request)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise SubmitFailed(None, exc, sent=False) from exc
        except httpx.TransportError as exc:
            # The request may have reached fal (a timeout or a connection lost after sending): not repeated.
            raise SubmitFailed(None, exc, sent=True) from exc
        if response.status_code >= 400:
            await response.aread()
            await response.aclose()
            raise SubmitFailed(response, sent=True)
        return response

    def _redirected(self, request: httpx.Request) -> httpx.Request:
        url = str(request.url)
        moved = fal_url_for(url, self._to)
        if moved == url:
            return request
        target = httpx.URL(moved)
        headers = request.headers.copy()
        headers["Host"] = target.netloc.decode("ascii")
        return httpx.Request(
            request.method, target, headers=headers, stream=request.stream, extensions=request.extensions
        )

    async def aclose(self) -> None:
        await self._inner.aclose()


USER_AGENT = f"fal-client/{fal_client.__version__} (soracast)"


def queue_http_client(key: str, *, timeout: float, queue_url: str | None = None) -> httpx.AsyncClient:
    """The HTTP client fal-client talks through (fal's headers, `FalTransport` over fal's own transport)."""
    return httpx.AsyncClient(
        transport=FalTransport(AsyncBackupDomainTransport(), fal_url=queue_url),
        headers={"Authorization": f"Key {key}", "User-Agent": USER_AGENT},
        timeout=timeout,
    )


class _TokenManager(AsyncCDNTokenManager):
    """fal-client's CDN token manager, asking the configured host for tokens when there is one."""

    def __init__(self, key: str, fal_url: str | None) -> None:
        super().__init__(AuthCredentials("Key", key))
        self._url = fal_url_for(self._url, fal_url)


class QueueClient(fal_client.AsyncClient):
    """`fal_client.AsyncClient` on soracast's HTTP clients (see the module docstring for why)."""

    def __init__(self, key: str, http: httpx.AsyncClient, *, timeout: float, fal_url: str | None = None) -> None:
        super().__init__(key=key, default_timeout=timeout)
        self._http = http
        # Uploads go to fal's CDN without the key (they carry a storage token): a client of their own.
        self._cdn = httpx.AsyncClient(
            transport=FalTransport(httpx.AsyncHTTPTransport(), fal_url=fal_url),
            headers={"User-Agent": USER_AGENT},
            timeout=timeout,
        )
        self._tokens = _TokenManager(key, fal_url)

    # fal-client awaits `self._client` for the HTTP client of every call; this one is made already.
    @property
    def _client(self) -> Any:  # type: ignore[override]
        return self._ready()

    async def _ready(self) -> httpx.AsyncClient:
        return self._http

    @property
    def http(self) -> httpx.AsyncClient:
        """The HTTP client with the key and host (for calls fal-client has no method for: `soracast check`)."""
        return self._http

    # Likewise for the storage token manager, and the CDN client it opens (and would close) per upload.
    @property
    def _token_manager(self) -> Any:  # type: ignore[override]
        return self._tokens_ready()

    async def _tokens_ready(self) -> AsyncCDNTokenManager:
        return self._tokens

    @asynccontextmanager
    async def _cdn_client(self) -> AsyncIterator[httpx.AsyncClient]:
        yield self._cdn

    def handle(self, job: FalJob) -> fal_client.AsyncRequestHandle:
        """The request handle of a job, on this client, following the URLs fal answered the submit with."""
        return fal_client.AsyncRequestHandle(
            request_id=job.request_id,
            response_url=job.response_url,
            status_url=job.status_url,
            cancel_url=job.cancel_url,
            client=self._http,
        )

    async def aclose(self) -> None:
        await self._http.aclose()
        await self._cdn.aclose()


class FalJob(BaseModel):
    """What soracast keeps of a fal request: its id and the URLs fal said to follow (they drop sub-paths)."""

    request_id: str
    status_url: str
    response_url: str
    cancel_url: str

    @classmethod
    def of(cls, handle: fal_client.AsyncRequestHandle) -> FalJob:
        return cls(
            request_id=handle.request_id,
            status_url=handle.status_url,
            response_url=handle.response_url,
            cancel_url=handle.cancel_url,
        )

    def encode(self) -> str:
        """The job id the core stores."""
        return self.model_dump_json()

    @classmethod
    def decode(cls, job_id: str) -> FalJob:
        try:
            return cls.model_validate_json(job_id)
        except ValidationError:
            raise APINotFound(
                "This video's fal job id is not one soracast can read.", hint="Make the video again with /sora."
            ) from None
