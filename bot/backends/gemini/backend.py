"""Gemini Omni Flash through the Gemini API's Interactions API, with Google's `google-genai` SDK.

Jobs run in background mode: `interactions.create(background=True)` answers at once with an id, which is
polled with `interactions.get`. A character travels as reference parts — its clip as a video part and its
stills as image parts, base64 inline — tied to its name by tags in the prompt (see `prompt.py`). The finished
video comes back inline (base64) or, for large outputs, as a Files API file that is downloaded straight to
disk; both are accepted whatever was asked for, as Google's guide warns either may come. A poll that finds the
video inline writes it to a spool file at once (one at a time), so the download neither fetches the interaction
again nor holds several videos in memory when many jobs finish together (at most four interactions are read
at once, and one video decoded).

Remix is Omni's `edit` and extend its `extend`, both of the earlier interaction by `previous_interaction_id`
(Google stores interactions): an edit sends no duration or aspect ratio, an extension only the seconds it adds.
Only a video this backend did not make is uploaded inline, which Google does not offer in every region.

With webhooks configured (`SORACAST_PUBLIC_URL`, or a registered webhook's `GEMINI_WEBHOOK_SECRET`) every create
carries `webhook_config` naming soracast's generation in `user_metadata`: Google announces the job's end, and a
create whose answer was lost is tied back to its generation instead of being sent (and paid for) twice.

The SDK's own retries are off: they would repeat a create after a 5xx, and a second create is a second paid
video. The core decides what is retried, from the mapped error.

Its parts: `request_body` (what a create sends), `calls` (SDK errors as soracast's), `job_states` (what an
interaction says), `outputs` (finished videos until downloaded), with `prompt`, `models`, `errors` and `check`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from google import genai
from google.genai import types

from bot.backends.base import (
    GENERATION_KEY,
    BackendCheck,
    CharacterInput,
    JobState,
    JobStatus,
    ModelCapabilities,
    VideoRequest,
)
from bot.backends.gemini.calls import call_gemini
from bot.backends.gemini.check import check_gemini
from bot.backends.gemini.errors import is_region_refusal
from bot.backends.gemini.job_states import job_state
from bot.backends.gemini.models import gemini_models
from bot.backends.gemini.outputs import FinishedVideos
from bot.backends.gemini.prompt import allocate, compose
from bot.backends.gemini.request_body import REGION_TEXT, check_uploaded_source, media_parts, response_format
from bot.config import Settings
from bot.errors import APIRequestRejected, ConfigError, InvalidInput, VideosAPIError
from bot.models import GenerationKind

log = logging.getLogger(__name__)

#: Interactions read at once: a finished one may carry its whole video inline (up to about 4 MB of base64), so
#: this bounds how many can be in memory when many jobs finish together.
MAX_CONCURRENT_READS = 4


class GeminiBackend:
    """`VideoBackend` for Gemini Omni Flash models (`gemini-omni-1.1-flash`, `gemini-omni-1.2-flash`)."""

    service = "Gemini"
    #: The Interactions API has no list of interactions and no idempotency key (checked in google-genai 3.6.1).
    can_list_jobs = False

    def __init__(
        self,
        api_key: str,
        models: list[ModelCapabilities],
        *,
        base_url: str | None = None,
        timeout: float = 60.0,
        name: str = "gemini",
        account_key: str | None = None,
        webhook_url: str | None = None,
        registered_webhook: bool = False,
        spool_dir: Path | None = None,
    ) -> None:
        if not api_key:
            raise ConfigError("GEMINI_API_KEY is empty: set the Gemini API key.")
        self.name = name
        self.account_key = account_key or f"gemini@{base_url or 'generativelanguage.googleapis.com'}"
        self._models = models
        #: Where Google is asked to announce each job (per request), or None (a registered webhook, or none).
        self._webhook_url = webhook_url
        self.announces_jobs = webhook_url is not None or registered_webhook
        #: Few interactions read at once, however many jobs finish together.
        self._reads = asyncio.Semaphore(MAX_CONCURRENT_READS)
        options = types.HttpOptions(
            base_url=base_url,
            api_version="v1beta",
            timeout=int(timeout * 1000),
            retry_options=types.HttpRetryOptions(attempts=1),
        )
        self._client = genai.Client(api_key=api_key, http_options=options)
        self._base_url = base_url
        self._outputs = FinishedVideos(self._client, spool_dir)

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> GeminiBackend:
        """The backend the app uses: key, endpoint, models and reference ceilings from the settings."""
        if settings.gemini_api_key is None:
            raise ConfigError("GEMINI_API_KEY is not set: the Gemini backend needs a key.")
        options: dict[str, Any] = {
            "base_url": settings.gemini_base_url,
            "timeout": settings.api_timeout,
            "webhook_url": settings.gemini_webhook_url,
            "registered_webhook": settings.gemini_webhook_secret is not None,
            "spool_dir": settings.resolved_media_dir,
        }
        options.update(overrides)
        models = gemini_models(
            settings.gemini_models,
            max_images=settings.gemini_max_reference_images,
            max_videos=settings.gemini_max_reference_videos,
        )
        return cls(settings.gemini_api_key.get_secret_value(), models, **options)

    def __repr__(self) -> str:
        return f"GeminiBackend(name={self.name!r}, account={self.account_key!r})"

    # --- the protocol -----------------------------------------------------------------------------------

    def models(self) -> Sequence[ModelCapabilities]:
        return self._models

    def compose_prompt(self, request: VideoRequest) -> str:
        caps = self._caps(request.model)
        parts = allocate(request.characters, caps.max_reference_images, caps.max_reference_videos)
        # An uploaded source is the first video part; one Gemini made travels by id and takes no tag.
        uploads_source = request.kind is not GenerationKind.CREATE and request.source_job_id is None
        return compose(request, parts, video_offset=1 if uploads_source else 0)

    async def create_character(self, character: CharacterInput) -> str:
        raise InvalidInput("Gemini keeps no characters of its own; soracast sends references instead.")

    async def submit(self, request: VideoRequest, api_prompt: str) -> JobState:
        caps = self._caps(request.model)
        parts = allocate(request.characters, caps.max_reference_images, caps.max_reference_videos)
        uploads_source = request.kind is not GenerationKind.CREATE and request.source_job_id is None
        if uploads_source:
            check_uploaded_source(request)
        media = await asyncio.to_thread(media_parts, request, parts, uploads_source)
        task = {
            GenerationKind.CREATE: "reference_to_video" if media else "text_to_video",
            GenerationKind.REMIX: "edit",
            GenerationKind.EXTEND: "extend",
        }[request.kind]
        body: dict[str, Any] = {
            "model": request.model,
            "input": [{"type": "text", "text": api_prompt}, *media] if media else api_prompt,
            "background": True,
            "response_format": response_format(request),
            "generation_config": {"video_config": {"task": task}},
        }
        if request.kind is not GenerationKind.CREATE and request.source_job_id is not None:
            body["previous_interaction_id"] = request.source_job_id
        if self.announces_jobs:
            config: dict[str, Any] = {"user_metadata": {GENERATION_KEY: request.request_key}}
            if self._webhook_url is not None:
                config["uris"] = [self._webhook_url]
            body["webhook_config"] = config
        try:
            interaction = await call_gemini("create", self._client.aio.interactions.create(**body))
        except APIRequestRejected as exc:
            if uploads_source and is_region_refusal(exc.api_message or exc.message):
                raise APIRequestRejected(
                    REGION_TEXT,
                    hint="Make a new video with /sora instead.",
                    status=exc.status,
                    api_code=exc.api_code,
                    api_message=exc.api_message,
                    log_detail=exc.log_detail,
                ) from None
            raise
        return job_state(interaction)

    def job_id_of(self, provider_id: str, model: str) -> str:
        return provider_id

    def provider_id_of(self, job_id: str) -> str:
        return job_id

    async def poll(self, job_id: str) -> JobState:
        async with self._reads:
            interaction = await call_gemini("get", self._client.aio.interactions.get(job_id))
            state = job_state(interaction)
            if state.status is JobStatus.COMPLETED:
                await self._outputs.keep(job_id, interaction.output_video)
            stopped = str(getattr(interaction, "status", "")) in ("requires_action", "idle")
            del interaction
        if stopped:
            # Nothing will move it on: stop it at Google too, so it holds nothing (best effort).
            with contextlib.suppress(VideosAPIError):
                await call_gemini("cancel", self._client.aio.interactions.cancel(job_id))
        return state

    async def poll_many(self, job_ids: Sequence[str]) -> dict[str, JobState]:
        return {}

    async def find_job(self, request: VideoRequest, api_prompt: str, since: datetime) -> JobState | None:
        return None

    async def download(self, job_id: str, dest: Path) -> Path:
        if job_id not in self._outputs:
            # Not polled to completion by this process (a restart, another machine): ask once more.
            async with self._reads:
                interaction = await call_gemini("get", self._client.aio.interactions.get(job_id))
                if getattr(interaction, "output_video", None) is None:
                    raise APINotReady(f"Gemini has no video for {job_id}.")
                await self._outputs.keep(job_id, interaction.output_video)
                del interaction
        return await self._outputs.save(job_id, dest)

    async def download_thumbnail(self, job_id: str, dest: Path) -> Path | None:
        return None

    async def cancel(self, job_id: str) -> None:
        await call_gemini("cancel", self._client.aio.interactions.cancel(job_id))

    async def delete(self, job_id: str) -> None:
        await call_gemini("delete", self._client.aio.interactions.delete(job_id))

    async def check(self) -> BackendCheck:
        return await check_gemini(self._client, self._models, self._base_url)

    async def aclose(self) -> None:
        await self._client.aio.aclose()
        await self._outputs.aclose()

    def _caps(self, model: str) -> ModelCapabilities:
        for caps in self._models:
            if model in caps.names:
                return caps
        raise InvalidInput(f"{model!r} is not a Gemini model this bot offers.")


class APINotReady(VideosAPIError):
    """A completed interaction without a video to download (answered as a failure by the tracker)."""

    code = "no_video"
