"""fal's queue API through the official `fal-client`: Kling, Vidu and Veo reference-to-video models.

A job is a submit (`POST {queue}/{model id}`) answered with a request id and the URLs to follow for its
status, result and cancellation; soracast keeps all of them in the job id, so a job resumes after a restart
from that alone. Characters reach Kling as elements cited `@Element1` …, and Vidu and Veo as plain reference
images with the character's name in the prompt (`payload.py`, `prompt.py`). fal reports no percentage, only
a place in its queue while a job waits; finished videos are fetched from the URL in the result, without the
fal key (the URL names a public file host, which has no business seeing it).

How the client is driven — one attempt per submit, another host for tests — is in `queue.py`.

With `SORACAST_PUBLIC_URL` set, every submit asks fal to announce the job at `<public>/webhooks/fal/<generation
id>` (fal-client's `webhook_url`, sent as `?fal_webhook=`): fal then says when the job ends, and a submit whose
answer was lost is tied back to its generation by that URL instead of being submitted (and paid for) again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tempfile
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import fal_client
import httpx

from bot.backends.base import (
    BackendCheck,
    CharacterInput,
    JobState,
    JobStatus,
    ModelCapabilities,
    VideoRequest,
)
from bot.backends.fal.check import check_fal
from bot.backends.fal.errors import describe_body, failure_code, map_fal_error, read_error
from bot.backends.fal.models import FalModel, fal_models
from bot.backends.fal.payload import build_arguments, plan_request
from bot.backends.fal.queue import FalJob, QueueClient, SubmitFailed, queue_http_client
from bot.backends.fal.uploads import StillHost, hosting_account
from bot.config import Settings
from bot.errors import (
    APINotFound,
    APIRequestRejected,
    APIUnavailable,
    ConfigError,
    InvalidInput,
    VideosAPIError,
)
from bot.models import HostedReference

log = logging.getLogger(__name__)

DOWNLOAD_CHUNK = 1024 * 1024
#: fal's own queue host, for the account key (native ids are never used here, but the key names the account).
FAL_QUEUE = "queue.fal.run"


class FalBackend:
    """`VideoBackend` for fal's queue API and the models of `bot.backends.fal.models`."""

    service = "fal"
    #: fal's queue has no list of requests: a create whose answer was lost cannot be looked up.
    can_list_jobs = False

    def __init__(
        self,
        key: str,
        models: list[FalModel],
        *,
        queue_url: str | None = None,
        timeout: float = 60.0,
        name: str = "fal",
        account_key: str | None = None,
        webhook_url: str | None = None,
    ) -> None:
        if not key:
            raise ConfigError("FAL_KEY is empty: set the fal API key.")
        self.name = name
        self.account_key = account_key or f"fal@{queue_url or FAL_QUEUE}"
        self._models = models
        #: As configured (None: fal's own hosts), for `soracast check`; job URLs are built on `_queue_base`.
        self._queue_url = queue_url
        self._queue_base = (queue_url or f"https://{FAL_QUEUE}").rstrip("/")
        #: fal announces each job at this address followed by `/<generation id>` (None: no webhooks).
        self._webhook_url = webhook_url
        self.announces_jobs = webhook_url is not None
        self._client = QueueClient(
            key, queue_http_client(key, timeout=timeout, queue_url=queue_url), timeout=timeout, fal_url=queue_url
        )
        #: Whose CDN the stills are uploaded to: uploads are remembered under it (`HostsReferences`).
        self.hosting_account = hosting_account(key, queue_url)
        self._stills = StillHost(self._client, self.hosting_account)
        # Results name public file URLs: fetched without the key.
        self._files = httpx.AsyncClient(timeout=httpx.Timeout(timeout, connect=30.0), follow_redirects=True)
        #: Job id → the finished video's URL, from the poll that saw it finish until it is downloaded.
        self._videos: dict[str, str] = {}

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> FalBackend:
        """The backend the app uses: key, queue host and models from the settings (`key=` etc. override)."""
        key = overrides.pop("key", None)
        if key is None:
            if settings.fal_key is None:
                raise ConfigError("FAL_KEY is not set: the fal backend needs a key.")
            key = settings.fal_key.get_secret_value()
        options: dict[str, Any] = {
            "queue_url": settings.fal_queue_url,
            "timeout": settings.api_timeout,
            "webhook_url": settings.fal_webhook_url,
        }
        options.update(overrides)
        return cls(key, fal_models(settings.fal_models), **options)

    def __repr__(self) -> str:
        return f"FalBackend(name={self.name!r}, account={self.account_key!r})"

    # --- the protocol -----------------------------------------------------------------------------------

    def models(self) -> Sequence[ModelCapabilities]:
        return [m.caps for m in self._models]

    def compose_prompt(self, request: VideoRequest) -> str:
        # Planning checks every limit, so a request fal would refuse is refused here, before it is stored.
        return plan_request(self._model(request.model), request).prompt

    async def create_character(self, character: CharacterInput) -> str:
        raise InvalidInput("fal keeps no characters of its own; soracast sends their stills with each video.")

    async def host_references(self, request: VideoRequest) -> list[HostedReference]:
        # Checked first: a request fal would refuse uploads nothing.
        _, made = await self._stills.urls(plan_request(self._model(request.model), request))
        return made

    async def submit(self, request: VideoRequest, api_prompt: str) -> JobState:
        model = self._model(request.model)
        plan = plan_request(model, request)
        # Normally uploaded already (the core hosts a request's references just before its submit and remembers
        # them); what is missing is uploaded now.
        urls, _ = await self._stills.urls(plan)
        arguments = build_arguments(model, request, plan, api_prompt, urls)
        webhook = f"{self._webhook_url}/{request.request_key}" if self._webhook_url else None
        try:
            handle = await self._client.submit(model.id, arguments, webhook_url=webhook)
        except SubmitFailed as exc:
            raise _submit_error(exc, model) from None
        except (KeyError, ValueError, fal_client.FalClientError, httpx.HTTPError) as exc:
            # A success answer soracast cannot read: the job may exist at fal, so it is not sent again.
            error = APIUnavailable(
                "fal accepted the video but answered in a way soracast could not read.",
                hint="Check fal's dashboard before asking again: the video may be on its way there.",
                log_detail=f"submit: {type(exc).__name__}: {str(exc)[:300]}",
            )
            error.retryable = False
            raise error from None
        job = FalJob.of(handle)
        log.info("fal accepted %s as request %s", request.request_key, job.request_id)
        return JobState(id=job.encode(), status=JobStatus.QUEUED)

    def job_id_of(self, provider_id: str, model: str) -> str:
        """A request fal's webhook names, as its submit would have answered it (its app's request URLs)."""
        app = "/".join(self._model(model).id.split("/")[:2])
        base = f"{self._queue_base}/{app}/requests/{provider_id}"
        return FalJob(
            request_id=provider_id, status_url=f"{base}/status", response_url=base, cancel_url=f"{base}/cancel"
        ).encode()

    def provider_id_of(self, job_id: str) -> str:
        return FalJob.decode(job_id).request_id

    async def poll_many(self, job_ids: Sequence[str]) -> dict[str, JobState]:
        return {}

    async def find_job(self, request: VideoRequest, api_prompt: str, since: datetime) -> JobState | None:
        return None

    async def poll(self, job_id: str) -> JobState:
        handle = self._client.handle(FalJob.decode(job_id))
        status = await self._call("status", handle.status())
        if isinstance(status, fal_client.Queued):
            return JobState(id=job_id, status=JobStatus.QUEUED, queue_position=max(0, int(status.position)))
        if isinstance(status, fal_client.InProgress):
            return JobState(id=job_id, status=JobStatus.IN_PROGRESS)
        assert isinstance(status, fal_client.Completed)
        if status.error:
            return _failed(job_id, status.error_type, str(status.error))
        return await self._finished(job_id, handle)

    async def download(self, job_id: str, dest: Path) -> Path:
        url = self._videos.pop(job_id, None)
        if url is None:
            state = await self._finished(job_id, self._client.handle(FalJob.decode(job_id)))
            if state.status is not JobStatus.COMPLETED:
                raise APINotFound(state.error_message or "fal has no video for this job.", hint="Make it again.")
            url = self._videos.pop(job_id)
        await self._fetch(url, dest)
        return dest

    async def download_thumbnail(self, job_id: str, dest: Path) -> Path | None:
        return None

    async def cancel(self, job_id: str) -> None:
        handle = self._client.handle(FalJob.decode(job_id))
        try:
            await handle.cancel()
        except fal_client.FalClientHTTPError as exc:
            error = read_error(exc.response)
            if exc.status_code == 400 and "COMPLETED" in (exc.response.text or "").upper():
                return  # Finished already: nothing is waiting to be stopped.
            raise map_fal_error(error, log_detail=f"cancel -> {describe_body(exc.response)}") from None
        except httpx.HTTPError as exc:
            raise _unreachable("cancel", exc) from None

    async def delete(self, job_id: str) -> None:
        # fal's queue keeps no video soracast could delete; stopping a job that still waits is what is left.
        await self.cancel(job_id)

    async def check(self) -> BackendCheck:
        return await check_fal(self._client.http, self._models, self._queue_url)

    async def aclose(self) -> None:
        await self._client.aclose()
        await self._files.aclose()

    # --- internals --------------------------------------------------------------------------------------

    def _model(self, model: str) -> FalModel:
        for candidate in self._models:
            if model in candidate.caps.names:
                return candidate
        raise InvalidInput(f"{model!r} is not a fal model this bot offers.")

    async def _finished(self, job_id: str, handle: fal_client.AsyncRequestHandle) -> JobState:
        """A job fal reports complete: its result names the video, or says why there is none."""
        try:
            result = await handle.get()
        except fal_client.FalClientHTTPError as exc:
            error = read_error(exc.response)
            if exc.status_code in (404, 408, 429) or exc.status_code >= 500:
                raise map_fal_error(error, log_detail=f"result -> {describe_body(exc.response)}") from None
            return _failed(job_id, error.error_type, error.message)
        except httpx.HTTPError as exc:
            raise _unreachable("result", exc) from None
        except (KeyError, ValueError) as exc:
            raise _unreadable("result", exc) from None
        url = _video_url(result)
        if url is None:
            return _failed(job_id, None, "fal finished the job without a video.")
        self._videos[job_id] = url
        return JobState(id=job_id, status=JobStatus.COMPLETED, progress=100)

    async def _call(self, operation: str, call: Any) -> Any:
        try:
            return await call
        except fal_client.FalClientHTTPError as exc:
            detail = f"{operation} -> {describe_body(exc.response)}"
            raise map_fal_error(read_error(exc.response), log_detail=detail) from None
        except httpx.HTTPError as exc:
            raise _unreachable(operation, exc) from None
        except (KeyError, ValueError) as exc:
            raise _unreadable(operation, exc) from None

    async def _fetch(self, url: str, dest: Path) -> None:
        """Stream the video at `url` to `dest` (written beside it, renamed into place)."""
        await asyncio.to_thread(dest.parent.mkdir, parents=True, exist_ok=True)
        fd, tmp_name = await asyncio.to_thread(
            tempfile.mkstemp, prefix=f".{dest.name}.", suffix=".part", dir=dest.parent
        )
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            async with self._files.stream("GET", url) as response:
                if response.status_code in (404, 410):
                    raise APINotFound("fal's finished video is gone.", hint="It may have expired; make it again.")
                if response.status_code >= 400:
                    raise APIUnavailable(
                        f"fal's file host answered HTTP {response.status_code} for the finished video.",
                        hint="soracast tries again by itself.",
                        status=response.status_code,
                    )
                with await asyncio.to_thread(tmp.open, "wb") as out:
                    async for chunk in response.aiter_bytes(DOWNLOAD_CHUNK):
                        await asyncio.to_thread(out.write, chunk)
                    await asyncio.to_thread(out.flush)
                    await asyncio.to_thread(os.fsync, out.fileno())
            await asyncio.to_thread(os.replace, tmp, dest)
        except httpx.HTTPError as exc:
            _discard(tmp)
            raise APIUnavailable(
                "The connection broke off while downloading fal's video.",
                hint="soracast tries again by itself.",
                log_detail=f"download: {type(exc).__name__}",
            ) from None
        except BaseException:
            _discard(tmp)
            raise


