"""fal-client, driven the way soracast needs: another queue host when asked, one attempt per submit, closable.

fal-client takes only a key and a timeout. Its queue host is a module constant fixed at import, its retry loop
repeats any request — the submit too — after a timeout, a broken connection, a 429 or a gateway 5xx, and its
HTTP client cannot be closed. A second submit of the same job is a second paid video, so soracast gives
fal-client the HTTP client it would otherwise build itself (same `Authorization: Key …` header, fal's own
backup-domain transport underneath), wrapped in `QueueTransport`, which

* sends requests for fal's queue host to `queue_url` instead when one is configured — for this client only,
  so nothing else in the process is redirected;
* ends every POST (the only POST soracast makes is a submit) after one attempt: an error answer, a timeout,
  a connection broken after sending — or one never made, so the user hears at once instead of after half a
  minute of retries — is raised as a `SubmitFailed`, which fal-client's retry loop does not catch. Status
  polls, results and cancels keep fal-client's retries: repeating them is harmless.

A job is resumed after a restart from its id alone (the core stores nothing else), so the id is the submit
answer's three URLs and request id, as JSON (`FalJob`).
"""

from __future__ import annotations

from typing import Any

import fal_client
import httpx
from fal_client.client import QUEUE_URL_FORMAT, AsyncBackupDomainTransport
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


class QueueTransport(httpx.AsyncBaseTransport):
    """fal-client's transport for one client: the queue host swapped when asked, every POST sent once."""

    def __init__(self, inner: httpx.AsyncBaseTransport, *, queue_url: str | None = None) -> None:
        self._inner = inner
        self._from = QUEUE_URL_FORMAT
        self._to = queue_url.rstrip("/") + "/" if queue_url else None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        request = self._redirected(request)
        if request.method != "POST":
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
        if self._to is None or not url.startswith(self._from):
            return request
        target = httpx.URL(self._to + url[len(self._from) :])
        headers = request.headers.copy()
        headers["Host"] = target.netloc.decode("ascii")
        return httpx.Request(
            request.method, target, headers=headers, stream=request.stream, extensions=request.extensions
        )

    async def aclose(self) -> None:
        await self._inner.aclose()


def queue_http_client(key: str, *, timeout: float, queue_url: str | None = None) -> httpx.AsyncClient:
    """The HTTP client fal-client talks through (fal's headers, `QueueTransport` over fal's own transport)."""
    return httpx.AsyncClient(
        transport=QueueTransport(AsyncBackupDomainTransport(), queue_url=queue_url),
        headers={"Authorization": f"Key {key}", "User-Agent": f"fal-client/{fal_client.__version__} (soracast)"},
        timeout=timeout,
    )


class QueueClient(fal_client.AsyncClient):
    """`fal_client.AsyncClient` on soracast's HTTP client (see the module docstring for why)."""

    def __init__(self, key: str, http: httpx.AsyncClient, *, timeout: float) -> None:
        super().__init__(key=key, default_timeout=timeout)
        self._http = http

    # fal-client awaits `self._client` for the HTTP client of every call; this one is made already.
    @property
    def _client(self) -> Any:  # type: ignore[override]
        return self._ready()

    async def _ready(self) -> httpx.AsyncClient:
        return self._http

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
