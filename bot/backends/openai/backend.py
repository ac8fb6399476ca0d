"""The OpenAI-shape Videos API as a `VideoBackend`: gateways that still serve `/v1/videos`, and the offline
renderer when it plays by these rules.

A character becomes a native character (`POST /videos/characters` with its clip), created the first time it is
used with an account and cached by the core; a prompt names each character verbatim where the user wrote its
@handle, and the request lists the characters' ids.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from pathlib import Path

from bot.backends.base import (
    BackendCheck,
    CharacterInput,
    CharacterMode,
    JobState,
    JobStatus,
    ModelCapabilities,
    VideoRequest,
    name_prompt,
    with_instructions,
)
from bot.backends.openai.api import VideosAPI
from bot.backends.openai.schemas import ContentVariant, Video, VideoStatus
from bot.config import Settings
from bot.errors import APIAuthError, APINotFound, APIRequestRejected, InvalidInput, VideosAPIError
from bot.models import GenerationKind

_STATUS = {
    VideoStatus.QUEUED: JobStatus.QUEUED,
    VideoStatus.IN_PROGRESS: JobStatus.IN_PROGRESS,
    VideoStatus.COMPLETED: JobStatus.COMPLETED,
    VideoStatus.FAILED: JobStatus.FAILED,
}


def openai_models(settings: Settings) -> list[ModelCapabilities]:
    """The models the endpoint serves, as the operator lists them (gateways differ, so nothing is assumed)."""
    durations = tuple(sorted({int(s) for s in settings.allowed_seconds if s.isdigit()}))
    sizes = tuple(settings.allowed_sizes)
    models = list(settings.allowed_models)
    return [
        ModelCapabilities(
            model=model,
            label=model,
            durations=durations,
            default_duration=durations[0],
            sizes=sizes,
            default_size="1280x720" if "1280x720" in sizes else sizes[0],
            character_mode=CharacterMode.NATIVE_ID,
            max_characters=settings.openai_max_characters,
            can_remix=True,
            can_extend=True,
        )
        for model in models
    ]


def job_state(video: Video, poll_after: float | None = None) -> JobState:
    """A Videos API video object as the core reads it."""
    error = video.error
    failed = video.status is VideoStatus.FAILED
    return JobState(
        id=video.id,
        status=_STATUS.get(video.status, JobStatus.QUEUED),
        progress=max(0, min(100, int(video.progress or 0))),
        poll_after=poll_after,
        error_code=(error.code if error else "failed") if failed else None,
        error_message=((error.message if error else "") or "The Videos API could not make this video.")
        if failed
        else None,
    )


class OpenAIBackend:
    """`VideoBackend` over any `VideosAPI` (the HTTP client, or the offline renderer in process)."""

    service = "the Videos API"
    can_list_jobs = True
    #: Videos API webhooks are the account's (not per request) and jobs can be listed: nothing to wait for.
    announces_jobs = False
    #: Pages of recent videos read per sweep at most; jobs older than that are polled one by one.
    max_list_pages = 20

    def __init__(self, api: VideosAPI, settings: Settings, *, name: str = "openai", account_key: str | None = None):
        self.api = api
        self.name = name
        self.account_key = account_key or f"openai@{settings.api_base_url}"
        self._models = openai_models(settings)

    def models(self) -> Sequence[ModelCapabilities]:
        return self._models

    def compose_prompt(self, request: VideoRequest) -> str:
        # Sora reads characters by their names verbatim: the instructions name them the same way.
        return with_instructions(name_prompt(request), request.characters, lambda c: c.name)

    async def create_character(self, character: CharacterInput) -> str:
        if character.clip is None:
            raise InvalidInput(
                f"@{character.handle} has no stored clip to make it from.",
                hint=f"Register it again with its clip: `/character remove @{character.handle}`, then "
                f"`/character add @{character.handle}`.",
            )
        created = await self.api.create_character(character.name, character.clip)
        if not created.id:
            raise InvalidInput("The Videos API did not return a character id.", hint="Try again later.")
        return created.id

    async def submit(self, request: VideoRequest, api_prompt: str) -> JobState:
        if request.kind is GenerationKind.CREATE:
            video = await self.api.create_video(
                api_prompt,
                model=request.model,
                seconds=str(request.seconds),
                size=request.size,
                character_ids=[c.native_id for c in request.characters if c.native_id],
            )
        elif request.source_job_id is None:
            raise InvalidInput("The video this builds on is gone.", hint="Start from a new /sora video.")
        elif request.kind is GenerationKind.REMIX:
            video = await self.api.remix_video(request.source_job_id, api_prompt)
        else:
            video = await self.api.extend_video(request.source_job_id, api_prompt, str(request.seconds))
        return job_state(video)

    async def poll(self, job_id: str) -> JobState:
        polled = await self.api.retrieve_video(job_id)
        return job_state(polled, polled.poll_after)

    async def poll_many(self, job_ids: Sequence[str]) -> dict[str, JobState]:
        """One `GET /videos` page per 100 recent videos replaces one retrieve per job."""
        wanted = set(job_ids)
        found: dict[str, JobState] = {}
        async for video in self._recent(since=None):
            if video.id in wanted:
                found[video.id] = job_state(video)
                if len(found) == len(wanted):
                    break
        return found

    def job_id_of(self, provider_id: str, model: str) -> str:
        return provider_id

    def provider_id_of(self, job_id: str) -> str:
        return job_id

    async def find_job(self, request: VideoRequest, api_prompt: str, since: datetime) -> JobState | None:
        """A recent video with this request's prompt, model, length and size, made since `since`."""
        earliest = int(since.timestamp())
        async for video in self._recent(since=earliest):
            if (
                video.prompt == api_prompt
                and (video.model or request.model) == request.model
                and (video.seconds is None or video.seconds == str(request.seconds))
                and (video.size is None or video.size == request.size)
                and video.created_at >= earliest
            ):
                return job_state(video)
        return None

    async def _recent(self, since: int | None) -> AsyncIterator[Video]:
        after: str | None = None
        for _ in range(self.max_list_pages):
            page = await self.api.list_videos(limit=100, after=after, order="desc")
            for video in page.data:
                if since is not None and video.created_at < since:
                    return
                yield video
            if not page.has_more or not page.data:
                return
            after = page.last_id

    async def download(self, job_id: str, dest: Path) -> Path:
        return await self.api.download_content(job_id, dest, ContentVariant.VIDEO)

    async def download_thumbnail(self, job_id: str, dest: Path) -> Path | None:
        # The core cuts a thumbnail from the video itself: one request less per video under a rate limit.
        return None

    async def cancel(self, job_id: str) -> None:
        # The API has no cancel route; deleting a job is how a client stops caring about it.
        await self.api.delete_video(job_id)

    async def delete(self, job_id: str) -> None:
        await self.api.delete_video(job_id)

    async def check(self) -> BackendCheck:
        """`GET /models`: proves the key and the base URL, and lists the models the endpoint serves (free)."""
        list_models = getattr(self.api, "list_models", None)
        if list_models is None:
            # The offline renderer in this process: no key, no network.
            return BackendCheck(endpoint="this process", models_available=[c.model for c in self._models])
        endpoint = getattr(self.api, "base_url", "OPENAI_BASE_URL")
        report = BackendCheck(endpoint=endpoint)
        try:
            served = set(await list_models())
        except APIAuthError as exc:
            report.problems.append(
                f"{endpoint} refused OPENAI_API_KEY: {exc.message} (check SORACAST_API_AUTH_STYLE too)"
            )
            return report
        except (APINotFound, APIRequestRejected) as exc:
            report.problems.append(
                f"OPENAI_BASE_URL={endpoint} has no model list ({exc.message}); it should be the API's base, e.g. "
                "https://host/v1."
            )
            return report
        except VideosAPIError as exc:
            report.problems.append(f"could not reach OPENAI_BASE_URL={endpoint}: {exc.message}")
            return report
        for caps in self._models:
            if caps.model in served:
                report.models_available.append(caps.model)
            else:
                report.problems.append(
                    f"{endpoint} does not list {caps.model} for this key; remove it from SORACAST_ALLOWED_MODELS "
                    "or enable it at the gateway."
                )
        return report

    async def aclose(self) -> None:
        await self.api.aclose()