def _video_url(result: Any) -> str | None:
    if not isinstance(result, dict):
        return None
    video = result.get("video")
    if isinstance(video, list):
        video = video[0] if video else None
    if isinstance(video, dict) and isinstance(video.get("url"), str):
        return str(video["url"])
    return None


def _failed(job_id: str, error_type: str | None, message: str) -> JobState:
    text = message.strip() or "no reason given"
    return JobState(
        id=job_id,
        status=JobStatus.FAILED,
        error_code=failure_code(error_type, text),
        error_message=f"fal could not make this video: {text}",
    )


def _submit_error(exc: SubmitFailed, model: FalModel) -> VideosAPIError:
    if exc.response is not None:
        error = read_error(exc.response)
        detail = f"submit -> {describe_body(exc.response)}"
        if error.status == 404:
            return APIRequestRejected(
                f"fal does not serve {model.id}: {error.message or 'not found'}",
                hint="The bot's operator should check SORACAST_FAL_MODELS against fal's model pages.",
                status=404,
                api_message=error.message,
                log_detail=detail,
            )
        return map_fal_error(error, log_detail=detail)
    if not exc.sent:
        unsent = APIUnavailable(
            "Could not reach fal; the video was not sent.",
            hint="soracast tries again by itself; if it keeps happening, the bot's operator should check the network.",
            log_detail=f"submit: {type(exc.cause).__name__}",
        )
        unsent.maybe_sent = False
        return unsent
    # fal has no way to look a request up by soracast's key, so the core decides what to do about a create whose
    # answer was lost (it sends it again, once, and says so in the log).
    return APIUnavailable(
        "The connection to fal broke off after the video was sent.",
        hint="soracast checks and tries again by itself.",
        log_detail=f"submit: {type(exc.cause).__name__}",
    )


def _unreachable(operation: str, exc: Exception) -> APIUnavailable:
    return APIUnavailable(
        "Could not reach fal.",
        hint="soracast tries again by itself; if it keeps happening, the bot's operator should check the network.",
        log_detail=f"{operation}: {type(exc).__name__}",
    )


def _unreadable(operation: str, exc: Exception) -> APIUnavailable:
    return APIUnavailable(
        "fal sent an answer soracast could not read.",
        hint="soracast tries again by itself.",
        log_detail=f"{operation}: {type(exc).__name__}: {str(exc)[:300]}",
    )


def _discard(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()
